"""The HTTP core's errors, h11 style.

``LocalProtocolError`` means this side misused the API (sending an event the state
machine forbids, a header value with a newline in it). ``RemoteProtocolError``
means the peer sent something HTTP/1.1 forbids; its ``status_hint`` is the status a
server should answer with (400, 413, 414, 431, 501). After either, the connection
is in the ``ERROR`` state and refuses further use.
"""

from __future__ import annotations

__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]


class ProtocolError(Exception):
    """Base class of the HTTP core's errors.

    Args:
        msg: What went wrong.
        status_hint: The HTTP status a server should send in reply.
    """

    def __init__(self, msg: str, status_hint: int = 400) -> None:
        super().__init__(msg)
        self.msg = msg
        self.status_hint = status_hint


class LocalProtocolError(ProtocolError):
    """This side tried to do something HTTP/1.1 or the state machine forbids."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes HTTP/1.1 forbids; ``status_hint`` says how to answer."""
