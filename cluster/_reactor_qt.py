"""``QtReactor``: Plait's reactor interfaces inside a Qt event loop (PySide6).

Theory of operation: a reactor is a loop plus methods that only use the loop
(``ReactorBase``); here Qt's event loop is the loop, so a GUI stays responsive while
Plait serves, with no second thread. Only PySide6's ``QtCore`` is used, imported when
the first ``QtReactor`` is made, so ``plait.cluster.reactor`` imports without Qt.

- ``add_reader``/``add_writer``: one ``QSocketNotifier`` per fd and direction. Its
  ``activated`` signal calls the callback stored for that fd and direction *now*, so
  replacing a callback keeps the notifier. Removing one disables the notifier at
  once and keeps the object until the next ``call_soon`` turn: a notifier must not
  be deleted inside its own signal.
- ``call_soon``: a deque of ``Handle``s drained by a zero-interval single-shot
  ``QTimer``; as in the native loop, callbacks queued while draining wait for the
  next turn, after Qt has looked at its other events (the GUI's included).
- ``call_later``: a heap of ``(time, seq, DelayedCall)`` on ``time.monotonic`` with one
  precise single-shot ``QTimer`` armed for the soonest entry; cancelled and moved
  calls are skipped when they surface, as in the native loop.
- ``call_from_thread`` and signals: a socket pair, as in the native loop. Another
  thread appends to a deque and writes a zero byte; ``signal.set_wakeup_fd`` writes
  signal numbers to the same socket (``_signals``); a notifier on its read end moves
  thread calls into the ``call_soon`` queue and dispatches signals. No Qt object is
  touched from another thread.
- ``run`` calls ``app.exec()``; ``stop`` fires ``shutdown`` and then ``app.quit()``.
  An application that calls ``app.exec()`` itself uses ``start()`` instead, and
  ``stop`` then leaves Qt's loop running.
- Errors: an exception from a callback is logged on ``plait.reactor`` and the loop
  goes on (an exception must never unwind into Qt's C++ frames).
"""

from __future__ import annotations

