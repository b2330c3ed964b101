"""Time: ``Clock``, ``LoopingCall`` and ``defer_later``.

Theory of operation (Clock): time is a float that moves only when ``advance`` is called.
Scheduled calls live in one list kept sorted by ``(time, seq)`` (the order
``DelayedCall.__lt__`` defines), so calls due at the same time run in the order they
were scheduled. ``advance`` first moves the time, then pops and runs the head of the
list while it is due; a call scheduled *during* ``advance`` for a time that is not
later than the new time therefore runs in that same ``advance``, after the calls
already due before it. Cancelling removes the call at once; ``reset``/``delay`` on a
call re-inserts it at its new place.

An exception raised by a scheduled call propagates out of ``advance`` (a test wants
to see it); calls that were due and have not yet run stay scheduled and run on the
next ``advance``.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Iterable

from zope.interface import implementer

from plait.cluster._delayed_call import DelayedCall
from plait.cluster.interfaces import IReactorTime

__all__ = ["Clock"]


@implementer(IReactorTime)
class Clock:
    """A deterministic ``IReactorTime``: time moves only on ``advance``.

    Pass a ``Clock`` wherever Plait code takes ``clock: IReactorTime`` and drive
    time by hand; nothing sleeps, nothing depends on the machine's speed.

    Args:
        start: The initial value of ``seconds()``.

    Example:
        >>> clock = Clock()
        >>> fired = []
        >>> call = clock.call_later(5, fired.append, "ding")
        >>> clock.advance(4.9); fired
        []
        >>> clock.advance(0.1); fired
        ['ding']
    """

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._calls: list[DelayedCall] = []

    # ------------------------------------------------------------ IReactorTime

    def seconds(self) -> float:
        """The current time of this clock (``start`` plus every ``advance``)."""
        return self._now

    def call_later(
        self, delay: float, f: Callable[..., object], *args: object, **kwargs: object
    ) -> DelayedCall:
        """Schedule ``f(*args, **kwargs)`` to run ``delay`` seconds from now.

        Returns:
            The ``DelayedCall``, which can be cancelled, reset or delayed.

        Raises:
            ValueError: ``delay`` is negative or not a number.
        """
        if not delay >= 0:  # also rejects NaN
            raise ValueError(f"delay must be a non-negative number of seconds, not {delay!r}")
        call = DelayedCall(self._now + delay, f, args, kwargs, self)
        bisect.insort(self._calls, call)
        return call

    def get_delayed_calls(self) -> list[DelayedCall]:
        """Every active scheduled call, the next one due first."""
        return list(self._calls)

    # ------------------------------------------------------------ driving time

    def advance(self, amount: float) -> None:
        """Move time forward by ``amount`` seconds and run every call that is due.

        Calls run in ``(time, scheduling order)`` order. A call scheduled while
        this runs, for a time not later than the new time, also runs now.

        Raises:
            ValueError: ``amount`` is negative or not a number.
            Exception: whatever a scheduled call raised; the due calls after it
                stay scheduled and run on the next ``advance``.
        """
        if not amount >= 0:  # also rejects NaN
            raise ValueError(f"cannot advance a Clock by {amount!r} seconds")
        self._now += amount
        calls = self._calls
        while calls and calls[0].time <= self._now:
            calls.pop(0).run()

    def pump(self, timings: Iterable[float]) -> None:
        """``advance`` by each amount of ``timings`` in turn.

        Raises:
            ValueError: one of the amounts is negative (the earlier ones are applied).
        """
        for amount in timings:
            self.advance(amount)

    # ---------------------------------------------------- the DelayedCall hooks

    def _call_cancelled(self, call: DelayedCall) -> None:
        self._remove(call)

    def _call_moved(self, call: DelayedCall) -> None:
        self._remove(call)
        bisect.insort(self._calls, call)

    def _remove(self, call: DelayedCall) -> None:
        # The call's time may have changed already, so search by identity.
        for index, scheduled in enumerate(self._calls):
            if scheduled is call:
                del self._calls[index]
                return

    def __repr__(self) -> str:
        return f"<Clock at {self._now!r} with {len(self._calls)} calls>"
