"""Tests for plait.cluster.task.Clock, the deterministic IReactorTime."""

from __future__ import annotations

import math

import pytest
from zope.interface.verify import verifyObject

from plait.cluster._delayed_call import AlreadyCalled, AlreadyCancelled, DelayedCall
from plait.cluster.interfaces import IDelayedCall, IReactorTime
from plait.cluster.task import Clock

# ------------------------------------------------------------------------ Clock


def test_clock_provides_ireactortime() -> None:
    assert verifyObject(IReactorTime, Clock())


def test_clock_call_later_returns_a_delayed_call_providing_idelayedcall() -> None:
    call = Clock().call_later(1, lambda: None)
    assert isinstance(call, DelayedCall)
    assert verifyObject(IDelayedCall, call)


def test_clock_starts_at_zero_or_at_the_given_start() -> None:
    assert Clock().seconds() == 0.0
    assert Clock(start=100.5).seconds() == 100.5


def test_time_moves_only_on_advance() -> None:
    clock = Clock()
    clock.advance(2.5)
    assert clock.seconds() == 2.5
    assert clock.seconds() == 2.5
    clock.advance(0.5)
    assert clock.seconds() == 3.0


def test_a_call_runs_when_its_time_is_reached_and_not_before() -> None:
    clock = Clock()
    seen: list[tuple[str, str]] = []
    call = clock.call_later(5, lambda a, *, b: seen.append((a, b)), "x", b="y")
    assert call.get_time() == 5
    clock.advance(4.999)
    assert seen == []
    assert call.active()
    clock.advance(0.001)
    assert seen == [("x", "y")]
    assert not call.active()
    assert call.called


def test_calls_due_at_the_same_time_run_in_scheduling_order() -> None:
    clock = Clock()
    order: list[int] = []
    for n in range(5):
        clock.call_later(1, order.append, n)
    clock.advance(1)
    assert order == [0, 1, 2, 3, 4]


def test_calls_run_in_time_order_whatever_the_scheduling_order() -> None:
    clock = Clock()
    order: list[float] = []
    for delay in (3, 1, 2, 0.5):
        clock.call_later(delay, order.append, delay)
    clock.advance(10)
    assert order == [0.5, 1, 2, 3]


def test_a_call_sees_the_advanced_time() -> None:
    clock = Clock()
    seen: list[float] = []
    clock.call_later(1, lambda: seen.append(clock.seconds()))
    clock.advance(3)
    assert seen == [3]


def test_a_call_scheduled_during_advance_for_a_due_time_runs_in_the_same_advance() -> None:
    clock = Clock()
    order: list[str] = []

    def first() -> None:
        # The clock already reads 2 here: calls see the advanced time.
        order.append("first")
        clock.call_later(0, order.append, "zero-delay")
        clock.call_later(1, order.append, "next-second")

    clock.call_later(1, first)
    clock.call_later(2, order.append, "second")
    clock.advance(2)
    # "zero-delay" is due at 2 like "second" but was scheduled after it.
    assert order == ["first", "second", "zero-delay"]
    clock.advance(0.5)
    assert order[-1] == "zero-delay"
    clock.advance(0.5)
    assert order[-1] == "next-second"


def test_advance_zero_runs_calls_with_zero_delay() -> None:
    clock = Clock()
    seen: list[int] = []
    clock.call_later(0, seen.append, 1)
    assert seen == []
    clock.advance(0)
    assert seen == [1]


def test_get_delayed_calls_lists_the_active_calls_next_due_first() -> None:
    clock = Clock()
    late = clock.call_later(2, lambda: None)
    early = clock.call_later(1, lambda: None)
    gone = clock.call_later(1.5, lambda: None)
    gone.cancel()
    assert clock.get_delayed_calls() == [early, late]
    clock.advance(1)
    assert clock.get_delayed_calls() == [late]


