"""plait.protocols.websocket.core: the sans-IO WebSocket core (no sockets, no reactor).

``Connection`` turns received bytes into events (``TextMessage``, ``BytesMessage``,
``Ping``, ``Pong``, ``CloseConnection``) and events to send into bytes (wsproto's
shape). The opening handshake's pure checks (``check_request``, ``accept``,
``request_headers``, ``check_response``) and permessage-deflate's parameters are
here too, for adapters other than Plait's.
"""

from ._connection import CLIENT, SERVER, Connection, Role, State, valid_close_code
from ._deflate import DeflateCodec, DeflateParams, NegotiationError
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage
from ._frames import Frame, FrameReader, Opcode, apply_mask, serialize_frame
from ._handshake import (
    ClientOffer,
    HandshakeError,
    ServerChoice,
    accept,
    accept_key,
    check_request,
    check_response,
    new_key,
    request_headers,
)

__all__ = [
    "CLIENT",
    "SERVER",
    "BytesMessage",
    "ClientOffer",
    "CloseConnection",
    "Connection",
    "DeflateCodec",
    "DeflateParams",
    "Event",
    "Frame",
    "FrameReader",
    "HandshakeError",
    "LocalProtocolError",
    "NegotiationError",
    "Opcode",
    "Ping",
    "Pong",
    "ProtocolError",
    "RemoteProtocolError",
    "Role",
    "ServerChoice",
    "State",
    "TextMessage",
    "accept",
    "accept_key",
    "apply_mask",
    "check_request",
    "check_response",
    "new_key",
    "request_headers",
    "serialize_frame",
    "valid_close_code",
]
