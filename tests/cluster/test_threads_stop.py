"""blocking_call_from_thread in a worker of a pool that is being stopped.

A reactor stops its pool from its own thread (a shutdown trigger, or ``close()``)
and ``ThreadPool.stop()`` joins the workers, so a worker parked in
``blocking_call_from_thread`` must give up instead of waiting for that thread; a pool
stopped by any other thread while the reactor runs still gets its answers.
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

import pytest

from plait.cluster.reactor import Reactor
from plait.cluster.threads import ThreadPool, blocking_call_from_thread

WAIT = 10.0  # seconds; the bound on every wait in this file


def wait_for(predicate: Any, what: str) -> None:
    """Poll ``predicate`` until it holds, failing the test after ``WAIT`` seconds."""
    deadline = time.monotonic() + WAIT
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.001)


def _call_once_stopping(reactor: Any, pool: ThreadPool, ran: list[str],
                        got: queue.Queue[Any]) -> None:
    """In a worker: once ``pool`` is being stopped, ask the loop for a value."""
    def in_the_loop() -> str:
        ran.append("ran")
        return "answer"

    wait_for(lambda: pool._stopper is not None, "the pool to start stopping")
    try:
        got.put(blocking_call_from_thread(reactor, in_the_loop))
    except RuntimeError as exc:
        got.put(exc)


def test_the_reactor_stopping_its_pool_does_not_wait_for_a_worker_blocked_on_it() -> None:
    reactor = Reactor()
    ran: list[str] = []
    got: queue.Queue[Any] = queue.Queue()
    try:
        reactor.call_when_running(
            lambda: reactor.get_thread_pool().call_in_thread(
                _call_once_stopping, reactor, reactor.get_thread_pool(), ran, got))
        reactor.call_when_running(reactor.stop)
        reactor.call_later(WAIT, reactor.stop)
        reactor.run(install_signal_handlers=False)  # used to hang in the pool's stop()
    finally:
        reactor.close()
    answer = got.get(timeout=WAIT)
    assert isinstance(answer, RuntimeError) and "stopping the thread pool" in str(answer)
    assert ran == []  # withdrawn: the loop never runs it later either


def test_closing_an_idle_reactor_does_not_wait_for_a_worker_blocked_on_it() -> None:
    reactor = Reactor()
    ran: list[str] = []
    got: queue.Queue[Any] = queue.Queue()
    pool = reactor.get_thread_pool()
    pool.call_in_thread(_call_once_stopping, reactor, pool, ran, got)
    reactor.close()  # stops the pool; used to hang
    answer = got.get(timeout=WAIT)
    assert isinstance(answer, RuntimeError) and ran == []


def test_a_pool_stopped_by_another_thread_still_gets_its_answers() -> None:
    real_reactor = Reactor()
    pool = ThreadPool(max_threads=1, name="other")
    pool.start()
    ran: list[str] = []
    got: queue.Queue[Any] = queue.Queue()
    pool.call_in_thread(_call_once_stopping, real_reactor, pool, ran, got)
    stopper = threading.Thread(target=pool.stop)
    stopper.start()
    answers: list[Any] = []

    def poll() -> None:
        try:
            answers.append(got.get_nowait())
        except queue.Empty:
            real_reactor.call_later(0.005, poll)
            return
        real_reactor.stop()

    real_reactor.call_soon(poll)
    real_reactor.call_later(WAIT, real_reactor.stop)
    try:
        real_reactor.run(install_signal_handlers=False)
    finally:
        real_reactor.close()
    stopper.join(WAIT)
    assert answers == ["answer"] and ran == ["ran"]
    assert not stopper.is_alive()
