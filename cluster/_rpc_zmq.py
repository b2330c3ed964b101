"""The ZeroMQ link: one ROUTER socket per bus, driven by the Plait reactor.

Theory of operation.

Sockets. A bus has one ROUTER socket. It binds (``bind``) and connects to every
address in ``connect``. Its routing id is the node's name, so peers that connect to
it see it under that name. Each connection this bus opens gets a *local* routing
id, ``b"@" + address`` (``ZMQ_CONNECT_ROUTING_ID``), so hello can be sent before
the peer's name is known. ``ROUTER_MANDATORY`` makes a send to a vanished route
fail with ``EHOSTUNREACH`` (reported as ``link_lost``) instead of vanishing, and
``ROUTER_HANDOVER`` lets a restarted node take its name back. A third-party
client may use a DEALER: every bus message is one frame after the routing id.

Edge-triggered readiness. ``zmq.FD`` signals only that the socket's state may
have *changed*; any ZeroMQ call on the socket, sends included, can consume that
signal. So the link has one routine, ``_pump``, that the reactor runs on every
wake-up and that every ``send`` schedules (``call_soon``, once per turn). It reads
until there is nothing left, sends from the outbox (at once for the first few
answers of a wake-up, in bursts after that), and asks ``EVENTS`` after every send,
starting over while input is waiting. Nothing is sent outside a pump, so no signal
is lost.

Dead peers. ZMTP heartbeats (``ZMQ_HEARTBEAT_IVL``/``TIMEOUT``/``TTL``) make
ZeroMQ close a silent connection; a killed process's connection closes at once.
A socket monitor reports ``DISCONNECTED`` with the file descriptor, and the link
maps descriptors to routes: the payload frame of the first message on each route
after a (re)connection is received with ``copy=False`` to read its ``SRCFD``.
The supervisor can also say so sooner (``Bus.peer_lost``). When a connection
this bus opened comes back (``HANDSHAKE_SUCCEEDED`` after a ``DISCONNECTED``), the
link reports ``link_connected`` again and the node says hello again.

Back-pressure. When a peer's pipe is full (``EAGAIN``), frames wait in the outbox,
in order, retried on every pump and on a short timer.

Scheduling. The buses of a process share one context, ``bus_context()``; the
policy of its I/O thread follows the traffic (``_rpc_context``), so every pump
reports how many messages it moved. A link with an ``inproc://`` address uses
``zmq.Context.instance()`` (inproc peers must share the context) and leaves its
scheduling alone; a CURVE link has a context of its own.
"""

from __future__ import annotations

import errno
import logging
import os
import stat
from collections import deque
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message
from zope.interface import implementer

from plait.cluster._rpc_context import IoThreads, bus_context, new_context
from plait.cluster._rpc_keys import CurveKeys, ZapResponder
from plait.cluster._rpc_link import IBusLink, LinkEvents

__all__ = ["ZmqLink"]

log = logging.getLogger("plait.cluster.rpc")

_MONITORED = zmq.EVENT_DISCONNECTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | (
    zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
)
_RETRY = 0.005
_HWM = 200_000
# The hot path calls the Cython methods directly: pyzmq's ``Socket.send`` wrapper
# (routing_id/group handling) costs 1-2 us per frame, more than the send itself.
_backend_send = zmq.backend.Socket.send
_MORE = int(zmq.SNDMORE | zmq.NOBLOCK)
_NOBLOCK = int(zmq.NOBLOCK)
_EVENTS = int(zmq.EVENTS)
_CHECKED = 4
_BURST = 16
_POLLIN = int(zmq.POLLIN)
_SRCFD = int(zmq.SRCFD)


def _private_ipc_dir(address: str) -> None:
    """Make sure an ``ipc://`` socket lives in a directory only we can enter (0700)."""
    path = address[len("ipc://") :]
    if not path or path.startswith("@"):
        return  # an abstract socket (Linux) has no directory
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    info = os.stat(directory)
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o077:
        raise PermissionError(
            errno.EACCES,
            f"the bus's ipc directory {directory} must be private to this user (0700)",
        )


