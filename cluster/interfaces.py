"""The contracts of Plait, declared with zope.interface.

Every implementation, fakes included, declares what it provides with
``@implementer`` and is checked with ``zope.interface.verify.verifyObject`` in the
tests. Methods are written without ``self``, as Twisted's interfaces are.

Protocol callbacks carry asyncio's names and signatures, so that a protocol written
for Plait runs on an asyncio loop unchanged and the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from zope.interface import Attribute, Interface

__all__ = [
    "IConsumer",
    "IDatagramProtocol",
    "IDatagramTransport",
    "IDelayedCall",
    "IListeningPort",
    "IProcessProtocol",
    "IProcessTransport",
    "IProducer",
    "IProtocol",
    "IProtocolFactory",
    "IPullProducer",
    "IPushProducer",
    "IReactorCore",
    "IReactorFDSet",
    "IReactorProcess",
    "IReactorSSL",
    "IReactorTCP",
    "IReactorThreads",
    "IReactorTime",
    "IReactorUDP",
    "IReactorUNIX",
    "IStreamClientEndpoint",
    "IStreamServerEndpoint",
    "ITransport",
    "IUnixTransport",
]


# --------------------------------------------------------------------------- time


class IDelayedCall(Interface):
    """A call scheduled by ``IReactorTime.call_later``."""

    def get_time() -> float:
        """The time, on the scheduler's clock, at which the call will run."""

    def cancel() -> None:
        """Unschedule the call.

        Raises:
            AlreadyCancelled: it was cancelled before.
            AlreadyCalled: it has run already.
        """

    def reset(seconds_from_now: float) -> None:
        """Reschedule the call to run ``seconds_from_now`` from the current time."""

    def delay(seconds_later: float) -> None:
        """Move the call ``seconds_later`` further into the future."""

    def active() -> bool:
        """True while the call has neither run nor been cancelled."""


class IReactorTime(Interface):
    """Schedules calls; the only way Plait code may learn or wait for time."""

    def seconds() -> float:
        """Current time on this clock's own scale (not necessarily wall time)."""

    def call_later(
        delay: float, f: Callable[..., object], *args: object, **kwargs: object
    ) -> IDelayedCall:
        """Run ``f(*args, **kwargs)`` after ``delay`` seconds."""

    def get_delayed_calls() -> Sequence[IDelayedCall]:
        """Every call that is scheduled and still active."""


# ---------------------------------------------------------------- producers/consumers


class IProducer(Interface):
    """Something that produces data for a consumer (Twisted's producer API)."""

    def stop_producing() -> None:
        """Stop for good; the consumer will not ask again."""


class IPushProducer(IProducer):
    """A producer that writes on its own until paused."""

    def pause_producing() -> None:
        """Stop writing until ``resume_producing``."""

    def resume_producing() -> None:
        """Start writing again."""


class IPullProducer(IProducer):
    """A producer that writes one chunk each time it is asked."""

    def resume_producing() -> None:
        """Write one chunk to the consumer."""


class IConsumer(Interface):
    """Something that data can be written into, with flow control."""

    def register_producer(producer: IProducer, streaming: bool) -> None:
        """Attach a producer: push (``streaming=True``) or pull."""

    def unregister_producer() -> None:
        """Detach the producer."""

    def write(data: bytes) -> None:
        """Write bytes."""


# -------------------------------------------------------------------- protocols


class IProtocol(Interface):
    """A stream protocol with asyncio's callback names."""

    def connection_made(transport: Any) -> None:
        """Called once, when the connection is up, with its transport."""

    def data_received(data: bytes) -> None:
        """Called with each chunk of received bytes."""

    def eof_received() -> bool | None:
        """The peer half-closed. Return a true value to keep our side open."""

    def connection_lost(exc: BaseException | None) -> None:
        """Called once at the end: ``None`` for a clean close, else the error."""

    def pause_writing() -> None:
        """The transport's write buffer went over its high-water mark."""

    def resume_writing() -> None:
        """The transport's write buffer drained under its low-water mark."""


class IProtocolFactory(Interface):
    """Twisted's factory; any zero-argument callable returning a protocol also serves."""

    def build_protocol(addr: object) -> IProtocol | None:
        """Make the protocol for a connection from ``addr``; ``None`` refuses it."""

    def start_factory() -> None:
        """Called when the first port using this factory starts."""

    def stop_factory() -> None:
        """Called when the last port using this factory stops."""


class IDatagramProtocol(Interface):
    """A datagram protocol with asyncio's callback names."""

    def connection_made(transport: Any) -> None:
        """Called once the datagram transport is ready."""

    def datagram_received(data: bytes, addr: Any) -> None:
        """Called with each datagram and the address it came from."""

    def error_received(exc: Exception) -> None:
        """Called when a send or receive fails (ICMP errors, for instance)."""

    def connection_lost(exc: BaseException | None) -> None:
        """Called when the transport is closed."""


