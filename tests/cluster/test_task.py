"""Tests for plait.cluster.task: LoopingCall and defer_later (Clock: test_clock.py)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import pytest

from plait.cluster.defer import CancelledError, Deferred
from plait.cluster.failure import Failure
from plait.cluster.reactor import Reactor
from plait.cluster.task import Clock, LoopingCall, defer_later

# ---------------------------------------------------------------- helpers


def _outcome(d: Deferred[Any]) -> list[object]:
    """Collect what ``d`` fires with (a value or a Failure), consuming failures."""
    seen: list[object] = []

    def keep(value: object) -> None:
        seen.append(value)

    d.add_both(keep)
    return seen


def _looping(
    clock: Clock, f: Callable[..., object], *args: object, **kwargs: object
) -> LoopingCall:
    loop = LoopingCall(f, *args, **kwargs)
    loop.clock = clock
    return loop


# ------------------------------------------------------------------ LoopingCall


def test_looping_call_runs_at_once_and_then_every_interval() -> None:
    clock = Clock()
    times: list[float] = []
    loop = _looping(clock, lambda: times.append(clock.seconds()))
    loop.start(2)
    assert times == [0]
    assert loop.running
    assert loop.interval == 2
    clock.advance(1.999)
    assert times == [0]
    clock.pump([0.001, 2, 2])
    assert times == [0, 2, 4, 6]


def test_looping_call_started_with_now_false_waits_one_interval() -> None:
    clock = Clock()
    times: list[float] = []
    loop = _looping(clock, lambda: times.append(clock.seconds()))
    loop.start(3, now=False)
    assert times == []
    clock.pump([3, 3])
    assert times == [3, 6]


def test_looping_call_passes_its_arguments() -> None:
    clock = Clock()
    seen: list[tuple[object, object]] = []
    loop = _looping(clock, lambda a, *, b: seen.append((a, b)), 1, b=2)
    loop.start(1)
    clock.advance(1)
    assert seen == [(1, 2), (1, 2)]


def test_stop_ends_the_loop_and_fires_its_deferred_with_the_looping_call() -> None:
    clock = Clock()
    calls: list[float] = []
    loop = _looping(clock, lambda: calls.append(clock.seconds()))
    done = _outcome(loop.start(1))
    clock.advance(1)
    loop.stop()
    assert done == [loop]
    assert not loop.running
    assert clock.get_delayed_calls() == []
    clock.advance(10)
    assert calls == [0, 1]


def test_stop_from_inside_the_called_function_fires_the_deferred() -> None:
    clock = Clock()
    count: list[int] = []

    def f() -> None:
        count.append(1)
        if len(count) == 3:
            loop.stop()

    loop = _looping(clock, f)
    done = _outcome(loop.start(1))
    clock.pump([1, 1, 1, 1])
    assert len(count) == 3
    assert done == [loop]


def test_an_exception_in_the_function_errbacks_the_loop_and_stops_it() -> None:
    clock = Clock()
    calls: list[int] = []

    def f() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise KeyError("second call")

    loop = _looping(clock, f)
    done = _outcome(loop.start(1))
    clock.advance(1)
    assert not loop.running
    [failure] = done
    assert isinstance(failure, Failure)
    assert failure.check(KeyError)
    clock.advance(5)
    assert len(calls) == 2
    assert clock.get_delayed_calls() == []


def test_the_next_call_waits_for_the_deferred_the_function_returned() -> None:
    clock = Clock()
    pending: list[Deferred[None]] = []
    times: list[float] = []

    def f() -> Deferred[None]:
        times.append(clock.seconds())
        pending.append(Deferred())
        return pending[-1]

    loop = _looping(clock, f)
    loop.start(1)
    clock.advance(5)
    assert times == [0]  # still waiting for the first call's Deferred
    clock.advance(0.5)
    pending[0].callback(None)  # finished at 5.5: next interval boundary is 6
    clock.advance(0.499)
    assert times == [0]
    clock.advance(0.001)
    assert times == [0, 6]


def test_a_failed_deferred_from_the_function_errbacks_the_loop() -> None:
    clock = Clock()
    pending: Deferred[None] = Deferred()
    loop = _looping(clock, lambda: pending)
    done = _outcome(loop.start(1))
    pending.errback(Failure(OSError("lost")))
    [failure] = done
    assert isinstance(failure, Failure)
    assert failure.check(OSError)
    assert not loop.running


def test_stop_while_a_call_is_in_flight_fires_once_that_call_finishes() -> None:
    clock = Clock()
    pending: Deferred[None] = Deferred()
    loop = _looping(clock, lambda: pending)
    done = _outcome(loop.start(1))
    loop.stop()
    assert done == []
    assert not loop.running
    pending.callback(None)
    assert done == [loop]
    assert clock.get_delayed_calls() == []


def test_start_while_a_call_from_before_stop_is_in_flight_is_refused() -> None:
    clock = Clock()
    pending: Deferred[None] = Deferred()
    loop = _looping(clock, lambda: pending)
    loop.start(1)
    loop.stop()
    with pytest.raises(RuntimeError, match="still finishing"):
        loop.start(1)
    pending.callback(None)
    loop.start(1)  # fine once it finished
    assert loop.running


def test_a_looping_call_can_be_restarted_after_stop() -> None:
    clock = Clock()
    times: list[float] = []
    loop = _looping(clock, lambda: times.append(clock.seconds()))
    loop.start(1)
    loop.stop()
    clock.advance(10)
    loop.start(2)
    clock.advance(2)
    assert times == [0, 10, 12]


def test_the_function_may_be_a_coroutine_function() -> None:
    clock = Clock()
    seen: list[float] = []

    async def f() -> None:
        await defer_later(clock, 0.5)
        seen.append(clock.seconds())

    loop = _looping(clock, f)
    loop.start(1)
    clock.pump([0.5, 0.5, 0.5])
    assert seen == [0.5, 1.5]


def test_a_clock_jump_skips_the_missed_intervals_instead_of_running_them_all() -> None:
    clock = Clock()
    times: list[float] = []
    loop = _looping(clock, lambda: times.append(clock.seconds()))
    loop.start(1)
    clock.advance(10.5)
    assert times == [0, 10.5]
    clock.advance(0.5)  # back on the grid: the next boundary is 11
    assert times == [0, 10.5, 11]


def test_with_count_passes_one_per_call_when_on_time() -> None:
    clock = Clock()
    counts: list[int] = []
    loop = LoopingCall.with_count(counts.append)
    loop.clock = clock
    loop.start(1)
    clock.pump([1, 1, 1])
    assert counts == [1, 1, 1, 1]


def test_with_count_passes_the_number_of_intervals_elapsed_after_a_jump() -> None:
    clock = Clock()
    counts: list[int] = []
    loop = LoopingCall.with_count(counts.append)
    loop.clock = clock
    loop.start(1)
    clock.advance(1)
    clock.advance(5)
    clock.advance(1)
    assert counts == [1, 1, 5, 1]


def test_with_count_started_with_now_false_counts_the_first_interval() -> None:
    clock = Clock()
    counts: list[int] = []
    loop = LoopingCall.with_count(counts.append)
    loop.clock = clock
    loop.start(2, now=False)
    clock.advance(2)
    clock.advance(4.5)
    assert counts == [1, 2]


def test_with_count_counts_intervals_skipped_while_a_deferred_was_pending() -> None:
    clock = Clock()
    counts: list[int] = []
    pending: list[Deferred[None]] = []

    def f(count: int) -> Deferred[None] | None:
        counts.append(count)
        if len(counts) == 1:
            pending.append(Deferred())
            return pending[0]
        return None

    loop = LoopingCall.with_count(f)
    loop.clock = clock
    loop.start(1)
    clock.advance(3.5)
    pending[0].callback(None)
    clock.advance(0.5)
    assert counts == [1, 4]


def test_with_count_passes_one_when_the_interval_is_zero() -> None:
    clock = Clock()
    counts: list[int] = []

    def f(count: int) -> None:
        counts.append(count)
        if len(counts) == 3:
            loop.stop()

    loop = LoopingCall.with_count(f)
    loop.clock = clock
    loop.start(0)
    clock.advance(0)
    assert counts == [1, 1, 1]


def test_interval_zero_runs_again_on_every_turn_of_the_clock_until_stopped() -> None:
    clock = Clock()
    calls: list[float] = []

    def f() -> None:
        calls.append(clock.seconds())
        if len(calls) == 4:
            loop.stop()

    loop = _looping(clock, f)
    done = _outcome(loop.start(0))
    assert calls == [0]
    clock.advance(0)
    assert calls == [0, 0, 0, 0]
    assert done == [loop]


def test_reset_moves_the_next_call_one_interval_from_now() -> None:
    clock = Clock()
    times: list[float] = []
    loop = _looping(clock, lambda: times.append(clock.seconds()))
    loop.start(2)
    clock.advance(1.5)
    loop.reset()
    clock.advance(1.5)
    assert times == [0]
    clock.advance(0.5)
    assert times == [0, 3.5]
    clock.advance(2)
    assert times == [0, 3.5, 5.5]


def test_reset_while_a_call_is_in_flight_changes_nothing() -> None:
    clock = Clock()
    pending: Deferred[None] = Deferred()
    loop = _looping(clock, lambda: pending)
    loop.start(1)
    loop.reset()
    assert loop.running
    assert clock.get_delayed_calls() == []


def test_looping_call_repr_names_the_function_and_state() -> None:
    def tick() -> None:
        return None

    loop = _looping(Clock(), tick)
    assert "tick" in repr(loop)
    assert "stopped" in repr(loop)
    loop.start(1)
    assert "running" in repr(loop)


@pytest.mark.parametrize("interval", [-1, -0.5, math.nan])
def test_start_refuses_a_negative_or_nan_interval(interval: float) -> None:
    loop = _looping(Clock(), lambda: None)
    with pytest.raises(ValueError, match="non-negative"):
        loop.start(interval)
    assert not loop.running


def test_looping_call_refuses_something_that_is_not_callable() -> None:
    with pytest.raises(TypeError, match="not callable"):
        LoopingCall(42)  # type: ignore[arg-type]


def test_start_twice_is_refused() -> None:
    loop = _looping(Clock(), lambda: None)
    loop.start(1)
    with pytest.raises(RuntimeError, match="already running"):
        loop.start(1)


def test_stop_when_not_running_is_refused() -> None:
    loop = _looping(Clock(), lambda: None)
    with pytest.raises(RuntimeError, match="not running"):
        loop.stop()
    loop.start(1)
    loop.stop()
    with pytest.raises(RuntimeError, match="not running"):
        loop.stop()


def test_reset_when_not_running_is_refused() -> None:
    loop = _looping(Clock(), lambda: None)
    with pytest.raises(RuntimeError, match="not running"):
        loop.reset()


# ------------------------------------------------------------------ defer_later


def test_defer_later_fires_with_none_after_the_delay() -> None:
    clock = Clock()
    seen = _outcome(defer_later(clock, 2))
    clock.advance(1.999)
    assert seen == []
    clock.advance(0.001)
    assert seen == [None]


def test_defer_later_fires_with_the_result_of_the_function() -> None:
    clock = Clock()
    seen = _outcome(defer_later(clock, 1, lambda a, *, b: a + b, 2, b=3))
    clock.advance(1)
    assert seen == [5]


def test_defer_later_errbacks_with_what_the_function_raised() -> None:
    clock = Clock()

    def boom() -> None:
        raise KeyError("boom")

    seen = _outcome(defer_later(clock, 1, boom))
    clock.advance(1)
    [failure] = seen
    assert isinstance(failure, Failure)
    assert failure.check(KeyError)


def test_defer_later_waits_for_a_deferred_the_function_returned() -> None:
    clock = Clock()
    seen = _outcome(defer_later(clock, 1, lambda: defer_later(clock, 1, lambda: "inner")))
    clock.advance(1)
    assert seen == []
    clock.advance(1)
    assert seen == ["inner"]


def test_cancelling_defer_later_cancels_the_call_and_errbacks_with_cancelled_error() -> None:
    clock = Clock()
    called: list[int] = []
    d = defer_later(clock, 1, called.append, 1)
    seen = _outcome(d)
    d.cancel()
    assert clock.get_delayed_calls() == []
    [failure] = seen
    assert isinstance(failure, Failure)
    assert failure.check(CancelledError)
    clock.advance(5)
    assert called == []


def test_cancelling_defer_later_after_it_fired_changes_nothing() -> None:
    clock = Clock()
    d = defer_later(clock, 1, lambda: "done")
    clock.advance(1)
    d.cancel()
    assert _outcome(d) == ["done"]


@pytest.mark.parametrize("delay", [-1, math.nan])
def test_defer_later_refuses_a_negative_or_nan_delay(delay: float) -> None:
    clock = Clock()
    with pytest.raises(ValueError):
        defer_later(clock, delay)
    assert clock.get_delayed_calls() == []


# ------------------------------------------------------- on the process's reactor


def test_looping_call_schedules_on_the_process_reactor_by_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr("plait.cluster._react._reactor", clock)
    times: list[float] = []
    loop = LoopingCall(lambda: times.append(clock.seconds()))
    assert loop.clock is clock
    loop.start(1)
    clock.advance(1)
    assert times == [0, 1]


async def test_looping_call_runs_on_a_real_reactor(reactor: Reactor) -> None:
    ticks: list[float] = []

    def tick() -> None:
        ticks.append(reactor.seconds())
        if len(ticks) == 3:
            loop.stop()

    loop = LoopingCall(tick)
    loop.clock = reactor
    assert await loop.start(0.001) is loop
    assert len(ticks) == 3
    assert ticks[2] - ticks[0] >= 0.002


async def test_defer_later_fires_on_a_real_reactor(reactor: Reactor) -> None:
    start = reactor.seconds()
    assert await defer_later(reactor, 0.005, lambda: "late") == "late"
    assert reactor.seconds() - start >= 0.005
