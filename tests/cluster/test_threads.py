"""ThreadPool, defer_to_thread_pool and blocking_call_from_thread.

The pool is tested alone (no reactor); the bridges run against a small fake reactor
whose ``call_from_thread`` queue the test thread drains, standing in for the loop.
Every wait is bounded; nothing sleeps for a fixed time.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import Any

import pytest

import plait.cluster.reactor as reactor_module
from plait.cluster.defer import CancelledError, Deferred, fail
from plait.cluster.failure import Failure
from plait.cluster.reactor import Reactor
from plait.cluster.threads import (
    ThreadPool,
    ThreadPoolStatistics,
    blocking_call_from_thread,
    defer_to_thread,
    defer_to_thread_pool,
)

WAIT = 10.0  # seconds; the bound on every wait in this file


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Poll ``predicate`` until it holds, failing the test after ``WAIT`` seconds."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.001)


class Results:
    """An ``on_result`` callback that records each outcome and the thread it ran in."""

    def __init__(self) -> None:
        self.items: queue.Queue[tuple[bool, Any, str]] = queue.Queue()

    def __call__(self, success: bool, result: Any) -> None:
        self.items.put((success, result, threading.current_thread().name))

    def get(self) -> tuple[bool, Any, str]:
        return self.items.get(timeout=WAIT)


@pytest.fixture
def pool() -> Iterator[ThreadPool]:
    p = ThreadPool(max_threads=3, name="test-pool")
    yield p
    p.stop()


def blocker(started: threading.Semaphore, release: threading.Event) -> None:
    started.release()
    assert release.wait(WAIT)


# ------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"min_threads": -1}, ValueError),
        ({"max_threads": 0}, ValueError),
        ({"min_threads": 4, "max_threads": 3}, ValueError),
        ({"max_threads": 2.5}, TypeError),
        ({"min_threads": "1"}, TypeError),
        ({"max_threads": True}, TypeError),
    ],
)
def test_bad_sizes_are_refused(kwargs: dict[str, Any], error: type[Exception]) -> None:
    with pytest.raises(error):
        ThreadPool(**kwargs)


def test_a_new_pool_has_no_workers_and_reports_its_sizes() -> None:
    p = ThreadPool(min_threads=1, max_threads=4, name="x")
    assert (p.min_threads, p.max_threads, p.name, p.started) == (1, 4, "x", False)
    assert p.statistics() == ThreadPoolStatistics(workers=0, idle=0, queued=0)
    assert "x" in repr(p)


def test_statistics_are_a_frozen_snapshot(pool: ThreadPool) -> None:
    stats = pool.statistics()
    with pytest.raises(AttributeError):
        stats.workers = 5  # type: ignore[misc]


# ----------------------------------------------------------------------- running


def test_call_in_thread_with_callback_reports_the_return_value_from_a_worker(
    pool: ThreadPool,
) -> None:
    pool.start()
    results = Results()
    pool.call_in_thread_with_callback(results, lambda a, b=0: a + b, 2, b=3)
    success, value, thread_name = results.get()
    assert (success, value) == (True, 5)
    assert thread_name.startswith("test-pool-")


def test_call_in_thread_with_callback_reports_the_exception_with_its_traceback(
    pool: ThreadPool,
) -> None:
    def boom() -> None:
        raise KeyError("nope")

    pool.start()
    results = Results()
    pool.call_in_thread_with_callback(results, boom)
    success, exc, _ = results.get()
    assert success is False
    assert isinstance(exc, KeyError)
    assert exc.__traceback__ is not None
    frames = []
    tb: TracebackType | None = exc.__traceback__
    while tb is not None:
        frames.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    assert "boom" in frames


def test_work_submitted_before_start_waits_and_runs_once_started() -> None:
    p = ThreadPool(name="late")
    results = Results()
    p.call_in_thread_with_callback(results, lambda: "ran")
    assert p.statistics() == ThreadPoolStatistics(workers=0, idle=0, queued=1)
    try:
        p.start()
        assert results.get()[:2] == (True, "ran")
    finally:
        p.stop()


def test_an_exception_in_call_in_thread_is_logged(
    pool: ThreadPool, caplog: pytest.LogCaptureFixture
) -> None:
    done = threading.Event()

    def boom() -> None:
        try:
            raise ValueError("logged please")
        finally:
            done.set()

    pool.start()
    with caplog.at_level(logging.ERROR, logger="plait.cluster._threads"):
        pool.call_in_thread(boom)
        assert done.wait(WAIT)
        pool.stop()  # joins the worker, so the log record is written
    errors = [r.exc_info[1] for r in caplog.records if r.exc_info is not None]
    assert [str(e) for e in errors] == ["logged please"]


def test_an_exception_in_on_result_is_logged_and_the_worker_survives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def bad_callback(success: bool, result: Any) -> None:
        raise RuntimeError("callback broke")

    pool = ThreadPool(max_threads=1, name="one")
    pool.start()
    results = Results()
    try:
        with caplog.at_level(logging.ERROR, logger="plait.cluster._threads"):
            pool.call_in_thread_with_callback(bad_callback, int)
            pool.call_in_thread_with_callback(results, lambda: "still alive")
            assert results.get()[:2] == (True, "still alive")
    finally:
        pool.stop()
    assert any(
        r.exc_info is not None and isinstance(r.exc_info[1], RuntimeError) for r in caplog.records
    )


def test_each_call_runs_in_a_copy_of_the_submitters_context(pool: ThreadPool) -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    pool.start()
    results = Results()
    token = var.set("from submitter")
    try:
        pool.call_in_thread_with_callback(results, var.get)
    finally:
        var.reset(token)
    pool.call_in_thread_with_callback(results, var.get)
    assert results.get()[1] == "from submitter"
    assert results.get()[1] == "unset"


# -------------------------------------------------------------- sizing and reuse


def test_threads_are_made_on_demand_up_to_max_threads_and_the_rest_queue(
    pool: ThreadPool,
) -> None:
    started, release = threading.Semaphore(0), threading.Event()
    pool.start()
    assert pool.statistics().workers == 0
    try:
        for _ in range(5):
            pool.call_in_thread(blocker, started, release)
        for _ in range(3):
            assert started.acquire(timeout=WAIT)
        assert pool.statistics() == ThreadPoolStatistics(workers=3, idle=0, queued=2)
    finally:
        release.set()
    for _ in range(2):
        assert started.acquire(timeout=WAIT)
    wait_for(lambda: pool.statistics() == ThreadPoolStatistics(workers=3, idle=3, queued=0),
             "three idle workers")


def test_an_idle_worker_is_reused_instead_of_starting_another(pool: ThreadPool) -> None:
    pool.start()
    results = Results()
    for n in range(4):
        pool.call_in_thread_with_callback(results, lambda: None)
        results.get()
        wait_for(lambda: pool.statistics().idle == 1, "the worker to go idle")
        assert pool.statistics().workers == 1, f"round {n}"


def test_start_makes_min_threads_workers_and_keeps_them_idle() -> None:
    p = ThreadPool(min_threads=2, max_threads=4, name="min")
    try:
        p.start()
        wait_for(lambda: p.statistics().idle == 2, "two idle workers")
        assert p.statistics().workers == 2
        assert p.started
    finally:
        p.stop()


def test_start_twice_does_not_add_workers() -> None:
    p = ThreadPool(min_threads=1, max_threads=4, name="twice")
    try:
        p.start()
        p.start()
        assert p.statistics().workers == 1
    finally:
        p.stop()


def test_workers_are_not_daemon_threads_and_carry_the_pool_name(pool: ThreadPool) -> None:
    pool.start()
    results: queue.Queue[threading.Thread] = queue.Queue()
    pool.call_in_thread(lambda: results.put(threading.current_thread()))
    thread = results.get(timeout=WAIT)
    assert not thread.daemon
    assert thread.name == "test-pool-1"


def test_adjust_size_grows_the_pool_for_work_already_queued() -> None:
    p = ThreadPool(max_threads=1, name="grow")
    started, release = threading.Semaphore(0), threading.Event()
    p.start()
    try:
        for _ in range(3):
            p.call_in_thread(blocker, started, release)
        assert started.acquire(timeout=WAIT)
        assert p.statistics() == ThreadPoolStatistics(workers=1, idle=0, queued=2)
        p.adjust_size(3)
        assert p.max_threads == 3
        for _ in range(2):
            assert started.acquire(timeout=WAIT)
        assert p.statistics().workers == 3
    finally:
        release.set()
        p.stop()


def test_adjust_size_retires_surplus_workers_once_they_finish() -> None:
    p = ThreadPool(max_threads=3, name="shrink")
    started, release = threading.Semaphore(0), threading.Event()
    p.start()
    try:
        for _ in range(3):
            p.call_in_thread(blocker, started, release)
        for _ in range(3):
            assert started.acquire(timeout=WAIT)
        p.adjust_size(1)
        assert p.statistics().workers == 3  # busy workers finish their item first
        release.set()
        wait_for(lambda: p.statistics() == ThreadPoolStatistics(workers=1, idle=1, queued=0),
                 "two workers to retire")
        results = Results()
        p.call_in_thread_with_callback(results, lambda: "after shrink")
        assert results.get()[:2] == (True, "after shrink")
    finally:
        release.set()
        p.stop()


def test_adjust_size_retires_idle_workers_at_once() -> None:
    p = ThreadPool(max_threads=3, name="idle-shrink")
    started, release = threading.Semaphore(0), threading.Event()
    p.start()
    try:
        for _ in range(3):
            p.call_in_thread(blocker, started, release)
        for _ in range(3):
            assert started.acquire(timeout=WAIT)
        release.set()
        wait_for(lambda: p.statistics().idle == 3, "three idle workers")
        p.adjust_size(2)
        wait_for(lambda: p.statistics().workers == 2, "one worker to retire")
    finally:
        p.stop()


@pytest.mark.parametrize(("size", "error"), [(0, ValueError), (1.5, TypeError), (None, TypeError)])
def test_adjust_size_refuses_bad_sizes(pool: ThreadPool, size: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        pool.adjust_size(size)
    assert pool.max_threads == 3


def test_adjust_size_refuses_a_max_below_min_threads() -> None:
    p = ThreadPool(min_threads=2, max_threads=3)
    with pytest.raises(ValueError, match="below min_threads"):
        p.adjust_size(1)


# ------------------------------------------------------------------------ stopping


def test_stop_finishes_every_queued_item_then_joins_the_workers() -> None:
    p = ThreadPool(max_threads=1, name="drain")
    started, release = threading.Semaphore(0), threading.Event()
    ran: list[int] = []
    threads: list[threading.Thread] = []
    p.start()
    p.call_in_thread(lambda: threads.append(threading.current_thread()))
    p.call_in_thread(blocker, started, release)
    for n in range(5):
        p.call_in_thread(ran.append, n)
    assert started.acquire(timeout=WAIT)
    release.set()
    p.stop()
    assert ran == [0, 1, 2, 3, 4]
    assert not threads[0].is_alive()
    assert p.statistics() == ThreadPoolStatistics(workers=0, idle=0, queued=0)
    assert not p.started


def test_submitting_to_a_stopped_pool_raises(pool: ThreadPool) -> None:
    pool.start()
    pool.stop()
    with pytest.raises(RuntimeError, match="stopped"):
        pool.call_in_thread(print)
    with pytest.raises(RuntimeError, match="stopped"):
        pool.call_in_thread_with_callback(Results(), print)


def test_stopping_a_pool_that_never_started_fails_its_queued_work() -> None:
    p = ThreadPool()
    results = Results()
    p.call_in_thread_with_callback(results, lambda: "never")
    p.stop()
    success, exc, _ = results.get()
    assert success is False
    assert isinstance(exc, RuntimeError) and "before it started" in str(exc)


def test_a_stopped_pool_can_be_started_again(pool: ThreadPool) -> None:
    pool.start()
    pool.stop()
    pool.start()
    results = Results()
    pool.call_in_thread_with_callback(results, lambda: "again")
    assert results.get()[:2] == (True, "again")


def test_stop_from_one_of_the_pools_own_workers_raises(pool: ThreadPool) -> None:
    pool.start()
    results = Results()
    pool.call_in_thread_with_callback(results, pool.stop)
    success, exc, _ = results.get()
    assert success is False and isinstance(exc, RuntimeError)


def test_stop_twice_is_harmless(pool: ThreadPool) -> None:
    pool.start()
    pool.stop()
    pool.stop()
    assert pool.statistics().workers == 0


# ------------------------------------------------------------------ the bridges


class FakeLoop:
    """Stands in for a reactor: ``call_from_thread`` queues; the test thread drains."""

    def __init__(self) -> None:
        self.calls: queue.Queue[tuple[Callable[..., object], tuple[Any, ...]]] = queue.Queue()
        self.loop_thread = threading.get_ident()

    def call_from_thread(self, f: Callable[..., object], *args: Any) -> None:
        self.calls.put((f, args))

    def in_reactor_thread(self) -> bool:
        return threading.get_ident() == self.loop_thread

    def run_one(self) -> None:
        f, args = self.calls.get(timeout=WAIT)
        f(*args)


def outcome(d: Deferred[Any]) -> list[Any]:
    got: list[Any] = []
    d.add_both(got.append)
    return got


def test_defer_to_thread_pool_fires_in_the_loop_thread_with_the_result(pool: ThreadPool) -> None:
    loop = FakeLoop()
    pool.start()
    d = defer_to_thread_pool(loop, pool, lambda x, y=1: (threading.get_ident(), x * y), 6, y=7)
    got = outcome(d)
    assert got == []  # nothing fires until the loop runs the delivery
    loop.run_one()
    worker_thread, value = got[0]
    assert value == 42 and worker_thread != threading.get_ident()


def test_defer_to_thread_pool_errbacks_with_the_workers_traceback(pool: ThreadPool) -> None:
    def fails_in_thread() -> None:
        raise OSError("disk on fire")

    loop = FakeLoop()
    pool.start()
    got = outcome(defer_to_thread_pool(loop, pool, fails_in_thread))
    loop.run_one()
    failure = got[0]
    assert isinstance(failure, Failure) and failure.check(OSError)
    assert "fails_in_thread" in failure.get_traceback()


def test_defer_to_thread_pool_on_a_stopped_pool_fails_at_once(pool: ThreadPool) -> None:
    pool.start()
    pool.stop()
    got = outcome(defer_to_thread_pool(FakeLoop(), pool, int))
    assert isinstance(got[0], Failure) and got[0].check(RuntimeError)


def test_cancelling_before_a_worker_takes_the_call_removes_it_from_the_queue() -> None:
    p = ThreadPool(name="cancel")
    ran: list[bool] = []
    d = defer_to_thread_pool(FakeLoop(), p, ran.append, True)
    assert p.statistics().queued == 1
    d.cancel()
    got = outcome(d)
    assert isinstance(got[0], Failure) and got[0].check(CancelledError)
    assert p.statistics().queued == 0
    p.start()
    p.stop()
    assert ran == []


def test_cancelling_while_the_call_runs_discards_its_result(pool: ThreadPool) -> None:
    loop = FakeLoop()
    started, release = threading.Semaphore(0), threading.Event()
    pool.start()
    d = defer_to_thread_pool(loop, pool, blocker, started, release)
    assert started.acquire(timeout=WAIT)
    d.cancel()
    release.set()
    loop.run_one()  # the late delivery is ignored, not an AlreadyCalledError
    got = outcome(d)
    assert len(got) == 1 and got[0].check(CancelledError)


@pytest.fixture
def real_reactor() -> Iterator[Reactor]:
    r = Reactor()
    yield r
    r.close()


def run_until_fired(reactor: Reactor, d: Deferred[Any]) -> Any:
    """Run ``reactor`` until ``d`` fires (at most ``WAIT`` seconds); return its result."""
    got = outcome(d)
    d.add_both(lambda _: reactor.stop())
    guard = reactor.call_later(WAIT, reactor.stop)
    reactor.run(install_signal_handlers=False)
    if not got:
        pytest.fail("timed out waiting for the Deferred")
    guard.cancel()
    return got[0]


def test_defer_to_thread_uses_the_global_reactors_pool(
    real_reactor: Reactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(reactor_module, "get_reactor", lambda: real_reactor)
    loop_thread = threading.get_ident()
    d = defer_to_thread(lambda: threading.current_thread().name)
    d.add_callback(lambda name: (name, threading.get_ident() == loop_thread))
    name, fired_in_loop = run_until_fired(real_reactor, d)
    assert name.startswith("plait-reactor") and fired_in_loop


def in_a_worker(
    reactor: Reactor, f: Callable[..., Any], *args: Any
) -> Deferred[Any]:
    """Call ``blocking_call_from_thread(reactor, f, *args)`` from the reactor's pool."""
    return reactor.defer_to_thread(blocking_call_from_thread, reactor, f, *args)


