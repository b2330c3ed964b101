"""MemoryReactor: a reactor that records what it is asked and touches no socket.

Theory of operation
-------------------
Like Twisted's ``MemoryReactor``, every ``listen_*``/``connect_*``/``adopt_*`` call
is appended to a public list (``tcp_servers``, ``tcp_clients``, ``unix_servers``,
``unix_clients``, ``udp_servers``, ``multicast_servers``, ``unix_datagram_servers``,
``adopted_ports``, ``adopted_connections``) as a small record the test can inspect.
Nothing connects by itself: a client record's Deferred fires when the test calls
``record.connect(server_protocol)`` (which wires the two protocols with
``connect_in_memory`` and returns the ``IOPump``) or ``record.fail(exc)``; a listening
port accepts when the test calls ``port.accept(client_protocol)``.

Time is an embedded ``plait.cluster.task.Clock`` (``reactor.clock``); ``call_later``,
``seconds`` and ``get_delayed_calls`` are the clock's. ``call_soon`` and
``call_from_thread`` queue calls that run when the test calls ``advance`` (or
``pump``). One ``advance(seconds)`` is one loop iteration: it moves the clock
(running the timed calls that fall due), then runs the soon-calls queued so far,
including those the timed calls just queued. A call queued *by* a soon-call runs on
the next ``advance``, as in the native loop. As with ``Clock``, an exception from a
call propagates out of ``advance``.

``run`` does not block: it records the run, fires the ``startup`` triggers and the
``call_when_running`` calls, and returns. ``stop`` fires the ``shutdown`` triggers
(``before``, waiting for the Deferreds they return, then ``during`` and ``after``)
and marks the reactor stopped.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from plait.cluster._delayed_call import DelayedCall
from plait.cluster.interfaces import (
    IReactorCore,
    IReactorFDSet,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
    IReactorUNIX,
)
from plait.cluster.protocol import build_protocol
from plait.cluster.task import Clock
from plait.cluster.testing._memory import MemoryTransport
from plait.cluster.testing._ports import (
    AdoptedConnection,
    AdoptedPort,
    ClientConnection,
    DatagramServer,
    MemoryDatagramTransport,
    MemoryListeningPort,
    StreamServer,
    check_backlog,
    check_callable,
    check_fd,
    check_host,
    check_path,
    check_port,
    check_timeout,
)

if TYPE_CHECKING:
    from plait.cluster.defer import Deferred

__all__ = ["MemoryReactor"]

_PHASES = ("before", "during", "after")
_FIRST_FREE_PORT = 40000


@dataclass
class _SoonCall:
    func: Callable[..., object]
    args: tuple[Any, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)
    _cancelled: bool = False

    def cancel(self) -> None:
        """Do not run the call (a no-op once it has run)."""
        self._cancelled = True

    def cancelled(self) -> bool:
        """True once ``cancel`` was called."""
        return self._cancelled


# ------------------------------------------------------------------ the reactor


@implementer(IReactorCore, IReactorTime, IReactorFDSet, IReactorTCP, IReactorUNIX, IReactorUDP)
class MemoryReactor:
    """A reactor for tests: records calls, keeps time on a ``Clock``, never blocks.

    Args:
        clock: The clock to embed (default: a new ``Clock`` at time 0).

    Attributes:
        clock: The embedded ``Clock``.
        running: True between ``run`` and ``stop``.
        has_run: True once ``run`` was called.
        has_stopped: True once ``stop`` finished.
        hosts: Names ``resolve`` knows, mapped to lists of IP addresses.

    Example:
        >>> from plait.cluster.protocol import Protocol
        >>> reactor = MemoryReactor()
        >>> port = reactor.listen_tcp(8080, Protocol, interface="127.0.0.1")
        >>> reactor.tcp_servers[0].address
        ('127.0.0.1', 8080)
        >>> d = reactor.connect_tcp("example.org", 80, Protocol)
        >>> pump = reactor.tcp_clients[0].connect()
        >>> d.called
        True
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = Clock() if clock is None else clock
        self.running = False
        self.has_run = False
        self.has_stopped = False
        self.hosts: dict[str, list[str]] = {}
        self.tcp_servers: list[StreamServer] = []
        self.tcp_clients: list[ClientConnection] = []
        self.unix_servers: list[StreamServer] = []
        self.unix_clients: list[ClientConnection] = []
        self.udp_servers: list[DatagramServer] = []
        self.multicast_servers: list[DatagramServer] = []
        self.unix_datagram_servers: list[DatagramServer] = []
        self.adopted_ports: list[AdoptedPort] = []
        self.adopted_connections: list[AdoptedConnection] = []
        self.resolutions: list[tuple[str, int]] = []
        self.readers: dict[Any, tuple[Callable[..., object], tuple[Any, ...]]] = {}
        self.writers: dict[Any, tuple[Callable[..., object], tuple[Any, ...]]] = {}
        self.triggers: dict[
            str, dict[str, list[tuple[int, Callable[..., object], tuple[Any, ...], dict[str, Any]]]]
        ] = {}
        self._trigger_ids = 0
        self._stopping = False
        self._soon: deque[_SoonCall] = deque()
        self._thread_calls: deque[_SoonCall] = deque()
        self._thread_lock = threading.Lock()
        self._when_running: list[_SoonCall] = []
        self._next_port = _FIRST_FREE_PORT

    # ------------------------------------------------------------ time

    def seconds(self) -> float:
        """The embedded clock's time."""
        return self.clock.seconds()

    def call_later(
        self, delay: float, f: Callable[..., object], *args: object, **kwargs: object
    ) -> DelayedCall:
        """Schedule on the embedded clock (see ``Clock.call_later``)."""
        return self.clock.call_later(delay, f, *args, **kwargs)

    def get_delayed_calls(self) -> list[DelayedCall]:
        """The embedded clock's active calls, soonest first."""
        return self.clock.get_delayed_calls()

    def advance(self, seconds: float = 0.0) -> None:
        """One loop iteration: move the clock by ``seconds``, then run queued soon-calls.

        Raises:
            ValueError: ``seconds`` is negative or not a number.
            Exception: whatever a call raised (the calls after it stay queued).
        """
        if not seconds >= 0:
            raise ValueError(f"cannot advance a MemoryReactor by {seconds!r} seconds")
        self.clock.advance(seconds)
        self._run_soon_calls()

    def pump(self, timings: Iterable[float]) -> None:
        """``advance`` by each amount of ``timings`` in turn."""
        for amount in timings:
            self.advance(amount)

    @property
    def pending_calls(self) -> list[_SoonCall]:
        """Soon-calls (and calls from threads) queued and not cancelled."""
        with self._thread_lock:
            queued = list(self._soon) + list(self._thread_calls)
        return [call for call in queued if not call.cancelled()]

    def _run_soon_calls(self) -> None:
        with self._thread_lock:
            self._soon.extend(self._thread_calls)
            self._thread_calls.clear()
        for _ in range(len(self._soon)):
            call = self._soon.popleft()
            if not call.cancelled():
                call.func(*call.args, **call.kwargs)

    # ------------------------------------------------------------ core

    def call_soon(self, f: Callable[..., object], *args: Any, **kwargs: Any) -> _SoonCall:
        """Queue ``f(*args, **kwargs)`` for the next ``advance``; returns a cancellable handle.

        Raises:
            TypeError: ``f`` is not callable.
        """
        check_callable(f, "f")
        call = _SoonCall(f, args, kwargs)
        self._soon.append(call)
        return call

    def call_from_thread(self, f: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Thread-safe: queue ``f(*args, **kwargs)`` for the next ``advance``.

        Raises:
            TypeError: ``f`` is not callable.
        """
        check_callable(f, "f")
        with self._thread_lock:
            self._thread_calls.append(_SoonCall(f, args, kwargs))

    def run(self) -> None:
        """Record the run, fire the ``startup`` triggers and ``call_when_running`` calls.

        Raises:
            RuntimeError: the reactor is running already.
        """
        if self.running:
            raise RuntimeError("the MemoryReactor is already running")
        self.running = True
        self.has_run = True
        self._stopping = False
        self._fire("startup", self._started)

    def _started(self) -> None:
        waiting, self._when_running = self._when_running, []
        for call in waiting:
            if not call.cancelled():
                call.func(*call.args, **call.kwargs)

    def stop(self) -> None:
        """Fire the ``shutdown`` triggers, then mark the reactor stopped.

        Raises:
            ReactorNotRunning: the reactor is not running.
        """
        from plait.cluster.reactor import ReactorNotRunning

        if not self.running:
            raise ReactorNotRunning("cannot stop a MemoryReactor that is not running")
        if self._stopping:
            return
        self._stopping = True
        self._fire("shutdown", self._stopped)

    def _stopped(self) -> None:
        self.running = False
        self.has_stopped = True

    def call_when_running(self, f: Callable[..., object], *args: Any, **kwargs: Any) -> Any:
        """Run ``f`` now if running, else after the ``startup`` triggers of ``run``.

        Returns:
            ``None`` when ``f`` ran at once, else a handle whose ``cancel()`` stops it.
        """
        check_callable(f, "f")
        if self.running:
            f(*args, **kwargs)
            return None
        call = _SoonCall(f, args, kwargs)
        self._when_running.append(call)
        return call

    def add_system_event_trigger(
        self, phase: str, event_type: str, f: Callable[..., object], *args: Any, **kwargs: Any
    ) -> tuple[str, str, int]:
        """Record a trigger in ``triggers[event_type][phase]``; ``stop`` fires ``shutdown``.

        Returns:
            An id for ``remove_system_event_trigger``.

        Raises:
            ValueError: ``phase`` is not ``before``, ``during`` or ``after``.
            TypeError: ``f`` is not callable.
        """
        if phase not in _PHASES:
            raise ValueError(f"phase must be one of {_PHASES}, not {phase!r}")
        check_callable(f, "f")
        self._trigger_ids += 1
        phases = self.triggers.setdefault(event_type, {p: [] for p in _PHASES})
        phases[phase].append((self._trigger_ids, f, args, kwargs))
        return (phase, event_type, self._trigger_ids)

    def remove_system_event_trigger(self, trigger_id: Any) -> None:
        """Remove a trigger.

        Raises:
            ValueError: ``trigger_id`` is not the id of a trigger still registered.
        """
        try:
            phase, event_type, number = trigger_id
            entries = self.triggers[event_type][phase]
        except (TypeError, ValueError, KeyError):
            raise ValueError(f"not a system event trigger id: {trigger_id!r}") from None
        for index, entry in enumerate(entries):
            if entry[0] == number:
                del entries[index]
                return
        raise ValueError(f"no such system event trigger: {trigger_id!r}")

    def fire_system_event(self, event_type: str) -> None:
        """Fire the triggers of ``event_type`` now (``stop`` does it for ``shutdown``)."""
        self._fire(event_type, lambda: None)

    def _fire(self, event_type: str, on_done: Callable[[], None]) -> None:
        phases = self.triggers.get(event_type)
        if phases is None:
            on_done()
            return
        waiting = [r for r in self._run_phase(phases["before"]) if hasattr(r, "add_both")]
        left = [len(waiting)]

        def finish() -> None:
            self._run_phase(phases["during"])
            self._run_phase(phases["after"])
            on_done()

        def one_done(result: object) -> object:
            left[0] -= 1
            if left[0] == 0:
                finish()
            return result

        if not waiting:
            finish()
        for d in waiting:
            d.add_both(one_done)

    @staticmethod
    def _run_phase(
        entries: list[tuple[int, Callable[..., object], tuple[Any, ...], dict[str, Any]]],
    ) -> list[object]:
        return [f(*args, **kwargs) for _, f, args, kwargs in list(entries)]

    def resolve(self, host: str, port: int) -> Deferred[list[Any]]:
        """Answer from IP literals and ``hosts``; record the question in ``resolutions``.

        Returns:
            A fired Deferred of ``getaddrinfo``-shaped tuples; it errbacks with
            ``socket.gaierror`` for a name not in ``hosts``.
        """
        from plait.cluster.defer import fail, succeed

        self.resolutions.append((host, port))
        addresses = [host] if _is_ip(host) else self.hosts.get(host)
        if addresses is None:
            return fail(socket.gaierror(socket.EAI_NONAME, f"{host!r} not in MemoryReactor.hosts"))
        infos: list[Any] = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            sockaddr = (address, port, 0, 0) if family == socket.AF_INET6 else (address, port)
            infos.append((family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", sockaddr))
        return succeed(infos)

    # ------------------------------------------------------------ fd set

    def add_reader(self, fd: Any, f: Callable[..., object], *args: Any) -> None:
        """Record ``(f, args)`` in ``readers[fd]``."""
        check_callable(f, "f")
        self.readers[fd] = (f, args)

    def add_writer(self, fd: Any, f: Callable[..., object], *args: Any) -> None:
        """Record ``(f, args)`` in ``writers[fd]``."""
        check_callable(f, "f")
        self.writers[fd] = (f, args)

    def remove_reader(self, fd: Any) -> bool:
        """Forget ``readers[fd]``; True if it was there."""
        return self.readers.pop(fd, None) is not None

    def remove_writer(self, fd: Any) -> bool:
        """Forget ``writers[fd]``; True if it was there."""
        return self.writers.pop(fd, None) is not None

    # ------------------------------------------------------------ TCP

    def listen_tcp(
        self, port: int, factory: Callable[[], Any], backlog: int = 511, interface: str = ""
    ) -> MemoryListeningPort:
        """Record a TCP server in ``tcp_servers``; port 0 gets a number from 40000 up.

        Raises:
            TypeError: ``factory`` is not callable.
            ValueError: ``port`` is not an int in 0..65535, or a bad ``backlog``.
        """
        number = check_port(port)
        check_callable(factory, "factory")
        check_backlog(backlog)
        if number == 0:
            number = self._next_port
            self._next_port += 1
        listening = MemoryListeningPort((interface or "0.0.0.0", number), factory, self)
        self.tcp_servers.append(
            StreamServer(listening.get_host(), factory, backlog, listening, interface=interface)
        )
        return listening

    def connect_tcp(
        self, host: str, port: int, factory: Callable[[], Any], timeout: float | None = 30.0
    ) -> Deferred[Any]:
        """Record a pending connection in ``tcp_clients``; returns its Deferred.

        Fire it with ``reactor.tcp_clients[i].connect(server_protocol)`` or ``.fail(exc)``.

        Raises:
            TypeError: ``factory`` is not callable.
            ValueError: empty ``host``, ``port`` not in 1..65535, ``timeout`` not > 0.
        """
        check_host(host)
        check_port(port, lowest=1)
        check_callable(factory, "factory")
        check_timeout(timeout)
        record = self._client((host, port), factory, timeout)
        self.tcp_clients.append(record)
        return record.deferred

    def adopt_stream_port(
        self, fd: int, family: int, factory: Callable[[], Any]
    ) -> MemoryListeningPort:
        """Record in ``adopted_ports``; the port's ``get_host()`` is ``None``.

        Raises:
            TypeError, ValueError: ``fd`` is not a non-negative int; bad ``factory``.
        """
        check_fd(fd)
        check_callable(factory, "factory")
        listening = MemoryListeningPort(None, factory, self)
        self.adopted_ports.append(AdoptedPort(fd, family, factory, listening))
        return listening

    def adopt_stream_connection(self, fd: int, family: int, factory: Callable[[], Any]) -> Any:
        """Run a protocol from ``factory`` on a standalone MemoryTransport; record it.

        Returns:
            The protocol, or ``None`` when the factory refused.
        """
        check_fd(fd)
        check_callable(factory, "factory")
        protocol = build_protocol(factory, None)
        transport = None
        if protocol is not None:
            transport = MemoryTransport(protocol)
            transport.make_connection(protocol)
        self.adopted_connections.append(AdoptedConnection(fd, family, factory, protocol, transport))
        return protocol

    # ------------------------------------------------------------ Unix

    def listen_unix(
        self, address: str, factory: Callable[[], Any], backlog: int = 511, mode: int = 0o666
    ) -> MemoryListeningPort:
        """Record a Unix server in ``unix_servers``.

        Raises:
            TypeError: ``address`` is not a str or ``factory`` is not callable.
            ValueError: ``address`` is empty, or a bad ``backlog``.
        """
        check_path(address)
        check_callable(factory, "factory")
        check_backlog(backlog)
        listening = MemoryListeningPort(address, factory, self)
        self.unix_servers.append(StreamServer(address, factory, backlog, listening, mode=mode))
        return listening

    def connect_unix(
        self, path: str, factory: Callable[[], Any], timeout: float | None = 30.0
    ) -> Deferred[Any]:
        """Record a pending connection in ``unix_clients``; returns its Deferred.

        Raises:
            TypeError, ValueError: as for ``listen_unix``; ``timeout`` not positive.
        """
        check_path(path)
        check_callable(factory, "factory")
        check_timeout(timeout)
        record = self._client(path, factory, timeout)
        self.unix_clients.append(record)
        return record.deferred

    def listen_unix_datagram(self, address: str, protocol: Any, mode: int = 0o666) -> Any:
        """Record in ``unix_datagram_servers``; returns a ``MemoryDatagramTransport``."""
        check_path(address)
        transport = MemoryDatagramTransport(protocol, address)
        self.unix_datagram_servers.append(DatagramServer(address, protocol, transport, mode=mode))
        protocol.connection_made(transport)
        return transport

    # ------------------------------------------------------------ UDP

    def listen_udp(self, port: int, protocol: Any, interface: str = "") -> Any:
        """Record in ``udp_servers``; returns a ``MemoryDatagramTransport``.

        Raises:
            ValueError: ``port`` is not an int in 0..65535.
        """
        return self._datagram(self.udp_servers, port, protocol, interface, False)

    def listen_multicast(
        self, port: int, protocol: Any, interface: str = "", listen_multiple: bool = False
    ) -> Any:
        """Record in ``multicast_servers``; returns a ``MemoryDatagramTransport``."""
        return self._datagram(self.multicast_servers, port, protocol, interface, listen_multiple)

    def _datagram(
        self,
        into: list[DatagramServer],
        port: int,
        protocol: Any,
        interface: str,
        listen_multiple: bool,
    ) -> MemoryDatagramTransport:
        number = check_port(port)
        if number == 0:
            number = self._next_port
            self._next_port += 1
        address = (interface or "0.0.0.0", number)
        transport = MemoryDatagramTransport(protocol, address)
        into.append(DatagramServer(address, protocol, transport, interface, listen_multiple))
        protocol.connection_made(transport)
        return transport

    # ------------------------------------------------------------ helpers

    def _client(
        self, address: Any, factory: Callable[[], Any], timeout: float | None
    ) -> ClientConnection:
        from plait.cluster.defer import Deferred

        return ClientConnection(address, factory, timeout, Deferred(), self)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped" if self.has_stopped else "idle"
        return f"<MemoryReactor {state} at {self.clock.seconds()!r}>"


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
