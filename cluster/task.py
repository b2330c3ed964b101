"""Time and tasks: a deterministic ``Clock``, repeating calls, delays, cooperation.

- ``Clock``: the ``IReactorTime`` every test passes where Plait code takes a clock;
  time moves only on ``advance``.
- ``LoopingCall``: call a function every N seconds (``with_count`` for the number of
  intervals elapsed).
- ``defer_later``: a Deferred that fires after a delay.
- ``cooperate`` / ``Cooperator``: run iterators a slice at a time without blocking
  the loop.

See docs/testing.md for Clock in tests.
"""

from plait.cluster._cooperate import (
    CooperativeTask,
    Cooperator,
    NotPaused,
    SchedulerError,
    SchedulerStopped,
    TaskDone,
    TaskFailed,
    TaskFinished,
    TaskStopped,
    coiterate,
    cooperate,
)
from plait.cluster._task import Clock, LoopingCall, defer_later

__all__ = [
    "Clock",
    "CooperativeTask",
    "Cooperator",
    "LoopingCall",
    "NotPaused",
    "SchedulerError",
    "SchedulerStopped",
    "TaskDone",
    "TaskFailed",
    "TaskFinished",
    "TaskStopped",
    "coiterate",
    "cooperate",
    "defer_later",
]
