"""plait.protocols.websocket: WebSocket (RFC 6455) with permessage-deflate (RFC 7692).

Server: mount ``WebSocketResource(handler)`` on a ``Router`` path or a ``Resource``
tree; ``async def handler(ws)`` gets a ``WebSocketProtocol``. Client:
``connect(url)`` returns a Deferred of the same ``ws`` object. The sans-IO core is
in ``plait.protocols.websocket.core``. See docs/websocket.md.
"""

from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._handshake import HandshakeError
from .client import connect
from .protocol import ConnectionClosed, WebSocketProtocol
from .server import Handler, WebSocketResource

__all__ = [
    "ConnectionClosed",
    "Handler",
    "HandshakeError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "WebSocketProtocol",
    "WebSocketResource",
    "connect",
]
