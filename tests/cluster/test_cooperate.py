"""Tests for cooperate/Cooperator: iterators run in slices on a Clock."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from plait.cluster.defer import Deferred
from plait.cluster.failure import Failure
from plait.cluster.reactor import Reactor
from plait.cluster.task import (
    Clock,
    Cooperator,
    NotPaused,
    SchedulerStopped,
    TaskDone,
    TaskFailed,
    TaskStopped,
    coiterate,
    cooperate,
)


def _outcome(d: Deferred[Any]) -> list[object]:
    seen: list[object] = []

    def keep(value: object) -> None:
        seen.append(value)

    d.add_both(keep)
    return seen


def _steps(clock: Clock, max_steps: int = 1) -> Cooperator:
    """A deterministic Cooperator: ``max_steps`` per tick, no wall-clock slice."""
    return Cooperator(clock, time_slice=None, max_steps=max_steps)


def _counting(log: list[str], name: str, n: int) -> Iterator[None]:
    for i in range(n):
        log.append(f"{name}{i}")
        yield None


def test_nothing_runs_until_the_clock_turns() -> None:
    clock = Clock()
    log: list[str] = []
    _steps(clock).cooperate(_counting(log, "a", 3))
    assert log == []
    assert len(clock.get_delayed_calls()) == 1


def test_each_tick_takes_at_most_max_steps() -> None:
    clock = Clock()
    log: list[str] = []
    _steps(clock, max_steps=2).cooperate(_counting(log, "a", 5))
    clock.advance(1)
    assert log == ["a0", "a1"]
    clock.advance(1)
    assert log == ["a0", "a1", "a2", "a3"]


def test_tasks_take_turns_round_robin_across_ticks() -> None:
    clock = Clock()
    log: list[str] = []
    coop = _steps(clock, max_steps=3)
    coop.cooperate(_counting(log, "a", 3))
    coop.cooperate(_counting(log, "b", 3))
    clock.advance(1)
    assert log == ["a0", "b0", "a1"]
    clock.advance(1)
    assert log == ["a0", "b0", "a1", "b1", "a2", "b2"]


def test_when_done_fires_with_the_iterator_once_it_is_exhausted() -> None:
    clock = Clock()
    log: list[str] = []
    iterator = _counting(log, "a", 2)
    task = _steps(clock, max_steps=10).cooperate(iterator)
    done = _outcome(task.when_done())
    clock.advance(1)
    assert done == [iterator]
    assert _outcome(task.when_done()) == [iterator]  # also after the end
    assert clock.get_delayed_calls() == []


def test_a_step_that_raises_fails_the_task() -> None:
    clock = Clock()

    def broken() -> Iterator[None]:
        yield None
        raise KeyError("step two")

    task = _steps(clock, max_steps=10).cooperate(broken())
    done = _outcome(task.when_done())
    clock.advance(1)
    [failure] = done
    assert isinstance(failure, Failure)
    assert failure.check(KeyError)
    with pytest.raises(TaskFailed):
        task.pause()


def test_a_yielded_deferred_pauses_the_task_until_it_fires() -> None:
    clock = Clock()
    log: list[str] = []
    gate: Deferred[None] = Deferred()

    def waits() -> Iterator[object]:
        log.append("before")
        yield gate
        log.append("after")

    coop = _steps(clock, max_steps=10)
    task = coop.cooperate(waits())
    other = coop.cooperate(_counting(log, "o", 3))
    clock.advance(1)
    assert log == ["before", "o0", "o1", "o2"]
    assert _outcome(other.when_done()) != []
    assert clock.get_delayed_calls() == []  # nothing runnable: no tick scheduled
    gate.callback(None)
    clock.advance(1)
    assert log[-1] == "after"
    assert _outcome(task.when_done()) != []


def test_a_yielded_deferred_that_fails_fails_the_task() -> None:
    clock = Clock()
    gate: Deferred[None] = Deferred()

    def waits() -> Iterator[object]:
        yield gate
        yield None

    task = _steps(clock).cooperate(waits())
    done = _outcome(task.when_done())
    clock.advance(1)
    gate.errback(Failure(OSError("lost")))
    [failure] = done
    assert isinstance(failure, Failure)
    assert failure.check(OSError)


def test_pause_and_resume_nest() -> None:
    clock = Clock()
    log: list[str] = []
    task = _steps(clock).cooperate(_counting(log, "a", 3))
    task.pause()
    task.pause()
    clock.advance(1)
    assert log == []
    task.resume()
    clock.advance(1)
    assert log == []
    task.resume()
    clock.advance(1)
    assert log == ["a0"]


@pytest.mark.parametrize("not_an_iterator", [[1, 2], 5, None])
def test_cooperate_refuses_what_is_not_an_iterator(not_an_iterator: Any) -> None:
    clock = Clock()
    with pytest.raises(TypeError, match="takes an iterator"):
        _steps(clock).cooperate(not_an_iterator)
    assert clock.get_delayed_calls() == []


def test_resume_when_not_paused_is_refused() -> None:
    task = _steps(Clock()).cooperate(iter(()))
    with pytest.raises(NotPaused):
        task.resume()


def test_stop_ends_the_task_with_task_stopped() -> None:
    clock = Clock()
    log: list[str] = []
    task = _steps(clock).cooperate(_counting(log, "a", 5))
    done = _outcome(task.when_done())
    clock.advance(1)
    task.stop()
    [failure] = done
    assert isinstance(failure, Failure)
    assert failure.check(TaskStopped)
    clock.advance(1)
    assert log == ["a0"]
    assert clock.get_delayed_calls() == []


def test_a_finished_task_refuses_stop_and_pause() -> None:
    clock = Clock()
    task = _steps(clock).cooperate(iter([None]))
    clock.pump([1, 1])
    with pytest.raises(TaskDone):
        task.stop()
    with pytest.raises(TaskDone):
        task.pause()


def test_stopping_a_task_waiting_on_a_deferred_ignores_that_deferred_later() -> None:
    clock = Clock()
    gate: Deferred[None] = Deferred()
    task = _steps(clock).cooperate(iter([gate, None]))
    done = _outcome(task.when_done())
    clock.advance(1)
    task.stop()
    gate.callback(None)
    clock.advance(1)
    assert len(done) == 1
    assert clock.get_delayed_calls() == []


def test_stopping_the_cooperator_ends_every_task_and_refuses_new_ones() -> None:
    clock = Clock()
    coop = _steps(clock)
    first = _outcome(coop.cooperate(iter([None, None])).when_done())
    coop.stop()
    assert not coop.running
    [failure] = first
    assert isinstance(failure, Failure)
    assert failure.check(SchedulerStopped)
    late = _outcome(coop.coiterate(iter([None])))
    [failure] = late
    assert isinstance(failure, Failure)
    assert failure.check(SchedulerStopped)
    assert clock.get_delayed_calls() == []


def test_stopping_the_cooperator_also_ends_paused_tasks() -> None:
    clock = Clock()
    coop = _steps(clock)
    paused = coop.cooperate(iter([None]))
    paused.pause()
    running = coop.cooperate(iter([None]))
    ends = [_outcome(paused.when_done()), _outcome(running.when_done())]
    coop.stop()
    for [failure] in ends:
        assert isinstance(failure, Failure)
        assert failure.check(SchedulerStopped)
    paused.resume()  # allowed: undoing a pause; the task stays finished
    clock.advance(1)
    assert clock.get_delayed_calls() == []


def test_a_cooperator_made_not_started_waits_for_start() -> None:
    clock = Clock()
    log: list[str] = []
    coop = Cooperator(clock, time_slice=None, max_steps=1, started=False)
    coop.cooperate(_counting(log, "a", 2))
    assert not coop.running
    clock.advance(1)
    assert log == []
    coop.start()
    clock.advance(1)
    assert log == ["a0"]


def test_coiterate_returns_a_deferred_of_the_end() -> None:
    clock = Clock()
    iterator = iter([None, None])
    done = _outcome(_steps(clock).coiterate(iterator))
    clock.pump([1, 1, 1])
    assert done == [iterator]


def test_the_default_time_slice_takes_at_least_one_step_per_tick() -> None:
    clock = Clock()
    log: list[str] = []
    Cooperator(clock).cooperate(_counting(log, "a", 3))
    clock.advance(1)
    assert log[:1] == ["a0"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"time_slice": None, "max_steps": None}, "time_slice, a max_steps or both"),
        ({"time_slice": 0}, "positive"),
        ({"time_slice": -1}, "positive"),
        ({"max_steps": 0}, "at least 1"),
    ],
)
def test_bad_cooperator_limits_are_refused(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Cooperator(Clock(), **kwargs)


def test_cooperate_runs_on_the_process_cooperator_and_reactor(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = Clock()
    monkeypatch.setattr("plait.cluster._react._reactor", clock)
    monkeypatch.setattr("plait.cluster._cooperate._global", None)
    log: list[str] = []
    task = cooperate(_counting(log, "a", 3))
    done = _outcome(coiterate(_counting(log, "b", 2)))
    clock.advance(1)  # the default 10 ms slice runs these tiny steps in one tick
    assert sorted(log) == ["a0", "a1", "a2", "b0", "b1"]
    assert done != []
    assert _outcome(task.when_done()) != []


async def test_cooperate_gives_the_real_reactor_back_between_ticks(reactor: Reactor) -> None:
    coop = Cooperator(reactor, time_slice=None, max_steps=1)
    log: list[str] = []

    def steps() -> Iterator[None]:
        log.append("a0")
        reactor.call_soon(log.append, "reactor turn")
        yield None
        log.append("a1")
        yield None

    await coop.coiterate(steps())
    # One step per tick: the reactor ran the callback between the two steps.
    assert log == ["a0", "reactor turn", "a1"]