class IProcessProtocol(Interface):
    """The protocol of a child process, with asyncio's subprocess names."""

    def connection_made(transport: Any) -> None:
        """Called with the process transport once the child runs."""

    def pipe_data_received(fd: int, data: bytes) -> None:
        """Bytes the child wrote on its descriptor ``fd``."""

    def pipe_connection_lost(fd: int, exc: BaseException | None) -> None:
        """The pipe on descriptor ``fd`` closed."""

    def process_exited() -> None:
        """The child exited; its status is ``transport.get_returncode()``."""


# -------------------------------------------------------------------- transports


class ITransport(IConsumer):
    """A stream transport: asyncio's transport methods plus Twisted's producers."""

    def write(data: bytes) -> None:
        """Queue bytes for sending; never blocks. Dropped once closing."""

    def writelines(list_of_data: Sequence[bytes]) -> None:
        """Queue several buffers at once (one system call where possible)."""

    def write_eof() -> None:
        """Half-close: send EOF once the buffered bytes are out."""

    def can_write_eof() -> bool:
        """True when ``write_eof`` is supported."""

    def close() -> None:
        """Close once the buffered bytes are sent; ``connection_lost(None)`` follows."""

    def abort() -> None:
        """Close at once, dropping buffered bytes (TCP: send RST)."""

    def is_closing() -> bool:
        """True once ``close``/``abort`` was called or the connection was lost."""

    def get_extra_info(name: str, default: Any = None) -> Any:
        """``peername``, ``sockname``, ``socket`` and transport-specific names."""

    def pause_reading() -> None:
        """Stop calling ``data_received`` until ``resume_reading``."""

    def resume_reading() -> None:
        """Resume calling ``data_received``."""

    def is_reading() -> bool:
        """True unless reading is paused or the transport is closed."""

    def set_write_buffer_limits(high: int | None = None, low: int | None = None) -> None:
        """Set the high and low water marks of the write buffer."""

    def get_write_buffer_size() -> int:
        """Bytes buffered and not yet sent."""

    def get_protocol() -> Any:
        """The protocol this transport delivers to."""

    def set_protocol(protocol: Any) -> None:
        """Deliver to another protocol from now on."""


class IUnixTransport(ITransport):
    """A Unix stream transport, which can also carry file descriptors."""

    def send_fds(fds: Sequence[int], data: bytes = b"\0") -> None:
        """Send ``fds`` with ``data`` (at least one byte) in one message.

        The receiving protocol's ``fds_received(fds)`` runs before ``data`` arrives.
        """


class IDatagramTransport(Interface):
    """A datagram transport (UDP, Unix datagrams)."""

    def sendto(data: bytes, addr: Any = None) -> None:
        """Send one datagram to ``addr`` (or to the connected peer)."""

    def close() -> None:
        """Close the socket; ``connection_lost(None)`` follows."""

    def abort() -> None:
        """Close at once."""

    def is_closing() -> bool:
        """True once closed."""

    def get_extra_info(name: str, default: Any = None) -> Any:
        """``sockname``, ``peername``, ``socket``."""


class IProcessTransport(Interface):
    """A child process, with asyncio's subprocess transport names."""

    def get_pid() -> int:
        """The child's process id."""

    def get_returncode() -> int | None:
        """The exit status (negative: killed by that signal), or ``None`` while it runs."""

    def get_pipe_transport(fd: int) -> Any:
        """The transport of the pipe on child descriptor ``fd``, or ``None``."""

    def send_signal(signal: int) -> None:
        """Send ``signal`` to the child."""

    def terminate() -> None:
        """Send SIGTERM."""

    def kill() -> None:
        """Send SIGKILL."""

    def close() -> None:
        """Close every pipe to the child (it keeps running)."""

    def is_closing() -> bool:
        """True once closed."""

    def get_extra_info(name: str, default: Any = None) -> Any:
        """Transport-specific information (``subprocess``: nothing yet)."""


class IListeningPort(Interface):
    """A listening socket serving a protocol factory."""

    def start_listening() -> None:
        """Start accepting (the reactor's ``listen_*`` does this for you)."""

    def stop_listening() -> Any:
        """Stop accepting and close the socket; returns a Deferred that fires after."""

    def get_host() -> Any:
        """The address the port is bound to (``socket.getsockname()``)."""


# ---------------------------------------------------------------------- reactors


class IReactorCore(Interface):
    """Running and stopping the loop; system events."""

    running = Attribute("True while ``run`` is executing the loop.")

    def run() -> None:
        """Run the loop until ``stop``."""

    def stop() -> None:
        """Stop the loop (after the shutdown triggers have run)."""

    def call_soon(f: Callable[..., object], *args: object, **kwargs: object) -> Any:
        """Run ``f`` on the next iteration of the loop."""

    def call_from_thread(f: Callable[..., object], *args: object, **kwargs: object) -> None:
        """Thread-safe: run ``f`` in the loop's thread soon."""

    def add_system_event_trigger(
        phase: str, event_type: str, f: Callable[..., object], *args: object, **kwargs: object
    ) -> Any:
        """Run ``f`` at ``phase`` (before/during/after) of ``event_type`` (startup/shutdown).

        A ``before``-phase trigger returning a Deferred delays the next phase until it fires.
        Returns an id for ``remove_system_event_trigger``.
        """

    def remove_system_event_trigger(trigger_id: Any) -> None:
        """Remove a trigger added by ``add_system_event_trigger``."""

    def call_when_running(f: Callable[..., object], *args: object, **kwargs: object) -> Any:
        """Run ``f`` once the reactor runs (at once if it already does)."""

    def resolve(host: str, port: int) -> Any:
        """Resolve ``host`` in the thread pool; a Deferred of ``getaddrinfo`` results."""


