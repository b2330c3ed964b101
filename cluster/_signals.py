"""Unix signals delivered into the reactor's loop through ``signal.set_wakeup_fd``.

Theory of operation: Python runs a signal's handler in the main thread between two
bytecodes, at an arbitrary point of whatever the loop is doing, which is no place to
run user code. So a signal the reactor watches gets a no-op Python handler, and the C
level handler writes the signal number as one byte to the wake-up fd that
``signal.set_wakeup_fd`` names: the write end of the reactor's waker socket pair. The
loop wakes from ``select``, reads the bytes and dispatches each signal number to the
callbacks registered here, as ordinary loop callbacks. (A zero byte is the
thread waker's, not a signal: there is no signal 0.) ``set_wakeup_fd`` is per process
and main-thread only, so the previous fd and the previous Python handlers are put back
when the last signal is removed.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["SignalHandlers"]

_log = logging.getLogger("plait.reactor")


def _noop_handler(signum: int, frame: object) -> None:
    """Installed as the Python-level handler; the wake-up fd does the work."""


class SignalHandlers:
    """The signal callbacks of one reactor.

    Args:
        wakeup_fd: The non-blocking fd that the C handler writes signal numbers to.
        schedule: How to run a callback in the loop (the reactor's ``call_soon``).
    """

    def __init__(self, wakeup_fd: int, schedule: Callable[..., object]) -> None:
        self._wakeup_fd = wakeup_fd
        self._schedule = schedule
        self._callbacks: dict[int, tuple[Callable[..., object], tuple[Any, ...]]] = {}
        self._previous: dict[int, Any] = {}
        self._previous_wakeup_fd: int | None = None

    def __contains__(self, signum: int) -> bool:
        return signum in self._callbacks

    def add(self, signum: int, f: Callable[..., object], *args: Any) -> None:
        """Call ``f(*args)`` in the loop whenever ``signum`` arrives.

        Raises:
            ValueError: ``signum`` is not a valid signal, or cannot be caught
                (SIGKILL, SIGSTOP), or this is not the main thread.
            TypeError: ``f`` is not callable.
        """
        if not callable(f):
            raise TypeError(f"signal callback must be callable, not {f!r}")
        if not isinstance(signum, int) or isinstance(signum, bool):
            raise TypeError(f"signal number must be an int, not {signum!r}")
        if signum not in signal.valid_signals():
            raise ValueError(f"invalid signal number {signum}")
        if threading.current_thread() is not threading.main_thread():
            raise ValueError("signal handlers can only be added from the main thread")
        if self._previous_wakeup_fd is None:
            self._previous_wakeup_fd = signal.set_wakeup_fd(
                self._wakeup_fd, warn_on_full_buffer=False
            )
        try:
            previous = signal.signal(signum, _noop_handler)
        except (OSError, RuntimeError) as exc:  # SIGKILL, SIGSTOP
            if not self._callbacks:
                self._restore_wakeup_fd()
            raise ValueError(f"signal {signum} cannot be caught: {exc}") from exc
        if signum not in self._previous:
            self._previous[signum] = previous
        signal.siginterrupt(signum, False)
        self._callbacks[signum] = (f, args)

    def remove(self, signum: int) -> bool:
        """Stop watching ``signum`` and put back its previous handler.

        Returns:
            True if a callback was registered for ``signum``.
        """
        if signum not in self._callbacks:
            return False
        del self._callbacks[signum]
        previous = self._previous.pop(signum, signal.SIG_DFL)
        if previous is None:  # installed from C; the default is the closest we can do
            previous = signal.SIG_DFL
        try:
            signal.signal(signum, previous)
        except (OSError, RuntimeError, ValueError) as exc:
            _log.warning("could not restore the handler of signal %d: %s", signum, exc)
        if not self._callbacks:
            self._restore_wakeup_fd()
        return True

    def remove_all(self) -> None:
        """Remove every callback (the reactor is closing)."""
        for signum in list(self._callbacks):
            self.remove(signum)

    def _restore_wakeup_fd(self) -> None:
        if self._previous_wakeup_fd is None:
            return
        try:
            signal.set_wakeup_fd(self._previous_wakeup_fd)
        except ValueError as exc:  # not the main thread any more, or a stale fd
            _log.warning("could not restore the signal wake-up fd: %s", exc)
        self._previous_wakeup_fd = None

    def dispatch(self, data: bytes) -> None:
        """Schedule the callbacks of the signal numbers in ``data`` (zero bytes skipped)."""
        for signum in data:
            if signum:
                entry = self._callbacks.get(signum)
                if entry is not None:
                    self._schedule(entry[0], *entry[1])