@implementer(IBusLink)
class ZmqLink:
    """Carries a bus's frames on a ZeroMQ ROUTER socket.

    Args:
        reactor: Provides ``add_reader``, ``remove_reader``, ``call_soon`` and
            ``call_later``.
        name: The node's name (its routing id; at most 255 bytes of UTF-8).
        bind: ``tcp://`` or ``ipc://`` address to bind, or None.
        connect: Addresses to connect to.
        curve: Keys for CURVE on ``tcp://`` (both ends need them).
        max_message: The node's limit; ZeroMQ drops a connection sending a frame
            over twice that (smaller excesses reach the node, which counts them).
        heartbeat: ZMTP heartbeat interval, seconds.
        heartbeat_timeout: Silence after a heartbeat that closes a connection.
    """

    def __init__(
        self,
        reactor: Any,
        name: str,
        *,
        bind: str | None,
        connect: list[str],
        curve: CurveKeys | None,
        max_message: int,
        heartbeat: float,
        heartbeat_timeout: float,
    ) -> None:
        identity = name.encode()
        if not 0 < len(identity) <= 255:
            raise ValueError("a bus name must be 1 to 255 bytes of UTF-8")
        for address in ([bind] if bind else []) + connect:
            if not address.startswith(("tcp://", "ipc://", "inproc://")):
                raise ValueError(f"{address!r}: the bus speaks tcp://, ipc:// or inproc://")
        self._reactor = reactor
        self._identity = identity
        self._bind = bind
        self._connect = list(connect)
        self._curve = curve
        self._max_message = max_message
        self._heartbeat_ms = max(1, int(heartbeat * 1000))
        self._heartbeat_timeout_ms = max(1, int(heartbeat_timeout * 1000))
        self._events: LinkEvents | None = None
        self._context: zmq.Context[Any] | None = None
        self._socket: zmq.Socket[Any] | None = None
        self._monitor: zmq.Socket[Any] | None = None
        self._zap: ZapResponder | None = None
        self._routes_by_endpoint: dict[str, bytes] = {}
        self._fd_routes: dict[int, bytes] = {}
        self._known: set[bytes] = set()
        self._dropped_endpoints: set[str] = set()
        self._outbox: deque[tuple[bytes, bytes]] = deque()
        self._retry: Any = None
        self._io_threads: IoThreads | None = None
        self._pumping = False
        self._direct = False
        self._sent_direct = 0
        self._pump_scheduled = False
        self._lost_scheduled: set[bytes] = set()

    # ------------------------------------------------------------ lifecycle

    def start(self, events: LinkEvents) -> None:
        """Open the socket, bind, connect, and watch it on the reactor.

        Raises:
            zmq.ZMQError: an address cannot be bound or connected.
            PermissionError: an ``ipc://`` directory is open to others.
        """
        owned = self._curve is not None
        io_threads: IoThreads | None = None
        if owned:
            context, io_threads = new_context()
        elif any(a.startswith("inproc://") for a in [self._bind or "", *self._connect]):
            context = zmq.Context.instance()  # inproc peers must share its context
        else:
            context, io_threads = bus_context()
        sock = context.socket(zmq.ROUTER)
        try:
            self._configure(sock)
            if self._curve is not None:
                self._zap = ZapResponder(context, self._reactor, self._curve.authorized)
            if self._bind:
                if self._bind.startswith("ipc://"):
                    _private_ipc_dir(self._bind)
                if self._curve is not None and self._bind.startswith("tcp://"):
                    self._curve.apply_server(sock)
                sock.bind(self._bind)
            monitor = sock.get_monitor_socket(_MONITORED)
            for address in self._connect:
                route = b"@" + address.encode()
                sock.setsockopt(zmq.CONNECT_ROUTING_ID, route)
                if self._curve is not None and address.startswith("tcp://"):
                    self._curve.apply_client(sock)
                sock.connect(address)
                self._routes_by_endpoint[address] = route
        except BaseException:
            if self._zap is not None:
                self._zap.close()
            sock.close(linger=0)
            if owned:
                context.term()
            raise
        self._context = context if owned else None
        self._io_threads = io_threads
        self._socket, self._monitor = sock, monitor
        self._events = events
        self._reactor.add_reader(sock.getsockopt(zmq.FD), self._pump)
        self._reactor.add_reader(monitor.getsockopt(zmq.FD), self._on_monitor)
        for route in self._routes_by_endpoint.values():
            events.link_connected(route)
        # A ZeroMQ socket's FD signals nothing until a read has found it empty
        # once, so read both now.
        self._schedule_pump()
        self._reactor.call_soon(self._on_monitor)

    def _configure(self, sock: zmq.Socket[Any]) -> None:
        sock.setsockopt(zmq.ROUTING_ID, self._identity)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        sock.setsockopt(zmq.LINGER, 200)
        sock.setsockopt(zmq.SNDHWM, _HWM)
        sock.setsockopt(zmq.RCVHWM, _HWM)
        sock.setsockopt(zmq.MAXMSGSIZE, 2 * self._max_message + 4096)
        sock.setsockopt(zmq.HEARTBEAT_IVL, self._heartbeat_ms)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, self._heartbeat_timeout_ms)
        sock.setsockopt(zmq.HEARTBEAT_TTL, self._heartbeat_timeout_ms)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)

    def stop(self) -> None:
        """Stop watching and close the sockets (queued frames get 200 ms to leave)."""
        sock, monitor, self._socket, self._monitor = self._socket, self._monitor, None, None
        self._events = None
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        if sock is None or monitor is None:
            return
        self._reactor.remove_reader(sock.getsockopt(zmq.FD))
        self._reactor.remove_reader(monitor.getsockopt(zmq.FD))
        sock.disable_monitor()
        monitor.close(linger=0)
        sock.close()
        if self._zap is not None:
            self._zap.close()
        if self._context is not None:  # the CURVE link's own context
            context, self._context = self._context, None
            context.term()

    @property
    def endpoint(self) -> str | None:
        """The bound address as ZeroMQ reports it (with the port a ``:0``/``*`` got)."""
        if self._socket is None:
            return None
        last = self._socket.getsockopt(zmq.LAST_ENDPOINT)
        return last.decode() if isinstance(last, bytes) and last else self._bind

    # ------------------------------------------------------------ receiving

    def _schedule_pump(self) -> None:
        if not self._pump_scheduled:
            self._pump_scheduled = True
            self._reactor.call_soon(self._pump, False)

    def _pump(self, woken: bool = True) -> None:
        """Receive, send what is queued, and again while input waits.

        The reactor calls this when ``zmq.FD`` wakes (``woken``), and ``send``
        schedules it. Costs shape the loop: asking ``EVENTS`` costs ~1.4 us, a
        ``recv`` that raises ``Again`` ~4.6 us, and a send may wake ZeroMQ's I/O
        thread. So the first read after a wake-up is tried blindly; the first few
        answers of a wake-up leave at once (low latency when calls come one by one),
        later ones in bursts of ``_BURST`` (fewer I/O-thread wake-ups under load);
        an answer to one of the first few leaves from within ``send`` (``_direct``),
        before the node has unwound its stack;
        a long run of input is read until ``Again``; and ``EVENTS`` is asked after
        every send, since a send can consume the signal of input that arrived.
        How many messages a pump moved goes to the context's ``IoThreads``.
        """
        self._pump_scheduled = False
        sock = self._socket
        if sock is None or self._pumping:
            return
        self._pumping = True
        self._sent_direct = 0
        get, outbox = sock.get, self._outbox
        check, taken, sent = not woken, 0, 0
        try:
            while self._socket is not None:
                if check and not int(get(_EVENTS)) & _POLLIN:
                    if not outbox:
                        break
                    sent += self._flush(sock)
                    continue
                self._direct = taken < _CHECKED
                received = self._receive_one(sock)
                self._direct = False
                if not received:  # Again
                    if not outbox:
                        break
                    sent += self._flush(sock)
                    check = True
                    continue
                taken += 1
                if outbox and (taken <= _CHECKED or len(outbox) >= _BURST):
                    sent += self._flush(sock)
                check = taken < _CHECKED
        finally:
            self._pumping = self._direct = False
            if self._io_threads is not None:
                self._io_threads.observe(taken + sent + self._sent_direct)

    def _receive_one(self, sock: zmq.Socket[Any]) -> bool:
        """Receive and deliver one message; False when there was none."""
        try:
            route = sock.recv(_NOBLOCK)
            frame = sock.recv(_NOBLOCK, copy=False)
            if frame.more:
                while sock.recv(_NOBLOCK, copy=False).more:
                    pass
                data = b""  # a bus message is one frame: counted as garbage
            else:
                data = frame.bytes
        except zmq.Again:
            return False
        if route not in self._known:
            self._learn_fd(route, frame.get(_SRCFD))
        if self._events is not None:
            self._events.link_received(route, data)
        return True

    def _learn_fd(self, route: bytes, fd: int) -> None:
        if fd >= 0:
            self._fd_routes[fd] = route
            self._known.add(route)

    def _on_monitor(self) -> None:
        monitor = self._monitor
        while monitor is not None:
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                break
            kind, value = event["event"], event["value"]
            endpoint = event["endpoint"].decode(errors="replace")
            if kind == zmq.EVENT_DISCONNECTED:
                route = self._fd_routes.pop(value, None)
                if endpoint in self._routes_by_endpoint:
                    self._dropped_endpoints.add(endpoint)
                    route = route or self._routes_by_endpoint[endpoint]
                if route is not None:
                    self._known.discard(route)
                    if self._events is not None:
                        self._events.link_lost(route, "connection closed")
            elif kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                if endpoint in self._dropped_endpoints and self._events is not None:
                    self._dropped_endpoints.discard(endpoint)
                    self._events.link_connected(self._routes_by_endpoint[endpoint])
            else:
                log.warning("bus handshake with %s failed (%s)", endpoint, kind)
            monitor = self._monitor

    # ------------------------------------------------------------ sending

    def send(self, route: bytes, data: bytes) -> None:
        """Send ``data`` to ``route`` without blocking.

        A frame that answers one of the first messages of a wake-up leaves at
        once; any other is queued and leaves at the end of this reactor turn.
        """
        if self._socket is None:
            return
        self._outbox.append((route, data))
        if self._direct:
            self._sent_direct += self._flush(self._socket)
        elif not self._pumping:
            self._schedule_pump()

    def _flush(self, sock: zmq.Socket[Any]) -> int:
        """Send from the outbox until it is empty or a pipe is full; how many left."""
        outbox = self._outbox
        queued = len(outbox)
        while outbox:
            route, data = outbox[0]
            try:
                _backend_send(sock, route, _MORE)
            except zmq.Again:  # the peer's pipe is full: try again shortly
                if self._retry is None or not self._retry.active():
                    self._retry = self._reactor.call_later(_RETRY, self._pump)
                break
            except zmq.ZMQError as exc:
                outbox.popleft()
                if exc.errno != zmq.EHOSTUNREACH:
                    raise
                self._report_unroutable(route)
                continue
            outbox.popleft()
            _backend_send(sock, data, _NOBLOCK)
        return queued - len(outbox)

    def _report_unroutable(self, route: bytes) -> None:
        if route not in self._lost_scheduled:
            self._lost_scheduled.add(route)
            self._reactor.call_soon(self._unroutable, route)

    def _unroutable(self, route: bytes) -> None:
        self._lost_scheduled.discard(route)
        self._known.discard(route)
        if self._events is not None:
            self._events.link_lost(route, "no route to the peer")
