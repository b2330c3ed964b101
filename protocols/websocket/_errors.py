"""The WebSocket core's two errors (h11's split: our misuse, the peer's garbage)."""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """A WebSocket protocol violation.

    Attributes:
        msg: What went wrong.
        code: The close code that reports it (RFC 6455 section 7.4.1).
    """

    def __init__(self, msg: str, code: int = 1002) -> None:
        super().__init__(msg)
        self.msg = msg
        self.code = code


class LocalProtocolError(ProtocolError):
    """This side tried something the protocol or the connection's state forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer broke RFC 6455 (or RFC 7692); the connection must be failed.

    Attributes:
        data_to_send: The close frame to write before closing the transport
            (section 7.1.7, "Fail the WebSocket Connection"); ``b""`` when a close
            frame was already sent.
    """

    def __init__(self, msg: str, code: int = 1002, data_to_send: bytes = b"") -> None:
        super().__init__(msg, code)
        self.data_to_send = data_to_send
