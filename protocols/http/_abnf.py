"""Character classes of RFC 9110/9112 as translate tables, and a field-name cache.

Validation uses ``bytes.translate(None, allowed)``: it deletes every allowed byte in
one C loop, so a non-empty result means a forbidden byte, with no regex and no
per-byte Python loop. Field names also go through a bounded cache that maps a
name as received to its lower-case form; common names (Host, Accept, ...) then cost
one dict lookup for both validation and case folding.
"""

from __future__ import annotations

__all__ = [
    "FIELD_CHARS",
    "HEXDIG",
    "NAME_CACHE",
    "TCHAR",
    "TARGET_CHARS",
    "is_token",
    "lower_field_name",
]

# RFC 9110 section 5.6.2: tchar = "!" / "#" / "$" / "%" / "&" / "'" / "*" / "+" / "-"
# / "." / "^" / "_" / "`" / "|" / "~" / DIGIT / ALPHA
TCHAR = b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

# Bytes allowed in a message head besides CR and LF: RFC 9110 section 5.5 field-vchar
# (VCHAR / obs-text), SP and HTAB. Everything else is a CTL or NUL.
FIELD_CHARS = b"\t" + bytes(range(0x20, 0x7F)) + bytes(range(0x80, 0x100))
HEAD_CHARS = FIELD_CHARS + b"\r\n"

# RFC 9112 section 3.2 / RFC 3986: a request-target is visible ASCII (no obs-text).
TARGET_CHARS = bytes(range(0x21, 0x7F))

# RFC 9112 section 7.1: chunk-size = 1*HEXDIG
HEXDIG = b"0123456789abcdefABCDEF"

NAME_CACHE: dict[bytes, bytes] = {}
NAME_CACHE_MAX = 512  # bounded: a peer cannot grow it without limit


def is_token(value: bytes) -> bool:
    """Return whether ``value`` is a non-empty RFC 9110 token."""
    return bool(value) and not value.translate(None, TCHAR)


def lower_field_name(name: bytes) -> bytes | None:
    """Return the lower-case form of a valid field name, or None if it is invalid.

    RFC 9110 section 5.1: field-name = token.
    """
    lower = NAME_CACHE.get(name)
    if lower is not None:
        return lower
    if not name or name.translate(None, TCHAR):
        return None
    lower = name.lower()
    if len(NAME_CACHE) < NAME_CACHE_MAX:
        NAME_CACHE[bytes(name)] = lower
    return lower
