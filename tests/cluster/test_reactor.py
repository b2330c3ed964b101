"""The native Reactor: scheduling, timers, file descriptors, errors, statistics.

System events, threads, signals and ``react`` are in test_reactor_events.py.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Callable
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from plait.cluster import interfaces
from plait.cluster._delayed_call import AlreadyCancelled
from plait.cluster.reactor import Reactor, ReactorNotRunning, get_reactor
from tests.reactor_support import run_until as run_until_stopped

# ----------------------------------------------------------------- interfaces


@pytest.mark.parametrize(
    "iface",
    [
        interfaces.IReactorCore,
        interfaces.IReactorTime,
        interfaces.IReactorFDSet,
        interfaces.IReactorTCP,
        interfaces.IReactorThreads,
        interfaces.IReactorProcess,
    ],
)


def test_reactor_provides_its_interfaces(reactor: Reactor, iface: Any) -> None:
    assert verifyObject(iface, reactor)


def test_get_reactor_returns_the_same_reactor_every_time() -> None:
    assert get_reactor() is get_reactor()


# ----------------------------------------------------------------- call_soon


def test_call_soon_runs_callbacks_in_order_with_their_arguments(reactor: Reactor) -> None:
    got: list[Any] = []
    reactor.call_soon(got.append, 1)
    reactor.call_soon(lambda *a, **kw: got.append((a, kw)), 2, x=3)
    reactor.call_soon(reactor.stop)
    run_until_stopped(reactor)
    assert got == [1, ((2,), {"x": 3})]


def test_a_callback_scheduled_by_a_callback_runs_on_the_next_iteration(
    reactor: Reactor,
) -> None:
    got: list[str] = []

    def first() -> None:
        got.append("a")
        reactor.call_soon(got.append, "c")

    reactor.call_soon(first)
    reactor.call_soon(got.append, "b")
    reactor.call_later(0.05, reactor.stop)
    run_until_stopped(reactor)
    assert got == ["a", "b", "c"]


def test_a_cancelled_call_soon_does_not_run(reactor: Reactor) -> None:
    got: list[int] = []
    handle = reactor.call_soon(got.append, 1)
    handle.cancel()
    reactor.call_soon(reactor.stop)
    run_until_stopped(reactor)
    assert got == [] and handle.cancelled()


def test_call_soon_rejects_what_is_not_callable(reactor: Reactor) -> None:
    with pytest.raises(TypeError):
        reactor.call_soon(42)  # type: ignore[arg-type]


def test_an_exception_in_a_callback_is_logged_and_the_loop_goes_on(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[int] = []

    def boom() -> None:
        raise ZeroDivisionError("boom")

    reactor.call_soon(boom)
    reactor.call_later(0, boom)
    reactor.call_soon(got.append, 1)
    reactor.call_later(0.01, reactor.stop)
    with caplog.at_level(logging.ERROR, logger="plait.reactor"):
        run_until_stopped(reactor)
    assert got == [1]
    errors = [r for r in caplog.records if r.name == "plait.reactor" and r.exc_info]
    assert len(errors) == 2
    assert all(isinstance(r.exc_info[1], ZeroDivisionError) for r in errors if r.exc_info)


# -------------------------------------------------------------------- timers


def test_timers_run_in_time_order_and_ties_in_scheduling_order(reactor: Reactor) -> None:
    got: list[str] = []
    reactor.call_later(0.03, got.append, "late")
    reactor.call_later(0.01, got.append, "early-1")
    reactor.call_later(0.01, got.append, "early-2")
    reactor.call_later(0.05, reactor.stop)
    run_until_stopped(reactor)
    assert got == ["early-1", "early-2", "late"]


def test_a_timer_does_not_run_before_it_is_due(reactor: Reactor) -> None:
    start = reactor.seconds()
    ran_at: list[float] = []

    def due() -> None:
        ran_at.append(reactor.seconds())
        reactor.stop()

    reactor.call_later(0.05, due)
    run_until_stopped(reactor)
    assert ran_at[0] - start >= 0.05


def test_a_cancelled_timer_does_not_run_and_cannot_be_cancelled_twice(
    reactor: Reactor,
) -> None:
    got: list[int] = []
    call = reactor.call_later(0, got.append, 1)
    call.cancel()
    with pytest.raises(AlreadyCancelled):
        call.cancel()
    reactor.call_later(0.01, reactor.stop)
    run_until_stopped(reactor)
    assert got == [] and not call.active()


def test_a_reset_timer_runs_once_at_its_new_time(reactor: Reactor) -> None:
    got: list[str] = []
    moved = reactor.call_later(0.01, got.append, "moved")
    reactor.call_later(0.02, got.append, "fixed")
    moved.reset(0.04)
    later = reactor.call_later(0.001, got.append, "delayed")
    later.delay(0.05)
    reactor.call_later(0.1, reactor.stop)
    run_until_stopped(reactor)
    assert got == ["fixed", "moved", "delayed"]


def test_get_delayed_calls_lists_only_active_calls(reactor: Reactor) -> None:
    a = reactor.call_later(10, lambda: None)
    b = reactor.call_later(5, lambda: None)
    reactor.call_later(20, lambda: None).cancel()
    a.reset(30)
    assert reactor.get_delayed_calls() == [b, a]


def test_cancelled_timers_do_not_pile_up_in_the_heap(reactor: Reactor) -> None:
    for _ in range(1000):
        reactor.call_later(100, lambda: None).cancel()
    assert len(reactor._timers) < 200


@pytest.mark.parametrize("bad", [-1, -0.001, math.nan])
def test_call_later_rejects_a_negative_or_nan_delay(reactor: Reactor, bad: float) -> None:
    with pytest.raises(ValueError):
        reactor.call_later(bad, lambda: None)


def test_call_later_rejects_what_is_not_callable(reactor: Reactor) -> None:
    with pytest.raises(TypeError):
        reactor.call_later(1, "nope")  # type: ignore[arg-type]


def test_seconds_is_the_monotonic_clock(reactor: Reactor) -> None:
    before = time.monotonic()
    assert before <= reactor.seconds() <= time.monotonic()


# --------------------------------------------------------------- run and stop


def test_stop_on_a_reactor_that_is_not_running_raises(reactor: Reactor) -> None:
    with pytest.raises(ReactorNotRunning):
        reactor.stop()


def test_run_inside_run_raises(reactor: Reactor) -> None:
    errors: list[BaseException] = []

    def nested() -> None:
        try:
            reactor.run()
        except RuntimeError as exc:
            errors.append(exc)
        reactor.stop()

    reactor.call_soon(nested)
    run_until_stopped(reactor)
    assert len(errors) == 1


def test_a_stopped_reactor_can_run_again(reactor: Reactor) -> None:
    got: list[int] = []
    for i in range(2):
        reactor.call_soon(got.append, i)
        reactor.call_soon(reactor.stop)
        run_until_stopped(reactor)
    assert got == [0, 1]


def test_a_closed_reactor_refuses_to_run() -> None:
    r = Reactor()
    r.close()
    r.close()  # idempotent
    with pytest.raises(RuntimeError):
        r.run()


def test_a_second_stop_is_a_no_op(reactor: Reactor) -> None:
    reactor.call_soon(reactor.stop)
    reactor.call_soon(reactor.stop)
    run_until_stopped(reactor)
    assert not reactor.running


# --------------------------------------------------------------------- fd set


def test_a_reader_is_called_while_its_fd_is_readable(reactor: Reactor) -> None:
    a, b = socket.socketpair()
    a.setblocking(False)
    got: list[bytes] = []

    def readable(tag: str) -> None:
        got.append(a.recv(100))
        assert tag == "tag"
        assert reactor.remove_reader(a) is True
        assert reactor.remove_reader(a) is False
        reactor.stop()

    reactor.add_reader(a, readable, "tag")
    assert a.fileno() in reactor.get_readers()
    b.send(b"ping")
    run_until_stopped(reactor)
    assert got == [b"ping"] and a.fileno() not in reactor.get_readers()
    a.close()
    b.close()


def test_reader_and_writer_on_one_fd_are_independent(reactor: Reactor) -> None:
    a, b = socket.socketpair()
    got: list[str] = []

    def writable() -> None:
        got.append("w")
        reactor.remove_writer(a.fileno())
        b.send(b"x")

    def readable() -> None:
        got.append("r")
        a.recv(10)
        reactor.remove_reader(a.fileno())
        reactor.stop()

    reactor.add_reader(a.fileno(), readable)
    reactor.add_writer(a.fileno(), writable)
    assert reactor.get_writers() == [a.fileno()]
    run_until_stopped(reactor)
    assert got == ["w", "r"]
    assert reactor.get_writers() == [] and reactor.get_readers() == []
    a.close()
    b.close()


def test_a_reader_removed_earlier_in_the_same_batch_is_not_called(reactor: Reactor) -> None:
    pairs = [socket.socketpair() for _ in range(2)]
    got: list[int] = []

    def make(i: int) -> Callable[[], None]:
        def readable() -> None:
            got.append(i)
            for a, _ in pairs:  # the first one to run removes both
                reactor.remove_reader(a)
            reactor.call_soon(reactor.stop)
        return readable

    for i, (a, b) in enumerate(pairs):
        reactor.add_reader(a, make(i))
        b.send(b"x")
    run_until_stopped(reactor)
    assert len(got) == 1
    for a, b in pairs:
        a.close()
        b.close()


@pytest.mark.parametrize("bad", ["3", None, 1.5, object()])
def test_add_reader_rejects_what_is_not_an_fd(reactor: Reactor, bad: Any) -> None:
    with pytest.raises(TypeError):
        reactor.add_reader(bad, lambda: None)


def test_add_reader_rejects_a_negative_fd(reactor: Reactor) -> None:
    with pytest.raises(ValueError):
        reactor.add_reader(-1, lambda: None)


def test_a_watched_fd_closed_and_reused_can_be_watched_again(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = socket.socketpair()
    fd = a.fileno()
    reactor.add_reader(fd, lambda: None)
    c, d = socket.socketpair()
    os.dup2(c.fileno(), fd)  # fd is closed behind the reactor's back and reused
    got: list[str] = []

    def writable() -> None:
        got.append("w")
        reactor.remove_writer(fd)
        reactor.remove_reader(fd)
        reactor.stop()

    with caplog.at_level(logging.WARNING, logger="plait.reactor"):
        reactor.add_writer(fd, writable)
    run_until_stopped(reactor)
    assert got == ["w"]
    assert "registering it again" in caplog.text
    for s in (a, b, c, d):
        s.close()


def test_an_asyncio_cancelled_error_from_a_callback_does_not_stop_the_loop(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    import asyncio

    got: list[int] = []

    def cancelled() -> None:
        raise asyncio.CancelledError()

    reactor.call_soon(cancelled)
    reactor.call_soon(got.append, 1)
    reactor.call_later(0.01, reactor.stop)
    with caplog.at_level(logging.ERROR, logger="plait.reactor"):
        run_until_stopped(reactor)
    assert got == [1]
    assert "CancelledError" in caplog.text


def test_statistics_counts_what_the_reactor_holds(reactor: Reactor) -> None:
    a, b = socket.socketpair()
    reactor.add_reader(a, lambda: None)
    reactor.add_writer(b, lambda: None)
    reactor.call_later(10, lambda: None)
    reactor.call_later(10, lambda: None).cancel()
    reactor.call_soon(lambda: None)
    stats = reactor.statistics()
    assert (stats.readers, stats.writers, stats.timers, stats.ready, stats.thread_calls) == (
        1, 1, 1, 1, 0)
    reactor.remove_reader(a)
    reactor.remove_writer(b)
    a.close()
    b.close()


def test_an_exception_in_a_reader_writer_or_thread_call_is_logged_and_the_loop_goes_on(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    a, b = socket.socketpair()
    b.send(b"ready to read")
    got: list[str] = []

    def bad_reader() -> None:
        reactor.remove_reader(a)
        raise KeyError("reader")

    def bad_writer() -> None:
        reactor.remove_writer(a)
        raise KeyError("writer")

    def bad_thread_call() -> None:
        raise KeyError("from a thread")

    def finish() -> None:
        got.append("still running")
        reactor.stop()

    reactor.add_reader(a, bad_reader)
    reactor.add_writer(a, bad_writer)
    reactor.call_from_thread(bad_thread_call)
    reactor.call_later(0.05, finish)
    with caplog.at_level(logging.ERROR, logger="plait.reactor"):
        run_until_stopped(reactor)
    a.close()
    b.close()
    assert got == ["still running"]
    raised = sorted(str(r.exc_info[1]) for r in caplog.records
                    if r.name == "plait.reactor" and r.exc_info)
    assert raised == ["'from a thread'", "'reader'", "'writer'"]
