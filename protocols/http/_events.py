"""The events an HTTP/1.1 connection receives and sends.

Every event is a frozen, slotted, keyword-only dataclass. Byte strings stay bytes:
``method``, ``target``, ``reason`` and ``http_version`` are exactly what was (or
will be) on the wire. ``NEED_DATA`` and ``PAUSED`` are what ``next_event`` returns
when there is no event yet.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from ._headers import Headers

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "ConnectionClosed",
    "Data",
    "EndOfMessage",
    "Event",
    "InformationalResponse",
    "NextEventSignal",
    "Request",
    "Response",
]


class NextEventSignal(enum.Enum):
    """Why ``next_event`` has no event to return."""

    NEED_DATA = "need data"
    """Feed more bytes with ``receive_data``."""
    PAUSED = "paused"
    """The peer's message is complete: answer it (and call ``start_next_cycle``)
    before the next one is parsed; or the protocol is switching."""


NEED_DATA = NextEventSignal.NEED_DATA
PAUSED = NextEventSignal.PAUSED


@dataclass(frozen=True, slots=True, kw_only=True)
class Request:
    """A request head: ``GET /index.html HTTP/1.1`` and its header fields."""

    method: bytes
    target: bytes
    headers: Headers = field(default_factory=Headers)
    http_version: bytes = b"1.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class InformationalResponse:
    """A 1xx response head (``100 Continue``, ``101 Switching Protocols``)."""

    status_code: int
    headers: Headers = field(default_factory=Headers)
    reason: bytes = b""
    http_version: bytes = b"1.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Response:
    """A final (2xx-5xx) response head."""

    status_code: int
    headers: Headers = field(default_factory=Headers)
    reason: bytes = b""
    http_version: bytes = b"1.1"


@dataclass(frozen=True, slots=True, kw_only=True)
class Data:
    """A piece of a message body (chunk boundaries are not significant)."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class EndOfMessage:
    """The end of a message, with its trailer fields (chunked bodies only)."""

    headers: Headers = field(default_factory=Headers)


@dataclass(frozen=True, slots=True, kw_only=True)
class ConnectionClosed:
    """The peer closed its side of the connection (or we close ours)."""


Event = Request | InformationalResponse | Response | Data | EndOfMessage | ConnectionClosed
