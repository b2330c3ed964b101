"""ZeroMQ contexts for the bus, and the scheduling policy of their I/O threads.

Theory of operation. Every message a bus sends wakes its context's I/O thread, and
how Linux schedules that thread decides much of the bus's speed:

* Under the default policy (``SCHED_OTHER``) a woken thread preempts the thread
  that woke it. For calls that come one at a time this is what we want: the I/O
  thread takes the message out at once, on the CPU whose caches hold it, rather
  than waiting for the reactor thread to finish its turn or for an idle CPU to
  wake up (slow, above all in a virtual machine).
* Under ``SCHED_BATCH`` a woken thread never preempts; it runs when a CPU is free,
  typically once the reactor thread sleeps in ``epoll``, and carries a whole burst
  of sends at once. Under a stream of messages this is far better: with the default
  policy the reactor thread loses the CPU after nearly every send.

So by default (``adaptive``) the policy follows the traffic. Every link's pump
reports how many messages it moved (received plus sent) to its context's
``IoThreads``; a pump that moved ``BUSY`` or more raises a score, any other lowers
it (within ``0..CAP``). When the score reaches ``UP`` the I/O threads switch to
``SCHED_BATCH``; back at 0, to ``SCHED_OTHER``. One call at a time moves two
messages per pump (a call in and its answer out, or an answer in and the next call
out); a hundred calls in flight move dozens. The hysteresis keeps a mixed load from
flapping, and a switch is one system call per I/O thread, made only when the shape
of the traffic changes. Measured figures are in docs/rpc.md.

The I/O threads are found by name: each context the bus makes gets a numeric
thread-name prefix of its own (``ZMQ_THREAD_NAME_PREFIX``), so its I/O threads are
called ``<prefix>/ZMQbg/IO/<n>`` in ``/proc/self/task``. A thread names itself as
it starts, so they are looked up at the first switch, not when the context is
made. Where any of this is missing (not Linux, a libzmq older than 4.3, a refused
system call) the policy is left alone, as under ``other``.

``PLAIT_BUS_IO_SCHED`` in the environment chooses otherwise: ``batch`` keeps the I/O
threads under ``SCHED_BATCH`` throughout (libzmq's ``ZMQ_THREAD_SCHED_POLICY``,
applied as the thread starts; libzmq aborts the process if it cannot apply a
policy, so it is first tried on a throwaway thread), and ``other`` never touches
them.
"""

from __future__ import annotations

import itertools
import logging
import os
import threading
from typing import Any

import zmq

__all__ = [
    "BUSY",
    "CAP",
    "MODES",
    "SCHED_VARIABLE",
    "UP",
    "IoThreads",
    "bus_context",
    "io_sched_mode",
    "new_context",
]

log = logging.getLogger("plait.cluster.rpc")

SCHED_VARIABLE = "PLAIT_BUS_IO_SCHED"
MODES = ("adaptive", "batch", "other")
BUSY = 4
UP = 8
CAP = 16
_TASKS = "/proc/self/task"

_shared_context: tuple[int, zmq.Context[Any], IoThreads | None] | None = None
_batch_allowed: bool | None = None
_prefixes = itertools.count(1)


def io_sched_mode() -> str:
    """``adaptive``, ``batch`` or ``other``, from ``PLAIT_BUS_IO_SCHED`` (default adaptive)."""
    value = os.environ.get(SCHED_VARIABLE, "") or "adaptive"
    if value not in MODES:
        log.warning(
            "%s=%r is not one of %s; using 'adaptive'", SCHED_VARIABLE, value, ", ".join(MODES)
        )
        return "adaptive"
    return value


