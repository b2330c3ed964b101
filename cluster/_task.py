"""Time: ``Clock``, ``LoopingCall`` and ``defer_later``.

Theory of operation (Clock): time is a float that moves only when ``advance`` is called.
Scheduled calls live in a binary heap of ``(time, seq, call)`` entries (the order
``DelayedCall.__lt__`` defines), so calls due at the same time run in the order they
were scheduled. ``advance`` first moves the time, then pops and runs the head of the
heap while it is due; a call scheduled *during* ``advance`` for a time that is not
later than the new time therefore runs in that same ``advance``, after the calls
already due before it. Cancelling and moving never search the heap (both O(log n)
at most), as in the reactor: a cancelled call's entry is skipped when it surfaces,
and ``reset``/``delay`` push a new entry under the call's new ``(time, seq)``, the
old one recognised as stale because its ``seq`` no longer matches. When stale
entries outnumber live ones the heap is rebuilt in one pass, so memory stays
proportional to the active calls.

An exception raised by a scheduled call propagates out of ``advance`` (a test wants
to see it); calls that were due and have not yet run stay scheduled and run on the
next ``advance``.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

from zope.interface import implementer

from plait.cluster._defer import Deferred, maybe_deferred
from plait.cluster._delayed_call import DelayedCall
from plait.cluster._failure import Failure
from plait.cluster.interfaces import IDelayedCall, IReactorTime

__all__ = ["Clock", "LoopingCall", "defer_later"]


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
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._stale = 0

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
            TypeError: ``f`` is not callable.
        """
        if not delay >= 0:  # also rejects NaN
            raise ValueError(f"delay must be a non-negative number of seconds, not {delay!r}")
        if not callable(f):
            raise TypeError(f"{f!r} is not callable")
        call = DelayedCall(self._now + delay, f, args, kwargs, self)
        heapq.heappush(self._heap, (call.time, call.seq, call))
        return call

    def get_delayed_calls(self) -> list[DelayedCall]:
        """Every active scheduled call, the next one due first."""
        return [call for _, seq, call in sorted(self._heap) if _live(call, seq)]

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
        heap = self._heap
        while heap and heap[0][0] <= self._now:
            _, seq, call = heapq.heappop(heap)
            if not _live(call, seq):
                self._stale -= 1
                continue
            call.run()

    def pump(self, timings: Iterable[float]) -> None:
        """``advance`` by each amount of ``timings`` in turn.

        Raises:
            ValueError: one of the amounts is negative (the earlier ones are applied).
        """
        for amount in timings:
            self.advance(amount)

    # ---------------------------------------------------- the DelayedCall hooks

    def _call_cancelled(self, call: DelayedCall) -> None:
        self._stale += 1
        self._maybe_compact()

    def _call_moved(self, call: DelayedCall) -> None:
        self._stale += 1
        heapq.heappush(self._heap, (call.time, call.seq, call))
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        heap = self._heap
        if self._stale > 64 and self._stale * 2 > len(heap):
            heap[:] = [entry for entry in heap if _live(entry[2], entry[1])]
            heapq.heapify(heap)
            self._stale = 0

    def __repr__(self) -> str:
        return f"<Clock at {self._now!r} with {len(self._heap) - self._stale} calls>"


def _live(call: DelayedCall, seq: int) -> bool:
    """Whether a heap entry ``(_, seq, call)`` still stands for an active call."""
    return call.seq == seq and not (call.cancelled or call.called)


# ------------------------------------------------------------------ LoopingCall
#
# Theory of operation (LoopingCall): the loop keeps a start time and schedules each
# call for the next multiple of ``interval`` after the start, measured from the
# moment the previous call finished (its Deferred fired). A call that overruns one or
# more intervals therefore skips them instead of running back to back; ``with_count``
# tells ``f`` how many interval boundaries passed since it last ran. ``stop`` cancels
# the next scheduled call; when a call is in flight (its Deferred has not fired) the
# loop's Deferred fires once that call finishes.


