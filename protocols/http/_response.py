"""What an application returns: ``Response`` and ``StreamingResponse``.

Theory of operation. A ``Response`` is a status, header pairs and a whole body in
bytes; the server adds ``Content-Length``, ``Date`` and ``Server`` and writes the
lot with one ``transport.write``. Its header block is serialized and validated once
(``head_fields``) and cached on the object, so an application that returns the same
``Response`` object each time pays for that once.

A ``StreamingResponse`` has a body that is produced while it is sent: ``chunks`` is
an async iterable (or a plain iterable) of ``bytes``/``str``, or a *body producer*
in Twisted's ``IBodyProducer`` shape, snake_cased: ``start_producing(consumer)``
returns a Deferred (or None) that fires when the body is complete, the consumer
offers ``write(data)``, and ``pause_producing()``/``resume_producing()``/
``stop_producing()`` are called for flow control. Without a ``Content-Length`` the
body goes chunked to HTTP/1.1 clients and close-delimited to HTTP/1.0 ones.

``coerce_result`` turns what an application returned into one of the two, or raises
``TypeError`` (the server answers 500 and logs it).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from typing import Any

from ._abnf import HEAD_CHARS, lower_field_name
from ._headers import to_bytes

__all__ = ["Response", "StreamingResponse", "SwitchProtocols", "coerce_result"]

HeaderInput = (
    Iterable[tuple[bytes | str, bytes | str]]
    | Mapping[str, bytes | str]
    | Mapping[bytes, bytes | str]
    | None
)

_TEXT = (b"Content-Type", b"text/plain; charset=utf-8")
_OCTETS = (b"Content-Type", b"application/octet-stream")
# Framing and connection fields the server must see to frame the message itself.
_FRAMING = frozenset([b"content-length", b"transfer-encoding", b"connection"])


def _pairs(headers: HeaderInput) -> list[tuple[bytes, bytes]]:
    if headers is None:
        return []
    items = headers.items() if isinstance(headers, Mapping) else headers
    return [(to_bytes(name), to_bytes(value)) for name, value in items]


def _items(headers: HeaderInput) -> Iterable[tuple[bytes | str, bytes | str]]:
    if headers is None:
        return ()
    return headers.items() if isinstance(headers, Mapping) else headers


_LINES: dict[tuple[bytes | str, bytes | str], tuple[bytes, bytes]] = {}
_LINES_MAX = 1024  # bounded: applications that vary values cannot grow it forever


def _field_line(name: bytes | str, value: bytes | str) -> tuple[bytes, bytes]:
    """``(lower-case name, "Name: value\r\n")`` for one field, validated and memoized.

    Raises:
        ValueError: an invalid name, or a control character or newline in the field.
    """
    key = (name, value)
    cached = _LINES.get(key)
    if cached is not None:
        return cached
    raw_name, raw_value = to_bytes(name), to_bytes(value)
    lower = lower_field_name(raw_name)
    if lower is None:
        raise ValueError(f"invalid header name {raw_name!r}")
    line = b"%s: %s\r\n" % (raw_name, raw_value)
    # RFC 9110 section 5.5: no CTL, CR or LF inside a name or value (header injection).
    if line.translate(None, HEAD_CHARS) or line.count(b"\n") != 1 or line.count(b"\r") != 1:
        raise ValueError("control character or newline in a header")
    if len(_LINES) < _LINES_MAX and type(name) in (str, bytes) and type(value) in (str, bytes):
        _LINES[key] = (lower, line)
    return lower, line


class Response:
    """A response with its whole body.

    Args:
        status: The status code.
        body: The body; ``str`` is encoded as UTF-8 and gets
            ``Content-Type: text/plain; charset=utf-8`` unless a type is given.
        headers: ``(name, value)`` pairs or a dict; ``str`` or ``bytes``.
        reason: The reason phrase; the standard one when empty.

    Example:
        >>> r = Response(404, "no such page", [("X-Trace", "1")])
        >>> r.status, r.body
        (404, b'no such page')
        >>> r.headers[1]
        (b'Content-Type', b'text/plain; charset=utf-8')
    """

    __slots__ = ("_fields", "_raw", "body", "reason", "status")

    def __init__(
        self,
        status: int = 200,
        body: bytes | str = b"",
        headers: HeaderInput = None,
        *,
        reason: str = "",
    ) -> None:
        self.status = status
        if headers is not None and not isinstance(headers, list | tuple | Mapping):
            headers = list(headers)  # a one-shot iterable: keep its items
        self._raw = headers
        if type(body) is not bytes:
            if isinstance(body, str):
                body = body.encode("utf-8")
                pairs = _pairs(headers)
                if not any(n.lower() == b"content-type" for n, _ in pairs):
                    pairs.append(_TEXT)
                self._raw = pairs
            else:
                body = bytes(body)
        self.body = body
        self.reason = reason
        self._fields: bytes | None = None

    @property
    def headers(self) -> list[tuple[bytes, bytes]]:
        """The header fields as ``(name, value)`` byte pairs (a list you may modify)."""
        raw = self._raw
        if isinstance(raw, list) and all(
            type(n) is bytes and type(v) is bytes for n, v in raw
        ):
            pairs: list[tuple[bytes, bytes]] = raw  # type: ignore[assignment]
        else:
            pairs = self._raw = _pairs(raw)
        self._fields = None  # the caller may change them: serialize again
        return pairs

    def head_fields(self) -> bytes | None:
        """The serialized header lines, or None when the server must frame them itself.

        None means a framing field (``Content-Length``, ``Transfer-Encoding``,
        ``Connection``) is present, and the sans-IO core has to check it.

        Raises:
            ValueError: a field name is not a token, or a name or value holds a
                control character or a newline (header injection).
        """
        fields = self._fields
        if fields is None:
            raw = self._raw
            if raw is None:
                fields = b""
            else:
                # list/tuple first: an isinstance on Mapping (an ABC) costs a Python call.
                items = raw if isinstance(raw, list | tuple) else _items(raw)
                parts = []
                get = _LINES.get  # _field_line's memo, read here without the call
                for name, value in items:
                    cached = get((name, value))
                    lower, line = cached if cached is not None else _field_line(name, value)
                    if lower in _FRAMING:
                        return None
                    parts.append(line)
                fields = b"".join(parts)
            self._fields = fields
        return fields

    def __repr__(self) -> str:
        return f"<Response {self.status} {len(self.body)} bytes>"


class StreamingResponse:
    """A response whose body is produced while it is sent, with back-pressure.

    Args:
        status: The status code.
        headers: ``(name, value)`` pairs or a dict. With a ``Content-Length`` the
            body must have exactly that many bytes; without one it is chunked
            (HTTP/1.1) or ends with the connection (HTTP/1.0).
        chunks: An async iterable or iterable of ``bytes``/``str``, or a body
            producer (``start_producing(consumer)``, see the module docstring).
            Iteration waits while the client's socket buffer is full.
        reason: The reason phrase; the standard one when empty.
    """

    __slots__ = ("chunks", "headers", "reason", "status")

    def __init__(
        self,
        status: int = 200,
        headers: HeaderInput = None,
        chunks: AsyncIterable[bytes | str] | Iterable[bytes | str] | Any = (),
        *,
        reason: str = "",
    ) -> None:
        self.status = status
        self.headers = _pairs(headers)
        self.chunks = chunks
        self.reason = reason

    def __repr__(self) -> str:
        return f"<StreamingResponse {self.status}>"


class SwitchProtocols:
    """Answer ``101 Switching Protocols`` and hand the connection to another protocol.

    The server sends the ``101`` with ``headers`` (which name the new protocol:
    ``Upgrade``, ``Connection: Upgrade`` and its own fields), makes ``protocol`` the
    transport's protocol, calls its ``connection_made(transport)`` and gives it any
    bytes that arrived behind the request. Only valid as the answer to a request
    that asked to upgrade (RFC 9110 section 7.8); otherwise the server answers 500.

    Args:
        protocol: The protocol that takes the connection over (a WebSocket one).
        headers: The ``101``'s fields, as pairs or a dict.
    """

    __slots__ = ("headers", "protocol")

    def __init__(self, protocol: Any, headers: HeaderInput = None) -> None:
        self.protocol = protocol
        self.headers = _pairs(headers)

    def __repr__(self) -> str:
        return f"<SwitchProtocols to {self.protocol!r}>"


def coerce_result(result: object) -> Response | StreamingResponse | SwitchProtocols:
    """Turn an application's (final) return value into a response.

    ``bytes`` become a 200 ``application/octet-stream`` response, ``str`` a 200
    ``text/plain`` one.

    Raises:
        TypeError: anything else.
    """
    if isinstance(result, Response | StreamingResponse | SwitchProtocols):
        return result
    if isinstance(result, bytes):
        return Response(200, result, [_OCTETS])
    if isinstance(result, str):
        return Response(200, result)
    raise TypeError(
        f"an HTTP application returned {type(result).__name__}; expected Response, "
        "StreamingResponse, bytes or str (or a Deferred or coroutine of one)"
    )
