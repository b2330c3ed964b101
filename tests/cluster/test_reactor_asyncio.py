"""AsyncioReactor: the reactor interfaces on asyncio's loop and on uvloop.

Each test that takes the ``reactor`` fixture runs twice: on a default asyncio loop
and on a uvloop loop. Transports are covered by tests/conformance/test_asyncio.py.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvloop
from zope.interface.verify import verifyObject

from plait.cluster import interfaces
from plait.cluster._delayed_call import AlreadyCancelled
from plait.cluster.defer import Deferred, ensure_deferred
from plait.cluster.reactor import AsyncioReactor, ReactorNotRunning, react

_LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(_LOOPS))
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    the_loop = _LOOPS[request.param]()
    yield the_loop
    the_loop.close()


@pytest.fixture
def reactor(loop: asyncio.AbstractEventLoop) -> Iterator[AsyncioReactor]:
    r = AsyncioReactor(loop)
    yield r
    r.close()


def run_until_stopped(reactor: AsyncioReactor, limit: float = 5.0) -> None:
    """Run until the test stops the reactor; fail if it still runs after ``limit``."""
    timed_out: list[bool] = []

    def give_up() -> None:
        timed_out.append(True)
        reactor.stop()

    guard = reactor.call_later(limit, give_up)
    reactor.run(install_signal_handlers=False)
    assert not timed_out, f"still running after {limit} s"
    if guard.active():
        guard.cancel()


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


# ----------------------------------------------------------------- interfaces


@pytest.mark.parametrize("iface", [
    interfaces.IReactorCore, interfaces.IReactorTime, interfaces.IReactorFDSet,
    interfaces.IReactorTCP, interfaces.IReactorThreads, interfaces.IReactorProcess,
    interfaces.IReactorUDP, interfaces.IReactorUNIX, interfaces.IReactorSSL,
])
def test_asyncio_reactor_provides_every_interface_of_the_native_reactor(
        reactor: AsyncioReactor, iface: Any) -> None:
    assert iface.providedBy(reactor)
    assert verifyObject(iface, reactor)


def test_without_a_loop_the_reactor_makes_one_and_closes_it() -> None:
    r = AsyncioReactor()
    loop = r.loop
    assert isinstance(loop, asyncio.AbstractEventLoop) and not loop.is_closed()
    r.close()
    assert loop.is_closed()


def test_a_loop_that_was_passed_in_stays_open_after_close(
        loop: asyncio.AbstractEventLoop) -> None:
    r = AsyncioReactor(loop)
    r.close()
    assert not loop.is_closed()
    r.close()  # a second close is a no-op


@pytest.mark.parametrize("bad", ["loop", 3, object()])
def test_a_loop_that_is_not_an_asyncio_loop_is_refused(bad: Any) -> None:
    with pytest.raises(TypeError):
        AsyncioReactor(bad)


# ------------------------------------------------------------------ callbacks


def test_call_soon_runs_callbacks_in_order_with_their_arguments(
        reactor: AsyncioReactor) -> None:
    got: list[Any] = []
    reactor.call_soon(got.append, 1)
    reactor.call_soon(lambda *, k: got.append(k), k=2)
    handle = reactor.call_soon(got.append, "cancelled")
    handle.cancel()
    reactor.call_soon(reactor.stop)
    run_until_stopped(reactor)
    assert got == [1, 2]


@pytest.mark.parametrize("method", ["call_soon", "call_from_thread"])
def test_scheduling_what_is_not_callable_is_refused(reactor: AsyncioReactor,
                                                    method: str) -> None:
    with pytest.raises(TypeError):
        getattr(reactor, method)("not callable")


def test_call_from_thread_wakes_the_loop_with_keyword_arguments(
        reactor: AsyncioReactor) -> None:
    got: list[Any] = []

    def from_loop(value: int, *, key: str) -> None:
        got.append((value, key, reactor.in_reactor_thread()))
        reactor.stop()

    def start_thread() -> None:
        threading.Thread(target=reactor.call_from_thread, args=(from_loop, 5),
                         kwargs={"key": "k"}).start()

    reactor.call_when_running(start_thread)
    run_until_stopped(reactor)
    assert got == [(5, "k", True)]
    assert not reactor.in_reactor_thread()


def test_call_from_thread_after_close_is_dropped() -> None:
    r = AsyncioReactor()
    r.close()
    r.call_from_thread(print, "never")  # logged at debug level, no exception


# ---------------------------------------------------------------------- timers


def test_timers_run_in_time_order_and_seconds_is_the_loop_clock(
        reactor: AsyncioReactor, loop: asyncio.AbstractEventLoop) -> None:
    got: list[str] = []
    reactor.call_later(0.02, got.append, "b")
    reactor.call_later(0.01, got.append, "a")
    reactor.call_later(0.03, reactor.stop)
    before = reactor.seconds()
    assert abs(before - loop.time()) < 0.5
    run_until_stopped(reactor)
    assert got == ["a", "b"]
    assert reactor.seconds() >= before + 0.02


def test_a_cancelled_timer_does_not_run_and_cannot_be_cancelled_twice(
        reactor: AsyncioReactor) -> None:
    got: list[str] = []
    call = reactor.call_later(0.01, got.append, "never")
    call.cancel()
    assert not call.active()
    with pytest.raises(AlreadyCancelled):
        call.cancel()
    reactor.call_later(0.03, reactor.stop)
    run_until_stopped(reactor)
    assert got == []


def test_reset_and_delay_move_a_timer(reactor: AsyncioReactor) -> None:
    got: list[tuple[str, float]] = []
    start = reactor.seconds()
    moved = reactor.call_later(10, lambda: got.append(("reset", reactor.seconds() - start)))
    moved.reset(0.02)
    later = reactor.call_later(0.0, lambda: got.append(("delayed", reactor.seconds() - start)))
    later.delay(0.04)
    assert later.get_time() == pytest.approx(start + 0.04, abs=0.01)
    reactor.call_later(0.06, reactor.stop)
    run_until_stopped(reactor)
    assert [name for name, _ in got] == ["reset", "delayed"]
    assert got[0][1] >= 0.015 and got[1][1] >= 0.035


def test_get_delayed_calls_lists_the_active_calls_soonest_first(
        reactor: AsyncioReactor) -> None:
    late = reactor.call_later(5, print)
    soon = reactor.call_later(1, print)
    gone = reactor.call_later(2, print)
    gone.cancel()
    assert reactor.get_delayed_calls() == [soon, late]


def test_a_timer_moved_to_infinity_never_runs_and_can_come_back(
        reactor: AsyncioReactor) -> None:
    got: list[str] = []
    call = reactor.call_later(math.inf, got.append, "back")
    assert call.active()
    call.reset(0.01)
    reactor.call_later(0.03, reactor.stop)
    run_until_stopped(reactor)
    assert got == ["back"]


@pytest.mark.parametrize("bad", [-1.0, math.nan])
def test_call_later_rejects_a_negative_or_nan_delay(reactor: AsyncioReactor,
                                                    bad: float) -> None:
    with pytest.raises(ValueError):
        reactor.call_later(bad, print)


def test_call_later_rejects_what_is_not_callable(reactor: AsyncioReactor) -> None:
    with pytest.raises(TypeError):
        reactor.call_later(1, "not callable")  # type: ignore[arg-type]


# --------------------------------------------------------------- run and stop


def test_stop_on_a_reactor_that_is_not_running_raises(reactor: AsyncioReactor) -> None:
    with pytest.raises(ReactorNotRunning):
        reactor.stop()


def test_startup_and_shutdown_triggers_run_in_order_and_the_reactor_runs_again(
        reactor: AsyncioReactor) -> None:
    got: list[str] = []
    for phase in ("before", "during", "after"):
        reactor.add_system_event_trigger(phase, "startup", got.append, f"start-{phase}")
        reactor.add_system_event_trigger(phase, "shutdown", got.append, f"stop-{phase}")
    reactor.call_when_running(got.append, "running")
    reactor.call_when_running(reactor.stop)
    run_until_stopped(reactor)
    assert got == ["start-before", "start-during", "start-after", "running",
                   "stop-before", "stop-during", "stop-after"]
    got.clear()
    reactor.call_soon(reactor.stop)
    reactor.call_soon(reactor.stop)  # a second stop is a no-op
    run_until_stopped(reactor)
    assert got[-3:] == ["stop-before", "stop-during", "stop-after"]


def test_shutdown_waits_for_the_deferred_of_a_before_trigger(
        reactor: AsyncioReactor) -> None:
    got: list[str] = []

    def slow() -> Deferred[None]:
        d: Deferred[None] = Deferred()
        reactor.call_later(0.02, d.callback, None)
        return d

    reactor.add_system_event_trigger("before", "shutdown", slow)
    reactor.add_system_event_trigger("during", "shutdown", got.append, "during")
    reactor.call_when_running(reactor.stop)
    run_until_stopped(reactor)
    assert got == ["during"]


def test_run_on_a_running_loop_is_refused_and_start_is_the_way(
        loop: asyncio.AbstractEventLoop) -> None:
    reactor = AsyncioReactor(loop)
    got: list[Any] = []

    async def program() -> None:
        with pytest.raises(RuntimeError):
            reactor.run()
        reactor.add_system_event_trigger("during", "shutdown", got.append, "shutdown")
        reactor.call_when_running(got.append, "running")
        reactor.start()
        with pytest.raises(RuntimeError):
            reactor.start()
        await asyncio.sleep(0.01)
        got.append(reactor.running)
        reactor.stop()
        await asyncio.sleep(0.01)
        got.append(reactor.running)

    loop.run_until_complete(program())
    reactor.close()
    assert got == ["running", True, "shutdown", False]
    assert not loop.is_closed()


def test_a_closed_reactor_refuses_to_run_and_a_running_one_to_close(
        reactor: AsyncioReactor) -> None:
    errors: list[BaseException] = []

    def try_close() -> None:
        try:
            reactor.close()
        except RuntimeError as exc:
            errors.append(exc)
        reactor.stop()

    reactor.call_when_running(try_close)
    run_until_stopped(reactor)
    assert len(errors) == 1
    reactor.close()
    with pytest.raises(RuntimeError):
        reactor.run()


# ----------------------------------------------------------------------- fds


def test_readers_and_writers_are_the_loops(reactor: AsyncioReactor) -> None:
    a, b = socket.socketpair()
    got: list[str] = []
    try:
        def on_read(tag: str) -> None:
            got.append(tag + a.recv(10).decode())
            assert reactor.remove_reader(a) is True
            reactor.stop()

        def on_write() -> None:
            assert reactor.remove_writer(b.fileno()) is True
            b.send(b"hi")

        reactor.add_reader(a, on_read, "read:")
        reactor.add_writer(b.fileno(), on_write)
        assert reactor.get_readers() == [a.fileno()]
        assert reactor.get_writers() == [b.fileno()]
        run_until_stopped(reactor)
        assert got == ["read:hi"]
        assert reactor.remove_reader(a) is False
        assert reactor.remove_writer(b) is False
        assert reactor.get_readers() == reactor.get_writers() == []
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("bad", ["3", None, 2.5, -1])
def test_add_reader_rejects_what_is_not_an_fd(reactor: AsyncioReactor, bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        reactor.add_reader(bad, print)


# -------------------------------------------------------------------- threads


def test_defer_to_thread_fires_in_the_loop_with_the_result(reactor: AsyncioReactor) -> None:
    got: list[Any] = []

    def start() -> None:
        d = reactor.defer_to_thread(lambda x: (x * 2, threading.get_ident()), 21)
        d.add_callback(lambda r: got.append((r[0], r[1] != threading.get_ident())))
        d.add_both(lambda _: reactor.stop())

    reactor.call_when_running(start)
    run_until_stopped(reactor)
    assert got == [(42, True)]
    assert reactor._pool is None  # stopped at shutdown


# -------------------------------------------------------------------- signals


def test_add_signal_handler_runs_the_callback_in_the_loop_and_restores_the_old_one(
        reactor: AsyncioReactor) -> None:
    if not _in_main_thread():
        pytest.skip("signals need the main thread")
    got: list[str] = []
    previous = signal.getsignal(signal.SIGUSR1)

    def on_usr1(tag: str) -> None:
        got.append(tag)
        reactor.stop()

    reactor.add_signal_handler(signal.SIGUSR1, on_usr1, "usr1")
    reactor.call_when_running(os.kill, os.getpid(), signal.SIGUSR1)
    try:
        run_until_stopped(reactor)
    finally:
        assert reactor.remove_signal_handler(signal.SIGUSR1) is True
    assert got == ["usr1"]
    assert signal.getsignal(signal.SIGUSR1) == previous
    assert reactor.remove_signal_handler(signal.SIGUSR1) is False


@pytest.mark.parametrize("bad", [0, 10_000, -3])
def test_add_signal_handler_rejects_an_invalid_signal(reactor: AsyncioReactor,
                                                      bad: int) -> None:
    with pytest.raises(ValueError):
        reactor.add_signal_handler(bad, print)


def test_add_signal_handler_rejects_sigkill_and_bad_arguments(
        reactor: AsyncioReactor) -> None:
    if not _in_main_thread():
        pytest.skip("signals need the main thread")
    with pytest.raises(ValueError):
        reactor.add_signal_handler(signal.SIGKILL, print)
    with pytest.raises(TypeError):
        reactor.add_signal_handler(signal.SIGUSR1, "not callable")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        reactor.add_signal_handler("SIGUSR1", print)  # type: ignore[arg-type]


def test_add_signal_handler_outside_the_main_thread_raises(reactor: AsyncioReactor) -> None:
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            reactor.add_signal_handler(signal.SIGUSR2, print)
        except ValueError as exc:
            errors.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join(5)
    assert len(errors) == 1


_SIGTERM_CHILD = textwrap.dedent(
    """
    import sys, uvloop
    from plait.cluster.reactor import AsyncioReactor
    r = AsyncioReactor(uvloop.new_event_loop() if sys.argv[1] == "uvloop" else None)
    r.add_system_event_trigger("before", "shutdown", print, "shutdown-ran", flush=True)
    r.call_when_running(print, "READY", flush=True)
    r.run()
    print("run-returned", flush=True)
    """
)


@pytest.mark.parametrize("loop_name", sorted(_LOOPS))
def test_sigterm_stops_the_reactor_cleanly(loop_name: str) -> None:
    proc = subprocess.Popen([sys.executable, "-c", _SIGTERM_CHILD, loop_name],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "READY"
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
        proc.wait()
    assert out.split() == ["shutdown-ran", "run-returned"]
    assert proc.returncode == 0


# ------------------------------------------------- Deferreds, coroutines, react


def test_a_coroutine_awaits_deferreds_and_asyncio_futures_on_the_reactor(
        reactor: AsyncioReactor) -> None:
    got: list[Any] = []

    async def work() -> int:
        d: Deferred[int] = Deferred()
        reactor.call_later(0.01, d.callback, 20)
        value = await d
        await asyncio.sleep(0.01)  # an asyncio future, on the same loop
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        reactor.call_soon(fut.set_result, 22)
        return value + await fut

    def start() -> None:
        ensure_deferred(work()).add_both(got.append).add_both(lambda _: reactor.stop())

    reactor.call_when_running(start)
    run_until_stopped(reactor)
    assert got == [42]


def test_an_asyncio_task_awaits_a_deferred_and_as_future_links_both_ways(
        reactor: AsyncioReactor, loop: asyncio.AbstractEventLoop) -> None:
    got: list[Any] = []
    d: Deferred[str] = Deferred()

    async def task_body() -> None:
        got.append(await d)
        fut = Deferred.from_future(asyncio.ensure_future(asyncio.sleep(0, "slept")))
        got.append(await fut.as_future(loop))
        reactor.stop()

    reactor.call_when_running(lambda: loop.create_task(task_body()))
    reactor.call_later(0.01, d.callback, "fired")
    run_until_stopped(reactor)
    assert got == ["fired", "slept"]


@pytest.mark.parametrize("loop_name", sorted(_LOOPS))
def test_react_runs_main_on_an_asyncio_reactor_and_exits_with_its_status(
        loop_name: str, caplog: pytest.LogCaptureFixture) -> None:
    async def ok(reactor: AsyncioReactor, delay: float) -> None:
        await asyncio.sleep(delay)

    async def bad(reactor: AsyncioReactor) -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    codes = []
    for main, argv in ((ok, (0.01,)), (bad, ())):
        loop = _LOOPS[loop_name]()
        r = AsyncioReactor(loop)
        try:
            with pytest.raises(SystemExit) as info:
                react(main, argv, reactor=r)
        finally:
            r.close()
            loop.close()
        codes.append(info.value.code)
    assert codes == [0, 1]
    assert any("boom" in rec.getMessage() for rec in caplog.records
               if rec.levelno >= logging.ERROR)


def test_repr_names_the_state_and_the_loop(reactor: AsyncioReactor,
                                           loop: asyncio.AbstractEventLoop) -> None:
    assert repr(reactor) == f"<AsyncioReactor idle loop={type(loop).__name__}>"
