"""The native Reactor: system events, threads, signals and ``react``."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from plait.cluster._defer import Deferred, succeed
from plait.cluster.reactor import Reactor, react
from tests.reactor_support import run_until as run_until_stopped

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


def test_startup_triggers_run_before_during_after_and_before_may_delay_the_rest(
    reactor: Reactor,
) -> None:
    got: list[str] = []
    gate: Deferred[None] = Deferred()
    for phase in ("after", "during", "before"):
        reactor.add_system_event_trigger(phase, "startup", got.append, phase)
    reactor.add_system_event_trigger("before", "startup", lambda: gate)

    def open_gate() -> None:
        got.append("gate opens")
        gate.callback(None)

    reactor.call_later(0.01, open_gate)
    reactor.call_when_running(reactor.stop)
    run_until_stopped(reactor)
    assert got == ["before", "gate opens", "during", "after"]


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


def test_defer_to_thread_runs_at_most_the_suggested_number_of_calls_at_once(
    reactor: Reactor,
) -> None:
    reactor.suggest_thread_pool_size(2)
    release = threading.Event()
    lock = threading.Lock()
    running = [0, 0]  # now, most at once

    def blocked(n: int) -> int:
        with lock:
            running[0] += 1
            running[1] = max(running[1], running[0])
        release.wait(5)
        with lock:
            running[0] -= 1
        return n

    results: list[Any] = []
    stats: list[Any] = []

    def check() -> None:
        stats.append(reactor.get_thread_pool().statistics())
        release.set()

    def start() -> None:
        def done(n: int) -> None:
            results.append(n)
            if len(results) == 5:
                reactor.stop()

        for n in range(5):
            reactor.defer_to_thread(blocked, n).add_callback(done)

    def wait_for_two() -> None:
        if running[0] < 2:
            reactor.call_later(0.005, wait_for_two)
        else:
            reactor.call_later(0.02, check)  # time for a third worker to show up, if any

    reactor.call_when_running(start)
    reactor.call_when_running(wait_for_two)
    try:
        run_until_stopped(reactor)
    finally:
        release.set()
    assert sorted(results) == [0, 1, 2, 3, 4]
    assert running[1] == 2
    assert (stats[0].workers, stats[0].queued) == (2, 3)


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


def test_react_is_also_reachable_as_plait_cluster_react() -> None:
    import plait.cluster

    assert plait.cluster.react is react
    with pytest.raises(AttributeError):
        _ = plait.cluster.no_such_name


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="no SIGUSR1")
def test_an_exception_in_a_signal_handler_is_logged_and_the_loop_goes_on(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    if not _in_main_thread():
        pytest.skip("signals need the main thread")
    got: list[str] = []

    def on_usr1() -> None:
        got.append("handler")
        raise KeyError("signal handler")

    def finish() -> None:
        got.append("still running")
        reactor.stop()

    reactor.add_signal_handler(signal.SIGUSR1, on_usr1)
    reactor.call_when_running(os.kill, os.getpid(), signal.SIGUSR1)
    reactor.call_later(0.05, finish)
    try:
        with caplog.at_level(logging.ERROR, logger="plait.reactor"):
            run_until_stopped(reactor)
    finally:
        reactor.remove_signal_handler(signal.SIGUSR1)
    assert got == ["handler", "still running"]
    raised = [r.exc_info[1] for r in caplog.records if r.name == "plait.reactor" and r.exc_info]
    assert len(raised) == 1 and isinstance(raised[0], KeyError)
