"""DeferredLock, DeferredSemaphore and DeferredQueue."""

from __future__ import annotations

from typing import Any

import pytest

from plait.cluster.defer import (
    CancelledError,
    Deferred,
    DeferredLock,
    DeferredQueue,
    DeferredSemaphore,
    QueueOverflow,
    QueueUnderflow,
    ensure_deferred,
)


def collect(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.add_both(out.append)
    return out


# ------------------------------------------------------------------------- lock


def test_lock_serves_waiters_first_come_first_served() -> None:
    lock = DeferredLock()
    order: list[int] = []
    def record(_: DeferredLock, i: int) -> None:
        order.append(i)

    for i in range(3):
        lock.acquire().add_callback(record, i)
    assert order == [0] and lock.locked
    lock.release()
    lock.release()
    assert order == [0, 1, 2]
    lock.release()
    assert not lock.locked


def test_lock_release_when_unlocked_raises() -> None:
    with pytest.raises(RuntimeError):
        DeferredLock().release()


def test_cancelling_a_waiting_acquire_removes_it() -> None:
    lock = DeferredLock()
    lock.acquire()
    waiting = lock.acquire()
    out = collect(waiting)
    waiting.cancel()
    assert out[0].check(CancelledError)
    assert lock.statistics() == {"locked": True, "waiting": 0}
    lock.release()
    assert not lock.locked


def test_lock_run_releases_after_the_result_arrives() -> None:
    lock = DeferredLock()
    inner: Deferred[int] = Deferred()
    out = collect(lock.run(lambda x: inner, 1))
    assert lock.locked
    inner.callback(5)
    assert out == [5] and not lock.locked


def test_lock_run_releases_after_an_exception() -> None:
    lock = DeferredLock()

    def boom() -> None:
        raise ValueError("x")

    out = collect(lock.run(boom))
    assert out[0].check(ValueError) and not lock.locked


def test_lock_run_rejects_a_non_callable() -> None:
    with pytest.raises(TypeError):
        DeferredLock().run(3)  # type: ignore[arg-type]


def test_lock_works_with_async_with() -> None:
    lock = DeferredLock()
    lock.acquire()
    inside: list[bool] = []

    async def critical() -> None:
        async with lock:
            inside.append(lock.locked)

    d = ensure_deferred(critical())
    assert inside == []
    lock.release()
    assert inside == [True] and d.called and not lock.locked


# -------------------------------------------------------------------- semaphore


def test_semaphore_admits_up_to_its_tokens() -> None:
    sem = DeferredSemaphore(2)
    got = [collect(sem.acquire()) for _ in range(3)]
    assert [bool(g) for g in got] == [True, True, False]
    assert sem.statistics() == {"tokens": 0, "limit": 2, "waiting": 1}
    sem.release()
    assert got[2] == [sem]
    sem.release()
    sem.release()
    assert sem.tokens == 2


def test_semaphore_needs_at_least_one_token() -> None:
    with pytest.raises(ValueError):
        DeferredSemaphore(0)


def test_semaphore_release_beyond_limit_raises() -> None:
    with pytest.raises(RuntimeError):
        DeferredSemaphore(1).release()


def test_semaphore_run_limits_concurrency() -> None:
    sem = DeferredSemaphore(1)
    first: Deferred[str] = Deferred()
    started: list[str] = []

    def job(name: str, result: Deferred[str] | str) -> Deferred[str] | str:
        started.append(name)
        return result

    out1 = collect(sem.run(job, "one", first))
    out2 = collect(sem.run(job, "two", "second"))
    assert started == ["one"]
    first.callback("first")
    assert started == ["one", "two"]
    assert out1 == ["first"] and out2 == ["second"]


# ------------------------------------------------------------------------ queue


def test_queue_hands_items_to_gets_in_order() -> None:
    q: DeferredQueue[int] = DeferredQueue()
    early = collect(q.get())
    q.put(1)
    q.put(2)
    assert early == [1]
    assert collect(q.get()) == [2]


def test_queue_overflow_when_size_reached() -> None:
    q: DeferredQueue[int] = DeferredQueue(size=1)
    q.put(1)
    with pytest.raises(QueueOverflow):
        q.put(2)


def test_queue_underflow_when_backlog_reached() -> None:
    q: DeferredQueue[int] = DeferredQueue(backlog=1)
    q.get()
    with pytest.raises(QueueUnderflow):
        q.get()


def test_cancelling_a_get_withdraws_it() -> None:
    q: DeferredQueue[int] = DeferredQueue()
    d = q.get()
    out = collect(d)
    d.cancel()
    assert out[0].check(CancelledError)
    q.put(3)
    assert q.statistics() == {"pending": 1, "waiting": 0}
