"""WebSocket events: what the sans-IO core returns from ``receive_data`` and takes in ``send``.

Every event is a frozen, slotted, keyword-only dataclass (STYLE.md). Messages are
whole: the core reassembles fragments (RFC 6455 section 5.4) and decompresses them
(RFC 7692) before it returns a ``TextMessage`` or ``BytesMessage``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "BytesMessage",
    "CloseConnection",
    "Event",
    "Ping",
    "Pong",
    "TextMessage",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class TextMessage:
    """A text message (opcode 0x1), already validated as UTF-8."""

    data: str


@dataclass(frozen=True, slots=True, kw_only=True)
class BytesMessage:
    """A binary message (opcode 0x2)."""

    data: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class Ping:
    """A ping (RFC 6455 section 5.5.2); answer it with ``response()``."""

    payload: bytes = b""

    def response(self) -> Pong:
        """The pong that answers this ping (section 5.5.3: the same payload)."""
        return Pong(payload=self.payload)


@dataclass(frozen=True, slots=True, kw_only=True)
class Pong:
    """A pong (RFC 6455 section 5.5.3)."""

    payload: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class CloseConnection:
    """A close frame (RFC 6455 section 5.5.1).

    Attributes:
        code: The status code (section 7.4); 1005 when the frame carried none.
        reason: The UTF-8 reason text (may be empty).
    """

    code: int = 1000
    reason: str = ""

    def response(self) -> CloseConnection:
        """The close frame that answers this one (section 5.5.1: echo the code)."""
        return CloseConnection(code=self.code)


Event = TextMessage | BytesMessage | Ping | Pong | CloseConnection
"""Any event the core returns or sends."""
