"""Readers: turn buffered bytes into HTTP/1.1 events (RFC 9112), built for speed.

Theory of operation. The connection keeps one ``bytearray`` and an offset ``pos``;
readers look at ``buf[pos:]`` and return ``(event or None, new pos)``, never
copying or compacting the buffer themselves.

Heads: ``find_head_end`` looks for ``b"\\r\\n\\r\\n"`` with ``bytearray.find``,
resuming where the previous unsuccessful search stopped, and enforces the limits
while the head is incomplete (first line -> 414, header block -> 431), so a peer
cannot make us buffer an endless head. A complete head is copied once, checked for
forbidden bytes with one ``translate`` call, split once on CRLF, and each field
line is split with ``partition``; field names are validated and lower-cased through
a small cache. The head parser also extracts what framing needs (Content-Length,
Transfer-Encoding, Connection, Expect, Host, Upgrade) in the same pass.

Bodies: ``ContentLengthReader``, ``ChunkedReader`` (with trailers) and
``UntilCloseReader`` (HTTP/1.0-style responses) hand out whatever is buffered as
``Data``; body limits are enforced on the announced sizes before the bytes arrive.
Only CRLF ends a line: a bare LF or CR anywhere in a head is rejected (RFC 9112
section 2.2 allows, but does not require, accepting bare LF; refusing it closes a
request-smuggling door).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._abnf import (
    FIELD_CHARS,
    HEAD_CHARS,
    HEXDIG,
    NAME_CACHE,
    TARGET_CHARS,
    TCHAR,
    is_token,
    lower_field_name,
)
from ._errors import RemoteProtocolError
from ._events import Data, EndOfMessage, InformationalResponse, Request, Response
from ._headers import Headers

__all__ = [
    "BodyReader",
    "ChunkedReader",
    "ContentLengthReader",
    "Framing",
    "Limits",
    "UntilCloseReader",
    "find_head_end",
    "parse_plain_request_head",
    "parse_request_head",
    "plain_head_fields",
    "parse_response_head",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """Size limits on what a peer may send; each breach raises RemoteProtocolError.

    Args:
        max_request_line: Longest request line (or status line), CRLF excluded;
            over it: 414 URI Too Long (RFC 9112 section 3).
        max_header_bytes: Largest header block (and trailer block) after the first
            line; over it: 431 Request Header Fields Too Large (RFC 6585 section 5).
        max_header_count: Most field lines in one block; over it: 431.
        max_body: Largest body (Content-Length, or the sum of chunk sizes); over it:
            413 Content Too Large (RFC 9110 section 15.5.14). ``None``: unlimited.
        max_chunk_line: Longest chunk-size line including extensions; over it: 400.

    .. versionadded:: 0.1.0
    """

    max_request_line: int = 8190
    max_header_bytes: int = 65536
    max_header_count: int = 100
    max_body: int | None = 1 << 20
    max_chunk_line: int = 1024

    def __post_init__(self) -> None:
        for name in ("max_request_line", "max_header_bytes", "max_header_count", "max_chunk_line"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_body is not None and self.max_body < 0:
            raise ValueError("max_body must not be negative")


@dataclass(slots=True)
class Framing:
    """What a head says about framing and connection management."""

    content_length: int | None = None
    transfer_codings: list[bytes] | None = None
    close: bool = False
    keep_alive: bool = False
    expect_continue: bool = False
    upgrade: bool = False
    host_count: int = 0


_NAME_CACHE_GET = NAME_CACHE.get

_SPECIAL = frozenset(
    [b"content-length", b"transfer-encoding", b"connection", b"expect", b"host", b"upgrade"]
)


def find_head_end(buf: bytearray, pos: int, scan_from: int, limits: Limits) -> int:
    """Return the index of the CRLFCRLF that ends the head at ``pos``, or -1.

    Args:
        buf: The receive buffer.
        pos: Where the head starts.
        scan_from: Where to resume searching (bytes before it were searched).
        limits: The limits to enforce.

    Raises:
        RemoteProtocolError: the first line (414) or header block (431) is too long.
    """
    end = buf.find(b"\r\n\r\n", max(pos, scan_from))
    line_end = buf.find(b"\r\n", pos, end + 2 if end >= 0 else len(buf))
    if line_end < 0:
        if len(buf) - pos > limits.max_request_line + 1:  # +1: a CR may be half a CRLF
            raise RemoteProtocolError("request line too long", 414)  # RFC 9112 section 3
        return -1
    if line_end - pos > limits.max_request_line:
        raise RemoteProtocolError("request line too long", 414)
    block = (end if end >= 0 else len(buf) - 3) - line_end
    if block > limits.max_header_bytes:
        raise RemoteProtocolError("header block too large", 431)  # RFC 6585 section 5
    return end


def _check_head_bytes(head: bytes, line_count: int) -> None:
    # RFC 9110 section 5.5: field values are VCHAR / obs-text / SP / HTAB; a CTL or NUL
    # is invalid. RFC 9112 section 2.2: a bare CR must be rejected, and we only treat
    # CRLF as a line end, so a bare LF is rejected too (smuggling, RFC 9112 11.2).
    if head.translate(None, HEAD_CHARS):
        raise RemoteProtocolError("forbidden control character in message head")
    if head.count(b"\r") != line_count - 1 or head.count(b"\n") != line_count - 1:
        raise RemoteProtocolError("bare CR or LF in message head")


def parse_fields(
    lines: list[bytes], start: int, limits: Limits, framing: Framing | None
) -> Headers:
    """Parse field lines ``lines[start:]`` into Headers; fill ``framing`` if given.

    A field name seen before costs one dict lookup (validation and case folding
    at once); any other line goes through ``_field_name``.

    Raises:
        RemoteProtocolError: an invalid field line (400) or too many of them (431).
    """
    if len(lines) - start > limits.max_header_count:
        raise RemoteProtocolError("too many header fields", 431)
    get = _NAME_CACHE_GET
    names: list[bytes] = []
    lowers: list[bytes] = []
    values: list[bytes] = []
    for i in range(start, len(lines)):
        line = lines[i]
        name, colon, value = line.partition(b":")
        lower = get(name) if colon else None
        if lower is None:
            lower = _field_name(line)  # validates (caching the name) or raises
        value = value.strip(b" \t")  # RFC 9112 section 5.1: OWS around the value
        names.append(name)
        lowers.append(lower)
        values.append(value)
        if framing is not None and lower in _SPECIAL:
            _note_special(framing, lower, value)
    return Headers._from_parsed(names, lowers, values)


def _field_name(line: bytes) -> bytes:
    """Return the lower-cased name of a field line, or raise what is wrong with it."""
    name, colon, _ = line.partition(b":")
    lower = lower_field_name(name) if colon else None
    if lower is not None:
        return lower
    if line[0] in (0x20, 0x09):
        # RFC 9112 section 5.2: obs-fold is rejected with 400.
        raise RemoteProtocolError("obsolete line folding in header")
    if not colon:
        raise RemoteProtocolError("header line without a colon")
    # RFC 9112 section 5.1: no whitespace between name and colon, and
    # RFC 9110 section 5.1: the name is a token.
    raise RemoteProtocolError(f"invalid header name {bytes(name)!r}")


def _note_special(framing: Framing, lower: bytes, value: bytes) -> None:
    if lower == b"content-length":
        # RFC 9110 section 8.6: Content-Length = 1*DIGIT; a list of identical values
        # may be accepted, differing ones are an unrecoverable error (RFC 9112 6.3 #5).
        for item in value.split(b","):
            item = item.strip(b" \t")
            if not item.isdigit():  # ASCII digits only: no sign, no space, no "0x"
                raise RemoteProtocolError(f"invalid Content-Length {bytes(value)!r}")
            if len(item) > 18:  # would overflow any sane limit; no int() on huge input
                raise RemoteProtocolError("Content-Length too large", 413)
            length = int(item)
            if framing.content_length is not None and framing.content_length != length:
                raise RemoteProtocolError("conflicting Content-Length values")
            framing.content_length = length
    elif lower == b"transfer-encoding":
        # RFC 9112 section 6.1: a list of codings, possibly over several fields.
        codings = framing.transfer_codings
        if codings is None:
            codings = framing.transfer_codings = []
        codings.extend(c.strip(b" \t").lower() for c in value.split(b","))
    elif lower == b"connection":
        # RFC 9110 section 7.6.1: a list of case-insensitive connection options.
        for option in value.lower().split(b","):
            option = option.strip(b" \t")
            if option == b"close":
                framing.close = True
            elif option == b"keep-alive":
                framing.keep_alive = True
    elif lower == b"expect":
        # RFC 9110 section 10.1.1: 100-continue is the only defined expectation.
        if value.lower() == b"100-continue":
            framing.expect_continue = True
    elif lower == b"host":
        framing.host_count += 1
    else:  # upgrade, RFC 9110 section 7.8
        framing.upgrade = True


def _split_head(head: bytes) -> list[bytes]:
    lines = head.split(b"\r\n")
    _check_head_bytes(head, len(lines))
    return lines


def _parse_version(version: bytes) -> bytes:
    # RFC 9112 section 2.3: HTTP-version = "HTTP" "/" DIGIT "." DIGIT
    if (
        len(version) != 8
        or not version.startswith(b"HTTP/")
        or version[6] != 0x2E
        or not version[5:6].isdigit()
        or not version[7:8].isdigit()
    ):
        raise RemoteProtocolError(f"malformed HTTP version {bytes(version[:16])!r}")
    if version[5] != 0x31:
        raise RemoteProtocolError("unsupported HTTP major version", 505)
    return version[5:]


def parse_request_head(head: bytes, limits: Limits) -> tuple[Request, Framing]:
    """Parse a request head (without its final CRLFCRLF).

    Raises:
        RemoteProtocolError: a malformed request line or field (400), an
            unsupported version (505), too many fields (431).
    """
    lines = _split_head(head)
    # RFC 9112 section 3: request-line = method SP request-target SP HTTP-version
    parts = lines[0].split(b" ")
    if len(parts) != 3:
        raise RemoteProtocolError("malformed request line")
    method, target, version = parts
    if not is_token(method):  # RFC 9110 section 9.1: method = token
        raise RemoteProtocolError("malformed request method")
    if not target or target.translate(None, TARGET_CHARS):  # RFC 9112 section 3.2
        raise RemoteProtocolError("malformed request target")
    http_version = _parse_version(version)
    framing = Framing()
    headers = parse_fields(lines, 1, limits, framing)
    return (
        Request(method=method, target=target, headers=headers, http_version=http_version),
        framing,
    )


def _class(chars: bytes) -> bytes:
    return b"[" + b"".join(b"\\x%02x" % c for c in sorted(set(chars))) + b"]"


# A "plain" request head, matched in one C pass: request-line with an RFC 9110
# token method, a visible-ASCII target and HTTP/1.0 or 1.1, then field lines
# ``token ":" field-chars``. Every head it matches is one parse_request_head accepts
# (the classes are the same ones, only CRLF separates lines); anything else falls
# back to parse_request_head, which decides.
_PLAIN_HEAD = re.compile(
    b"(" + _class(TCHAR) + b"+) (" + _class(TARGET_CHARS) + b"+) HTTP/1\\.([01])"
    b"(?:\\r\\n" + _class(TCHAR) + b"+:" + _class(FIELD_CHARS) + b"*)*",
).fullmatch
_PLAIN_FIELD = re.compile(
    b"\\r\\n(" + _class(TCHAR) + b"+):[ \\t]*(" + _class(FIELD_CHARS) + b"*)"
).findall
# In the lower-cased head, "\nname:" is found exactly where a field of that name is
# (field names are tokens directly followed by ":", and no value holds an LF).
_FRAMING_FIELDS = re.compile(
    b"\\n(host|connection|content-length|transfer-encoding|expect|upgrade):([^\\r]*)"
).findall
_VERSION_OF = {b"0": b"1.0", b"1": b"1.1"}


def parse_plain_request_head(
    head: bytes, limits: Limits
) -> tuple[bytes, bytes, bytes, bool, bool] | None:
    """Parse a bodiless request head the fast way, or return None to say "not plain".

    ``(method, target, http_version, close, keep_alive)`` comes back only for a head
    that ``parse_request_head`` accepts with the same request line and with no
    Content-Length, Transfer-Encoding, Expect or Upgrade field, not CONNECT, at most
    ``max_header_count`` fields and exactly one Host for HTTP/1.1 (the framing
    facts are those its ``Framing`` would hold). Its fields are parsed on demand by
    ``plain_head_fields``. For any other head (bad, or just less common) the caller
    must use ``parse_request_head``, which answers or raises exactly as always.

    Args:
        head: The head without its final CRLFCRLF.
        limits: The limits (the line and block sizes are the caller's to check).
    """
    m = _PLAIN_HEAD(head)
    if m is None or head.count(b"\n") > limits.max_header_count:
        return None
    hosts = 0
    close = keep_alive = False
    for name, value in _FRAMING_FIELDS(head.lower()):
        if name == b"host":
            hosts += 1
        elif name == b"connection":
            for option in value.split(b","):
                option = option.strip(b" \t")
                if option == b"close":
                    close = True
                elif option == b"keep-alive":
                    keep_alive = True
        else:
            return None  # a body, an expectation or an upgrade: the core frames it
    method, target, minor = m.groups()
    if (hosts != 1 and minor == b"1") or method == b"CONNECT":
        return None  # the core answers 400 (Host), or tracks CONNECT's switch proposal
    return method, target, _VERSION_OF[minor], close, keep_alive


def plain_head_fields(head: bytes) -> Headers:
    """The Headers of a head ``parse_plain_request_head`` accepted (as its full
    parse would give them: names as received, lower-cased names, values without OWS).
    """
    names: list[bytes] = []
    lowers: list[bytes] = []
    values: list[bytes] = []
    get = _NAME_CACHE_GET
    for name, value in _PLAIN_FIELD(head):
        names.append(name)
        lowers.append(get(name) or name.lower())
        values.append(value.rstrip(b" \t"))
    return Headers._from_parsed(names, lowers, values)


def parse_response_head(
    head: bytes, limits: Limits
) -> tuple[InformationalResponse | Response, Framing]:
    """Parse a response head (without its final CRLFCRLF).

    Raises:
        RemoteProtocolError: a malformed status line or field.
    """
    lines = _split_head(head)
    # RFC 9112 section 4: status-line = HTTP-version SP status-code SP [ reason-phrase ]
    version, sp1, rest = lines[0].partition(b" ")
    status, _, reason = rest.partition(b" ")
    if not sp1 or len(status) != 3 or not status.isdigit():
        raise RemoteProtocolError("malformed status line")
    http_version = _parse_version(version)
    code = int(status)
    if code < 100:
        raise RemoteProtocolError("status code below 100")
    framing = Framing()
    headers = parse_fields(lines, 1, limits, framing)
    cls = InformationalResponse if code < 200 else Response
    return (
        cls(status_code=code, headers=headers, reason=reason, http_version=http_version),
        framing,
    )


class BodyReader:
    """Base of the body readers: ``read`` returns ``(event or None, new pos)``."""

    __slots__ = ()

    def read(self, buf: bytearray, pos: int) -> tuple[Data | EndOfMessage | None, int]:
        """Return the next body event from ``buf[pos:]`` and the new position."""
        raise AssertionError("subclass responsibility")  # pragma: no cover

    def read_eof(self) -> EndOfMessage:
        """The peer closed: return the last event, or raise if the body is cut short.

        Raises:
            RemoteProtocolError: the body was incomplete.
        """
        raise RemoteProtocolError("peer closed the connection before the body ended")


class ContentLengthReader(BodyReader):
    """A body of a known length (RFC 9112 section 6.3, item 6)."""

    __slots__ = ("_remaining",)

    def __init__(self, length: int) -> None:
        self._remaining = length

    def read(self, buf: bytearray, pos: int) -> tuple[Data | EndOfMessage | None, int]:
        remaining = self._remaining
        if remaining == 0:
            return EndOfMessage(), pos
        n = min(len(buf) - pos, remaining)
        if n <= 0:
            return None, pos
        self._remaining = remaining - n
        return Data(data=bytes(buf[pos : pos + n])), pos + n


class UntilCloseReader(BodyReader):
    """A response body that ends when the connection does (RFC 9112 6.3, item 8)."""

    __slots__ = ()

    def read(self, buf: bytearray, pos: int) -> tuple[Data | EndOfMessage | None, int]:
        if pos >= len(buf):
            return None, pos
        return Data(data=bytes(buf[pos:])), len(buf)

    def read_eof(self) -> EndOfMessage:
        return EndOfMessage()


class ChunkedReader(BodyReader):
    """A chunked body with optional trailers (RFC 9112 section 7.1)."""

    __slots__ = ("_limits", "_need_crlf", "_remaining", "_total", "_trailers")

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._remaining = 0  # bytes left in the current chunk's data
        self._need_crlf = False  # the CRLF after chunk data is due
        self._total = 0
        self._trailers = False

    def read(self, buf: bytearray, pos: int) -> tuple[Data | EndOfMessage | None, int]:
        while True:
            available = len(buf) - pos
            if self._remaining:
                n = min(available, self._remaining)
                if n == 0:
                    return None, pos
                self._remaining -= n
                self._need_crlf = self._remaining == 0
                return Data(data=bytes(buf[pos : pos + n])), pos + n
            if self._need_crlf:
                if available < 2:
                    return None, pos
                if buf[pos] != 0x0D or buf[pos + 1] != 0x0A:
                    # RFC 9112 section 7.1: chunk = chunk-size [ext] CRLF data CRLF
                    raise RemoteProtocolError("chunk data not followed by CRLF")
                pos += 2
                self._need_crlf = False
                continue
            if self._trailers:
                return self._read_trailers(buf, pos)
            pos = self._read_size_line(buf, pos)
            if pos < 0:
                return None, -pos - 1

    def _read_size_line(self, buf: bytearray, pos: int) -> int:
        """Consume one chunk-size line; return the new pos, or ``-pos - 1`` if short."""
        limit = self._limits.max_chunk_line
        end = buf.find(b"\r\n", pos, pos + limit + 2)
        if end < 0:
            if len(buf) - pos > limit + 1:
                raise RemoteProtocolError("chunk size line too long")
            return -pos - 1
        line = bytes(buf[pos:end])
        if line.translate(None, HEAD_CHARS) or b"\r" in line or b"\n" in line:
            raise RemoteProtocolError("control character in chunk size line")
        # RFC 9112 section 7.1.1: chunk-ext = *( BWS ";" BWS ext-name ...); ignored.
        size_text = line.partition(b";")[0].rstrip(b" \t")
        # RFC 9112 section 7.1: chunk-size = 1*HEXDIG (int() alone would take "+", "_").
        if not size_text or size_text.translate(None, HEXDIG):
            raise RemoteProtocolError(f"invalid chunk size {size_text[:20]!r}")
        if len(size_text) > 15:  # RFC 9112 section 7.1: guard against overflow
            raise RemoteProtocolError("chunk size overflow")
        size = int(size_text, 16)
        self._total += size
        max_body = self._limits.max_body
        if max_body is not None and self._total > max_body:
            raise RemoteProtocolError("chunked body too large", 413)
        if size == 0:
            self._trailers = True
        else:
            self._remaining = size
        return end + 2

    def _read_trailers(self, buf: bytearray, pos: int) -> tuple[EndOfMessage | None, int]:
        # RFC 9112 section 7.1.2: trailer-section = *( field-line CRLF ), then CRLF.
        if len(buf) - pos < 2:
            return None, pos
        if buf[pos] == 0x0D and buf[pos + 1] == 0x0A:
            return EndOfMessage(), pos + 2
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            if len(buf) - pos > self._limits.max_header_bytes:
                raise RemoteProtocolError("trailer block too large", 431)
            return None, pos
        if end - pos > self._limits.max_header_bytes:
            raise RemoteProtocolError("trailer block too large", 431)
        lines = _split_head(bytes(buf[pos:end]))
        trailers = parse_fields(lines, 0, self._limits, None)
        return EndOfMessage(headers=trailers), end + 4
