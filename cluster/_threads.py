"""A bounded thread pool and the bridges between it and the reactor's thread.

Theory of operation:

- ``ThreadPool`` keeps one FIFO of work items under one condition variable. A worker
  thread loops: take the oldest item, run it with the lock released, repeat; when the
  queue is empty it waits on the condition (and counts as *idle*). Threads are made on
  demand: submitting work starts a new worker only when there are more queued items
  than idle workers and fewer than ``max_threads`` workers. ``min_threads`` workers are
  started by ``start()`` and kept.
- Workers are ordinary (non-daemon) threads. ``stop()`` lets them finish every item
  already queued, then joins them, so no work is cut off half-way; a pool that is
  never stopped by hand is stopped by ``threading``'s exit hook before the interpreter
  joins its threads (the hook ``concurrent.futures`` uses), so a forgotten pool never
  hangs the exit.
- ``adjust_size`` changes ``max_threads`` at once: surplus workers retire when they
  next look for work, so a busy worker finishes its item first.
- Each item runs in a copy of the submitter's ``contextvars`` context, as
  ``asyncio.to_thread`` does.
- The bridges: ``defer_to_thread_pool`` hands a result back to the loop thread with
  ``reactor.call_from_thread``; ``blocking_call_from_thread`` does the reverse and
  parks the calling worker on a ``threading.Event`` until the loop thread has an
  answer. A reactor stops its pool from its own thread (a ``shutdown`` trigger, or
  ``close()``), and ``stop()`` joins the workers: a worker parked in
  ``blocking_call_from_thread`` would then wait for a loop that waits for it. So a
  worker of a pool that is being stopped by the loop thread (or while the reactor is
  not running) gives up: its call is withdrawn if the loop has not taken it, and
  ``blocking_call_from_thread`` raises ``RuntimeError``. Each worker knows its pool
  through a thread-local, and ``stop()`` records the thread that is stopping it.
"""

from __future__ import annotations

import contextvars
import enum
import itertools
import logging
import threading
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from plait.cluster.defer import Deferred, ensure_deferred
from plait.cluster.failure import Failure

__all__ = [
    "ThreadPool",
    "ThreadPoolStatistics",
    "blocking_call_from_thread",
    "defer_to_thread",
    "defer_to_thread_pool",
]

_log = logging.getLogger(__name__)

#: ``pool``: the ThreadPool whose worker the current thread is (unset elsewhere).
_worker = threading.local()

#: Seconds between two checks, by a parked worker, that its pool is not being
#: stopped by the very thread it waits for.
_STOP_CHECK_INTERVAL = 0.05

T = TypeVar("T")

#: ``on_result(success, result_or_exception)``, called in the worker thread.
ResultCallback = Callable[[bool, Any], object]


@dataclass(frozen=True, slots=True, kw_only=True)
class ThreadPoolStatistics:
    """A snapshot of a ``ThreadPool`` (trio's ``statistics()`` convention).

    Attributes:
        workers: Worker threads alive, busy or idle.
        idle: Workers waiting for work.
        queued: Items submitted and not yet taken by a worker.
    """

    workers: int
    idle: int
    queued: int


