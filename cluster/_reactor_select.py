"""The native reactor: one thread, one ``selectors`` selector (epoll on Linux).

Why this module may grow past the 600-line soft limit (STYLE.md allows one exception,
as trio does with ``_run.py``): the loop, the timers, the callback queue and the
thread/signal wake-ups share one set of hot local variables and invariants; split
across modules they would cost an attribute hop per event on the hottest path of the
whole framework, and the invariants would be harder to read. Every other transport
module adds its thin ``listen_*``/``connect_*`` method here too, so that the reactor
is one object with one set of names. What is not hot lives elsewhere: the fd table
(``_fd_table``), system events (``_system_events``), signals (``_signals``), and the
transports, ports and connectors (``_stream``, ``_tcp``, ``_unix``, ``_udp``), which
are *clients* of this class through ``add_reader``/``add_writer``/``call_soon``/
``call_later``, as in curio's small kernel.

Theory of operation:

- One iteration: compute the select timeout (0 if callbacks are ready, the nearest
  timer if any, else forever), make *one* ``select`` call, dispatch each ready fd to
  the callbacks stored for it, run the timers that are due, then run the callbacks
  that were ready when the iteration's ready phase began (those that they schedule
  run on the next iteration, after the loop has looked at I/O again, so a
  ``call_soon`` chain cannot starve the network).
- The fd table (``_fd_table``) maps an fd to a two-slot list ``[reader, writer]`` of
  zero-argument callables, the same list object as the selector key's ``data``; a
  removed callback's slot is set to ``None`` in place, so an event already returned
  by ``select`` for it is dropped rather than delivered to a closed transport. On
  Linux the loop polls the ``EpollSelector``'s own epoll object and looks the fd up
  in this table, skipping the per-event ``SelectorKey`` work of ``selectors.select``;
  registrations still go through the selector, which stays the source of truth.
  Any other selector runs the portable path.
- Timers: a binary heap of ``(time, seq, DelayedCall)``. Cancelling or moving a
  DelayedCall never searches the heap: a cancelled call is skipped when it surfaces
  (``call.cancelled``), and a moved call is pushed again under its new ``(time,
  seq)``, its old entry recognised as stale because its ``seq`` no longer matches.
  When stale entries outnumber live ones the heap is rebuilt in one pass.
- Errors: an exception from any callback is logged on the ``plait.reactor`` logger
  and the loop goes on. ``BaseException``s that are not ``Exception``s
  (KeyboardInterrupt, SystemExit) leave ``run``.
- Threads: ``call_from_thread`` appends to a deque (atomic under the GIL) and, unless
  a wake-up is already pending, writes a zero byte to the waker socket pair. The same
  socket pair is the ``signal.set_wakeup_fd`` target, so signal numbers arrive as
  non-zero bytes on it (see ``_signals``).
- Stopping: ``stop`` fires the ``shutdown`` system event: ``before`` triggers run
  and the Deferreds they return are waited for, then ``during`` and ``after``
  triggers run, then the loop exits at the end of its iteration.
"""

from __future__ import annotations

import asyncio
import functools
import heapq
import logging
import math
import os
import selectors
import socket
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from plait.cluster._delayed_call import DelayedCall
from plait.cluster._fd_table import FdTable
from plait.cluster._signals import SignalHandlers
from plait.cluster._system_events import SystemEvents
from plait.cluster._unix import UnixStreamTransport
from plait.cluster.interfaces import (
    IReactorCore,
    IReactorFDSet,
    IReactorProcess,
    IReactorSSL,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
    IReactorUDP,
    IReactorUNIX,
)

if TYPE_CHECKING:
    from plait.cluster._defer import Deferred
    from plait.cluster._tcp import Port

__all__ = ["Handle", "Reactor", "ReactorNotRunning", "ReactorStatistics"]

