"""The opening handshake (RFC 6455 section 4), as pure functions on header fields.

Theory of operation. The HTTP/1.1 exchange itself (reading the request or the
response, the ``101``, what bytes follow it) belongs to the HTTP core; the
adapters drive it (``server.py`` through the HTTP server, ``client.py`` through a
client ``Connection``). This module decides, from the header fields alone:

- server side, ``check_request`` (section 4.2.1) validates a client's opening
  handshake and ``accept`` (section 4.2.2) picks the subprotocol and the
  extensions and returns the ``101`` response's header fields;
- client side, ``request_headers`` (section 4.1) builds the request's fields and
  ``check_response`` (section 4.1, the client's checks 1-6) validates the answer.

Header fields are ``(name, value)`` byte pairs, names compared case-insensitively.
A bad request raises ``HandshakeError`` carrying the HTTP status and headers to
answer with (400, or 426 with ``Sec-WebSocket-Version: 13`` for another version,
section 4.4). A bad response raises ``HandshakeError`` too: the client fails the
connection.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ._deflate import (
    EXTENSION_NAME,
    DeflateParams,
    NegotiationError,
    accept_offer,
    client_offer,
    parse_response,
)

__all__ = [
    "GUID",
    "ClientOffer",
    "HandshakeError",
    "ServerChoice",
    "accept",
    "accept_key",
    "check_request",
    "check_response",
    "new_key",
    "parse_extensions",
    "request_headers",
]

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 section 1.3
Fields = Sequence[tuple[bytes, bytes]]
Extension = tuple[str, list[tuple[str, str | None]]]


class HandshakeError(Exception):
    """The opening handshake failed.

    Attributes:
        msg: What was wrong.
        status: The HTTP status a server answers with.
        headers: Extra header fields for that answer.
    """

    def __init__(
        self, msg: str, status: int = 400, headers: Iterable[tuple[bytes, bytes]] = ()
    ) -> None:
        super().__init__(msg)
        self.msg = msg
        self.status = status
        self.headers = list(headers)


@dataclass(frozen=True, slots=True, kw_only=True)
class ClientOffer:
    """A valid client handshake (section 4.2.1).

    Attributes:
        key: The ``Sec-WebSocket-Key``.
        subprotocols: The offered subprotocols, in the client's order of preference.
        extensions: The offered extensions, each ``(name, [(param, value)])``.
    """

    key: bytes
    subprotocols: tuple[str, ...] = ()
    extensions: tuple[Extension, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerChoice:
    """What a handshake settled (either side).

    Attributes:
        subprotocol: The chosen subprotocol, or None.
        deflate: permessage-deflate's settings for this side, or None.
        headers: (server side) the 101 response's header fields.
    """

    subprotocol: str | None = None
    deflate: DeflateParams | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()


def accept_key(key: bytes) -> bytes:
    """``Sec-WebSocket-Accept`` for ``key`` (section 4.2.2 item 5.4)."""
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def new_key() -> bytes:
    """A fresh ``Sec-WebSocket-Key``: 16 random bytes, base64 (section 4.1)."""
    return base64.b64encode(os.urandom(16))


def _values(fields: Fields, name: bytes) -> list[bytes]:
    return [v for n, v in fields if n.lower() == name]


def _tokens(fields: Fields, name: bytes) -> list[str]:
    out = []
    for value in _values(fields, name):
        for part in value.split(b","):
            token = part.strip().decode("latin-1")
            if token:
                out.append(token)
    return out


def _split_outside_quotes(text: str, sep: str) -> list[str]:
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
    parts.append("".join(current))
    return parts


def parse_extensions(values: Iterable[bytes]) -> list[Extension]:
    """Parse ``Sec-WebSocket-Extensions`` values (section 9.1) into
    ``[(name, [(param, value or None)])]``, lower-casing names.

    Raises:
        HandshakeError: a malformed list.
    """
    out: list[Extension] = []
    for value in values:
        for item in _split_outside_quotes(value.decode("latin-1"), ","):
            if not item.strip():
                continue
            pieces = [p.strip() for p in _split_outside_quotes(item, ";")]
            name = pieces[0].lower()
            if not name:
                raise HandshakeError(f"malformed Sec-WebSocket-Extensions {value!r}")
            params: list[tuple[str, str | None]] = []
            for piece in pieces[1:]:
                key, eq, val = piece.partition("=")
                key = key.strip().lower()
                if not key:
                    raise HandshakeError(f"malformed Sec-WebSocket-Extensions {value!r}")
                val = val.strip()
                if len(val) >= 2 and val[0] == val[-1] == '"':
                    val = val[1:-1]
                params.append((key, val if eq else None))
            out.append((name, params))
    return out


_UPGRADE_REQUIRED = [(b"Upgrade", b"websocket"), (b"Connection", b"Upgrade")]


def check_request(method: bytes, http_version: bytes, fields: Fields) -> ClientOffer:
    """Validate a client's opening handshake (section 4.2.1).

    Raises:
        HandshakeError: not a valid WebSocket handshake (400; 426 when it is not an
            upgrade to WebSocket or asks for another version).
    """
    if method != b"GET":
        raise HandshakeError("the opening handshake is a GET request")  # 4.2.1 item 1
    if http_version != b"1.1":
        raise HandshakeError("the opening handshake needs HTTP/1.1")  # 4.2.1 item 1
    # Item 3: Upgrade contains "websocket"; item 4: Connection contains "Upgrade".
    if "websocket" not in (t.lower() for t in _tokens(fields, b"upgrade")):
        raise HandshakeError("no Upgrade: websocket", 426, _UPGRADE_REQUIRED)
    if "upgrade" not in (t.lower() for t in _tokens(fields, b"connection")):
        raise HandshakeError("no Connection: Upgrade", 426, _UPGRADE_REQUIRED)
    # Item 6: Sec-WebSocket-Version 13; otherwise 426 listing ours (section 4.4).
    if _values(fields, b"sec-websocket-version") != [b"13"]:
        raise HandshakeError(
            "Sec-WebSocket-Version must be 13", 426, [(b"Sec-WebSocket-Version", b"13")]
        )
    # Item 5: Sec-WebSocket-Key, base64 of 16 bytes, exactly once.
    keys = _values(fields, b"sec-websocket-key")
    if len(keys) != 1:
        raise HandshakeError("exactly one Sec-WebSocket-Key is required")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key, validate=True)
    except binascii.Error:
        raw = b""
    if len(raw) != 16:
        raise HandshakeError("Sec-WebSocket-Key is not base64 of 16 bytes")
    subprotocols = tuple(_tokens(fields, b"sec-websocket-protocol"))  # item 8
    extensions = tuple(parse_extensions(_values(fields, b"sec-websocket-extensions")))  # item 9
    return ClientOffer(key=key, subprotocols=subprotocols, extensions=extensions)


def accept(
    offer: ClientOffer,
    *,
    subprotocols: Sequence[str] = (),
    compression: bool = True,
    server_no_context_takeover: bool = False,
) -> ServerChoice:
    """Choose the subprotocol and extensions; the 101's fields (section 4.2.2).

    Args:
        offer: The validated request.
        subprotocols: What the server speaks; the first one the client offered
            that is in this list wins (the client's order is its preference).
        compression: Accept permessage-deflate if offered.
        server_no_context_takeover: Compress each message alone (less memory).
    """
    headers = [
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Accept", accept_key(offer.key)),
    ]
    chosen = next((p for p in offer.subprotocols if p in subprotocols), None)
    if chosen is not None:
        headers.append((b"Sec-WebSocket-Protocol", chosen.encode("latin-1")))
    deflate = None
    if compression:
        for name, params in offer.extensions:
            if name != EXTENSION_NAME:
                continue
            try:
                text, deflate = accept_offer(
                    params, server_no_context_takeover=server_no_context_takeover
                )
            except NegotiationError:
                continue  # RFC 7692 section 5: decline this offer, try the next
            headers.append((b"Sec-WebSocket-Extensions", text.encode("latin-1")))
            break
    return ServerChoice(subprotocol=chosen, deflate=deflate, headers=tuple(headers))


def request_headers(
    key: bytes, *, subprotocols: Sequence[str] = (), compression: bool = True
) -> list[tuple[bytes, bytes]]:
    """The client's handshake fields beyond ``Host`` (section 4.1 items 5-10)."""
    fields = [
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", key),
        (b"Sec-WebSocket-Version", b"13"),
    ]
    if subprotocols:
        fields.append((b"Sec-WebSocket-Protocol", ", ".join(subprotocols).encode("latin-1")))
    if compression:
        fields.append((b"Sec-WebSocket-Extensions", client_offer().encode("latin-1")))
    return fields


def check_response(
    status: int,
    fields: Fields,
    key: bytes,
    *,
    subprotocols: Sequence[str] = (),
    compression: bool = True,
) -> ServerChoice:
    """Validate the server's answer to our handshake (section 4.1, the client's checks).

    Raises:
        HandshakeError: the client must fail the connection.
    """
    if status != 101:
        raise HandshakeError(f"the server answered {status}, not 101", status)  # check 1
    if "websocket" not in (t.lower() for t in _tokens(fields, b"upgrade")):
        raise HandshakeError("the response has no Upgrade: websocket")  # check 2
    if "upgrade" not in (t.lower() for t in _tokens(fields, b"connection")):
        raise HandshakeError("the response has no Connection: Upgrade")  # check 3
    if _values(fields, b"sec-websocket-accept") != [accept_key(key)]:
        raise HandshakeError("wrong Sec-WebSocket-Accept")  # check 4
    deflate = None
    for name, params in parse_extensions(_values(fields, b"sec-websocket-extensions")):
        # Check 5: only extensions we offered, each once.
        if name != EXTENSION_NAME or not compression or deflate is not None:
            raise HandshakeError(f"the server accepted an extension we did not offer: {name}")
        try:
            deflate = parse_response(params)
        except NegotiationError as exc:
            raise HandshakeError(str(exc)) from exc
    chosen = _tokens(fields, b"sec-websocket-protocol")
    if len(chosen) > 1 or (chosen and chosen[0] not in subprotocols):
        raise HandshakeError(f"the server chose a subprotocol we did not offer: {chosen}")  # 6
    return ServerChoice(subprotocol=chosen[0] if chosen else None, deflate=deflate)