class IoThreads:
    """The I/O threads of one context; switches their policy with the size of bursts.

    Args:
        prefix: The context's thread-name prefix.
        tasks: Where the process's threads are listed.
    """

    def __init__(self, prefix: int, tasks: str = _TASKS) -> None:
        self.prefix = prefix
        self.batch = False
        self.enabled = True
        self.switches = 0
        self._tasks = tasks
        self._score = 0
        self._tids: list[int] = []

    def observe(self, moved: int) -> None:
        """A pump moved ``moved`` messages (the hot path: a few integer operations)."""
        if moved >= BUSY:
            if self._score < CAP:
                self._score += 1
                if self._score >= UP and not self.batch:
                    self._switch(True)
        elif self._score:
            self._score -= 1
            if not self._score and self.batch:
                self._switch(False)

    def _switch(self, batch: bool) -> None:
        if not self.enabled:
            return
        policy = os.SCHED_BATCH if batch else os.SCHED_OTHER
        for _ in range(2):
            if not self._tids:
                self._tids = self._find()
                if not self._tids:
                    self._give_up(f"no thread is named {self.prefix}/ZMQbg/IO/*")
                    return
            try:
                for tid in self._tids:
                    os.sched_setscheduler(tid, policy, os.sched_param(0))
            except ProcessLookupError:
                self._tids = []  # a thread ended: look them up again
                continue
            except OSError as exc:
                self._give_up(f"the system refused: {exc}")
                return
            self.batch = batch
            self.switches += 1
            log.debug("bus I/O threads now under %s", "SCHED_BATCH" if batch else "SCHED_OTHER")
            return
        self._give_up("the I/O threads keep ending")

    def _give_up(self, why: str) -> None:
        self.enabled = False
        log.debug("adaptive scheduling of the bus's I/O threads is off: %s", why)

    def _find(self) -> list[int]:
        marker = f"{self.prefix}/ZMQbg/IO/"
        try:
            tids = os.listdir(self._tasks)
        except OSError:
            log.debug("cannot list %s", self._tasks, exc_info=True)
            return []
        found = []
        for tid in tids:
            try:
                with open(f"{self._tasks}/{tid}/comm") as comm:
                    name = comm.read().strip()
            except OSError:  # the thread ended while we looked
                continue
            if name.startswith(marker):
                found.append(int(tid))
        return sorted(found)


def _can_batch() -> bool:
    """Whether a thread of this process may switch itself to ``SCHED_BATCH``.

    Tried once, on a throwaway thread (libzmq asserts on failure, so it is never
    asked for a policy this process cannot set).
    """
    global _batch_allowed
    if _batch_allowed is None:
        policy = getattr(os, "SCHED_BATCH", None)
        outcome: list[bool] = []

        def probe() -> None:
            try:
                os.sched_setscheduler(0, policy, os.sched_param(0))  # type: ignore[arg-type]
            except (OSError, AttributeError):
                log.debug("SCHED_BATCH is not available here", exc_info=True)
                outcome.append(False)
            else:
                outcome.append(True)

        if policy is not None and zmq.zmq_version_info() >= (4, 2):
            thread = threading.Thread(target=probe, name="plait-sched-probe", daemon=True)
            thread.start()
            thread.join()
        _batch_allowed = bool(outcome and outcome[0])
    return _batch_allowed


def _can_adapt() -> bool:
    return (
        hasattr(os, "SCHED_BATCH")
        and hasattr(os, "sched_setscheduler")
        and hasattr(zmq, "THREAD_NAME_PREFIX")
        and zmq.zmq_version_info() >= (4, 3)
        and os.path.isdir(_TASKS)
    )


def new_context() -> tuple[zmq.Context[Any], IoThreads | None]:
    """A ZeroMQ context set up for the mode in effect, with its ``IoThreads`` when adaptive."""
    context: zmq.Context[Any] = zmq.Context()
    mode = io_sched_mode()
    if mode == "batch" and _can_batch():
        context.set(zmq.THREAD_SCHED_POLICY, os.SCHED_BATCH)
    elif mode == "adaptive" and _can_adapt():
        prefix = next(_prefixes) % 10_000  # "9999/ZMQbg/IO/0" fills a thread's name
        try:
            context.set(zmq.THREAD_NAME_PREFIX, prefix)
        except zmq.ZMQError:
            log.debug("this libzmq refuses a thread name prefix", exc_info=True)
        else:
            return context, IoThreads(prefix)
    return context, None


def bus_context() -> tuple[zmq.Context[Any], IoThreads | None]:
    """The context the buses of this process share (one per process, after fork too)."""
    global _shared_context
    pid = os.getpid()
    if _shared_context is None or _shared_context[0] != pid or _shared_context[1].closed:
        _shared_context = (pid, *new_context())
    return _shared_context[1], _shared_context[2]
