"""Cooperative multitasking over iterators: ``Cooperator`` and ``cooperate``.

Theory of operation: a task is an iterator; each ``next()`` is one step of work.
A ``Cooperator`` keeps the list of runnable tasks and, once per *tick*, takes steps
round-robin across them until the tick's budget is spent (a wall-clock time slice,
a number of steps, or both), then schedules the next tick on its clock and returns
to the loop so that I/O and timers run in between. The round-robin position
survives from one tick to the next, so every task gets its turn.

A step that yields a Deferred pauses its task until that Deferred fires; a failure
ends the task. A task leaves the runnable list while paused (by ``pause`` or by a
Deferred) and once finished (done, failed or stopped); with no runnable task the
Cooperator schedules nothing.

Where ticks are scheduled: on a reactor (a clock that provides ``IReactorCore``) with
``call_soon``, which runs on the loop's next iteration, after it has polled for
I/O. On a bare ``IReactorTime`` such as ``Clock`` with ``call_later(_TICK_DELAY)``:
not 0, because a call scheduled for "now" during ``Clock.advance`` runs in the same
``advance``; this way each ``advance`` runs exactly one tick. (On the native reactor
a tiny positive delay would cost a whole millisecond per tick: epoll rounds its
timeout up to milliseconds.)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from typing import Any, Protocol

from plait.cluster._defer import Deferred
from plait.cluster._failure import Failure
from plait.cluster.interfaces import IReactorCore, IReactorTime

__all__ = [
    "CooperativeTask",
    "Cooperator",
    "NotPaused",
    "SchedulerError",
    "SchedulerStopped",
    "TaskDone",
    "TaskFailed",
    "TaskFinished",
    "TaskStopped",
    "coiterate",
    "cooperate",
]

log = logging.getLogger(__name__)

_TICK_DELAY = 0.00001


class _Cancellable(Protocol):
    def cancel(self) -> None: ...


class SchedulerError(Exception):
    """Base of the errors of a Cooperator and its tasks."""


class SchedulerStopped(SchedulerError):
    """The Cooperator was stopped: its tasks end and it accepts no new ones."""


class TaskFinished(SchedulerError):
    """The task is finished; it cannot be paused, resumed or stopped any more."""


class TaskDone(TaskFinished):
    """The task's iterator is exhausted."""


class TaskStopped(TaskFinished):
    """The task was stopped with ``stop``."""


class TaskFailed(TaskFinished):
    """The task's iterator raised, or a Deferred it yielded failed."""


class NotPaused(SchedulerError):
    """``resume`` was called on a task that is not paused."""


