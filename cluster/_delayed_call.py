"""DelayedCall: one scheduled call, shared by the reactors and ``task.Clock``.

Theory of operation: a scheduler (anything with the small ``_Scheduler`` shape
below) owns a priority queue of DelayedCalls ordered by ``(time, seq)``. The
DelayedCall holds no queue logic itself: ``cancel``, ``reset`` and ``delay`` change
its own state and then tell the scheduler, which may remove the entry at once (a
sorted list) or lazily (a heap that skips stale entries when they surface).
``seq`` breaks ties so that calls due at the same time run in the order they were
scheduled, as Twisted's and asyncio's do.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any, Protocol

from zope.interface import implementer

from plait.cluster.interfaces import IDelayedCall

__all__ = ["AlreadyCalled", "AlreadyCancelled", "DelayedCall"]

_seq = itertools.count()


class AlreadyCalled(ValueError):
    """The DelayedCall has run already; it cannot be cancelled or moved."""


class AlreadyCancelled(ValueError):
    """The DelayedCall was cancelled; it cannot be cancelled or moved again."""


class _Scheduler(Protocol):
    def seconds(self) -> float: ...

    def _call_cancelled(self, call: DelayedCall) -> None: ...

    def _call_moved(self, call: DelayedCall) -> None: ...


@implementer(IDelayedCall)
class DelayedCall:
    """A call of ``func(*args, **kwargs)`` due at ``time`` on its scheduler's clock."""

    __slots__ = ("args", "called", "cancelled", "func", "kwargs", "seq", "time", "_scheduler")

    def __init__(
        self,
        time: float,
        func: Callable[..., object],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        scheduler: _Scheduler,
    ) -> None:
        self.time = time
        self.func = func
        self.args = args
        self.kwargs = kwargs
        self.seq = next(_seq)
        self.called = False
        self.cancelled = False
        self._scheduler = scheduler

    def __lt__(self, other: DelayedCall) -> bool:
        if self.time != other.time:
            return self.time < other.time
        return self.seq < other.seq

    def get_time(self) -> float:
        """The time at which the call is due."""
        return self.time

    def active(self) -> bool:
        """True while the call has neither run nor been cancelled."""
        return not (self.called or self.cancelled)

    def _check_active(self) -> None:
        if self.cancelled:
            raise AlreadyCancelled(f"{self!r} was cancelled")
        if self.called:
            raise AlreadyCalled(f"{self!r} has run")

    def cancel(self) -> None:
        """Unschedule the call.

        Raises:
            AlreadyCancelled: it was cancelled before.
            AlreadyCalled: it has run already.
        """
        self._check_active()
        self.cancelled = True
        self._scheduler._call_cancelled(self)
        self.func = _nothing  # drop references to what it would have called
        self.args = ()
        self.kwargs = {}

    def reset(self, seconds_from_now: float) -> None:
        """Make the call due ``seconds_from_now`` after the scheduler's current time."""
        self._check_active()
        self.time = self._scheduler.seconds() + seconds_from_now
        self.seq = next(_seq)
        self._scheduler._call_moved(self)

    def delay(self, seconds_later: float) -> None:
        """Push the call ``seconds_later`` further away (negative brings it nearer)."""
        self._check_active()
        self.time += seconds_later
        self.seq = next(_seq)
        self._scheduler._call_moved(self)

    def run(self) -> None:
        """Mark the call as run and run it (the scheduler calls this)."""
        self.called = True
        func, args, kwargs = self.func, self.args, self.kwargs
        self.func = _nothing
        self.args = ()
        self.kwargs = {}
        func(*args, **kwargs)

    def __repr__(self) -> str:
        state = "cancelled" if self.cancelled else "called" if self.called else "active"
        name = getattr(self.func, "__qualname__", repr(self.func))
        return f"<DelayedCall {state} at {self.time:.6f} {name}>"


def _nothing(*args: object, **kwargs: object) -> None:
    return None
