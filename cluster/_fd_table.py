"""The reactor's table of watched file descriptors, kept in step with its selector.

Theory of operation: ``fds`` maps an fd number to a two-slot list ``[reader,
writer]`` of zero-argument callables, and the very same list object is the
selector key's ``data``. Removing a reader or writer sets its slot to ``None`` *in
place*: the loop, which reads the slot when it dispatches, then drops an event that
``select`` had already returned for a callback removed earlier in the same batch
(for instance a transport closed by another transport's callback). An fd closed
and its number reused behind the table's back (the kernel forgot the old epoll
registration) is registered afresh, with a warning, instead of failing.
"""

from __future__ import annotations

import errno
import logging
import selectors
from collections.abc import Callable
from typing import Any

__all__ = ["FdTable", "fileno"]

_log = logging.getLogger("plait.reactor")

_Slots = list[Callable[[], object] | None]


def fileno(fd: Any) -> int:
    """The fd number of ``fd``: an int, or an object with ``fileno()``.

    Raises:
        TypeError: neither.
        ValueError: a negative number.
    """
    if isinstance(fd, int) and not isinstance(fd, bool):
        n = fd
    else:
        try:
            n = fd.fileno()
        except AttributeError:
            raise TypeError(f"not a file descriptor or an object with fileno(): {fd!r}") from None
        if not isinstance(n, int):
            raise TypeError(f"fileno() returned {n!r}, not an int")
    if n < 0:
        raise ValueError(f"invalid file descriptor {n}")
    return n


def _mask(cbs: _Slots) -> int:
    return (selectors.EVENT_READ if cbs[0] is not None else 0) | (
        selectors.EVENT_WRITE if cbs[1] is not None else 0)


class FdTable:
    """Readers and writers by fd, registered with ``selector``."""

    def __init__(self, selector: selectors.BaseSelector) -> None:
        self._selector = selector
        #: fd -> [reader, writer]; the loop reads it directly.
        self.fds: dict[int, _Slots] = {}

    def add(self, fd: Any, slot: int, cb: Callable[[], object]) -> None:
        """Watch ``fd`` for reading (``slot`` 0) or writing (1) with ``cb``, replacing any."""
        if not callable(cb):
            raise TypeError(f"{cb!r} is not callable")
        n = fileno(fd)
        cbs = self.fds.get(n)
        if cbs is None:
            cbs = [None, None]
            cbs[slot] = cb
            self._selector.register(n, _mask(cbs), cbs)
            self.fds[n] = cbs
            return
        had = cbs[slot] is not None
        cbs[slot] = cb
        if not had:
            self._modify(n, cbs)

    def remove(self, fd: Any, slot: int) -> bool:
        """Stop watching ``fd`` in ``slot``; True if it was watched."""
        n = fileno(fd)
        cbs = self.fds.get(n)
        if cbs is None or cbs[slot] is None:
            return False
        cbs[slot] = None
        if cbs[1 - slot] is None:
            del self.fds[n]
            try:
                self._selector.unregister(n)
            except (KeyError, ValueError, OSError) as exc:  # closed under us
                _log.debug("unregister of fd %d: %s", n, exc)
        else:
            self._modify(n, cbs)
        return True

    def _modify(self, n: int, cbs: _Slots) -> None:
        try:
            self._selector.modify(n, _mask(cbs), cbs)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.EBADF):
                raise
            _log.warning("fd %d was closed while watched; registering it again", n)
            try:
                self._selector.unregister(n)
            except (KeyError, ValueError, OSError) as exc2:
                _log.debug("unregister of stale fd %d: %s", n, exc2)
            self._selector.register(n, _mask(cbs), cbs)

    def watched(self, slot: int) -> list[int]:
        """The fds with a callback in ``slot``."""
        return [fd for fd, cbs in self.fds.items() if cbs[slot] is not None]

    def clear(self) -> None:
        """Forget every fd (the selector is being closed)."""
        self.fds.clear()