def test_a_cancelled_call_does_not_run() -> None:
    clock = Clock()
    seen: list[int] = []
    call = clock.call_later(1, seen.append, 1)
    call.cancel()
    clock.advance(5)
    assert seen == []
    assert not call.active()
    with pytest.raises(AlreadyCancelled):
        call.cancel()


def test_a_call_cancelled_by_an_earlier_call_in_the_same_advance_does_not_run() -> None:
    clock = Clock()
    seen: list[str] = []
    victim = clock.call_later(2, seen.append, "victim")
    clock.call_later(1, victim.cancel)
    clock.advance(3)
    assert seen == []


def test_a_call_that_has_run_cannot_be_cancelled_or_moved() -> None:
    clock = Clock()
    call = clock.call_later(1, lambda: None)
    clock.advance(1)
    with pytest.raises(AlreadyCalled):
        call.cancel()
    with pytest.raises(AlreadyCalled):
        call.reset(1)
    with pytest.raises(AlreadyCalled):
        call.delay(1)


def test_reset_moves_a_call_relative_to_the_current_time() -> None:
    clock = Clock()
    seen: list[str] = []
    call = clock.call_later(5, seen.append, "moved")
    clock.call_later(6, seen.append, "other")
    clock.advance(4)
    call.reset(3)  # now due at 7, after "other"
    assert call.get_time() == 7
    clock.advance(2.5)
    assert seen == ["other"]
    clock.advance(0.5)
    assert seen == ["other", "moved"]


def test_delay_pushes_a_call_further_away_and_negative_delay_brings_it_nearer() -> None:
    clock = Clock()
    seen: list[str] = []
    pushed = clock.call_later(1, seen.append, "pushed")
    pulled = clock.call_later(10, seen.append, "pulled")
    pushed.delay(4)
    pulled.delay(-8)
    assert [c.get_time() for c in clock.get_delayed_calls()] == [2, 5]
    clock.advance(2)
    assert seen == ["pulled"]
    clock.advance(3)
    assert seen == ["pulled", "pushed"]


def test_pump_advances_by_each_amount_in_turn() -> None:
    clock = Clock()
    seen: list[float] = []
    for t in (1, 2, 3):
        clock.call_later(t, lambda: seen.append(clock.seconds()))
    clock.pump([0.5, 1, 1, 1])
    assert seen == [1.5, 2.5, 3.5]
    assert clock.seconds() == 3.5


def test_an_exception_from_a_call_propagates_and_the_remaining_due_calls_run_later() -> None:
    clock = Clock()
    seen: list[str] = []

    def boom() -> None:
        raise KeyError("boom")

    clock.call_later(1, boom)
    clock.call_later(1, seen.append, "after")
    with pytest.raises(KeyError):
        clock.advance(1)
    assert seen == []
    clock.advance(0)
    assert seen == ["after"]


@pytest.mark.parametrize("amount", [-1, -0.0001, math.nan])
def test_advance_by_a_negative_or_nan_amount_is_refused(amount: float) -> None:
    clock = Clock()
    with pytest.raises(ValueError, match="cannot advance"):
        clock.advance(amount)
    assert clock.seconds() == 0


def test_call_later_refuses_something_that_is_not_callable() -> None:
    clock = Clock()
    with pytest.raises(TypeError, match="not callable"):
        clock.call_later(1, "not a function")  # type: ignore[arg-type]
    assert clock.get_delayed_calls() == []


def test_pump_refuses_a_negative_amount() -> None:
    clock = Clock()
    with pytest.raises(ValueError):
        clock.pump([1, -1])
    assert clock.seconds() == 1


@pytest.mark.parametrize("delay", [-1, math.nan])
def test_call_later_refuses_a_negative_or_nan_delay(delay: float) -> None:
    clock = Clock()
    with pytest.raises(ValueError, match="non-negative"):
        clock.call_later(delay, lambda: None)
    assert clock.get_delayed_calls() == []
