"""Writers: serialize HTTP/1.1 heads and bodies (RFC 9112).

Theory of operation: a head is built as one list of byte strings joined once, then
checked as a whole: one ``translate`` call finds any CTL or NUL in a name or value,
and counting CR and LF finds an embedded newline (header injection, RFC 9110
section 5.5), so no per-field regex runs. Field names must be tokens. Body writers
frame ``Data``: ``ContentLengthWriter`` refuses too many or too few bytes,
``ChunkedWriter`` emits ``<hex size>CRLF data CRLF`` and the last-chunk with
trailers, ``UntilCloseWriter`` writes bytes as they come (the connection closes to
end the body), and ``NoBodyWriter`` handles messages that have no body: responses
to HEAD drop what the application writes (so a GET handler also serves HEAD),
anything else refuses it.
"""

from __future__ import annotations

from http import HTTPStatus

from ._abnf import HEAD_CHARS, TARGET_CHARS, is_token, lower_field_name
from ._errors import LocalProtocolError
from ._headers import Headers

__all__ = [
    "BodyWriter",
    "ChunkedWriter",
    "ContentLengthWriter",
    "NoBodyWriter",
    "UntilCloseWriter",
    "write_request_head",
    "write_response_head",
]

_REASONS = {int(s): s.phrase.encode("ascii") for s in HTTPStatus}


def _fields(parts: list[bytes], headers: Headers) -> None:
    for name, value in headers.raw_items():
        if lower_field_name(name) is None:  # RFC 9110 section 5.1: field-name = token
            raise LocalProtocolError(f"invalid header name {name!r}")
        parts.append(b"%s: %s\r\n" % (name, value))


def _finish(parts: list[bytes]) -> bytes:
    parts.append(b"\r\n")
    head = b"".join(parts)
    # RFC 9110 section 5.5: no CTL, NUL, CR or LF inside a name or value. Each part
    # ends with exactly one CRLF, so any other CR or LF was injected.
    lines = len(parts)
    if head.translate(None, HEAD_CHARS) or head.count(b"\n") != lines or head.count(b"\r") != lines:
        raise LocalProtocolError("control character or newline in a header name or value")
    return head


def write_request_head(method: bytes, target: bytes, version: bytes, headers: Headers) -> bytes:
    """Return the serialized request line and fields.

    Raises:
        LocalProtocolError: an invalid method, target, version or field.
    """
    if not is_token(method):
        raise LocalProtocolError(f"invalid method {method!r}")
    if not target or target.translate(None, TARGET_CHARS):
        raise LocalProtocolError(f"invalid request target {target!r}")
    if version not in (b"1.0", b"1.1"):
        raise LocalProtocolError(f"unsupported HTTP version {version!r}")
    parts = [b"%s %s HTTP/%s\r\n" % (method, target, version)]
    _fields(parts, headers)
    return _finish(parts)


def write_response_head(status: int, reason: bytes, version: bytes, headers: Headers) -> bytes:
    """Return the serialized status line and fields; an empty reason gets the standard one.

    Raises:
        LocalProtocolError: an invalid status, version or field.
    """
    if not 100 <= status <= 999:
        raise LocalProtocolError(f"invalid status code {status}")
    if version not in (b"1.0", b"1.1"):
        raise LocalProtocolError(f"unsupported HTTP version {version!r}")
    if not reason:
        reason = _REASONS.get(status, b"")
    parts = [b"HTTP/%s %d %s\r\n" % (version, status, reason)]
    _fields(parts, headers)
    return _finish(parts)


class BodyWriter:
    """Base of the body writers."""

    __slots__ = ()

    def data(self, data: bytes) -> bytes:
        """Return the wire bytes for one piece of body."""
        raise AssertionError("subclass responsibility")  # pragma: no cover

    def end(self, trailers: Headers) -> bytes:
        """Return the wire bytes that end the body.

        Raises:
            LocalProtocolError: trailers given to a body that cannot carry them.
        """
        if len(trailers):
            raise LocalProtocolError("trailers need a chunked body")
        return b""


class ContentLengthWriter(BodyWriter):
    """Exactly ``length`` bytes, no more, no fewer."""

    __slots__ = ("_remaining",)

    def __init__(self, length: int) -> None:
        self._remaining = length

    def data(self, data: bytes) -> bytes:
        self._remaining -= len(data)
        if self._remaining < 0:
            raise LocalProtocolError("body longer than its Content-Length")
        return data

    def end(self, trailers: Headers) -> bytes:
        if self._remaining:
            raise LocalProtocolError(f"body ended {self._remaining} bytes short")
        return super().end(trailers)


class ChunkedWriter(BodyWriter):
    """Chunked transfer coding (RFC 9112 section 7.1)."""

    __slots__ = ()

    def data(self, data: bytes) -> bytes:
        if not data:
            return b""  # a zero-size chunk would end the body
        return b"%x\r\n%b\r\n" % (len(data), data)

    def end(self, trailers: Headers) -> bytes:
        if not len(trailers):
            return b"0\r\n\r\n"
        parts = [b"0\r\n"]
        _fields(parts, trailers)
        return _finish(parts)


class UntilCloseWriter(BodyWriter):
    """A body delimited by closing the connection (HTTP/1.0 peers)."""

    __slots__ = ()

    def data(self, data: bytes) -> bytes:
        return data


class NoBodyWriter(BodyWriter):
    """A message without a body; ``discard`` drops data (HEAD) instead of refusing it."""

    __slots__ = ("_discard",)

    def __init__(self, *, discard: bool) -> None:
        self._discard = discard

    def data(self, data: bytes) -> bytes:
        if data and not self._discard:
            raise LocalProtocolError("this message has no body")
        return b""