class CooperativeTask:
    """One iterator being run by a ``Cooperator`` (made by ``Cooperator.cooperate``).

    Its states: running, paused (``pause`` or waiting for a yielded Deferred), and
    finished (done, failed or stopped).
    """

    def __init__(self, iterator: Iterator[object], cooperator: Cooperator) -> None:
        if not isinstance(iterator, Iterator):
            raise TypeError(
                f"cooperate() takes an iterator (a generator, or iter(...)), not {iterator!r}"
            )
        self._iterator = iterator
        self._cooperator = cooperator
        self._waiters: list[Deferred[Any]] = []
        self._pause_count = 0
        self._finished: TaskFinished | SchedulerStopped | None = None
        self._result: object = None
        cooperator._members[self] = None
        cooperator._add_task(self)

    def when_done(self) -> Deferred[Any]:
        """A Deferred of the end of the task.

        Returns:
            A new Deferred (one per call) that fires with the iterator once it is
            exhausted, or errbacks with the failure that ended the task:
            ``TaskStopped`` after ``stop``, ``SchedulerStopped`` after the
            Cooperator stopped, or what the iterator raised or a yielded Deferred
            failed with.
        """
        deferred: Deferred[Any] = Deferred()
        if self._finished is None:
            self._waiters.append(deferred)
        else:
            _fire(deferred, self._result)
        return deferred

    def pause(self) -> None:
        """Take no more steps until ``resume``; pauses nest (two need two resumes).

        Raises:
            TaskFinished: the task is finished (the exception says how it ended).
            SchedulerStopped: the Cooperator was stopped.
        """
        self._check_not_finished()
        self._pause_count += 1
        if self._pause_count == 1:
            self._cooperator._remove_task(self)

    def resume(self) -> None:
        """Undo one ``pause``; steps start again when every pause is undone.

        Raises:
            NotPaused: the task is not paused.
        """
        if self._pause_count == 0:
            raise NotPaused(f"{self!r} is not paused")
        self._pause_count -= 1
        if self._pause_count == 0 and self._finished is None:
            self._cooperator._add_task(self)

    def stop(self) -> None:
        """End the task now; ``when_done`` Deferreds errback with ``TaskStopped``.

        Raises:
            TaskFinished: the task is finished already.
            SchedulerStopped: the Cooperator was stopped.
        """
        self._check_not_finished()
        stopped = TaskStopped(f"{self!r} was stopped")
        self._complete(stopped, Failure(stopped))

    def _check_not_finished(self) -> None:
        if self._finished is not None:
            raise self._finished

    def _complete(self, state: TaskFinished | SchedulerStopped, result: object) -> None:
        self._finished = state
        self._result = result
        self._cooperator._members.pop(self, None)
        if self._pause_count == 0:
            self._cooperator._remove_task(self)
        waiters, self._waiters = self._waiters, []
        for deferred in waiters:
            _fire(deferred, result)

    def _step(self) -> None:
        try:
            result = next(self._iterator)
        except StopIteration:
            self._complete(TaskDone(f"{self!r} is done"), self._iterator)
        except Exception as exc:
            self._complete(TaskFailed(f"{self!r} failed"), Failure(exc))
        else:
            if isinstance(result, Deferred):
                self.pause()
                result.add_callbacks(self._waited, self._wait_failed)

    def _waited(self, result: object) -> None:
        self.resume()

    def _wait_failed(self, failure: Failure) -> None:
        if self._finished is None:
            self._complete(TaskFailed(f"{self!r} failed"), failure)
        else:
            log.warning(
                "%r: a Deferred yielded before the task ended failed: %s",
                self,
                failure.get_traceback(),
            )
        self.resume()

    def __repr__(self) -> str:
        if self._finished is not None:
            state = type(self._finished).__name__
        elif self._pause_count:
            state = "paused"
        else:
            state = "running"
        return f"<CooperativeTask {self._iterator!r} {state}>"


def _fire(deferred: Deferred[Any], result: object) -> None:
    if isinstance(result, Failure):
        deferred.errback(result)
    else:
        deferred.callback(result)


