"""``Bus``: a named node on the bus, with its link, lifecycle, fan-out and pub/sub.

Theory of operation: ``Bus`` is the node logic of ``_rpc_node`` plus what
depends on the bus as a whole. The addresses pick the link: ``memory://`` ones a
``MemoryLink`` (tests), ``tcp://`` and ``ipc://`` ones ZeroMQ. ``start()`` binds,
connects, says hello on every connection it opened, and fires once each of those
peers has answered (so ``call`` may name them at once); it waits for them
however long they take to come up, so put a timeout on it if that matters.
Exposing a method or subscribing later tells every peer (one ``welcome`` update,
coalesced per reactor turn). ``stop()`` says ``bye`` to every peer, cancels what
is in flight either way, and closes the link.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from plait.cluster._rpc_errors import CodecError, NoSuchMethod
from plait.cluster._rpc_link import IBusLink
from plait.cluster._rpc_memory import MemoryLink, MemoryNetwork, default_network
from plait.cluster._rpc_node import DEFAULT_MAX_SERVING, Node
from plait.cluster._rpc_peer import _Peer
from plait.cluster._rpc_wire import DEFAULT_MAX_MESSAGE, Bye, Hello, Publish, encode
from plait.cluster.defer import CancelledError, Deferred, fail, succeed
from plait.cluster.failure import Failure
from plait.cluster.interfaces import IDelayedCall

__all__ = ["Bus", "Subscription"]

log = logging.getLogger("plait.cluster.rpc")


class Subscription:
    """A subscriber registered by ``Bus.subscribe``; ``cancel()`` removes it."""

    def __init__(self, bus: Bus, topic: str, f: Callable[[Any], object]) -> None:
        self.topic = topic
        self._bus = bus
        self._f = f

    def cancel(self) -> None:
        """Stop delivering to this subscriber (a second call does nothing)."""
        self._bus._unsubscribe(self.topic, self._f)


class Bus(Node):
    """A node on the Plait bus.

    Example:
        >>> from plait.cluster.task import Clock
        >>> from plait.cluster.rpc import Bus, MemoryNetwork
        >>> clock, net = Clock(), MemoryNetwork()
        >>> server = Bus("server", clock, bind="memory://s", network=net)
        >>> server.expose("add", lambda a, b: a + b)
        >>> client = Bus("client", clock, connect=["memory://s"], network=net)
        >>> _ = server.start(), client.start()
        >>> clock.advance(0)
        >>> got = []
        >>> _ = client.call("server", "add", 1, 2).add_callback(got.append)
        >>> clock.advance(0)
        >>> got
        [3]

    Args:
        name: This node's name (``supervisor``, ``worker-0``, ``host/worker-0``).
        reactor: The reactor (or, with memory addresses, any ``IReactorTime``
            such as ``task.Clock``); the default is the process's reactor.
        bind: The address peers connect to: ``ipc:///run/dir/bus.sock``,
            ``tcp://0.0.0.0:7000``, or ``memory://NAME``.
        connect: Addresses of peers to connect to.
        curve: ``CurveKeys`` for ZeroMQ CURVE on ``tcp://`` (see ``_rpc_keys``).
        network: The ``MemoryNetwork`` for ``memory://`` addresses (default: a
            process-wide one).
        max_message: Largest message accepted, in bytes; bigger ones are dropped
            and counted.
        max_serving: How many calls from one peer may run here at once (handlers
            whose Deferred has not fired); more are answered with ``Overloaded``.
        heartbeat: ZeroMQ heartbeat interval (seconds) on every connection.
        heartbeat_timeout: A peer silent this long after a heartbeat is lost.
    """

    def __init__(
        self,
        name: str,
        reactor: Any = None,
        *,
        bind: str | None = None,
        connect: Iterable[str] = (),
        curve: Any = None,
        network: MemoryNetwork | None = None,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_serving: int = DEFAULT_MAX_SERVING,
        heartbeat: float = 1.0,
        heartbeat_timeout: float = 3.0,
    ) -> None:
        if reactor is None:
            from plait.cluster.reactor import get_reactor

            reactor = get_reactor()
        connect = [connect] if isinstance(connect, str) else list(connect)
        addresses = ([bind] if bind else []) + connect
        link: IBusLink
        if network is not None or (addresses and all(a.startswith("memory://") for a in addresses)):
            link = MemoryLink(network or default_network(), reactor, bind, connect)
        else:
            from plait.cluster._rpc_zmq import ZmqLink

            link = ZmqLink(
                reactor,
                name,
                bind=bind,
                connect=connect,
                curve=curve,
                max_message=max_message,
                heartbeat=heartbeat,
                heartbeat_timeout=heartbeat_timeout,
            )
        super().__init__(
            name, reactor, link, max_message=max_message, max_serving=max_serving
        )
        self._reactor = reactor
        self._bind = bind
        self._state = "new"
        self._starting: Deferred[Bus] | None = None
        self._awaiting: set[bytes] = set()
        self._announcing: IDelayedCall | None = None

    @property
    def link(self) -> IBusLink:
        """What carries this bus's frames."""
        return self._link

    @property
    def endpoint(self) -> str | None:
        """The address peers can connect to (``tcp://...:0`` shows the port chosen)."""
        return getattr(self._link, "endpoint", None) or self._bind

    @property
    def state(self) -> str:
        """``new``, ``starting``, ``running`` or ``stopped``."""
        return self._state

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Deferred[Bus]:
        """Bind, connect and introduce this node.

        Returns:
            A Deferred that fires with the bus once every peer in ``connect``
            answered the hello; errbacks with ``OSError``/``zmq.ZMQError`` when
            an address cannot be bound or connected.
        """
        if self._state != "new":
            return fail(RuntimeError(f"bus {self.name!r} was started already"))
        self._state = "starting"
        self._starting = Deferred()
        try:
            self._link.start(self)
        except Exception:
            self._state = "stopped"
            self._starting = None
            return fail(Failure())
        starting = self._starting
        self._check_started()
        return starting

    def link_connected(self, route: bytes) -> None:
        """A connection this node opened is up: say hello on it (the link calls this)."""
        if self._state == "starting":
            self._awaiting.add(route)
        try:
            data = encode(self._hello(welcome=False), self.codec)
        except CodecError:
            log.exception("cannot encode the hello of %s", self.name)
            return
        self._link.send(route, data)

    def _may_loop_back(self) -> bool:
        return self._state != "stopped"

    def _peer_ready(self, peer: _Peer) -> None:
        self._awaiting.discard(peer.route)
        self._check_started()

    def _check_started(self) -> None:
        if self._state == "starting" and not self._awaiting and self._starting is not None:
            self._state = "running"
            starting, self._starting = self._starting, None
            starting.callback(self)

    def stop(self) -> Deferred[None]:
        """Say bye to every peer, cancel what is in flight, and close.

        Calls in flight errback with ``CancelledError``; remote Deferreds held
        errback with ``PeerLost``. Returns a Deferred that fires with None.
        """
        if self._state == "stopped":
            return succeed(None)
        self._state = "stopped"
        if self._announcing is not None and self._announcing.active():
            self._announcing.cancel()
        for peer in list(self._routes.values()):
            self._send_message(peer, Bye())
        for call_id in list(self._calls):
            entry = self._end_call(call_id)
            if entry is not None:
                entry.deferred.errback(CancelledError(f"bus {self.name!r} stopped"))
        for peer in list(self._routes.values()):
            self._lose(peer, "this bus stopped")
        self._link.stop()
        if self._starting is not None:
            starting, self._starting = self._starting, None
            starting.errback(CancelledError(f"bus {self.name!r} stopped while starting"))
        return succeed(None)

    def _announce(self) -> None:
        if self._state in ("starting", "running") and (
            self._announcing is None or not self._announcing.active()
        ):
            self._announcing = self._reactor.call_later(0, self._send_update)

    def _send_update(self) -> None:
        self._announcing = None
        update: Hello = self._hello(welcome=True)
        for peer in list(self._routes.values()):
            self._send_message(peer, update)

    # ------------------------------------------------------------ fan-out

    def nodes(self, method: str | None = None) -> list[str]:
        """The names of the peers known now (that expose ``method``, if given), sorted."""
        return sorted(
            name for name, peer in self._names.items() if method is None or method in peer.methods
        )

    def call_any(
        self, method: str, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Deferred[Any]:
        """Call ``method`` on one of the peers that expose it.

        The peer with the fewest of this node's calls in flight is chosen; ties
        rotate, so equal peers take turns.

        Returns:
            A remote Deferred as ``call`` returns; it errbacks with
            ``NoSuchMethod`` when no peer exposes ``method``.
        """
        candidates = [self._names[name] for name in self.nodes(method)]
        if not candidates:
            return fail(NoSuchMethod("", method))
        self._rotation += 1
        start = self._rotation % len(candidates)
        rotated = candidates[start:] + candidates[:start]
        peer = min(rotated, key=lambda p: p.outstanding)
        return self._call_peer(peer, method, args, kwargs, timeout)

    def gather(
        self,
        method: str,
        *args: Any,
        nodes: str | Iterable[str] = "*",
        timeout: float | None = None,
        **kwargs: Any,
    ) -> Deferred[dict[str, Any]]:
        """Call ``method`` on many nodes at once.

        Args:
            method: The method to call.
            *args: Its positional arguments.
            nodes: ``"*"`` for every peer that exposes ``method``, or names.
            timeout: Each call's timeout.
            **kwargs: Its keyword arguments.

        Returns:
            A Deferred of ``{node: result or Failure}`` once every call ended;
            it never errbacks (each node's failure is its value). Cancelling it
            cancels the calls still in flight.
        """
        names = self.nodes(method) if nodes == "*" else list(nodes)
        if not names:
            return succeed({})
        calls: dict[str, Deferred[Any]] = {}
        results: dict[str, Any] = {}

        cancelled: list[bool] = []

        def cancel(_: Deferred[dict[str, Any]]) -> None:
            cancelled.append(True)  # the outcome errbacks with CancelledError
            for call in list(calls.values()):
                call.cancel()

        outcome: Deferred[dict[str, Any]] = Deferred(cancel)

        def collect(value: Any, name: str) -> None:
            results[name] = value
            calls.pop(name, None)
            if len(results) == len(names) and not (outcome.called or cancelled):
                outcome.callback({name: results[name] for name in names})

        for name in names:
            calls[name] = self.call(name, method, *args, timeout=timeout, **kwargs)
        for name, call in list(calls.items()):
            call.add_both(collect, name)
        return outcome

    # ------------------------------------------------------------ publish/subscribe

    def publish(self, topic: str, msg: Any) -> int:
        """Send ``msg`` to every subscriber of ``topic``, on every node (this one too).

        Local subscribers run on a later reactor turn, never inside ``publish``.

        Returns:
            How many peers it was sent to.

        Raises:
            CodecError: ``msg`` has no encoding (a Deferred cannot be published).
        """
        data = encode(Publish(topic=topic, msg=msg), self.codec)
        peers = [peer for peer in self._routes.values() if topic in peer.topics]
        for peer in peers:
            self._send(peer, data)
        if self._subscribers.get(topic):
            self._reactor.call_later(0, self._deliver, topic, msg)
        return len(peers)

    def subscribe(self, topic: str, f: Callable[[Any], object]) -> Subscription:
        """Call ``f(msg)`` for every message published on ``topic``.

        Returns:
            A ``Subscription``; its ``cancel()`` unsubscribes.
        """
        self._subscribers.setdefault(topic, []).append(f)
        self._announce()
        return Subscription(self, topic, f)

    def _unsubscribe(self, topic: str, f: Callable[[Any], object]) -> None:
        subscribers = self._subscribers.get(topic, [])
        if f in subscribers:
            subscribers.remove(f)
            if not subscribers:
                del self._subscribers[topic]
                self._announce()

    def __repr__(self) -> str:
        return f"<Bus {self.name!r} {self._state} peers={self.nodes()}>"
