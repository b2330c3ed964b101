"""An in-memory link: buses in one process, for tests, with the ZeroMQ link's semantics.

Theory of operation: a ``MemoryNetwork`` maps ``memory://NAME`` addresses to the
links bound there. Connecting makes a *pipe*, a pair of routes (one on each link)
that deliver to each other. Frames are queued on the network in send order and
delivered later, from the clock (``call_later(0, ...)``) or from ``flush()``, so a
sender never re-enters a receiver: the same asynchrony a socket has. ``crash(name)``
drops a node's pipes without a goodbye, as SIGKILL would; each peer then gets
``link_lost`` after the frames already queued to it, as a TCP reset would.
"""

from __future__ import annotations

import errno
import itertools
import logging
from collections import deque
from collections.abc import Iterable

from zope.interface import implementer

from plait.cluster._rpc_link import IBusLink, LinkEvents
from plait.cluster.interfaces import IDelayedCall, IReactorTime

__all__ = ["MemoryLink", "MemoryNetwork", "default_network"]

log = logging.getLogger("plait.cluster.rpc")

_SCHEME = "memory://"


class MemoryNetwork:
    """Where in-memory buses find each other.

    Args:
        max_deliveries: ``flush()`` delivers at most this many frames (a guard
            against two nodes answering each other forever).
    """

    def __init__(self, *, max_deliveries: int = 1_000_000) -> None:
        self._bound: dict[str, MemoryLink] = {}
        self._queue: deque[tuple[MemoryLink, bytes, bytes | None, str]] = deque()
        self._max = max_deliveries
        self._scheduled: IDelayedCall | None = None
        self._members: list[MemoryLink] = []

    def _bind(self, address: str, link: MemoryLink) -> None:
        if address in self._bound:
            raise OSError(errno.EADDRINUSE, f"{address} is already bound")
        self._bound[address] = link

    def _unbind(self, link: MemoryLink) -> None:
        for address in [a for a, bound in self._bound.items() if bound is link]:
            del self._bound[address]

    def _lookup(self, address: str) -> MemoryLink:
        link = self._bound.get(address)
        if link is None:
            raise ConnectionRefusedError(errno.ECONNREFUSED, f"nothing is bound at {address}")
        return link

    def _post(self, clock: IReactorTime, dest: MemoryLink, route: bytes,
              data: bytes | None, reason: str = "") -> None:
        self._queue.append((dest, route, data, reason))
        if self._scheduled is None or not self._scheduled.active():
            self._scheduled = clock.call_later(0, self.flush)

    def flush(self) -> int:
        """Deliver every queued frame, and those their delivery queues.

        Returns:
            How many frames (and losses) were delivered.

        Raises:
            RuntimeError: more than ``max_deliveries`` in one flush.
        """
        count = 0
        queue = self._queue
        while queue:
            count += 1
            if count > self._max:
                raise RuntimeError(f"more than {self._max} deliveries in one flush")
            dest, route, data, reason = queue.popleft()
            dest._deliver(route, data, reason)
        return count

    def crash(self, node: str) -> None:
        """Drop every pipe of the node named ``node`` without a word, as SIGKILL would."""
        for link in list(self._members):
            if getattr(link._events, "name", None) == node:
                link._abort()


@implementer(IBusLink)
class MemoryLink:
    """The link of one bus on a ``MemoryNetwork``.

    Args:
        network: The network to find peers on.
        clock: Schedules deliveries.
        bind: A ``memory://NAME`` address to bind, or None.
        connect: ``memory://NAME`` addresses to connect to.
    """

    _route_ids = itertools.count(1)

    def __init__(self, network: MemoryNetwork, clock: IReactorTime, bind: str | None,
                 connect: Iterable[str]) -> None:
        self._network = network
        self._clock = clock
        self._bind = bind
        self._connect = list(connect)
        for address in ([bind] if bind else []) + self._connect:
            if not address.startswith(_SCHEME):
                raise ValueError(f"{address!r} is not a memory:// address")
        self._events: LinkEvents | None = None
        self._pipes: dict[bytes, tuple[MemoryLink, bytes]] = {}

    def start(self, events: LinkEvents) -> None:
        """Bind, connect, and say which routes are ours (``link_connected``)."""
        if self._bind:
            self._network._bind(self._bind, self)
        targets = [self._network._lookup(address) for address in self._connect]
        self._events = events
        self._network._members.append(self)
        for target in targets:
            mine, theirs = self._new_route(), self._new_route()
            self._pipes[mine] = (target, theirs)
            target._pipes[theirs] = (self, mine)
            events.link_connected(mine)

    def _new_route(self) -> bytes:
        return b"m%d" % next(self._route_ids)

    def send(self, route: bytes, data: bytes) -> None:
        """Queue ``data`` for the other end of ``route``."""
        pipe = self._pipes.get(route)
        if pipe is None:
            if self._events is not None:
                self._network._post(self._clock, self, route, None, "no route to the peer")
            return
        target, their_route = pipe
        self._network._post(self._clock, target, their_route, bytes(data))

    def _deliver(self, route: bytes, data: bytes | None, reason: str) -> None:
        events = self._events
        if events is None:
            return
        if data is None:
            events.link_lost(route, reason)
        elif route in self._pipes:
            events.link_received(route, data)

    def _abort(self) -> None:
        for route, (target, their_route) in list(self._pipes.items()):
            del self._pipes[route]
            if target._pipes.pop(their_route, None) is not None:
                self._network._post(self._clock, target, their_route, None, "connection reset")
        self._network._unbind(self)
        self._events = None
        if self in self._network._members:
            self._network._members.remove(self)

    def stop(self) -> None:
        """Close every pipe (peers see them reset) and unbind."""
        self._abort()


_default = MemoryNetwork()


def default_network() -> MemoryNetwork:
    """The process-wide network ``memory://`` addresses use when none is given."""
    return _default
