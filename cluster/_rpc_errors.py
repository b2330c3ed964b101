"""The failures a bus call can end with, and the errors of the wire layer."""

from __future__ import annotations

from plait.cluster._defer import TimeoutError

__all__ = [
    "CodecError",
    "NoSuchMethod",
    "Overloaded",
    "PeerLost",
    "RemoteError",
    "TimeoutError",
    "WireError",
]


class RemoteError(Exception):
    """The remote handler raised (or its Deferred failed).

    Attributes:
        remote_type: The remote exception's type name (``ValueError``, or
            ``module.Qualname`` outside builtins).
        message: ``str()`` of the remote exception.
        remote_traceback: The remote traceback as text ('' when not sent).
        exception: The remote exception rebuilt locally when its type is
            registered with the bus's codec, else ``None``.
    """

    def __init__(
        self,
        remote_type: str,
        message: str,
        remote_traceback: str = "",
        exception: BaseException | None = None,
    ) -> None:
        super().__init__(remote_type, message)
        self.remote_type = remote_type
        self.message = message
        self.remote_traceback = remote_traceback
        self.exception = exception

    def __str__(self) -> str:
        return f"{self.remote_type}: {self.message}"


class PeerLost(ConnectionError):
    """The node died, left, or was never there.

    Attributes:
        node: The node's name.
    """

    def __init__(self, node: str, reason: str = "peer lost") -> None:
        super().__init__(node, reason)
        self.node = node
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.node}: {self.reason}"


class NoSuchMethod(LookupError):
    """The node does not expose the method (or no node does, for ``call_any``).

    Attributes:
        node: The node asked ('' when no node was found).
        method: The method's name.
    """

    def __init__(self, node: str, method: str) -> None:
        super().__init__(node, method)
        self.node = node
        self.method = method

    def __str__(self) -> str:
        where = f"node {self.node!r}" if self.node else "no node"
        return f"{where} exposes no method {self.method!r}"


class Overloaded(RuntimeError):
    """The node refused the call: the caller already has its limit of calls running there.

    Attributes:
        node: The node that refused.
        limit: How many calls from one peer it runs at once (its ``max_serving``).
    """

    def __init__(self, node: str, limit: int) -> None:
        super().__init__(node, limit)
        self.node = node
        self.limit = limit

    def __str__(self) -> str:
        return f"node {self.node!r} already runs {self.limit} calls from this node"


class CodecError(ValueError):
    """A value has no encoding, or bytes do not decode to an allowed value."""


class WireError(ValueError):
    """Received bytes are not a valid bus message of this version.

    Attributes:
        reason: The statistics counter the message is dropped under:
            ``garbage``, ``oversize``, ``version``, ``type`` or ``invalid``.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


# These travel under their public names (``exception_name``) and print that way.
for _cls in (RemoteError, PeerLost, NoSuchMethod, Overloaded, CodecError, WireError):
    _cls.__module__ = "plait.cluster.rpc"
