"""The native Reactor: scheduling, timers, fds, threads, signals, system events, react."""

from __future__ import annotations

import logging
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from plait.cluster import interfaces
from plait.cluster._defer import Deferred, succeed
from plait.cluster._delayed_call import AlreadyCancelled
from plait.cluster.reactor import Reactor, ReactorNotRunning, get_reactor, react


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    r = Reactor()
    yield r
    r.close()


def run_until_stopped(reactor: Reactor, limit: float = 5.0) -> None:
    """Run until the test stops the reactor; fail if it is still running after ``limit``."""
    timed_out: list[bool] = []

    def give_up() -> None:
        timed_out.append(True)
        reactor.stop()

    guard = reactor.call_later(limit, give_up)
    reactor.run(install_signal_handlers=False)
    assert not timed_out, f"still running after {limit} s"
    if guard.active():
        guard.cancel()


def stop_after(reactor: Reactor, *steps: Callable[[], object]) -> None:
    """Schedule ``steps`` one iteration apart, then stop."""
    def go(i: int) -> None:
        if i < len(steps):
            steps[i]()
            reactor.call_soon(go, i + 1)
        else:
            reactor.stop()

    reactor.call_soon(go, 0)


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


# ------------------------------------------------------------- system events


def test_shutdown_triggers_run_before_during_after(reactor: Reactor) -> None:
    got: list[str] = []
    for phase in ("after", "during", "before"):
        reactor.add_system_event_trigger(phase, "shutdown", got.append, phase)
    reactor.call_soon(reactor.stop)
    run_until_stopped(reactor)
    assert got == ["before", "during", "after"]


def test_shutdown_waits_for_the_deferreds_of_before_triggers(reactor: Reactor) -> None:
    got: list[str] = []
    waiting: Deferred[None] = Deferred()

    def fire() -> None:
        got.append("fired")
        waiting.callback(None)

    def before() -> Deferred[None]:
        reactor.call_later(0.02, fire)
        return waiting

    reactor.add_system_event_trigger("before", "shutdown", before)
    reactor.add_system_event_trigger("during", "shutdown", got.append, "during")
    reactor.call_soon(reactor.stop)
    run_until_stopped(reactor)
    assert got == ["fired", "during"]


