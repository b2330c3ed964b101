"""plait.protocols.http.client_pool: the HTTP client's connection pool (adapter side).

Reuses kept-alive connections per origin. Like ``server`` and ``streams``, this
module uses Deferreds and a clock, so it is not a ``_`` sans-IO core; applications
import ``HTTPConnectionPool`` from ``plait.protocols.http.client``.

Theory of operation. Connections are pooled per key ``(scheme, host, port)``. For
each key the pool counts every connection it has made that is not yet lost
(connecting, busy or idle) and never lets that count pass ``max_per_host``;
requests beyond it wait in a FIFO queue. ``acquire`` hands out the most recently
idled connection first (LIFO: the warmest one, and the cold ones time out), else
connects, else queues. A connection comes back through its protocol's ``on_idle``
only when a response has been read in full and both sides kept the connection
alive; then it goes to the first waiter or into the idle list with an
``idle_timeout`` timer that closes it. Anything else (``Connection: close``, an
error, a timeout, a cancellation) ends the connection, and its ``on_lost`` frees
the slot, which lets the first waiter connect. A connection the server closes
while idle is dropped from the idle list as soon as its ``connection_lost`` runs;
one that is closed but not yet noticed is caught by the agent's retry of
idempotent requests (``client``).
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from typing import Any, cast

from plait.cluster.defer import CancelledError, Deferred, gather, maybe_deferred, succeed
from plait.cluster.failure import Failure
from plait.cluster.interfaces import IDelayedCall, IReactorTime

from .client_protocol import HTTPClientProtocol

__all__ = ["HTTPConnectionPool", "PoolKey"]

_log = logging.getLogger(__name__)

PoolKey = tuple[str, str, int]
"""``(scheme, host, port)``."""

Connector = Callable[[], Deferred[HTTPClientProtocol]]


class _Waiter:
    """A request queued for a connection; ``attempt`` is its connection once one started."""

    __slots__ = ("attempt", "connect", "deferred", "queue")

    def __init__(self, connect: Connector) -> None:
        self.connect = connect
        self.attempt: Deferred[tuple[HTTPClientProtocol, bool]] | None = None
        self.deferred: Deferred[tuple[HTTPClientProtocol, bool]] = Deferred(self._cancel)
        self.queue: deque[_Waiter] | None = None

    def _cancel(self, _: Deferred[Any]) -> None:
        if self.attempt is not None:
            self.attempt.cancel()
        elif self.queue is not None and self in self.queue:
            self.queue.remove(self)


class HTTPConnectionPool:
    """Keeps HTTP connections open between requests and shares them out.

    Args:
        clock: Schedules the idle timeouts (the reactor, or a ``Clock`` in tests).
        max_per_host: Most connections open at once to one ``(scheme, host, port)``.
        idle_timeout: Seconds an idle connection stays open before it is closed.
        persistent: False closes every connection after one response.

    Raises:
        ValueError: ``max_per_host`` below 1 or a negative ``idle_timeout``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        clock: IReactorTime,
        *,
        max_per_host: int = 10,
        idle_timeout: float = 60.0,
        persistent: bool = True,
    ) -> None:
        if isinstance(max_per_host, bool) or not isinstance(max_per_host, int) or max_per_host < 1:
            raise ValueError(f"max_per_host must be an int >= 1, not {max_per_host!r}")
        if not idle_timeout >= 0:
            raise ValueError(f"idle_timeout must be >= 0, not {idle_timeout!r}")
        self._clock = clock
        self.max_per_host = max_per_host
        self.idle_timeout = float(idle_timeout)
        self.persistent = persistent
        self._idle: dict[PoolKey, list[HTTPClientProtocol]] = {}
        self._timers: dict[HTTPClientProtocol, IDelayedCall] = {}
        self._open: dict[PoolKey, int] = {}
        self._waiters: dict[PoolKey, deque[_Waiter]] = {}
        self._closed_waiters: dict[HTTPClientProtocol, list[Deferred[None]]] = {}

    # -- handing out ----------------------------------------------------------------------

    def acquire(
        self, key: PoolKey, connect: Connector, *, fresh: bool = False
    ) -> Deferred[tuple[HTTPClientProtocol, bool]]:
        """A connection for ``key``: an idle one, a new one, or one when a slot frees.

        Args:
            key: ``(scheme, host, port)``.
            connect: Makes a new connection (a Deferred of its protocol).
            fresh: Do not reuse an idle connection (a retry after a stale one).

        Returns:
            A Deferred of ``(protocol, reused)``; it errbacks as ``connect``'s does.
            Cancelling it stops the connection attempt, or leaves the queue.
        """
        if not fresh:
            idle = self._idle.get(key)
            while idle:
                protocol = idle.pop()
                self._cancel_timer(protocol)
                if not protocol.lost:
                    return succeed((protocol, True))
        if self._open.get(key, 0) < self.max_per_host:
            return self._connect(key, connect)
        waiter = _Waiter(connect)
        waiter.queue = self._waiters.setdefault(key, deque())
        waiter.queue.append(waiter)
        return waiter.deferred

    def _connect(
        self, key: PoolKey, connect: Connector
    ) -> Deferred[tuple[HTTPClientProtocol, bool]]:
        self._open[key] = self._open.get(key, 0) + 1

        def connected(protocol: HTTPClientProtocol) -> tuple[HTTPClientProtocol, bool]:
            protocol.on_idle = lambda p: self._idled(key, p)
            protocol.on_lost = lambda p: self._lost(key, p)
            if protocol.lost:  # lost before we could watch it
                self._lost(key, protocol)
            return protocol, False

        def failed(failure: Failure) -> Failure:
            self._open[key] -= 1
            self._wake(key)
            return failure

        d = maybe_deferred(connect)  # a connector that raises fails the Deferred
        d.add_callbacks(connected, failed)
        return d  # type: ignore[return-value]  # the callbacks changed its result type

    def _idled(self, key: PoolKey, protocol: HTTPClientProtocol) -> None:
        if not self.persistent:
            protocol.transport.close()
            return
        queue = self._waiters.get(key)
        while queue:
            waiter = queue.popleft()
            if not waiter.deferred.called:
                waiter.deferred.callback((protocol, True))
                return
        if self.idle_timeout == 0:
            protocol.transport.close()
            return
        self._idle.setdefault(key, []).append(protocol)
        self._timers[protocol] = self._clock.call_later(
            self.idle_timeout, self._expire, key, protocol
        )

    def _expire(self, key: PoolKey, protocol: HTTPClientProtocol) -> None:
        self._timers.pop(protocol, None)
        idle = self._idle.get(key)
        if idle and protocol in idle:
            idle.remove(protocol)
        protocol.transport.close()

    def _lost(self, key: PoolKey, protocol: HTTPClientProtocol) -> None:
        protocol.on_lost = protocol.on_idle = None
        self._cancel_timer(protocol)
        idle = self._idle.get(key)
        if idle and protocol in idle:
            idle.remove(protocol)
        self._open[key] -= 1
        for d in self._closed_waiters.pop(protocol, ()):
            d.callback(None)
        self._wake(key)

    def _wake(self, key: PoolKey) -> None:
        queue = self._waiters.get(key)
        while queue and self._open.get(key, 0) < self.max_per_host:
            waiter = queue.popleft()
            if waiter.deferred.called:
                continue
            waiter.attempt = self._connect(key, waiter.connect)
            waiter.attempt.add_both(_relay, waiter.deferred)

    def _cancel_timer(self, protocol: HTTPClientProtocol) -> None:
        timer = self._timers.pop(protocol, None)
        if timer is not None and timer.active():
            timer.cancel()

    # -- inspection and shutdown -----------------------------------------------------------

    def statistics(self) -> dict[PoolKey, tuple[int, int, int]]:
        """Per key: ``(open connections, idle connections, queued requests)``."""
        keys = set(self._open) | set(self._idle) | set(self._waiters)
        return {
            key: (
                self._open.get(key, 0),
                len(self._idle.get(key, ())),
                len(self._waiters.get(key, ())),
            )
            for key in keys
        }

    def close_idle(self) -> Deferred[None]:
        """Close every idle connection.

        Returns:
            A Deferred that fires when all of them are closed.
        """
        waits: list[Deferred[None]] = []
        for idle in list(self._idle.values()):
            for protocol in list(idle):
                d: Deferred[None] = Deferred()
                self._closed_waiters.setdefault(protocol, []).append(d)
                waits.append(d)
                protocol.transport.close()
        return gather(waits).add_callback(lambda _: None)


def _relay(result: object, target: Deferred[tuple[HTTPClientProtocol, bool]]) -> None:
    """Fire a waiter's Deferred with the outcome of the connection made for it."""
    if not target.called:
        if isinstance(result, Failure):
            target.errback(result)
        else:
            target.callback(result)  # type: ignore[arg-type]
    elif isinstance(result, Failure):
        if not result.check(CancelledError):
            _log.debug(
                "a queued connection attempt failed after its request left: %s", result.value
            )
    else:
        protocol = cast(tuple[HTTPClientProtocol, bool], result)[0]
        protocol.transport.close()  # nobody wants it any more