def test_blocking_call_from_thread_runs_f_in_the_loop_thread_and_returns(
    real_reactor: Reactor,
) -> None:
    loop_thread = threading.get_ident()
    d = in_a_worker(real_reactor, lambda x: (x, threading.get_ident() == loop_thread), "v")
    assert run_until_fired(real_reactor, d) == ("v", True)


def test_blocking_call_from_thread_raises_what_f_raised(real_reactor: Reactor) -> None:
    def refuse() -> None:
        raise LookupError("not here")

    failure = run_until_fired(real_reactor, in_a_worker(real_reactor, refuse))
    assert isinstance(failure, Failure) and failure.check(LookupError)


def test_blocking_call_from_thread_waits_for_a_deferred(real_reactor: Reactor) -> None:
    def later() -> Deferred[str]:
        d: Deferred[str] = Deferred()
        real_reactor.call_later(0.01, d.callback, "fired later")
        return d

    assert run_until_fired(real_reactor, in_a_worker(real_reactor, later)) == "fired later"


def test_blocking_call_from_thread_raises_a_deferreds_failure(real_reactor: Reactor) -> None:
    failure = run_until_fired(
        real_reactor, in_a_worker(real_reactor, lambda: fail(ZeroDivisionError("deferred")))
    )
    assert isinstance(failure, Failure) and failure.check(ZeroDivisionError)


def test_blocking_call_from_thread_awaits_a_coroutine(real_reactor: Reactor) -> None:
    async def coro(x: int) -> int:
        d: Deferred[int] = Deferred()
        real_reactor.call_later(0.01, d.callback, x + 1)
        return await d

    assert run_until_fired(real_reactor, in_a_worker(real_reactor, coro, 41)) == 42


def test_blocking_call_from_thread_in_the_loop_thread_raises(real_reactor: Reactor) -> None:
    def from_loop() -> None:
        blocking_call_from_thread(real_reactor, int)

    d = Deferred[Any]()
    real_reactor.call_soon(lambda: d.callback(None))
    d.add_callback(lambda _: from_loop())
    failure = run_until_fired(real_reactor, d)
    assert isinstance(failure, Failure) and failure.check(RuntimeError)
    assert "own thread" in str(failure.value)