def test_a_failing_trigger_is_logged_and_shutdown_goes_on(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    got: list[str] = []

    def bad() -> None:
        raise ValueError("bad trigger")

    failing: Deferred[None] = Deferred()
    reactor.add_system_event_trigger("before", "shutdown", bad)
    reactor.add_system_event_trigger("before", "shutdown", lambda: failing)
    reactor.add_system_event_trigger("after", "shutdown", got.append, "after")
    reactor.call_soon(reactor.stop)
    reactor.call_later(0.01, failing.errback, KeyError("deferred trigger failed"))
    with caplog.at_level(logging.ERROR, logger="plait.reactor"):
        run_until_stopped(reactor)
    assert got == ["after"]
    text = caplog.text
    assert "bad trigger" in text and "deferred trigger failed" in text


def test_a_removed_trigger_does_not_run(reactor: Reactor) -> None:
    got: list[str] = []
    tid = reactor.add_system_event_trigger("before", "shutdown", got.append, "x")
    reactor.remove_system_event_trigger(tid)
    with pytest.raises(ValueError):
        reactor.remove_system_event_trigger(tid)
    reactor.call_soon(reactor.stop)
    run_until_stopped(reactor)
    assert got == []


@pytest.mark.parametrize("bad_id", [None, 3, ("before", "shutdown"), ("x", "y", 1)])
def test_removing_an_unknown_trigger_id_raises(reactor: Reactor, bad_id: Any) -> None:
    with pytest.raises(ValueError):
        reactor.remove_system_event_trigger(bad_id)


def test_a_trigger_with_an_unknown_phase_is_refused(reactor: Reactor) -> None:
    with pytest.raises(ValueError):
        reactor.add_system_event_trigger("sometime", "shutdown", lambda: None)


def test_startup_triggers_and_call_when_running_run_once_the_loop_runs(
    reactor: Reactor,
) -> None:
    got: list[str] = []
    reactor.add_system_event_trigger("before", "startup", got.append, "before-startup")
    reactor.call_when_running(got.append, "when-running")
    cancelled = reactor.call_when_running(got.append, "cancelled")
    assert cancelled is not None
    cancelled.cancel()

    def running() -> None:
        reactor.call_when_running(got.append, "now")  # runs at once
        got.append("after-now")
        reactor.stop()

    reactor.call_when_running(running)
    run_until_stopped(reactor)
    assert got == ["before-startup", "when-running", "now", "after-now"]


def test_custom_system_events_fire_on_demand(reactor: Reactor) -> None:
    got: list[str] = []
    reactor.add_system_event_trigger("during", "reload", got.append, "reloaded")
    reactor.fire_system_event("reload")
    assert got == ["reloaded"]


# -------------------------------------------------------------------- threads


def test_call_from_thread_wakes_a_sleeping_loop(reactor: Reactor) -> None:
    got: list[str] = []

    def worker() -> None:
        time.sleep(0.02)
        reactor.call_from_thread(got.append, threading.current_thread().name)
        reactor.call_from_thread(reactor.stop)

    thread = threading.Thread(target=worker, name="worker")
    reactor.call_when_running(thread.start)
    run_until_stopped(reactor)
    thread.join(5)
    assert got == ["worker"]


def test_many_threads_calling_in_lose_no_call(reactor: Reactor) -> None:
    count = [0]
    n_threads, per_thread = 4, 500

    def bump() -> None:
        count[0] += 1
        if count[0] == n_threads * per_thread:
            reactor.stop()

    def worker() -> None:
        for _ in range(per_thread):
            reactor.call_from_thread(bump)

    threads = [threading.Thread(target=worker) for _ in range(n_threads)]
    for t in threads:
        reactor.call_when_running(t.start)
    run_until_stopped(reactor)
    for t in threads:
        t.join(5)
    assert count[0] == n_threads * per_thread


def test_defer_to_thread_fires_in_the_loop_thread_with_the_result(reactor: Reactor) -> None:
    got: list[Any] = []

    def start() -> None:
        d = reactor.defer_to_thread(lambda x: (x * 2, threading.get_ident()), 21)
        d.add_callback(lambda r: got.append((r[0], r[1] != threading.get_ident(),
                                             reactor.in_reactor_thread())))
        d.add_both(lambda _: reactor.stop())

    reactor.call_when_running(start)
    run_until_stopped(reactor)
    assert got == [(42, True, True)]


def test_the_thread_pool_is_stopped_at_shutdown(reactor: Reactor) -> None:
    reactor.suggest_thread_pool_size(2)
    pool = reactor.get_thread_pool()
    assert pool.max_threads == 2
    reactor.call_soon(reactor.stop)
    run_until_stopped(reactor)
    assert not pool.started


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_suggest_thread_pool_size_rejects_bad_sizes(reactor: Reactor, bad: Any) -> None:
    with pytest.raises(ValueError):
        reactor.suggest_thread_pool_size(bad)


def test_resolve_answers_a_numeric_address_without_a_thread(reactor: Reactor) -> None:
    got: list[Any] = []
    reactor.resolve("127.0.0.1", 80).add_callback(got.append)
    assert got[0][0][4] == ("127.0.0.1", 80)
    assert reactor._pool is None


def test_resolve_looks_a_name_up_in_the_thread_pool(reactor: Reactor) -> None:
    got: list[Any] = []
    d = reactor.resolve("localhost", 80)
    d.add_both(got.append)
    d.add_both(lambda _: reactor.stop())
    run_until_stopped(reactor)
    assert {info[4][0] for info in got[0]} & {"127.0.0.1", "::1"}


def test_resolve_errbacks_for_a_name_that_does_not_exist(reactor: Reactor) -> None:
    got: list[Any] = []
    d = reactor.resolve("no-such-host.invalid", 80)
    d.add_errback(lambda f: got.append(f.value))
    d.add_both(lambda _: reactor.stop())
    run_until_stopped(reactor, limit=20)
    assert isinstance(got[0], socket.gaierror)


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


# -------------------------------------------------------------------- signals


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1")
def test_add_signal_handler_runs_the_callback_in_the_loop(reactor: Reactor) -> None:
    if not _in_main_thread():
        pytest.skip("signals need the main thread")
    got: list[Any] = []
    previous = signal.getsignal(signal.SIGUSR1)

    def on_usr1(tag: str) -> None:
        got.append((tag, reactor.in_reactor_thread()))
        reactor.stop()

    reactor.add_signal_handler(signal.SIGUSR1, on_usr1, "usr1")
    reactor.call_when_running(os.kill, os.getpid(), signal.SIGUSR1)
    try:
        run_until_stopped(reactor)
    finally:
        assert reactor.remove_signal_handler(signal.SIGUSR1) is True
    assert got == [("usr1", True)]
    assert signal.getsignal(signal.SIGUSR1) == previous
    assert reactor.remove_signal_handler(signal.SIGUSR1) is False


@pytest.mark.parametrize("bad", [0, 10_000, -3])
def test_add_signal_handler_rejects_an_invalid_signal(reactor: Reactor, bad: int) -> None:
    with pytest.raises(ValueError):
        reactor.add_signal_handler(bad, lambda: None)


def test_add_signal_handler_rejects_sigkill(reactor: Reactor) -> None:
    if not _in_main_thread():
        pytest.skip("signals need the main thread")
    with pytest.raises(ValueError):
        reactor.add_signal_handler(signal.SIGKILL, lambda: None)


def test_add_signal_handler_outside_the_main_thread_raises(reactor: Reactor) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            reactor.add_signal_handler(signal.SIGUSR2, lambda: None)
        except ValueError as exc:
            errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join(5)
    assert len(errors) == 1


_SIGTERM_CHILD = textwrap.dedent(
    """
    import sys
    from plait.cluster.reactor import Reactor
    r = Reactor()
    r.add_system_event_trigger("before", "shutdown", print, "shutdown-ran", flush=True)
    r.call_when_running(print, "READY", flush=True)
    r.run()
    print("run-returned", flush=True)
    """
)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_the_reactor_cleanly(signum: int) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _SIGTERM_CHILD], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert out.split() == ["shutdown-ran", "run-returned"]
    assert proc.returncode == 0