_log = logging.getLogger("plait.reactor")
_monotonic = time.monotonic
_heappush = heapq.heappush
_heappop = heapq.heappop
#: What a callback may raise without stopping the loop: every Exception, and
#: asyncio's CancelledError (a BaseException since Python 3.8) that coroutine code
#: lets escape. KeyboardInterrupt and SystemExit do leave ``run``.
_CALLBACK_ERRORS = (Exception, asyncio.CancelledError)

try:
    import select as _select_mod

    _EPOLL_READ: int = (
        _select_mod.EPOLLIN | _select_mod.EPOLLPRI | _select_mod.EPOLLHUP | _select_mod.EPOLLERR
    )
    _EPOLL_WRITE: int = _select_mod.EPOLLOUT | _select_mod.EPOLLHUP | _select_mod.EPOLLERR
except AttributeError:  # no epoll on this platform: the portable path is used
    _EPOLL_READ = _EPOLL_WRITE = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class ReactorStatistics:
    """A snapshot of a reactor (trio's ``statistics()`` convention).

    Attributes:
        readers: fds watched for reading (the reactor's own waker excluded).
        writers: fds watched for writing.
        timers: scheduled ``call_later`` calls still active.
        ready: callbacks queued by ``call_soon`` for the next iteration.
        thread_calls: ``call_from_thread`` calls not yet taken into the loop.
    """

    readers: int
    writers: int
    timers: int
    ready: int
    thread_calls: int


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


def _nothing(*args: object, **kwargs: object) -> None:
    return None


@implementer(IReactorCore, IReactorTime, IReactorFDSet, IReactorTCP, IReactorThreads,
             IReactorProcess, IReactorUDP, IReactorUNIX, IReactorSSL)