class Cooperator:
    """Runs iterators a few steps at a time, giving the loop back in between.

    Args:
        clock: Where ticks are scheduled; by default the process's reactor
            (looked up when the first tick is scheduled). Tests pass a ``Clock``.
        time_slice: Wall-clock seconds one tick may spend taking steps (at least
            one step is taken per tick), or ``None`` for no time limit.
        max_steps: Most steps one tick takes, or ``None`` for no limit. Tests
            driven by a ``Clock`` set this and ``time_slice=None`` to get the
            same steps on every run.
        started: Start ticking at once; with ``False`` nothing runs until ``start``.

    Raises:
        ValueError: ``time_slice`` is not positive, ``max_steps`` is below 1, or
            both are ``None`` (a tick would never give the loop back).

    Example:
        >>> from plait.cluster.task import Clock
        >>> clock = Clock()
        >>> coop = Cooperator(clock, time_slice=None, max_steps=2)
        >>> seen = []
        >>> task = coop.cooperate(seen.append(n) for n in range(5))
        >>> clock.advance(1); seen
        [0, 1]
        >>> clock.pump([1, 1]); seen
        [0, 1, 2, 3, 4]
    """

    def __init__(
        self,
        clock: IReactorTime | None = None,
        *,
        time_slice: float | None = 0.01,
        max_steps: int | None = None,
        started: bool = True,
    ) -> None:
        if time_slice is None and max_steps is None:
            raise ValueError("a Cooperator needs a time_slice, a max_steps or both")
        if time_slice is not None and not time_slice > 0:
            raise ValueError(f"time_slice must be a positive number of seconds, not {time_slice!r}")
        if max_steps is not None and max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, not {max_steps!r}")
        self._clock = clock
        self._time_slice = time_slice
        self._max_steps = max_steps
        self._tasks: list[CooperativeTask] = []  # runnable: not paused, not finished
        self._members: dict[CooperativeTask, None] = {}  # every unfinished task, in order
        self._round: Iterator[CooperativeTask] = iter(())
        self._tick_call: _Cancellable | None = None
        self._started = started
        self._stopped = False

    @property
    def running(self) -> bool:
        """True once started and until stopped."""
        return self._started and not self._stopped

    def cooperate(self, iterator: Iterator[object]) -> CooperativeTask:
        """Run ``iterator`` as a task of this Cooperator.

        Returns:
            The task, to pause, resume, stop or wait for with ``when_done``. On a
            stopped Cooperator the task is already finished with
            ``SchedulerStopped``.

        Raises:
            TypeError: ``iterator`` is not an iterator (a list is an iterable:
                pass ``iter(a_list)``).
        """
        return CooperativeTask(iterator, self)

    def coiterate(self, iterator: Iterator[object]) -> Deferred[Any]:
        """Run ``iterator`` as a task; a Deferred of its end (``task.when_done()``)."""
        return self.cooperate(iterator).when_done()

    def start(self) -> None:
        """Start ticking (for a Cooperator made with ``started=False``)."""
        self._started = True
        self._schedule()

    def stop(self) -> None:
        """Stop for good: every task ends with ``SchedulerStopped``, new ones too."""
        self._stopped = True
        for task in list(self._members):
            stopped = SchedulerStopped(f"{self!r} was stopped")
            task._complete(stopped, Failure(stopped))
        if self._tick_call is not None:
            self._tick_call.cancel()
            self._tick_call = None

    def _add_task(self, task: CooperativeTask) -> None:
        self._tasks.append(task)
        if self._stopped:
            stopped = SchedulerStopped(f"{self!r} was stopped")
            task._complete(stopped, Failure(stopped))
        else:
            self._schedule()

    def _remove_task(self, task: CooperativeTask) -> None:
        self._tasks.remove(task)
        if not self._tasks and self._tick_call is not None:
            self._tick_call.cancel()
            self._tick_call = None

    def _schedule(self) -> None:
        if self._started and not self._stopped and self._tick_call is None and self._tasks:
            clock = self._get_clock()
            if IReactorCore.providedBy(clock):
                self._tick_call = clock.call_soon(self._tick)
            else:
                self._tick_call = clock.call_later(_TICK_DELAY, self._tick)

    def _get_clock(self) -> IReactorTime:
        if self._clock is None:
            from plait.cluster.reactor import get_reactor

            self._clock = get_reactor()
        return self._clock

    def _tick(self) -> None:
        self._tick_call = None
        steps = 0
        deadline = None if self._time_slice is None else time.monotonic() + self._time_slice
        while self._tasks:
            for task in self._round:
                task._step()
                steps += 1
                if self._max_steps is not None and steps >= self._max_steps:
                    self._schedule()
                    return
                if deadline is not None and time.monotonic() >= deadline:
                    self._schedule()
                    return
            self._round = iter(self._tasks)
        self._schedule()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped" if self._stopped else "not started"
        return f"<Cooperator {state} with {len(self._tasks)} tasks>"


_global: Cooperator | None = None


def _global_cooperator() -> Cooperator:
    global _global
    if _global is None:
        _global = Cooperator()
    return _global


def cooperate(iterator: Iterator[object]) -> CooperativeTask:
    """Run ``iterator`` on the process's Cooperator (ticking on the global reactor).

    Returns:
        The ``CooperativeTask``; ``task.when_done()`` is a Deferred of its end.
    """
    return _global_cooperator().cooperate(iterator)


def coiterate(iterator: Iterator[object]) -> Deferred[Any]:
    """Run ``iterator`` on the process's Cooperator; a Deferred of its end."""
    return _global_cooperator().coiterate(iterator)
