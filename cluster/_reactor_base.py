"""What every Plait reactor shares, whatever drives its loop.

Theory of operation: a reactor is a loop (``run``/``stop``, ``call_soon``,
``call_later``, ``add_reader``/``add_writer``, signals) plus a large set of methods
that only *use* that loop: TCP, UDP, Unix and TLS ports and connections (``_tcp``,
``_udp``, ``_unix``, ``_tls_reactor``), name resolution, the thread pool, child processes,
system event triggers and ``call_when_running``. ``ReactorBase`` holds the second
part once, so that the native ``Reactor`` (``_reactor_select``) and
``AsyncioReactor`` (``_reactor_asyncio``) offer the same transports, built on the
same code, and differ only in their loop (``QtReactor`` in ``_reactor_qt`` too). The
run/stop/close bookkeeping is here as well: a subclass calls ``_init_base()`` in its
``__init__``, ``_begin()`` before its loop runs (it schedules ``_fire_startup``) and
``_end()`` after; ``stop`` fires ``shutdown`` through ``self._events`` and ends with
the subclass's ``_exit``. The subclass provides ``_exit``, ``_leave_loop_now``,
``_release`` and ``_has_signal_handler`` (``SignalHandlersMixin`` gives the last and
the signal methods to the reactors with a waker socket). The transport modules need from
it only ``add_reader``/``add_writer``/``remove_*``, ``call_soon``, ``call_later``,
``call_from_thread``, ``seconds`` and ``add_signal_handler``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from plait.cluster._system_events import SystemEvents
from plait.cluster._unix import UnixStreamTransport

if TYPE_CHECKING:
    from plait.cluster._defer import Deferred
    from plait.cluster._signals import SignalHandlers
    from plait.cluster._tcp import Port

__all__ = ["Handle", "ReactorBase", "ReactorNotRunning", "SignalHandlersMixin", "drain_waker"]

_log = logging.getLogger("plait.reactor")
#: What a callback may raise without stopping the loop (see ``_reactor_select``).
_CALLBACK_ERRORS = (Exception, asyncio.CancelledError)

class ReactorNotRunning(RuntimeError):
    """``stop`` was called on a reactor that is not running."""


class Handle:
    """A callback scheduled by ``call_soon``; ``cancel()`` stops it from running."""

    __slots__ = ("_args", "_cancelled", "_func", "_kwargs")

    def __init__(
        self, func: Callable[..., object], args: tuple[Any, ...], kwargs: dict[str, Any] | None
    ) -> None:
        self._func = func
        self._args = args
        self._kwargs = kwargs
        self._cancelled = False

    def cancel(self) -> None:
        """Do not run the callback (a no-op if it has run already)."""
        self._cancelled = True
        self._func = _nothing
        self._args = ()
        self._kwargs = None

    def cancelled(self) -> bool:
        """True once ``cancel`` was called."""
        return self._cancelled

    def __repr__(self) -> str:
        name = getattr(self._func, "__qualname__", repr(self._func))
        return f"<Handle {'cancelled' if self._cancelled else name}>"


def drain_waker(waker: socket.socket) -> bytes:
    """Everything the non-blocking ``waker`` socket holds now (wake-ups and signal bytes)."""
    data = b""
    while True:
        try:
            chunk = waker.recv(4096)
        except (BlockingIOError, InterruptedError):
            return data
        if not chunk:
            return data
        data += chunk


def _nothing(*args: object, **kwargs: object) -> None:
    return None


class ReactorBase:
    """The loop-independent methods of a reactor (see the module's docstring).

    Extension: other transport modules add ``listen_*``/``connect_*`` methods here
    that build their transport on ``add_reader``/``add_writer``; the
    ``stream_transports`` dict maps a socket family to the stream transport class used
    by ``adopt_stream_port``/``adopt_stream_connection`` (the Unix module registers
    ``AF_UNIX`` there).
    """

    stream_transports: dict[int, Callable[..., Any]] = {socket.AF_UNIX: UnixStreamTransport}
    running: bool

    # What a subclass's loop methods provide (the transports' view of a reactor).
    if TYPE_CHECKING:
        def call_soon(self, f: Callable[..., object], *args: Any, **kwargs: Any) -> Any: ...
        def add_signal_handler(self, signum: int, f: Callable[..., object],
                               *args: Any) -> None: ...
        def remove_signal_handler(self, signum: int) -> bool: ...
        # The loop-dependent halves of run/stop/close (see "running" below).
        def _has_signal_handler(self, signum: int) -> bool: ...
        def _exit(self) -> None: ...
        def _leave_loop_now(self) -> None: ...
        def _release(self) -> None: ...

    def _init_base(self) -> None:
        """Set up the shared state; a subclass's ``__init__`` calls this first."""
        self.running = False
        self._started = False
        self._events = SystemEvents()
        self._pool: Any = None
        self._pool_size = 10
        self._pool_trigger: Any = None
        self._when_running: list[Handle] = []
        self._stop_requested = False
        self._closed = False
        self._thread_id: int | None = None
        self._default_signals: list[int] = []

    def _fire_startup(self) -> None:
        self._events.fire("startup", self._startup_done)

    def _startup_done(self) -> None:
        self._started = True
        waiting, self._when_running = self._when_running, []
        for handle in waiting:
            try:
                kwargs = handle._kwargs
                handle._func(*handle._args, **(kwargs or {}))
            except _CALLBACK_ERRORS as exc:
                _log.error("unhandled error in %r", handle._func, exc_info=exc)

    # ----------------------------------------------------------------- running
    #
    # The bookkeeping of run/start/stop/close that does not depend on the loop. A
    # subclass's ``run`` (or ``start``) calls ``_begin``, then hands control to its
    # loop, and calls ``_end`` once the loop is left; ``stop`` schedules the
    # ``shutdown`` event with the subclass's ``_exit`` as its last step. A subclass
    # provides ``_exit`` (leave the loop, or ``_end`` when ``start`` was used),
    # ``_leave_loop_now`` (a second stop signal) and ``_release`` (what ``close``
    # frees), and the signal registry through ``_has_signal_handler``.

    def _begin(self, install_signal_handlers: bool) -> None:
        """Mark the reactor running in this thread and schedule the startup event.

        Raises:
            RuntimeError: the reactor runs already, or was closed.
        """
        if self.running:
            raise RuntimeError("the reactor is already running")
        if self._closed:
            raise RuntimeError("the reactor is closed")
        self.running = True
        self._started = False
        self._stop_requested = False
        self._thread_id = threading.get_ident()
        if install_signal_handlers:
            self._install_default_signals()
        self.call_soon(self._fire_startup)

    def _end(self) -> None:
        """Mark the reactor stopped and remove the default signal handlers."""
        self.running = False
        self._thread_id = None
        for signum in self._default_signals[:]:
            self.remove_signal_handler(signum)
        self._default_signals = []

    def _install_default_signals(self) -> None:
        """In the main thread, make SIGINT and SIGTERM stop the reactor.

        A signal that has a handler of its own (``add_signal_handler``) keeps it.
        """
        if threading.current_thread() is not threading.main_thread():
            return
        for signum in (signal.SIGINT, signal.SIGTERM):
            if not self._has_signal_handler(signum):
                self.add_signal_handler(signum, self._on_stop_signal, signum)
                self._default_signals.append(signum)

    def stop(self) -> None:
        """Fire the shutdown event, then leave the loop that ``run`` runs.

        A reactor started with ``start`` leaves its loop running. A second ``stop``
        is a no-op.

        Raises:
            ReactorNotRunning: the reactor is not running.
        """
        if not self.running:
            raise ReactorNotRunning("cannot stop a reactor that is not running")
        if self._stop_requested:
            return
        self._stop_requested = True
        self.call_soon(self._events.fire, "shutdown", self._exit)

    def _on_stop_signal(self, signum: int) -> None:
        if self._stop_requested:
            _log.warning("signal %d received again: leaving the loop now", signum)
            self._leave_loop_now()
            return
        _log.info("signal %d received: stopping", signum)
        if self.running:
            self.stop()

    def close(self) -> None:
        """Release what the reactor holds (``_release``); it cannot run again.

        A second ``close`` is a no-op.

        Raises:
            RuntimeError: the reactor is running.
        """
        if self.running:
            raise RuntimeError("cannot close a running reactor")
        if self._closed:
            return
        self._closed = True
        self._release()

    def in_reactor_thread(self) -> bool:
        """True when called from the thread that is running the reactor."""
        return self._thread_id == threading.get_ident()

    # ----------------------------------------------------------- system events

    def add_system_event_trigger(self, phase: str, event_type: str, f: Callable[..., object],
                                 *args: Any, **kwargs: Any) -> tuple[str, str, int]:
        """Run ``f(*args, **kwargs)`` at ``phase`` of ``event_type``.

        ``phase`` is ``before``, ``during`` or ``after``; ``event_type`` is
        ``startup``, ``shutdown`` (fired by the reactor) or a name of your own. A
        ``before`` trigger may return a Deferred: the ``during`` phase waits for it.

        Returns:
            An id for ``remove_system_event_trigger``.

        Raises:
            ValueError: unknown phase.
            TypeError: ``f`` is not callable.
        """
        return self._events.add(phase, event_type, f, args, kwargs)

    def remove_system_event_trigger(self, trigger_id: Any) -> None:
        """Remove a trigger.

        Raises:
            ValueError: ``trigger_id`` is not a live trigger id.
        """
        self._events.remove(trigger_id)

    def fire_system_event(self, event_type: str) -> None:
        """Fire the triggers of ``event_type`` (for events of your own)."""
        self._events.fire(event_type, _nothing)

    def call_when_running(self, f: Callable[..., object], *args: Any,
                          **kwargs: Any) -> Handle | None:
        """Run ``f(*args, **kwargs)`` once the reactor runs.

        At once if it runs already; otherwise once, after the ``startup`` triggers
        of the next ``run``.

        Returns:
            ``None`` when ``f`` ran at once, else a ``Handle`` whose ``cancel()``
            stops the call.
        """
        if not callable(f):
            raise TypeError(f"{f!r} is not callable")
        if self.running and self._started:
            f(*args, **kwargs)
            return None
        handle = Handle(f, args, kwargs or None)
        self._when_running.append(handle)
        return handle

    # --------------------------------------------------------------------- TCP

    def listen_tcp(self, port: int, factory: Callable[[], Any], backlog: int = 511,
                   interface: str = "", *, reuse_port: bool = False,
                   accept_batch: int = 16) -> Port:
        """Listen on TCP ``port`` (0: any free port) of ``interface`` (an IP address).

        Args:
            port: Port number; 0 picks a free one (see ``Port.get_host()``).
            factory: Protocol factory (any zero-argument callable, or a ``Factory``).
            backlog: ``listen()`` backlog.
            interface: IPv4 or IPv6 address to bind; ``""`` is every IPv4 address.
            reuse_port: Set ``SO_REUSEPORT`` so that several processes may bind.
            accept_batch: Most connections accepted per wake-up; small values share
                one listening socket fairly between processes.

        Returns:
            The listening ``Port``.

        Raises:
            OSError: the address cannot be bound (in use, not local, ...).
            ValueError: bad port, backlog, interface or accept_batch.
        """
        from plait.cluster._tcp import listen_tcp

        return listen_tcp(self, port, factory, backlog, interface, reuse_port=reuse_port,
                          accept_batch=accept_batch)

    def connect_tcp(self, host: str, port: int, factory: Callable[[], Any],
                    timeout: float = 30.0, *,
                    bind_address: tuple[str, int] | None = None) -> Deferred[Any]:
        """Connect to ``host``:``port``; a host name is resolved in the thread pool and
        its addresses are tried Happy-Eyeballs style (RFC 8305, 250 ms apart).

        Returns:
            A Deferred of the connected protocol. It errbacks with
            ``ConnectionRefusedError`` or another ``OSError`` (including
            ``socket.gaierror``), ``TimeoutError`` after ``timeout`` seconds, or
            ``CancelledError`` when cancelled.
        """
        from plait.cluster._tcp import connect_tcp

        return connect_tcp(self, host, port, factory, timeout, bind_address=bind_address)

    def adopt_stream_port(self, fd: int, family: int, factory: Callable[[], Any], *,
                          accept_batch: int = 16) -> Port:
        """Serve ``factory`` on the listening socket ``fd`` (duplicated: close yours).

        Raises:
            ValueError: ``fd`` is not a listening stream socket.
            OSError: ``fd`` is not a valid descriptor.
        """
        from plait.cluster._tcp import adopt_stream_port

        return adopt_stream_port(self, fd, family, factory, accept_batch=accept_batch)

    def adopt_stream_connection(self, fd: int, family: int, factory: Callable[[], Any]) -> Any:
        """Run a protocol from ``factory`` on the connected socket ``fd`` (duplicated).

        Returns:
            The protocol, or ``None`` if the factory refused the connection.
        """
        from plait.cluster._tcp import adopt_stream_connection

        return adopt_stream_connection(self, fd, family, factory)

    # --------------------------------------------------------- UDP (in _udp.py)

    def listen_udp(self, port: int, protocol: Any, interface: str = "") -> Any:
        """Bind UDP ``port`` of ``interface`` (``"::1"``: IPv6) for the datagram
        ``protocol`` instance; returns its transport (``sendto``, ``connect``, ...).

        Raises:
            OSError: the address cannot be bound.
        """
        from plait.cluster._udp import listen_udp

        return listen_udp(self, port, protocol, interface)

    def listen_multicast(self, port: int, protocol: Any, interface: str = "",
                         listen_multiple: bool = False) -> Any:
        """Like ``listen_udp``; the transport adds ``join_group``, ``set_ttl``, ...

        ``listen_multiple`` sets ``SO_REUSEADDR``/``SO_REUSEPORT`` so that several
        sockets may bind the port.

        Raises:
            OSError: the address cannot be bound.
        """
        from plait.cluster._udp import listen_multicast

        return listen_multicast(self, port, protocol, interface, listen_multiple)

    # ------------------------------------------------------- Unix (in _unix.py)

    def listen_unix(self, address: str, factory: Callable[[], Any], backlog: int = 511,
                    mode: int = 0o666) -> Any:
        """Listen on the Unix socket path ``address`` (``"\\0name"``: Linux abstract).

        A stale socket file (nobody listening) is replaced; the file gets ``mode``
        and is removed by ``stop_listening``.

        Raises:
            OSError: ``EADDRINUSE`` when a live socket owns the path, or bind failed.
            FileExistsError: the path exists and is not a socket.
            ValueError: empty address, bad ``mode`` or ``backlog``.
        """
        from plait.cluster._unix import listen_unix

        return listen_unix(self, address, factory, backlog, mode)

    def connect_unix(self, path: str, factory: Callable[[], Any],
                     timeout: float = 30.0) -> Deferred[Any]:
        """Connect to the Unix socket ``path``; the transport can ``send_fds``.

        Returns:
            A Deferred of the protocol; errbacks with ``ConnectionRefusedError``,
            ``FileNotFoundError``, another ``OSError``, ``TimeoutError`` or
            ``CancelledError``.
        """
        from plait.cluster._unix import connect_unix

        return connect_unix(self, path, factory, timeout)

    def listen_unix_datagram(self, address: str, protocol: Any, mode: int = 0o666) -> Any:
        """Bind a Unix datagram socket at ``address`` for the ``protocol`` instance.

        Raises:
            OSError, FileExistsError, ValueError: as for ``listen_unix``.
        """
        from plait.cluster._unix import listen_unix_datagram

        return listen_unix_datagram(self, address, protocol, mode)

    # ------------------------------------------------- TLS (in _tls_reactor.py)

    def listen_ssl(self, port: int, factory: Callable[[], Any], options: Any,
                   backlog: int = 511, interface: str = "") -> Any:
        """Listen for TLS on TCP ``port``; ``options`` from ``tls.server_options``.

        Each connection's protocol gets ``connection_made`` after the handshake; a
        failed handshake is logged on ``plait.tls`` and never reaches the factory's
        protocol.

        Raises:
            TypeError: ``options`` are not server options.
            OSError, ValueError: as for ``listen_tcp``.
        """
        from plait.cluster._tls_reactor import listen_ssl

        return listen_ssl(self, port, factory, options, backlog, interface)

    def connect_ssl(self, host: str, port: int, factory: Callable[[], Any], options: Any,
                    timeout: float = 30.0) -> Deferred[Any]:
        """Connect over TCP and TLS; ``options`` from ``tls.client_options``.

        Returns:
            A Deferred of the protocol, fired after the handshake. It errbacks as
            ``connect_tcp`` does, or with ``tls.CertificateVerifyError`` (unknown CA,
            wrong host name), ``tls.TLSError`` (failed handshake) or ``TimeoutError``
            (``options.handshake_timeout``).
        """
        from plait.cluster._tls_reactor import connect_ssl

        return connect_ssl(self, host, port, factory, options, timeout)

    def start_tls(self, transport: Any, options: Any, server_side: bool = False) -> Any:
        """Upgrade the connected ``transport`` to TLS (asyncio's ``loop.start_tls``).

        The protocol keeps its callbacks and is *not* told ``connection_made``
        again: use the new transport this returns in place of the old one.

        Returns:
            A Deferred of the TLS transport, fired after the handshake; it errbacks
            as ``connect_ssl``'s does, and the connection is then closed.
        """
        from plait.cluster._tls_reactor import start_tls

        return start_tls(self, transport, options, server_side)

    def resolve(self, host: str, port: int, *, family: int = 0,
                type: int = socket.SOCK_STREAM) -> Deferred[list[Any]]:
        """``socket.getaddrinfo(host, port, family, type)`` without blocking the loop.

        Numeric addresses are answered at once; names are resolved in the thread pool.

        Returns:
            A Deferred of the ``getaddrinfo`` list; errbacks with ``socket.gaierror``.
        """
        from plait.cluster._defer import fail, succeed

        try:
            infos = socket.getaddrinfo(host, port, family, type, 0, socket.AI_NUMERICHOST)
        except socket.gaierror:
            pass  # a name: resolve it in a thread
        except (OSError, UnicodeError, TypeError, ValueError) as exc:
            return fail(exc)
        else:
            return succeed(infos)
        return self.defer_to_thread(socket.getaddrinfo, host, port, family, type)

    # ---------------------------------------------------------------- threads

    def get_thread_pool(self) -> Any:
        """The reactor's ``ThreadPool``, started on first use and stopped at shutdown."""
        if self._pool is None:
            from plait.cluster._threads import ThreadPool

            pool = ThreadPool(max_threads=self._pool_size, name="plait-reactor")
            pool.start()
            self._pool = pool
            self._pool_trigger = self.add_system_event_trigger(
                "during", "shutdown", self._stop_thread_pool)
        return self._pool

    def _stop_thread_pool(self) -> None:
        pool, self._pool = self._pool, None
        if self._pool_trigger is not None:
            try:
                self.remove_system_event_trigger(self._pool_trigger)
            except ValueError:
                pass
            self._pool_trigger = None
        if pool is not None:
            pool.stop()

    def suggest_thread_pool_size(self, size: int) -> None:
        """Set the most threads the pool may run."""
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(f"thread pool size must be an int >= 1, not {size!r}")
        self._pool_size = size
        if self._pool is not None:
            self._pool.adjust_size(size)

    def defer_to_thread(self, f: Callable[..., Any], *args: Any,
                        **kwargs: Any) -> Deferred[Any]:
        """Run ``f(*args, **kwargs)`` in the thread pool.

        Returns:
            A Deferred of its result; errbacks with what ``f`` raised.
        """
        from plait.cluster._threads import defer_to_thread_pool

        return defer_to_thread_pool(self, self.get_thread_pool(), f, *args, **kwargs)

    # -------------------------------------------------------------- processes

    def spawn_process(self, protocol: Any, argv: Sequence[str],
                      env: dict[str, str] | None = None,
                      path: str | os.PathLike[str] | None = None,
                      child_fds: dict[int, Any] | None = None) -> Any:
        """Start ``argv`` with pipes to ``protocol``; returns the process transport."""
        from plait.cluster._process import spawn_process

        return spawn_process(self, protocol, argv, env=env, path=path, child_fds=child_fds)


class SignalHandlersMixin:
    """``add_signal_handler``/``remove_signal_handler`` over a ``SignalHandlers`` registry.

    For the reactors that wake their loop through their own waker socket (the native
    ``Reactor`` and ``QtReactor``): they keep the registry in ``self._signals``.
    """

    _signals: SignalHandlers
    _default_signals: list[int]

    def add_signal_handler(self, signum: int, f: Callable[..., object], *args: Any) -> None:
        """Call ``f(*args)`` in the loop when signal ``signum`` arrives (asyncio's name).

        Replaces the reactor's default SIGINT/SIGTERM behaviour for that signal.

        Raises:
            ValueError: invalid or uncatchable signal, or not the main thread.
            TypeError: ``f`` is not callable.
        """
        if signum in self._default_signals:
            self._default_signals.remove(signum)
        self._signals.add(signum, f, *args)

    def remove_signal_handler(self, signum: int) -> bool:
        """Stop handling ``signum``; its previous handler is restored.

        Returns:
            True if a handler was registered.
        """
        return self._signals.remove(signum)

    def _has_signal_handler(self, signum: int) -> bool:
        return signum in self._signals