class Reactor:
    """The native event loop.

    Example:
        >>> reactor = Reactor()
        >>> _ = reactor.call_later(0.01, reactor.stop)
        >>> reactor.run()
        >>> reactor.close()

    Args:
        selector: A ``selectors.BaseSelector`` to use; default: the best one for
            the platform (epoll on Linux).

    Extension: other transport modules add ``listen_*``/``connect_*`` methods to this
    class that build their transport on ``add_reader``/``add_writer``; the
    ``stream_transports`` dict maps a socket family to the stream transport class used
    by ``adopt_stream_port``/``adopt_stream_connection`` (the Unix module registers
    ``AF_UNIX`` there).
    """

    stream_transports: dict[int, Callable[..., Any]] = {socket.AF_UNIX: UnixStreamTransport}

    def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
        self.running = False
        self._selector = selector if selector is not None else selectors.DefaultSelector()
        self._fd_table = FdTable(self._selector)
        self._fds = self._fd_table.fds  # the loop's view
        self._ready: deque[Handle] = deque()
        self._timers: list[tuple[float, int, DelayedCall]] = []
        self._stale_timers = 0
        self._thread_calls: deque[tuple[Callable[..., object], tuple[Any, ...],
                                        dict[str, Any]]] = deque()
        self._wake_pending = False
        self._stop_requested = False
        self._exit_loop = False
        self._started = False
        self._closed = False
        self._thread_id: int | None = None
        self._events = SystemEvents()
        self._pool: Any = None
        self._pool_size = 10
        self._pool_trigger: Any = None
        self._default_signals: list[int] = []
        self._when_running: list[Handle] = []
        epoll = getattr(self._selector, "_selector", None)
        if isinstance(self._selector, selectors.EpollSelector) and epoll is not None:
            self._poll_epoll = epoll.poll
        else:
            self._poll_epoll = None
        self._waker_r, self._waker_w = socket.socketpair()
        self._waker_r.setblocking(False)
        self._waker_w.setblocking(False)
        self._waker_w_send = self._waker_w.send
        self._signals = SignalHandlers(self._waker_w.fileno(), self.call_soon)
        self.add_reader(self._waker_r.fileno(), self._on_wake)

    # ------------------------------------------------------------------ running

    def run(self, install_signal_handlers: bool = True) -> None:
        """Run the loop until ``stop`` (and the shutdown triggers) finish.

        Args:
            install_signal_handlers: In the main thread, make SIGINT and SIGTERM stop
                the reactor cleanly (a second one exits the loop at once) unless
                handlers of their own were added with ``add_signal_handler``.

        Raises:
            RuntimeError: the reactor is running already, or was closed.
        """
        if self.running:
            raise RuntimeError("the reactor is already running")
        if self._closed:
            raise RuntimeError("the reactor is closed")
        self.running = True
        self._stop_requested = False
        self._exit_loop = False
        self._started = False
        self._thread_id = threading.get_ident()
        if install_signal_handlers:
            self._install_default_signals()
        try:
            self.call_soon(self._fire_startup)
            self._loop()
        finally:
            self.running = False
            self._thread_id = None
            for signum in self._default_signals:
                self._signals.remove(signum)
            self._default_signals = []

    def stop(self) -> None:
        """Fire the shutdown event, then leave ``run``; a second ``stop`` is a no-op.

        Raises:
            ReactorNotRunning: the reactor is not running.
        """
        if not self.running:
            raise ReactorNotRunning("cannot stop a reactor that is not running")
        if self._stop_requested:
            return
        self._stop_requested = True
        self.call_soon(self._events.fire, "shutdown", self._exit)

    def _exit(self) -> None:
        self._exit_loop = True

    def close(self) -> None:
        """Release the selector, the waker and the thread pool; the reactor cannot run again.

        Raises:
            RuntimeError: the reactor is running.
        """
        if self.running:
            raise RuntimeError("cannot close a running reactor")
        if self._closed:
            return
        self._closed = True
        self._signals.remove_all()
        self._stop_thread_pool()
        self._fd_table.clear()
        self._selector.close()
        self._waker_r.close()
        self._waker_w.close()
        self._ready.clear()
        self._timers.clear()

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
                self._log_callback_error(handle._func, exc)

    def _loop(self) -> None:
        """The loop itself: locals for everything the hot path touches."""
        ready = self._ready
        timers = self._timers
        fds = self._fds
        poll_epoll = self._poll_epoll
        monotonic = _monotonic
        heappop = _heappop
        ep_read, ep_write = _EPOLL_READ, _EPOLL_WRITE
        log_error = self._log_callback_error
        while not self._exit_loop:
            # 1. how long may we sleep?
            if ready:
                timeout: float = 0.0
            elif timers:
                timeout = self._next_timer_timeout()
            else:
                timeout = -1.0
            # 2. one select call, dispatch I/O
            if poll_epoll is not None:
                try:
                    events = poll_epoll(timeout, 512)
                except InterruptedError:
                    events = []
                for fd, ev in events:
                    cbs = fds.get(fd)
                    if cbs is None:
                        continue
                    if ev & ep_read:
                        cb = cbs[0]
                        if cb is not None:
                            try:
                                cb()
                            except _CALLBACK_ERRORS as exc:
                                log_error(cb, exc)
                    if ev & ep_write:
                        cb = cbs[1]
                        if cb is not None:
                            try:
                                cb()
                            except _CALLBACK_ERRORS as exc:
                                log_error(cb, exc)
            else:
                self._select_portable(timeout)
            # 3. timers that are due
            if timers:
                now = monotonic()
                while timers and timers[0][0] <= now:
                    _, seq, call = heappop(timers)
                    if call.cancelled or call.seq != seq or call.called:
                        self._stale_timers -= 1
                        continue
                    try:
                        call.run()
                    except _CALLBACK_ERRORS as exc:
                        log_error(call, exc)
            # 4. callbacks that were ready at the start of this phase
            n = len(ready)
            while n:
                n -= 1
                handle = ready.popleft()
                try:
                    kwargs = handle._kwargs
                    if kwargs is None:
                        handle._func(*handle._args)
                    else:
                        handle._func(*handle._args, **kwargs)
                except _CALLBACK_ERRORS as exc:
                    log_error(handle._func, exc)

    def _select_portable(self, timeout: float) -> None:
        """Step 2 of an iteration on a selector other than epoll."""
        try:
            events = self._selector.select(None if timeout < 0 else timeout)
        except InterruptedError:
            return
        for key, mask in events:
            cbs = key.data
            if mask & selectors.EVENT_READ:
                cb = cbs[0]
                if cb is not None:
                    try:
                        cb()
                    except _CALLBACK_ERRORS as exc:
                        self._log_callback_error(cb, exc)
            if mask & selectors.EVENT_WRITE:
                cb = cbs[1]
                if cb is not None:
                    try:
                        cb()
                    except _CALLBACK_ERRORS as exc:
                        self._log_callback_error(cb, exc)

    @staticmethod
    def _log_callback_error(cb: object, exc: BaseException) -> None:
        _log.error("unhandled error in %r", cb, exc_info=exc)

    # -------------------------------------------------------------------- time

    def seconds(self) -> float:
        """The reactor's clock: ``time.monotonic()``."""
        return _monotonic()

    def call_later(self, delay: float, f: Callable[..., object], *args: Any,
                   **kwargs: Any) -> DelayedCall:
        """Run ``f(*args, **kwargs)`` in ``delay`` seconds.

        Returns:
            The ``DelayedCall`` (``cancel``, ``reset``, ``delay``, ``active``).

        Raises:
            ValueError: ``delay`` is negative or NaN.
            TypeError: ``f`` is not callable.
        """
        if not delay >= 0:  # also catches NaN
            raise ValueError(f"delay must be a number >= 0, not {delay!r}")
        if not callable(f):
            raise TypeError(f"{f!r} is not callable")
        call = DelayedCall(_monotonic() + delay, f, args, kwargs, self)
        _heappush(self._timers, (call.time, call.seq, call))
        return call

    def _call_cancelled(self, call: DelayedCall) -> None:
        self._stale_timers += 1
        self._maybe_compact_timers()

    def _call_moved(self, call: DelayedCall) -> None:
        if not math.isfinite(call.time):
            call.time = math.inf if call.time > 0 else 0.0
        self._stale_timers += 1
        _heappush(self._timers, (call.time, call.seq, call))
        self._maybe_compact_timers()

    def _maybe_compact_timers(self) -> None:
        timers = self._timers
        if self._stale_timers > 64 and self._stale_timers * 2 > len(timers):
            timers[:] = [e for e in timers if e[2].seq == e[1] and e[2].active()]
            heapq.heapify(timers)
            self._stale_timers = 0

    def _next_timer_timeout(self) -> float:
        timers = self._timers
        while timers:
            when, seq, call = timers[0]
            if call.cancelled or call.seq != seq or call.called:
                _heappop(timers)
                self._stale_timers -= 1
                continue
            return max(0.0, min(when - _monotonic(), 86400.0))
        return -1.0

    def get_delayed_calls(self) -> list[DelayedCall]:
        """Every scheduled call that is still active, soonest first."""
        return [c for _, seq, c in sorted(self._timers) if c.seq == seq and c.active()]

    # --------------------------------------------------------------- callbacks

    def call_soon(self, f: Callable[..., object], *args: Any, **kwargs: Any) -> Handle:
        """Run ``f(*args, **kwargs)`` on the next iteration (FIFO).

        Not thread-safe: from another thread use ``call_from_thread``.

        Returns:
            A ``Handle`` whose ``cancel()`` stops the call.
        """
        if not callable(f):
            raise TypeError(f"{f!r} is not callable")
        handle = Handle(f, args, kwargs or None)
        self._ready.append(handle)
        return handle

    def call_from_thread(self, f: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Thread-safe: run ``f(*args, **kwargs)`` in the loop's thread soon."""
        if not callable(f):
            raise TypeError(f"{f!r} is not callable")
        self._thread_calls.append((f, args, kwargs))
        if not self._wake_pending:
            self._wake_pending = True
            self._wake()

    def _wake(self) -> None:
        try:
            self._waker_w_send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # the pipe is full: a wake-up is pending anyway
        except OSError as exc:  # closed reactor
            _log.debug("could not wake the reactor: %s", exc)

    def _on_wake(self) -> None:
        data = b""
        while True:
            try:
                chunk = self._waker_r.recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            if not chunk:
                break
            data += chunk
        self._wake_pending = False
        if data.strip(b"\0"):
            self._signals.dispatch(data)
        calls = self._thread_calls
        ready = self._ready
        while calls:
            f, args, kwargs = calls.popleft()
            ready.append(Handle(f, args, kwargs or None))

    def statistics(self) -> ReactorStatistics:
        """Counts of what the reactor is holding, for metrics and debugging."""
        return ReactorStatistics(
            readers=len(self.get_readers()), writers=len(self.get_writers()),
            timers=len(self.get_delayed_calls()), ready=len(self._ready),
            thread_calls=len(self._thread_calls))

    def in_reactor_thread(self) -> bool:
        """True when called from the thread that is running the loop."""
        return self._thread_id == threading.get_ident()

    # ---------------------------------------------------------------- signals

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

    def _install_default_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        import signal

        for signum in (signal.SIGINT, signal.SIGTERM):
            if signum not in self._signals:
                self._signals.add(signum, self._on_stop_signal, signum)
                self._default_signals.append(signum)

    def _on_stop_signal(self, signum: int) -> None:
        if self._stop_requested:
            _log.warning("signal %d received again: leaving the loop now", signum)
            self._exit_loop = True
            return
        _log.info("signal %d received: stopping", signum)
        if self.running:
            self.stop()

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

    # ------------------------------------------------------------------ fd set

    def add_reader(self, fd: Any, f: Callable[..., object], *args: Any) -> None:
        """Call ``f(*args)`` whenever ``fd`` (int or object with ``fileno()``) is readable."""
        self._fd_table.add(fd, 0, functools.partial(f, *args) if args else f)

    def add_writer(self, fd: Any, f: Callable[..., object], *args: Any) -> None:
        """Call ``f(*args)`` whenever ``fd`` is writable."""
        self._fd_table.add(fd, 1, functools.partial(f, *args) if args else f)

    def remove_reader(self, fd: Any) -> bool:
        """Stop watching ``fd`` for reading; True if it was watched."""
        return self._fd_table.remove(fd, 0)

    def remove_writer(self, fd: Any) -> bool:
        """Stop watching ``fd`` for writing; True if it was watched."""
        return self._fd_table.remove(fd, 1)

    def get_readers(self) -> list[int]:
        """The fds watched for reading (the reactor's own waker excluded)."""
        waker = self._waker_r.fileno()
        return [fd for fd in self._fd_table.watched(0) if fd != waker]

    def get_writers(self) -> list[int]:
        """The fds watched for writing."""
        return self._fd_table.watched(1)

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

    # --------------------------------------------------------- TLS (in _tls.py)

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
        from plait.cluster._tls import listen_ssl

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
        from plait.cluster._tls import connect_ssl

        return connect_ssl(self, host, port, factory, options, timeout)

    def start_tls(self, transport: Any, options: Any, server_side: bool = False) -> Any:
        """Upgrade the connected ``transport`` to TLS (asyncio's ``loop.start_tls``).

        The protocol keeps its callbacks and is *not* told ``connection_made``
        again: use the new transport this returns in place of the old one.

        Returns:
            A Deferred of the TLS transport, fired after the handshake; it errbacks
            as ``connect_ssl``'s does, and the connection is then closed.
        """
        from plait.cluster._tls import start_tls

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

    def __repr__(self) -> str:
        state = "running" if self.running else "closed" if self._closed else "idle"
        return f"<Reactor {state} fds={len(self._fds)} timers={len(self._timers)}>"