class IReactorFDSet(Interface):
    """Watching raw file descriptors."""

    def add_reader(fd: Any, f: Callable[..., object], *args: object) -> None:
        """Call ``f(*args)`` whenever ``fd`` is readable."""

    def add_writer(fd: Any, f: Callable[..., object], *args: object) -> None:
        """Call ``f(*args)`` whenever ``fd`` is writable."""

    def remove_reader(fd: Any) -> bool:
        """Stop watching ``fd`` for reading; True if it was watched."""

    def remove_writer(fd: Any) -> bool:
        """Stop watching ``fd`` for writing; True if it was watched."""


class IReactorTCP(Interface):
    """TCP servers and clients."""

    def listen_tcp(
        port: int, factory: Callable[[], Any], backlog: int = 511, interface: str = ""
    ) -> IListeningPort:
        """Listen on ``port`` (0 picks a free one) serving protocols made by ``factory``."""

    def connect_tcp(
        host: str, port: int, factory: Callable[[], Any], timeout: float = 30.0
    ) -> Any:
        """Connect; a Deferred of the protocol.

        Errbacks with ``ConnectionRefusedError``, ``OSError``, ``TimeoutError`` or
        ``CancelledError``.
        """

    def adopt_stream_port(fd: int, family: int, factory: Callable[[], Any]) -> IListeningPort:
        """Serve on an already listening socket ``fd`` (duplicated; the caller keeps it)."""

    def adopt_stream_connection(fd: int, family: int, factory: Callable[[], Any]) -> Any:
        """Run a protocol on an already connected socket ``fd`` (duplicated)."""


class IReactorUDP(Interface):
    """UDP and multicast."""

    def listen_udp(port: int, protocol: Any, interface: str = "") -> Any:
        """Bind a datagram ``protocol`` instance to ``port``; returns its transport."""

    def listen_multicast(
        port: int, protocol: Any, interface: str = "", listen_multiple: bool = False
    ) -> Any:
        """Like ``listen_udp`` with multicast options on the transport."""


class IReactorUNIX(Interface):
    """Unix stream and datagram sockets."""

    def listen_unix(
        address: str, factory: Callable[[], Any], backlog: int = 511, mode: int = 0o666
    ) -> IListeningPort:
        """Listen on a Unix socket path, replacing a stale socket file."""

    def connect_unix(path: str, factory: Callable[[], Any], timeout: float = 30.0) -> Any:
        """Connect; a Deferred of the protocol."""

    def listen_unix_datagram(address: str, protocol: Any, mode: int = 0o666) -> Any:
        """Bind a datagram protocol to a Unix socket path; returns its transport."""


class IReactorSSL(Interface):
    """TLS servers and clients (pyOpenSSL options from ``plait.cluster.tls``)."""

    def listen_ssl(
        port: int, factory: Callable[[], Any], options: Any, backlog: int = 511,
        interface: str = "",
    ) -> IListeningPort:
        """Listen for TLS connections."""

    def connect_ssl(
        host: str, port: int, factory: Callable[[], Any], options: Any, timeout: float = 30.0
    ) -> Any:
        """Connect with TLS; a Deferred of the protocol once the handshake is done."""

    def start_tls(transport: Any, options: Any, server_side: bool = False) -> Any:
        """Upgrade a connected transport; a Deferred of the new transport."""


class IReactorThreads(Interface):
    """A bounded thread pool tied to the reactor."""

    def defer_to_thread(f: Callable[..., Any], *args: object, **kwargs: object) -> Any:
        """Run ``f`` in the pool; a Deferred of its result."""

    def suggest_thread_pool_size(size: int) -> None:
        """Set the pool's maximum size."""

    def get_thread_pool() -> Any:
        """The reactor's ``ThreadPool``."""


class IReactorProcess(Interface):
    """Child processes."""

    def spawn_process(
        protocol: Any,
        argv: Sequence[str],
        env: dict[str, str] | None = None,
        path: str | None = None,
        child_fds: dict[int, Any] | None = None,
    ) -> IProcessTransport:
        """Start ``argv`` with pipes wired to ``protocol``; returns the process transport."""


# --------------------------------------------------------------------- endpoints


class IStreamServerEndpoint(Interface):
    """Where to listen, as parsed from a string like ``tcp:8080``."""

    def listen(factory: Callable[[], Any]) -> Any:
        """Start listening; a Deferred of the ``IListeningPort``."""


class IStreamClientEndpoint(Interface):
    """Where to connect, as parsed from a string like ``tcp:host=h:port=p``."""

    def connect(factory: Callable[[], Any]) -> Any:
        """Connect; a Deferred of the protocol."""