_STUCK_SHUTDOWN_CHILD = textwrap.dedent(
    """
    from plait.cluster._defer import Deferred
    from plait.cluster.reactor import Reactor
    r = Reactor()
    r.add_system_event_trigger("before", "shutdown", Deferred)  # never fires
    r.add_system_event_trigger("before", "shutdown", print, "stopping", flush=True)
    r.call_when_running(print, "READY", flush=True)
    r.run()
    print("run-returned", flush=True)
    """
)


def test_a_second_sigterm_leaves_a_stuck_shutdown() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _STUCK_SHUTDOWN_CHILD],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        proc.send_signal(signal.SIGTERM)
        assert proc.stdout.readline().strip() == "stopping"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert out.split() == ["run-returned"]
    assert proc.returncode == 0


# ---------------------------------------------------------------------- react


def _react(main: Callable[..., Any], *argv: Any) -> int | str | None:
    r = Reactor()
    try:
        with pytest.raises(SystemExit) as info:
            react(main, argv, reactor=r)
    finally:
        r.close()
    return info.value.code


def test_react_exits_0_when_main_succeeds() -> None:
    got: list[Any] = []

    def main(reactor: Reactor, a: int) -> Deferred[None]:
        got.append(a)
        d: Deferred[None] = Deferred()
        reactor.call_later(0.01, d.callback, None)
        return d

    assert _react(main, 7) == 0
    assert got == [7]


def test_react_runs_a_coroutine_main() -> None:
    async def main(reactor: Reactor) -> None:
        await succeed(None)

    assert _react(main) == 0


def test_react_exits_1_when_main_fails(caplog: pytest.LogCaptureFixture) -> None:
    def main(reactor: Reactor) -> None:
        raise RuntimeError("main failed")

    with caplog.at_level(logging.ERROR, logger="plait.reactor"):
        assert _react(main) == 1
    assert "main failed" in caplog.text


def test_react_keeps_the_code_of_a_system_exit() -> None:
    def main(reactor: Reactor) -> None:
        raise SystemExit(5)

    assert _react(main) == 5


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


def test_a_trigger_for_an_event_that_is_not_a_string_is_refused(reactor: Reactor) -> None:
    with pytest.raises(TypeError):
        reactor.add_system_event_trigger("before", 3, lambda: None)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        reactor.add_system_event_trigger("before", "shutdown", "not callable")  # type: ignore[arg-type]


def test_run_puts_back_the_sigint_and_sigterm_handlers_it_replaced(reactor: Reactor) -> None:
    if not _in_main_thread():
        pytest.skip("signals need the main thread")
    before = (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM))
    seen: list[Any] = []

    def check() -> None:
        seen.append(signal.getsignal(signal.SIGINT))
        reactor.stop()

    reactor.call_soon(check)
    reactor.call_later(5, reactor.stop)
    reactor.run()
    assert seen[0] != before[0]  # replaced while running
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


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


def test_react_is_also_reachable_as_plait_cluster_react() -> None:
    import plait.cluster

    assert plait.cluster.react is react
    with pytest.raises(AttributeError):
        _ = plait.cluster.no_such_name
