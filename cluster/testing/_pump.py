"""connect_in_memory and IOPump: two protocols talking over MemoryTransports.

Theory of operation
-------------------
``connect_in_memory`` makes two wired MemoryTransports (see ``_memory``), calls
``connection_made`` on the server protocol and then on the client protocol, and
returns an ``IOPump``. Nothing crosses between the two until the pump runs, so a
test sees every intermediate state, and nothing is delivered re-entrantly from
inside the ``write``/``close`` call that caused it.

One ``pump()`` step first advances the optional clock by 0 (running calls due now)
and then carries each direction once (server to client, client to server). For one
direction, in this order:

1. A pending abort of the sender is delivered: the sender gets
   ``connection_lost(None)`` (or the exception that made it abort), and the
   receiver gets a pending reset.
2. A pending reset of the receiver is delivered, as ``ConnectionResetError``, once
   the receiver reads, writes or closes (a real socket notices an RST then too).
3. Queued bytes move to the receiver if it is reading; ``send_fds`` segments call
   ``fds_received(fds)`` just before their bytes. Bytes sent to a receiver that is
   gone reset the sender instead (TCP answers them with an RST). An exception raised
   by ``data_received``/``fds_received``/``eof_received`` is logged and aborts that
   connection with it: that protocol gets ``connection_lost(exc)``, the peer a
   reset. The sender's buffer drained: ``resume_writing``, pull producers.
   Descriptors (duplicated by ``send_fds``) that cannot be delivered are closed.
4. With the queue empty, a ``write_eof``/``close`` of the sender is delivered:
   a closing sender gets ``connection_lost(None)``; the receiver, once it reads,
   gets ``eof_received()`` and is closed unless that returned a true value and it
   has not written EOF itself (half-closed both ways, the connection is over).
5. Still with the queue empty, a registered pull producer gets
   ``resume_producing()`` (the native transport asks each time its buffer empties).

``flush()`` repeats steps until one moves nothing, and raises ``RuntimeError``
after ``max_iterations`` busy steps, like Twisted's ``iosim`` loop guard: two
protocols that answer each other forever are a bug to report, not to hang on.
"""

from __future__ import annotations

import logging
from typing import Any

from plait.cluster.interfaces import IReactorTime
from plait.cluster.testing._memory import MemoryTransport, close_fds

__all__ = ["IOPump", "connect_in_memory"]

_log = logging.getLogger(__name__)

SERVER_ADDRESS = ("127.0.0.1", 12345)
CLIENT_ADDRESS = ("127.0.0.1", 54321)


class IOPump:
    """Moves bytes and connection events between two wired MemoryTransports.

    Attributes:
        server: The server protocol.
        client: The client protocol.
        server_transport: The server protocol's transport.
        client_transport: The client protocol's transport.
        clock: Advanced by 0 at the start of each step when it has ``advance``.
    """

    def __init__(
        self,
        server: Any,
        client: Any,
        server_transport: MemoryTransport,
        client_transport: MemoryTransport,
        clock: IReactorTime | None = None,
    ) -> None:
        self.server = server
        self.client = client
        self.server_transport = server_transport
        self.client_transport = client_transport
        self.clock = clock

    def pump(self) -> bool:
        """Run one step in both directions; True if anything moved or happened."""
        advance = getattr(self.clock, "advance", None)
        if advance is not None:
            advance(0)
        moved = _carry(self.server_transport, self.client_transport)
        moved = _carry(self.client_transport, self.server_transport) or moved
        return moved

    def flush(self, max_iterations: int = 1000) -> int:
        """Pump until a step moves nothing; return how many steps moved something.

        Raises:
            RuntimeError: still busy after ``max_iterations`` steps.
            ValueError: ``max_iterations`` is below 1.
        """
        if max_iterations < 1:
            raise ValueError(f"max_iterations must be >= 1, got {max_iterations}")
        for steps in range(max_iterations):
            if not self.pump():
                return steps
        raise RuntimeError(
            f"IOPump.flush(): still busy after {max_iterations} steps;"
            " the protocols may be answering each other forever"
        )


