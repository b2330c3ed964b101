"""plait.protocols.http.core: the sans-IO HTTP/1.1 core (no sockets, no reactor).

``Connection`` turns received bytes into events and events to send into bytes, for
either role (h11's shape). The event classes live here rather than at the package
top level because ``plait.protocols.http.Request`` and ``Response`` are the
application-facing classes of DESIGN.md, which the server adapter builds from
these events.
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