class LoopingCall:
    """Call ``f(*args, **kwargs)`` every ``interval`` seconds.

    ``f`` may return a Deferred or a coroutine: the next call is scheduled only
    once it has fired. Set ``clock`` before ``start`` to run the loop on another
    ``IReactorTime`` (tests use a ``Clock``); by default it is the process's reactor.

    Example:
        >>> clock = Clock()
        >>> ticks = []
        >>> loop = LoopingCall(lambda: ticks.append(clock.seconds()))
        >>> loop.clock = clock
        >>> done = loop.start(2.0)
        >>> clock.pump([2, 2]); ticks
        [0.0, 2.0, 4.0]
        >>> loop.stop(); loop.running
        False
    """

    def __init__(self, f: Callable[..., object], *args: object, **kwargs: object) -> None:
        """Prepare to call ``f(*args, **kwargs)``; nothing runs before ``start``.

        Raises:
            TypeError: ``f`` is not callable.
        """
        if not callable(f):
            raise TypeError(f"{f!r} is not callable")
        self.f = f
        self.args = args
        self.kwargs = kwargs
        self.running = False
        self.interval: float | None = None
        self.call: IDelayedCall | None = None
        self._clock: IReactorTime | None = None
        self._deferred: Deferred[LoopingCall] | None = None
        self._start_time = 0.0
        self._run_at_start = True
        self._last_count_time: float | None = None

    @property
    def clock(self) -> IReactorTime:
        """The ``IReactorTime`` the loop schedules on (default: the process's reactor)."""
        if self._clock is None:
            from plait.cluster.reactor import get_reactor

            self._clock = get_reactor()
        return self._clock

    @clock.setter
    def clock(self, clock: IReactorTime) -> None:
        self._clock = clock

    @classmethod
    def with_count(cls, count_callable: Callable[[int], object]) -> LoopingCall:
        """A LoopingCall that passes ``count_callable`` the intervals elapsed.

        The count is 1 on time and more than 1 when the clock jumped (or the
        process stalled) across several intervals since the previous call.
        With an interval of 0 the count is always 1.
        """

        def counter() -> object:
            now = loop.clock.seconds()
            interval = loop.interval
            if not interval:
                loop._last_count_time = now
                return count_callable(1)
            last = loop._last_count_time
            if last is None:
                last = loop._start_time
                if loop._run_at_start:
                    last -= interval
            count = loop._interval_of(now) - loop._interval_of(last)
            if count > 0:
                loop._last_count_time = now
                return count_callable(count)
            return None

        loop = cls(counter)
        return loop

    def start(self, interval: float, now: bool = True) -> Deferred[LoopingCall]:
        """Start calling every ``interval`` seconds.

        Args:
            interval: Seconds between the starts of two calls; 0 runs ``f`` as
                often as the clock lets it.
            now: Call ``f`` at once (True) or first after one ``interval``.

        Returns:
            A Deferred that fires with this LoopingCall once ``stop`` is called,
            or errbacks with the failure of ``f`` (raised, or its Deferred failed);
            the loop stops in both cases.

        Raises:
            ValueError: ``interval`` is negative or not a number.
            RuntimeError: the loop is running, or a call started before
                ``stop`` is still in flight.
        """
        if self.running:
            raise RuntimeError(f"{self!r} is already running")
        if self._deferred is not None:
            raise RuntimeError(f"{self!r} is still finishing a call made before stop()")
        if not interval >= 0:  # also rejects NaN
            raise ValueError(f"interval must be a non-negative number of seconds, not {interval!r}")
        self.running = True
        self.interval = interval
        self._deferred = Deferred()
        self._start_time = self.clock.seconds()
        self._run_at_start = now
        self._last_count_time = None
        deferred = self._deferred
        if now:
            self._run_once()
        else:
            self._schedule_from(self._start_time)
        return deferred

    def stop(self) -> None:
        """Stop the loop; its Deferred fires with this LoopingCall.

        When a call is in flight, the Deferred fires once that call finishes.

        Raises:
            RuntimeError: the loop is not running.
        """
        if not self.running:
            raise RuntimeError(f"{self!r} is not running")
        self.running = False
        if self.call is not None:
            self.call.cancel()
            self.call = None
            self._finish()

    def reset(self) -> None:
        """Restart the interval count from now: the next call is one interval away.

        Has no effect on a call in flight (the next one is scheduled when it ends).

        Raises:
            RuntimeError: the loop is not running.
        """
        if not self.running:
            raise RuntimeError(f"{self!r} is not running")
        if self.call is not None:
            self.call.cancel()
            self.call = None
            self._start_time = self.clock.seconds()
            self._schedule_from(self._start_time)

    def _run_once(self) -> None:
        self.call = None
        result = maybe_deferred(self.f, *self.args, **self.kwargs)
        result.add_callbacks(self._call_succeeded, self._call_failed)

    def _call_succeeded(self, result: object) -> None:
        if self.running:
            self._schedule_from(self.clock.seconds())
        else:
            self._finish()

    def _call_failed(self, failure: Failure) -> None:
        self.running = False
        deferred, self._deferred = self._deferred, None
        assert deferred is not None
        deferred.errback(failure)

    def _finish(self) -> None:
        deferred, self._deferred = self._deferred, None
        assert deferred is not None
        deferred.callback(self)

    def _schedule_from(self, when: float) -> None:
        self.call = self.clock.call_later(self._delay_from(when), self._run_once)

    def _delay_from(self, when: float) -> float:
        interval = self.interval
        assert interval is not None
        if interval == 0:
            return 0.0
        running_for = when - self._start_time
        until_next = interval - (running_for % interval)
        if when == when + until_next:
            # Float precision ran out: the next boundary rounds to ``when`` itself.
            return interval
        return until_next

    def _interval_of(self, t: float) -> int:
        assert self.interval
        return int((t - self._start_time) / self.interval)

    def __repr__(self) -> str:
        name = getattr(self.f, "__qualname__", repr(self.f))
        state = "running" if self.running else "stopped"
        return f"<LoopingCall {name} every {self.interval!r}s, {state}>"


# ------------------------------------------------------------------ defer_later


def defer_later(
    clock: IReactorTime,
    delay: float,
    f: Callable[..., object] | None = None,
    *args: object,
    **kwargs: object,
) -> Deferred[Any]:
    """A Deferred that fires ``delay`` seconds from now on ``clock``.

    It fires with the result of ``f(*args, **kwargs)`` (awaited when ``f`` returns
    a Deferred or coroutine), or with ``None`` when ``f`` is omitted.

    Returns:
        The Deferred. Cancelling it before it fires cancels the scheduled call
        and errbacks with ``CancelledError``; it errbacks with whatever ``f``
        raised or failed with.

    Raises:
        ValueError: ``delay`` is negative or not a number.
    """

    def cancel(deferred: Deferred[Any]) -> None:
        if call.active():
            call.cancel()

    def run(ignored: object) -> object:
        if f is None:
            return None
        return maybe_deferred(f, *args, **kwargs)

    deferred: Deferred[Any] = Deferred(cancel)
    deferred.add_callback(run)
    call = clock.call_later(delay, deferred.callback, None)
    return deferred