def connect_in_memory(
    server_protocol: Any,
    client_protocol: Any,
    *,
    clock: IReactorTime | None = None,
    greet: bool = True,
) -> IOPump:
    """Connect two protocols over wired MemoryTransports.

    ``connection_made`` is called on the server protocol, then on the client. The
    server's sockname is ``("127.0.0.1", 12345)`` and the client's
    ``("127.0.0.1", 54321)``; each peername is the other's sockname.

    Args:
        server_protocol: The accepting side's protocol.
        client_protocol: The connecting side's protocol.
        clock: Advanced by 0 before every pump step (a ``Clock`` or ``MemoryReactor``),
            so calls the protocols schedule for "now" run as the bytes move.
        greet: Flush once after connecting, so greetings written in
            ``connection_made`` are exchanged before this returns.

    Returns:
        The IOPump that moves bytes between the two.

    Raises:
        RuntimeError: the greeting flush did not settle (see ``IOPump.flush``).

    Example:
        >>> from plait.cluster.protocol import Protocol
        >>> class Echo(Protocol):
        ...     def data_received(self, data: bytes) -> None:
        ...         self.transport.write(data)
        >>> pump = connect_in_memory(Echo(), Protocol())
        >>> pump.client_transport.write(b"ping")
        >>> pump.flush()
        2
        >>> pump.server_transport.value()
        b'ping'
    """
    server_transport = MemoryTransport(
        server_protocol, sockname=SERVER_ADDRESS, peername=CLIENT_ADDRESS
    )
    client_transport = MemoryTransport(
        client_protocol, sockname=CLIENT_ADDRESS, peername=SERVER_ADDRESS
    )
    server_transport._peer = client_transport
    client_transport._peer = server_transport
    pump = IOPump(server_protocol, client_protocol, server_transport, client_transport, clock)
    server_protocol.connection_made(server_transport)
    client_protocol.connection_made(client_transport)
    if greet:
        pump.flush()
    return pump


# ------------------------------------------------------------------ one direction


def _carry(src: MemoryTransport, dst: MemoryTransport) -> bool:
    """Carry one step of what ``src`` sent to ``dst``; True if anything happened."""
    moved = False
    if src._abort_requested and not src._lost:
        src._connection_lost(src._abort_exc)
        if not dst._lost:
            dst._reset_pending = True
        moved = True
    if dst._reset_pending and not dst._lost and _notices_reset(dst):
        dst._connection_lost(ConnectionResetError("connection reset by peer (in memory)"))
        return True
    if src._lost:
        return moved
    if src._outbox:
        if dst._lost:
            src._connection_lost(ConnectionResetError("connection reset by peer (in memory)"))
            return True
        if not dst.is_reading():
            return moved
        _deliver(src._take_outbox(), dst)
        src._after_drain()
        return True
    if src._eof_written and src._eof_received and not src._closing:
        src.close()  # half-closed both ways: the connection is over
    if src._close_requested:
        src._connection_lost(None)
        moved = True
    if (src._eof_written or src._close_requested) and not src._eof_delivered:
        if dst._lost:
            src._eof_delivered = True
        elif dst.is_reading():
            src._eof_delivered = True
            _deliver_eof(dst)
            moved = True
    return src._pull() or moved


def _notices_reset(dst: MemoryTransport) -> bool:
    return dst.is_reading() or bool(dst._outbox) or dst._closing or dst._eof_written


def _deliver(segments: list[Any], dst: MemoryTransport) -> None:
    protocol = dst.get_protocol()
    pending = bytearray()
    for index, segment in enumerate(segments):
        if dst._lost or dst._abort_requested:
            _close_undelivered(segments[index:])
            return
        if segment.fds:
            if pending:
                if not _call(dst, protocol.data_received, bytes(pending)):
                    _close_undelivered(segments[index:])
                    return
                pending.clear()
            receiver = getattr(protocol, "fds_received", None)
            if receiver is None:
                _log.warning("%r has no fds_received(); closed fds %r", protocol, segment.fds)
                close_fds(segment.fds)
            elif not _call(dst, receiver, list(segment.fds)):
                _close_undelivered(segments[index + 1 :])
                return
        pending += segment.data
    if pending and not dst._lost and not dst._abort_requested:
        _call(dst, protocol.data_received, bytes(pending))


def _close_undelivered(segments: list[Any]) -> None:
    for segment in segments:
        if segment.fds:
            close_fds(segment.fds)


def _deliver_eof(dst: MemoryTransport) -> None:
    dst._eof_received = True
    protocol = dst.get_protocol()
    try:
        keep_open = protocol.eof_received()
    except Exception as exc:
        _log.exception("%r: eof_received() failed; aborting its connection", protocol)
        dst._abort(exc)
        return
    if not keep_open or dst._eof_written:
        dst.close()


def _call(dst: MemoryTransport, method: Any, arg: Any) -> bool:
    """Call a receiving callback; on an exception abort ``dst`` with it (False)."""
    try:
        method(arg)
    except Exception as exc:
        _log.exception("%r failed; aborting its connection", method)
        dst._abort(exc)
        return False
    return True