import heapq
import logging
import math
import socket
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from plait.cluster._delayed_call import DelayedCall
from plait.cluster._fd_table import fileno
from plait.cluster._reactor_base import (
    _CALLBACK_ERRORS,
    Handle,
    ReactorBase,
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

__all__ = ["QtReactor"]

_log = logging.getLogger("plait.reactor")
_monotonic = time.monotonic
#: Longest single QTimer wait, in milliseconds (QTimer takes an int).
_MAX_WAIT_MS = 86_400_000


def _log_error(cb: object, exc: BaseException) -> None:
    _log.error("unhandled error in %r", cb, exc_info=exc)


@implementer(IReactorCore, IReactorTime, IReactorFDSet, IReactorTCP, IReactorThreads,
             IReactorProcess, IReactorUDP, IReactorUNIX, IReactorSSL)
class QtReactor(SignalHandlersMixin, ReactorBase):
    """A reactor on Qt's event loop (``pip install 'plait[qt]'``).

    Args:
        app: The ``QCoreApplication`` (or ``QApplication``); default: the one that
            exists. Make it before the reactor.

    Raises:
        ImportError: PySide6 is not installed.
        RuntimeError: no Qt application exists.
    """

    def __init__(self, app: Any = None) -> None:
        from PySide6 import QtCore

        if app is None:
            app = QtCore.QCoreApplication.instance()
        if app is None:
            raise RuntimeError("make the QApplication (or QCoreApplication) before the QtReactor")
        self._init_base()
        self._qt = QtCore
        self._app = app
        self._notifiers: tuple[dict[int, Any], dict[int, Any]] = ({}, {})
        self._callbacks: tuple[dict[int, Callable[[], object]], ...] = ({}, {})
        self._dead_notifiers: list[Any] = []
        self._ready: deque[Handle] = deque()
        self._ready_timer = QtCore.QTimer()
        self._ready_timer.setSingleShot(True)
        self._ready_timer.setInterval(0)
        self._ready_timer.timeout.connect(self._run_ready)
        self._timers: list[tuple[float, int, DelayedCall]] = []
        self._timer = QtCore.QTimer()
        self._timer.setSingleShot(True)
        self._timer.setTimerType(QtCore.Qt.TimerType.PreciseTimer)
        self._timer.timeout.connect(self._run_timers)
        self._thread_calls: deque[tuple[Callable[..., object], tuple[Any, ...],
                                        dict[str, Any]]] = deque()
        self._runs_app = False
        self._waker_r, self._waker_w = socket.socketpair()
        self._waker_r.setblocking(False)
        self._waker_w.setblocking(False)
        self._signals = SignalHandlers(self._waker_w.fileno(), self.call_soon)
        self.add_reader(self._waker_r.fileno(), self._on_wake)

    # ------------------------------------------------------------------ running

    def run(self, install_signal_handlers: bool = True) -> None:
        """Run Qt's loop (``app.exec()``) until ``stop`` and its triggers finish.

        Args:
            install_signal_handlers: In the main thread, make SIGINT and SIGTERM stop
                the reactor cleanly unless handlers of their own were added.

        Raises:
            RuntimeError: the reactor runs already, or was closed.
        """
        self._begin(install_signal_handlers)
        self._runs_app = True
        try:
            self._app.exec()
        finally:
            self._runs_app = False
            self._end()

    def start(self, install_signal_handlers: bool = False) -> None:
        """Run the reactor in Qt's loop that the application runs (``app.exec()``).

        Raises:
            RuntimeError: the reactor runs already, or was closed.
        """
        self._begin(install_signal_handlers)

    def _exit(self) -> None:
        if self._runs_app:
            self._app.quit()
        else:
            self._end()

    def _leave_loop_now(self) -> None:
        if self._runs_app:
            self._app.quit()

    def _release(self) -> None:
        """Release the notifiers, timers, waker and thread pool (``close``)."""
        self._signals.remove_all()
        self._stop_thread_pool()
        for slot in (0, 1):
            for notifier in self._notifiers[slot].values():
                notifier.setEnabled(False)
            self._notifiers[slot].clear()
            self._callbacks[slot].clear()
        self._dead_notifiers.clear()
        self._timer.stop()
        self._ready_timer.stop()
        self._timers.clear()
        self._ready.clear()
        self._waker_r.close()
        self._waker_w.close()

    # --------------------------------------------------------------- callbacks

    def call_soon(self, f: Callable[..., object], *args: Any, **kwargs: Any) -> Handle:
        """Run ``f(*args, **kwargs)`` on the next turn (FIFO); not thread-safe.

        Returns:
            A ``Handle`` whose ``cancel()`` stops the call.
        """
        if not callable(f):
            raise TypeError(f"{f!r} is not callable")
        handle = Handle(f, args, kwargs or None)
        self._ready.append(handle)
        if not self._ready_timer.isActive():
            self._ready_timer.start()
        return handle

    def _run_ready(self) -> None:
        self._dead_notifiers.clear()
        ready = self._ready
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
                _log_error(handle._func, exc)
        if ready and not self._ready_timer.isActive():
            self._ready_timer.start()

    def call_from_thread(self, f: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Thread-safe: run ``f(*args, **kwargs)`` in the loop's thread soon."""
        if not callable(f):
            raise TypeError(f"{f!r} is not callable")
        self._thread_calls.append((f, args, kwargs))
        try:
            self._waker_w.send(b"\0")
        except (BlockingIOError, InterruptedError):
            pass  # full: a wake-up is pending anyway
        except OSError as exc:  # closed reactor
            _log.debug("could not wake the reactor: %s", exc)

    def _on_wake(self) -> None:
        data = drain_waker(self._waker_r)
        if data.strip(b"\0"):
            self._signals.dispatch(data)
        calls = self._thread_calls
        while calls:
            f, args, kwargs = calls.popleft()
            self.call_soon(f, *args, **kwargs)

    # -------------------------------------------------------------------- time

    def seconds(self) -> float:
        """The reactor's clock: ``time.monotonic()``."""
        return _monotonic()

    def call_later(self, delay: float, f: Callable[..., object], *args: Any,
                   **kwargs: Any) -> DelayedCall:
        """Run ``f(*args, **kwargs)`` in ``delay`` seconds.

        Raises:
            ValueError: ``delay`` is negative or NaN.
            TypeError: ``f`` is not callable.
        """
        if not delay >= 0:  # also catches NaN
            raise ValueError(f"delay must be a number >= 0, not {delay!r}")
        if not callable(f):
            raise TypeError(f"{f!r} is not callable")
        call = DelayedCall(_monotonic() + delay, f, args, kwargs, self)
        heapq.heappush(self._timers, (call.time, call.seq, call))
        self._arm()
        return call

    def _call_cancelled(self, call: DelayedCall) -> None:
        """Skipped when it surfaces (``_next_due``)."""

    def _call_moved(self, call: DelayedCall) -> None:
        if not math.isfinite(call.time):
            call.time = math.inf if call.time > 0 else 0.0
        heapq.heappush(self._timers, (call.time, call.seq, call))
        self._arm()

    def _next_due(self) -> float | None:
        timers = self._timers
        while timers:
            when, seq, call = timers[0]
            if call.cancelled or call.seq != seq or call.called:
                heapq.heappop(timers)
                continue
            return when
        return None

    def _arm(self) -> None:
        when = self._next_due()
        if when is None or when == math.inf:
            self._timer.stop()
            return
        wait_ms = min(max(0, math.ceil((when - _monotonic()) * 1000)), _MAX_WAIT_MS)
        self._timer.start(wait_ms)

    def _run_timers(self) -> None:
        timers = self._timers
        now = _monotonic()
        while timers and timers[0][0] <= now:
            _, seq, call = heapq.heappop(timers)
            if call.cancelled or call.seq != seq or call.called:
                continue
            try:
                call.run()
            except _CALLBACK_ERRORS as exc:
                _log_error(call, exc)
        self._arm()

    def get_delayed_calls(self) -> list[DelayedCall]:
        """Every scheduled call that is still active, soonest first."""
        return [c for _, seq, c in sorted(self._timers) if c.seq == seq and c.active()]

    # ------------------------------------------------------------------ fd set

    def _watch(self, fd: Any, slot: int, cb: Callable[[], object]) -> None:
        if not callable(cb):
            raise TypeError(f"{cb!r} is not callable")
        n = fileno(fd)
        self._callbacks[slot][n] = cb
        notifier = self._notifiers[slot].get(n)
        if notifier is None:
            kind = (self._qt.QSocketNotifier.Type.Read if slot == 0
                    else self._qt.QSocketNotifier.Type.Write)
            notifier = self._qt.QSocketNotifier(n, kind)
            notifier.activated.connect(lambda *_: self._dispatch(slot, n))
            self._notifiers[slot][n] = notifier
        notifier.setEnabled(True)

    def _dispatch(self, slot: int, n: int) -> None:
        cb = self._callbacks[slot].get(n)
        if cb is None:
            return
        try:
            cb()
        except _CALLBACK_ERRORS as exc:
            _log_error(cb, exc)

    def _unwatch(self, fd: Any, slot: int) -> bool:
        n = fileno(fd)
        if self._callbacks[slot].pop(n, None) is None:
            return False
        notifier = self._notifiers[slot].pop(n)
        notifier.setEnabled(False)
        self._dead_notifiers.append(notifier)  # freed on the next call_soon turn
        if not self._ready_timer.isActive():
            self._ready_timer.start()
        return True

    def add_reader(self, fd: Any, f: Callable[..., object], *args: Any) -> None:
        """Call ``f(*args)`` whenever ``fd`` (int or object with ``fileno()``) is readable."""
        self._watch(fd, 0, (lambda: f(*args)) if args else f)

    def add_writer(self, fd: Any, f: Callable[..., object], *args: Any) -> None:
        """Call ``f(*args)`` whenever ``fd`` is writable."""
        self._watch(fd, 1, (lambda: f(*args)) if args else f)

    def remove_reader(self, fd: Any) -> bool:
        """Stop watching ``fd`` for reading; True if it was watched."""
        return self._unwatch(fd, 0)

    def remove_writer(self, fd: Any) -> bool:
        """Stop watching ``fd`` for writing; True if it was watched."""
        return self._unwatch(fd, 1)

    def get_readers(self) -> list[int]:
        """The fds watched for reading (the reactor's own waker excluded)."""
        waker = self._waker_r.fileno()
        return sorted(fd for fd in self._callbacks[0] if fd != waker)

    def get_writers(self) -> list[int]:
        """The fds watched for writing."""
        return sorted(self._callbacks[1])

    def __repr__(self) -> str:
        state = "running" if self.running else "closed" if self._closed else "idle"
        return f"<QtReactor {state}>"
