"""The native reactor: one thread, one ``selectors`` selector (epoll on Linux).

Why this module may grow past the 600-line soft limit (STYLE.md allows one exception,
as trio does with ``_run.py``): the loop, the timers, the callback queue and the
thread/signal wake-ups share one set of hot local variables and invariants; split
across modules they would cost an attribute hop per event on the hottest path of the
whole framework, and the invariants would be harder to read. Every other transport
module adds its thin ``listen_*``/``connect_*`` method here too, so that the reactor
is one object with one set of names (they live in ``_reactor_base``, shared with
``AsyncioReactor``). What is not hot lives elsewhere: the fd table
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
import selectors
import socket
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zope.interface import implementer

from plait.cluster._delayed_call import DelayedCall
from plait.cluster._fd_table import FdTable
from plait.cluster._reactor_base import (
    Handle,
    ReactorBase,
    ReactorNotRunning,
    SignalHandlersMixin,
    drain_waker,
)
from plait.cluster._signals import SignalHandlers
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


@implementer(IReactorCore, IReactorTime, IReactorFDSet, IReactorTCP, IReactorThreads,
             IReactorProcess, IReactorUDP, IReactorUNIX, IReactorSSL)
class Reactor(SignalHandlersMixin, ReactorBase):
    """The native event loop.

    Example:
        >>> reactor = Reactor()
        >>> _ = reactor.call_later(0.01, reactor.stop)
        >>> reactor.run()
        >>> reactor.close()

    Args:
        selector: A ``selectors.BaseSelector`` to use; default: the best one for
            the platform (epoll on Linux).

    The TCP, UDP, Unix, TLS, thread, process, resolve and system event methods come
    from ``ReactorBase`` (``_reactor_base``), shared with ``AsyncioReactor``.
    """

    def __init__(self, selector: selectors.BaseSelector | None = None) -> None:
        self._init_base()
        self._selector = selector if selector is not None else selectors.DefaultSelector()
        self._fd_table = FdTable(self._selector)
        self._fds = self._fd_table.fds  # the loop's view
        self._ready: deque[Handle] = deque()
        self._timers: list[tuple[float, int, DelayedCall]] = []
        self._stale_timers = 0
        self._thread_calls: deque[tuple[Callable[..., object], tuple[Any, ...],
                                        dict[str, Any]]] = deque()
        self._wake_pending = False
        self._exit_loop = False
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
        self._begin(install_signal_handlers)
        self._exit_loop = False
        try:
            self._loop()
        finally:
            self._end()

    def _exit(self) -> None:
        self._exit_loop = True

    _leave_loop_now = _exit

    def _release(self) -> None:
        """Release the selector, the waker and the thread pool (``close``)."""
        self._signals.remove_all()
        self._stop_thread_pool()
        self._fd_table.clear()
        self._selector.close()
        self._waker_r.close()
        self._waker_w.close()
        self._ready.clear()
        self._timers.clear()

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
        data = drain_waker(self._waker_r)
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

    def __repr__(self) -> str:
        state = "running" if self.running else "closed" if self._closed else "idle"
        return f"<Reactor {state} fds={len(self._fds)} timers={len(self._timers)}>"

