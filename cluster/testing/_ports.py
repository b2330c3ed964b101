"""The fake ports, datagram transport and call records of ``MemoryReactor``.

Each ``listen_*``/``connect_*``/``adopt_*`` call of a ``MemoryReactor`` becomes one
of the records below. The argument checks raise what the native reactor raises for
the same mistake, so code tested on the fake fails the same way on the real one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from plait.cluster.interfaces import IDatagramTransport, IListeningPort, IReactorTime
from plait.cluster.protocol import Protocol, build_protocol
from plait.cluster.testing._memory import MemoryTransport
from plait.cluster.testing._pump import IOPump, connect_in_memory

if TYPE_CHECKING:
    from plait.cluster.defer import Deferred

__all__ = [
    "AdoptedConnection",
    "AdoptedPort",
    "ClientConnection",
    "DatagramServer",
    "MemoryDatagramTransport",
    "MemoryListeningPort",
    "StreamServer",
    "check_backlog",
    "check_callable",
    "check_fd",
    "check_host",
    "check_path",
    "check_port",
    "check_timeout",
]


# Argument checks raise what the native reactor raises for the same mistake.


def check_port(port: object, lowest: int = 0) -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not lowest <= port <= 65535:
        raise ValueError(f"port must be an int in {lowest}..65535, not {port!r}")
    return port


def check_host(host: object) -> None:
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty string, not {host!r}")


def check_backlog(backlog: object) -> None:
    if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 0:
        raise ValueError(f"backlog must be an int >= 0, not {backlog!r}")


def check_callable(f: object, what: str) -> None:
    if not callable(f):
        raise TypeError(f"{what} must be callable, not {f!r}")


def check_fd(fd: object) -> int:
    if not isinstance(fd, int) or isinstance(fd, bool):
        raise TypeError(f"fd must be an int, not {type(fd).__name__}")
    if fd < 0:
        raise ValueError(f"fd must be >= 0, not {fd}")
    return fd


def check_timeout(timeout: float | None) -> None:
    if timeout is None:
        return
    if not (isinstance(timeout, int | float) and timeout > 0 and not math.isnan(timeout)):
        raise ValueError(f"timeout must be > 0 or None, not {timeout!r}")


def check_path(path: object) -> None:
    if not isinstance(path, str):
        raise TypeError(f"a Unix socket path is a str, not {type(path).__name__}")
    if not path:
        raise ValueError("a Unix socket path may not be empty")


# ------------------------------------------------------------------ fake ports


@implementer(IListeningPort)
class MemoryListeningPort:
    """A listening port that listens to nothing; ``accept`` simulates a connection.

    Attributes:
        factory: The protocol factory the port serves.
        listening: True until ``stop_listening``.
    """

    def __init__(self, address: Any, factory: Callable[[], Any], clock: IReactorTime) -> None:
        self._address = address
        self.factory = factory
        self.listening = True
        self._clock = clock

    def start_listening(self) -> None:
        """Mark the port listening (the reactor's ``listen_*`` did already)."""
        self.listening = True

    def stop_listening(self) -> Deferred[None]:
        """Mark the port stopped; returns a Deferred that has fired with ``None``."""
        from plait.cluster.defer import succeed

        self.listening = False
        return succeed(None)

    def get_host(self) -> Any:
        """The address given to (or allocated by) ``listen_*``; ``None`` when adopted."""
        return self._address

    @property
    def port(self) -> int:
        """The port number of a TCP port (as the native ``Port.port``).

        Raises:
            TypeError: the port is not a TCP port (Unix path, adopted).
        """
        if not isinstance(self._address, tuple):
            raise TypeError(f"{self!r} has no port number")
        return int(self._address[1])

    def accept(self, client_protocol: Any = None, *, greet: bool = True) -> IOPump:
        """Simulate a connection: build a server protocol and wire it to ``client_protocol``.

        Args:
            client_protocol: The connecting side (default: a no-op ``Protocol``).
            greet: Flush once after ``connection_made`` (see ``connect_in_memory``).

        Returns:
            The IOPump between the new server protocol and the client protocol.

        Raises:
            RuntimeError: the port stopped listening, or its factory refused
                (returned ``None``).
        """
        if not self.listening:
            raise RuntimeError(f"{self!r} is not listening")
        server = build_protocol(self.factory, self._address)
        if server is None:
            raise RuntimeError(f"the factory of {self!r} refused the connection")
        client = Protocol() if client_protocol is None else client_protocol
        return connect_in_memory(server, client, clock=self._clock, greet=greet)

    def __repr__(self) -> str:
        return f"<MemoryListeningPort {self._address!r}>"


@implementer(IDatagramTransport)
class MemoryDatagramTransport:
    """A datagram transport that records ``sendto`` calls in ``sent``."""

    def __init__(self, protocol: Any, sockname: Any) -> None:
        self.protocol = protocol
        self.sent: list[tuple[bytes, Any]] = []
        """``(data, addr)`` for every datagram sent, in order."""
        self._sockname = sockname
        self._closing = False

    def sendto(self, data: bytes, addr: Any = None) -> None:
        """Record one datagram; dropped once closing.

        Raises:
            TypeError: ``data`` is not bytes-like.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"sendto() expects bytes, not {type(data).__name__}")
        if not self._closing:
            self.sent.append((bytes(data), addr))

    def close(self) -> None:
        """Close and deliver ``connection_lost(None)`` (once)."""
        if self._closing:
            return
        self._closing = True
        self.protocol.connection_lost(None)

    def abort(self) -> None:
        """Same as ``close`` for a datagram transport."""
        self.close()

    def is_closing(self) -> bool:
        """True once closed."""
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``sockname``; everything else is ``default``."""
        return self._sockname if name == "sockname" else default


# ------------------------------------------------------------------ records


@dataclass
class StreamServer:
    """A ``listen_tcp``/``listen_unix`` call: the arguments and the port returned."""

    address: Any
    factory: Callable[[], Any]
    backlog: int
    port: MemoryListeningPort
    interface: str = ""
    mode: int | None = None


@dataclass
class ClientConnection:
    """A ``connect_tcp``/``connect_unix`` call waiting for the test to decide its fate.

    ``address`` is ``(host, port)`` for TCP and the path for Unix sockets.
    """

    address: Any
    factory: Callable[[], Any]
    timeout: float | None
    deferred: Deferred[Any]
    clock: IReactorTime

    def connect(self, server_protocol: Any = None, *, greet: bool = True) -> IOPump:
        """Succeed: build the client protocol, wire it to ``server_protocol``, fire.

        The Deferred fires with the client protocol after both ``connection_made``
        calls; then, with ``greet``, the pump flushes once.

        Returns:
            The IOPump between ``server_protocol`` (default: a no-op ``Protocol``)
            and the new client protocol.

        Raises:
            RuntimeError: the Deferred has fired already (connected, failed or
                cancelled), or the factory refused (the Deferred then errbacks with
                ``ConnectionRefusedError``).
        """
        self.check_pending()
        client = build_protocol(self.factory, self.address)
        if client is None:
            self.deferred.errback(ConnectionRefusedError("the protocol factory returned None"))
            raise RuntimeError("the client factory refused the connection")
        server = Protocol() if server_protocol is None else server_protocol
        pump = connect_in_memory(server, client, clock=self.clock, greet=False)
        self.deferred.callback(client)
        if greet:
            pump.flush()
        return pump

    def fail(self, exc: BaseException | None = None) -> None:
        """Fail the connection attempt with ``exc`` (default ``ConnectionRefusedError``).

        Raises:
            RuntimeError: the Deferred has fired already.
        """
        self.check_pending()
        self.deferred.errback(ConnectionRefusedError("refused (in memory)") if exc is None else exc)

    @property
    def pending(self) -> bool:
        """True until the Deferred fires."""
        return not self.deferred.called

    def check_pending(self) -> None:
        if self.deferred.called:
            raise RuntimeError(f"connection attempt to {self.address!r} has completed already")


@dataclass
class DatagramServer:
    """A ``listen_udp``/``listen_multicast``/``listen_unix_datagram`` call."""

    address: Any
    protocol: Any
    transport: MemoryDatagramTransport
    interface: str = ""
    listen_multiple: bool = False
    mode: int | None = None


@dataclass
class AdoptedPort:
    """An ``adopt_stream_port`` call."""

    fd: int
    family: int
    factory: Callable[[], Any]
    port: MemoryListeningPort


@dataclass
class AdoptedConnection:
    """An ``adopt_stream_connection`` call: the protocol runs on a MemoryTransport."""

    fd: int
    family: int
    factory: Callable[[], Any]
    protocol: Any
    transport: MemoryTransport | None