class _State(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class _Work:
    """One submitted call, with the context it was submitted from."""

    __slots__ = ("args", "context", "f", "kwargs", "on_result")

    def __init__(
        self,
        on_result: ResultCallback | None,
        f: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> None:
        self.on_result = on_result
        self.f = f
        self.args = args
        self.kwargs = kwargs
        self.context = contextvars.copy_context()

    def run(self) -> None:
        try:
            result = self.context.run(self.f, *self.args, **self.kwargs)
        except BaseException as exc:  # every failure goes back to the submitter
            self._report(False, exc)
        else:
            self._report(True, result)

    def _report(self, success: bool, result: Any) -> None:
        if self.on_result is None:
            if not success:
                _log.error("unhandled error in thread pool call %r", self.f, exc_info=result)
            return
        try:
            self.on_result(success, result)
        except Exception:
            _log.exception("on_result callback %r raised", self.on_result)


def _validate_max(max_threads: object) -> int:
    if isinstance(max_threads, bool) or not isinstance(max_threads, int):
        raise TypeError(f"max_threads must be an int, not {type(max_threads).__name__}")
    if max_threads < 1:
        raise ValueError(f"max_threads must be at least 1, not {max_threads}")
    return max_threads


class ThreadPool:
    """A pool of up to ``max_threads`` worker threads, made on demand.

    Work submitted before ``start()`` waits in the queue and runs once the pool
    starts. ``stop()`` finishes every item already queued, then joins the workers;
    submitting after ``stop()`` raises ``RuntimeError`` until ``start()`` is called
    again. If ``stop()`` is called on a pool that never started, the queued items are
    not run: each ``on_result`` is told ``(False, RuntimeError(...))`` so nothing
    waits forever.

    Args:
        min_threads: Workers started by ``start()`` and kept while idle.
        max_threads: Most workers alive at once (``adjust_size`` changes it).
        name: Prefix of the worker threads' names (``name-1``, ``name-2``, ...).

    Raises:
        TypeError: a size is not an int.
        ValueError: ``min_threads < 0``, ``max_threads < 1`` or ``min_threads >
            max_threads``.

    Example:
        >>> pool = ThreadPool(max_threads=2, name="doc")
        >>> pool.start()
        >>> done = threading.Event()
        >>> pool.call_in_thread_with_callback(lambda ok, r: done.set(), pow, 2, 10)
        >>> done.wait(10)
        True
        >>> pool.stop()
        >>> pool.statistics()
        ThreadPoolStatistics(workers=0, idle=0, queued=0)
    """

    def __init__(self, min_threads: int = 0, max_threads: int = 10, name: str = "plait") -> None:
        if isinstance(min_threads, bool) or not isinstance(min_threads, int):
            raise TypeError(f"min_threads must be an int, not {type(min_threads).__name__}")
        if min_threads < 0:
            raise ValueError(f"min_threads must not be negative, not {min_threads}")
        max_threads = _validate_max(max_threads)
        if min_threads > max_threads:
            raise ValueError(f"min_threads ({min_threads}) exceeds max_threads ({max_threads})")
        self.name = name
        self._min = min_threads
        self._max = max_threads
        self._cond = threading.Condition(threading.Lock())
        self._queue: deque[_Work] = deque()
        self._workers: set[threading.Thread] = set()
        self._idle = 0
        self._state = _State.NEW
        self._names = itertools.count(1)
        self._exit_hook_registered = False
        self._stopper: int | None = None

    # ------------------------------------------------------------------ properties

    @property
    def min_threads(self) -> int:
        """Workers kept alive while idle."""
        return self._min

    @property
    def max_threads(self) -> int:
        """Most workers alive at once."""
        return self._max

    @property
    def started(self) -> bool:
        """True between ``start()`` and ``stop()``."""
        return self._state is _State.RUNNING

    def statistics(self) -> ThreadPoolStatistics:
        """Return how many workers exist, how many are idle and how many items wait."""
        with self._cond:
            return ThreadPoolStatistics(
                workers=len(self._workers), idle=self._idle, queued=len(self._queue)
            )

    # --------------------------------------------------------------------- control

    def start(self) -> None:
        """Start ``min_threads`` workers, and more for work already queued.

        Calling ``start()`` on a running pool does nothing; a stopped pool may be
        started again.
        """
        with self._cond:
            if self._state is _State.RUNNING:
                return
            self._state = _State.RUNNING
            wanted = max(self._min, min(len(self._queue), self._max))
            while len(self._workers) < wanted:
                self._start_worker()
        self._register_exit_hook()

    def stop(self) -> None:
        """Finish the queued work, then join every worker.

        Raises:
            RuntimeError: called from one of this pool's own workers (it would wait
                for itself).
        """
        dropped: list[_Work] = []
        with self._cond:
            if threading.current_thread() in self._workers:
                raise RuntimeError("ThreadPool.stop() called from one of its own workers")
            if self._state is _State.NEW:
                dropped = list(self._queue)
                self._queue.clear()
            self._state = _State.STOPPED
            self._stopper = threading.get_ident()
            self._cond.notify_all()
            workers = list(self._workers)
        for work in dropped:
            work._report(False, RuntimeError("ThreadPool stopped before it started"))
        try:
            for thread in workers:
                thread.join()
        finally:
            with self._cond:
                self._stopper = None

    def adjust_size(self, max_threads: int) -> None:
        """Set ``max_threads``; growing starts workers for queued work at once.

        Shrinking retires surplus workers as they finish their current item.

        Raises:
            TypeError: ``max_threads`` is not an int.
            ValueError: ``max_threads < 1`` or below ``min_threads``.
        """
        max_threads = _validate_max(max_threads)
        if max_threads < self._min:
            raise ValueError(f"max_threads ({max_threads}) is below min_threads ({self._min})")
        with self._cond:
            self._max = max_threads
            if self._state is _State.RUNNING:
                while len(self._queue) > self._idle and len(self._workers) < self._max:
                    self._start_worker()
            self._cond.notify_all()

    # ------------------------------------------------------------------ submission

    def call_in_thread(self, f: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Run ``f(*args, **kwargs)`` in a worker; an exception it raises is logged.

        Raises:
            RuntimeError: the pool was stopped.
        """
        self._submit(_Work(None, f, args, kwargs))

    def call_in_thread_with_callback(
        self,
        on_result: ResultCallback,
        f: Callable[..., object],
        *args: Any,
        **kwargs: Any,
    ) -> None:
        """Run ``f(*args, **kwargs)`` in a worker, then ``on_result`` in that worker.

        ``on_result(True, value)`` follows a return, ``on_result(False, exception)``
        a raise (the exception keeps its ``__traceback__``). An exception raised by
        ``on_result`` itself is logged.

        Raises:
            RuntimeError: the pool was stopped.
        """
        self._submit(_Work(on_result, f, args, kwargs))

    def _submit(self, work: _Work) -> _Work:
        with self._cond:
            if self._state is _State.STOPPED:
                raise RuntimeError(f"ThreadPool {self.name!r} is stopped")
            self._queue.append(work)
            if self._state is _State.RUNNING:
                if len(self._queue) > self._idle and len(self._workers) < self._max:
                    self._start_worker()
                else:
                    self._cond.notify()
        return work

    def _withdraw(self, work: _Work) -> bool:
        """Remove ``work`` from the queue if no worker took it yet; True if removed."""
        with self._cond:
            try:
                self._queue.remove(work)
            except ValueError:
                return False
            return True

    # --------------------------------------------------------------------- workers

    def _start_worker(self) -> None:
        # Called with the lock held.
        thread = threading.Thread(
            target=self._work_loop, name=f"{self.name}-{next(self._names)}", daemon=False
        )
        self._workers.add(thread)
        thread.start()

    def _work_loop(self) -> None:
        me = threading.current_thread()
        _worker.pool = self
        with self._cond:
            while True:
                if len(self._workers) > self._max:
                    break  # retired by adjust_size
                if self._queue:
                    work = self._queue.popleft()
                    self._cond.release()
                    try:
                        work.run()
                    finally:
                        del work
                        self._cond.acquire()
                    continue
                if self._state is _State.STOPPED:
                    break
                self._idle += 1
                try:
                    self._cond.wait()
                finally:
                    self._idle -= 1
            self._workers.discard(me)
            if self._queue:  # pass on a wake-up this retiring worker may have taken
                self._cond.notify()

    def _register_exit_hook(self) -> None:
        if self._exit_hook_registered:
            return
        register = getattr(threading, "_register_atexit", None)
        if register is None:
            return
        ref = weakref.ref(self)

        def stop_at_exit() -> None:
            pool = ref()
            if pool is not None:
                pool.stop()

        try:
            register(stop_at_exit)
        except RuntimeError:  # the interpreter is already shutting down
            _log.debug("interpreter shutting down; %r has no exit hook", self)
            return
        self._exit_hook_registered = True

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<ThreadPool {self.name!r} {self._state.value} workers={stats.workers} "
            f"idle={stats.idle} queued={stats.queued} max={self._max}>"
        )


# ------------------------------------------------------------------- the bridges


def defer_to_thread_pool(
    reactor: Any, pool: ThreadPool, f: Callable[..., T], *args: Any, **kwargs: Any
) -> Deferred[T]:
    """Run ``f(*args, **kwargs)`` in ``pool``; a Deferred of its result.

    The Deferred fires in the reactor's thread (through ``reactor.call_from_thread``).
    Cancelling it before a worker picks the call up removes the call from the queue;
    once it runs, cancelling only discards the result.

    Args:
        reactor: Anything with a thread-safe ``call_from_thread``.
        pool: The pool that runs ``f``.
        f: The blocking callable.

    Returns:
        A Deferred that fires with ``f``'s return value, or errbacks with a
        ``Failure`` of the exception ``f`` raised (with the worker's traceback), with
        ``RuntimeError`` if the pool is stopped, or with ``CancelledError``.
    """
    delivery: _Delivery[T] = _Delivery(reactor, pool)
    try:
        delivery.work = pool._submit(_Work(delivery.on_result, f, args, kwargs))
    except RuntimeError as exc:
        delivery.deferred.errback(Failure(exc))
    return delivery.deferred


class _Delivery(Generic[T]):
    """Carries one pool result back into the loop thread, into one Deferred."""

    __slots__ = ("deferred", "pool", "reactor", "work")

    def __init__(self, reactor: Any, pool: ThreadPool) -> None:
        self.reactor = reactor
        self.pool = pool
        self.work: _Work | None = None
        self.deferred: Deferred[T] = Deferred(self.cancel)

    def cancel(self, d: Deferred[T]) -> None:
        if self.work is not None:
            self.pool._withdraw(self.work)

    def on_result(self, success: bool, result: Any) -> None:  # in the worker thread
        self.reactor.call_from_thread(self.deliver, success, result)

    def deliver(self, success: bool, result: Any) -> None:  # in the loop thread
        self.work = None
        d = self.deferred
        if d.called:  # cancelled meanwhile: nobody wants the result
            return
        if success:
            d.callback(result)
        else:
            d.errback(Failure(result))


def defer_to_thread(f: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
    """Run ``f(*args, **kwargs)`` in the global reactor's thread pool.

    Returns:
        A Deferred that fires, in the reactor's thread, with ``f``'s result, or
        errbacks with a ``Failure`` of what ``f`` raised (see
        ``defer_to_thread_pool``).
    """
    from plait.cluster.reactor import get_reactor

    reactor = get_reactor()
    return defer_to_thread_pool(reactor, reactor.get_thread_pool(), f, *args, **kwargs)


def blocking_call_from_thread(
    reactor: Any, f: Callable[..., Any], *args: Any, **kwargs: Any
) -> Any:
    """From a non-loop thread, run ``f`` in the reactor's thread and wait for it.

    ``f`` may return a plain value, a Deferred or a coroutine; the caller blocks until
    that value (or the Deferred's or coroutine's result) is available. There is no
    time limit: if the reactor is not running, this waits until it runs, except in
    a worker of a ``ThreadPool`` that is being stopped by the reactor's thread or
    while the reactor is not running (the reactor's own pool at shutdown or
    ``close()``): ``stop()`` waits for the worker, so the call is withdrawn instead.

    Args:
        reactor: The reactor whose thread runs ``f``.
        f: The callable to run in the loop thread.

    Returns:
        The result of ``f``, after awaiting it if it is a Deferred or coroutine.

    Raises:
        RuntimeError: called from the reactor's own thread (it would wait for itself),
            or the worker's pool is being stopped by the reactor's thread (see above).
        BaseException: whatever ``f`` raised, or the exception its Deferred failed
            with.
    """
    if _in_loop_thread(reactor):
        raise RuntimeError("blocking_call_from_thread called from the reactor's own thread")

    done = threading.Event()
    outcome: list[Any] = []
    lock = threading.Lock()
    withdrawn = [False]

    def finish(result: Any) -> None:
        outcome.append(result)
        done.set()

    def run_in_loop() -> None:
        with lock:
            if withdrawn[0]:
                return
        try:
            result = f(*args, **kwargs)
        except BaseException as exc:  # re-raised in the waiting thread
            finish(Failure(exc))
            return
        if hasattr(result, "add_both") or hasattr(result, "__await__"):
            d = ensure_deferred(result)
            d.add_both(finish)
        else:
            finish(result)

    reactor.call_from_thread(run_in_loop)
    pool = getattr(_worker, "pool", None)
    if pool is None:
        done.wait()
    else:
        while not done.wait(_STOP_CHECK_INTERVAL):
            if _stopped_by_the_loop(reactor, pool):
                with lock:
                    withdrawn[0] = True
                if not done.is_set():
                    raise RuntimeError(
                        "blocking_call_from_thread: the reactor is stopping the thread pool "
                        "this worker belongs to, so it would never answer")
    result = outcome[0]
    if isinstance(result, Failure):
        result.raise_exception()
    return result


def _stopped_by_the_loop(reactor: Any, pool: ThreadPool) -> bool:
    """True when ``pool`` is being stopped by ``reactor``'s loop thread, or while
    ``reactor`` is not running: either way nothing will run a call from this worker
    before ``stop()`` (which waits for this worker) returns."""
    stopper = pool._stopper
    if stopper is None:
        return False
    loop_thread = getattr(reactor, "_thread_id", None)
    return loop_thread is None or loop_thread == stopper


def _in_loop_thread(reactor: Any) -> bool:
    """True when the current thread is the one running ``reactor``'s loop."""
    in_reactor_thread = getattr(reactor, "in_reactor_thread", None)
    return callable(in_reactor_thread) and bool(in_reactor_thread())
