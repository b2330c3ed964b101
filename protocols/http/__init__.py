"""plait.protocols.http: HTTP/1.1.

What exists so far is the sans-IO core: ``Connection`` turns received bytes into
events (``Request``, ``InformationalResponse``, ``Response``, ``Data``,
``EndOfMessage``, ``ConnectionClosed``) and events to send into bytes, for either
role, with size limits and request-smuggling defences. The server and client
adapters (``Site``, ``Agent``) are built on it.
"""

from ._connection import Connection
from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    NextEventSignal,
    Request,
    Response,
)
from ._headers import Headers
from ._readers import Limits
from ._state import CLIENT, SERVER, Role, State

__all__ = [
    "CLIENT",
    "NEED_DATA",
    "PAUSED",
    "SERVER",
    "Connection",
    "ConnectionClosed",
    "Data",
    "EndOfMessage",
    "Event",
    "Headers",
    "InformationalResponse",
    "Limits",
    "LocalProtocolError",
    "NextEventSignal",
    "ProtocolError",
    "RemoteProtocolError",
    "Request",
    "Response",
    "Role",
    "State",
]
