"""The bus's ZeroMQ context: shared per process; its I/O thread's policy follows the traffic."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from plait.cluster import _rpc_context
from plait.cluster._rpc_context import BUSY, CAP, UP, IoThreads, bus_context, new_context
from plait.cluster.defer import CancelledError, ensure_deferred
from plait.cluster.reactor import Reactor
from plait.cluster.rpc import Bus
from plait.cluster.task import defer_later

_SCHED_BATCH = getattr(os, "SCHED_BATCH", 3)
_SCHED_OTHER = getattr(os, "SCHED_OTHER", 0)
linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="thread policies are read from Linux's /proc"
)


@pytest.fixture
def probe_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the outcome of the SCHED_BATCH probe (restored after the test)."""
    monkeypatch.setattr(_rpc_context, "_batch_allowed", None)


@pytest.fixture
def options(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The options set on ZeroMQ contexts from now on (recorded, not applied)."""
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(zmq.Context, "set", lambda ctx, opt, value: seen.append((opt, value)))
    return seen


@pytest.fixture
def fresh_bus_context(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make the next ``bus_context()`` a new one; terminate it and restore the old after."""
    saved = _rpc_context._shared_context
    monkeypatch.setattr(_rpc_context, "_shared_context", None)
    yield
    made = _rpc_context._shared_context
    if made is not None and made is not saved:
        made[1].term()


@pytest.fixture
def policies_set(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every (tid, policy) that ``os.sched_setscheduler`` is asked for (recorded only)."""
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(
        os, "sched_setscheduler", lambda tid, policy, param: seen.append((tid, policy)),
        raising=False,
    )
    monkeypatch.setattr(os, "SCHED_BATCH", _SCHED_BATCH, raising=False)
    monkeypatch.setattr(os, "SCHED_OTHER", _SCHED_OTHER, raising=False)
    return seen


def fake_tasks(root: Path, threads: dict[int, str]) -> str:
    """A stand-in for /proc/self/task listing ``threads`` (tid -> name)."""
    for tid, name in threads.items():
        (root / str(tid)).mkdir()
        (root / str(tid) / "comm").write_text(name + "\n")
    return str(root)


def thread_policies(prefix: str) -> list[int]:
    """The policies of this process's threads whose names start with ``prefix`` (Linux)."""
    found = []
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        if name.startswith(prefix):
            found.append(os.sched_getscheduler(int(tid)))
    return found


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def socket_context(bus: Bus) -> Any:
    return bus.link._socket.context  # type: ignore[attr-defined]


def io_threads_of(bus: Bus) -> IoThreads | None:
    return bus.link._io_threads  # type: ignore[attr-defined, no-any-return]


# ------------------------------------------------------------ one context per process


def test_the_buses_of_a_process_share_one_context(reactor: Reactor, tmp_path: Path) -> None:
    address = f"ipc://{tmp_path}/run/bus.sock"
    server = Bus("server", reactor, bind=address)
    client = Bus("client", reactor, connect=[address])
    for bus in (server, client):
        bus.start().add_errback(lambda f: f.trap(CancelledError))  # stopped early
    try:
        assert socket_context(server) is socket_context(client) is bus_context()[0]
        assert io_threads_of(server) is io_threads_of(client) is bus_context()[1]
        assert bus_context()[0] is not zmq.Context.instance()
    finally:
        client.stop(), server.stop()
    assert not bus_context()[0].closed  # stopping a bus leaves the shared context alone


def test_a_link_with_an_inproc_address_uses_the_process_context(reactor: Reactor) -> None:
    server = Bus("server", reactor, bind="inproc://plait-test-context")
    server.start()
    try:
        assert socket_context(server) is zmq.Context.instance()
        assert io_threads_of(server) is None  # not ours to reschedule
    finally:
        server.stop()


def test_a_forked_process_gets_a_context_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = bus_context()
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as a child sees another pid
    child = bus_context()
    try:
        assert child[0] is not parent[0]
        assert bus_context() == child
    finally:
        monkeypatch.undo()
        child[0].term()
        _rpc_context._shared_context = (os.getpid(), *parent)
    assert bus_context() == parent


# ------------------------------------------------------------ choosing the mode


def test_by_default_contexts_name_their_threads_for_adaptive_scheduling(
    monkeypatch: pytest.MonkeyPatch, options: list[tuple[int, int]]
) -> None:
    if not _rpc_context._can_adapt():
        pytest.skip("no thread name prefixes or no /proc here")
    monkeypatch.delenv("PLAIT_BUS_IO_SCHED", raising=False)
    first, first_threads = new_context()
    second, second_threads = new_context()
    first.term()
    second.term()
    assert first_threads is not None and second_threads is not None
    assert first_threads.prefix != second_threads.prefix
    assert options == [
        (zmq.THREAD_NAME_PREFIX, first_threads.prefix),
        (zmq.THREAD_NAME_PREFIX, second_threads.prefix),
    ]


def test_plait_bus_io_sched_other_keeps_libzmqs_scheduling(
    monkeypatch: pytest.MonkeyPatch, options: list[tuple[int, int]]
) -> None:
    monkeypatch.setenv("PLAIT_BUS_IO_SCHED", "other")
    context, io_threads = new_context()
    context.term()
    assert options == [] and io_threads is None


def test_plait_bus_io_sched_batch_asks_libzmq_for_sched_batch_throughout(
    monkeypatch: pytest.MonkeyPatch, probe_again: None, options: list[tuple[int, int]]
) -> None:
    monkeypatch.setenv("PLAIT_BUS_IO_SCHED", "batch")
    monkeypatch.setattr(os, "SCHED_BATCH", _SCHED_BATCH, raising=False)
    monkeypatch.setattr(os, "sched_setscheduler", lambda *a: None, raising=False)
    assert _rpc_context._can_batch() is True
    context, io_threads = new_context()
    context.term()
    assert options == [(zmq.THREAD_SCHED_POLICY, _SCHED_BATCH)] and io_threads is None


def test_an_unknown_scheduling_value_is_logged_and_adaptive_kept(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("PLAIT_BUS_IO_SCHED", "fifo")
    assert _rpc_context.io_sched_mode() == "adaptive"
    assert "PLAIT_BUS_IO_SCHED='fifo' is not one of adaptive, batch, other" in caplog.text


def test_a_process_that_may_not_use_sched_batch_never_asks_libzmq_for_it(
    monkeypatch: pytest.MonkeyPatch,
    probe_again: None,
    options: list[tuple[int, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(*args: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setenv("PLAIT_BUS_IO_SCHED", "batch")
    monkeypatch.setattr(os, "sched_setscheduler", refuse, raising=False)
    caplog.set_level("DEBUG", logger="plait.cluster.rpc")
    assert _rpc_context._can_batch() is False
    assert "SCHED_BATCH is not available" in caplog.text
    context, _ = new_context()
    context.term()
    assert options == []  # libzmq would abort the process on a policy it cannot set


def test_a_platform_without_sched_batch_is_never_probed(
    monkeypatch: pytest.MonkeyPatch, probe_again: None
) -> None:
    calls: list[object] = []
    monkeypatch.delattr(os, "SCHED_BATCH", raising=False)
    monkeypatch.setattr(os, "sched_setscheduler", calls.append, raising=False)
    assert _rpc_context._can_batch() is False
    assert _rpc_context._can_adapt() is False
    assert calls == []


# ------------------------------------------------------------ the adaptive policy


def test_calls_one_at_a_time_never_switch_the_policy(
    tmp_path: Path, policies_set: list[tuple[int, int]]
) -> None:
    threads = IoThreads(7, fake_tasks(tmp_path, {11: "7/ZMQbg/IO/0"}))
    for _ in range(1000):
        threads.observe(2)  # a call in, its answer out
    assert not threads.batch and policies_set == []


def test_bursts_switch_to_sched_batch_and_calm_switches_back(
    tmp_path: Path, policies_set: list[tuple[int, int]]
) -> None:
    tasks = fake_tasks(
        tmp_path, {11: "7/ZMQbg/IO/0", 12: "7/ZMQbg/Reaper", 13: "8/ZMQbg/IO/0", 14: "python"}
    )
    threads = IoThreads(7, tasks)
    for _ in range(UP - 1):
        threads.observe(BUSY)
    assert not threads.batch and policies_set == []
    threads.observe(BUSY + 50)
    assert threads.batch and policies_set == [(11, _SCHED_BATCH)]  # its own I/O thread only
    for _ in range(CAP * 4):
        threads.observe(64)
    for _ in range(CAP - 1):
        threads.observe(1)
    assert threads.batch  # the score saturates at CAP: CAP calm pumps to come back
    threads.observe(0)
    assert not threads.batch and policies_set == [(11, _SCHED_BATCH), (11, _SCHED_OTHER)]
    assert threads.switches == 2


def test_a_mixed_load_does_not_flap(tmp_path: Path, policies_set: list[tuple[int, int]]) -> None:
    threads = IoThreads(7, fake_tasks(tmp_path, {11: "7/ZMQbg/IO/0"}))
    for _ in range(200):
        threads.observe(BUSY)
        threads.observe(1)
    assert threads.switches == 0
    for _ in range(UP):
        threads.observe(BUSY)
    for _ in range(200):
        threads.observe(BUSY)
        threads.observe(1)
    assert threads.switches == 1 and threads.batch


def test_without_its_threads_adaptive_scheduling_gives_up_once(
    tmp_path: Path, policies_set: list[tuple[int, int]], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("DEBUG", logger="plait.cluster.rpc")
    threads = IoThreads(7, fake_tasks(tmp_path, {13: "8/ZMQbg/IO/0"}))
    for _ in range(100):
        threads.observe(BUSY)
    assert not threads.enabled and not threads.batch and policies_set == []
    assert caplog.text.count("adaptive scheduling of the bus's I/O threads is off") == 1
    assert "no thread is named 7/ZMQbg/IO/*" in caplog.text


def test_a_refused_switch_turns_adaptive_scheduling_off(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    asked: list[int] = []

    def refuse(tid: int, policy: int, param: object) -> None:
        asked.append(tid)
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "sched_setscheduler", refuse, raising=False)
    caplog.set_level("DEBUG", logger="plait.cluster.rpc")
    threads = IoThreads(7, fake_tasks(tmp_path, {11: "7/ZMQbg/IO/0"}))
    for _ in range(100):
        threads.observe(BUSY)
    assert asked == [11] and not threads.enabled and not threads.batch
    assert "the system refused" in caplog.text


def test_threads_that_ended_are_looked_up_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tasks = Path(fake_tasks(tmp_path, {11: "7/ZMQbg/IO/0"}))
    switched: list[tuple[int, int]] = []

    def set_policy(tid: int, policy: int, param: object) -> None:
        if not (tasks / str(tid)).exists():
            raise ProcessLookupError(3, "No such process")
        switched.append((tid, policy))

    monkeypatch.setattr(os, "sched_setscheduler", set_policy, raising=False)
    threads = IoThreads(7, str(tasks))
    for _ in range(UP):
        threads.observe(BUSY)
    (tasks / "11" / "comm").unlink()
    (tasks / "11").rmdir()
    fake_tasks(tasks, {21: "7/ZMQbg/IO/0"})  # a new I/O thread under the same prefix
    for _ in range(CAP):
        threads.observe(0)
    assert switched == [(11, _SCHED_BATCH), (21, _SCHED_OTHER)] and threads.enabled


@linux_only
def test_bursts_put_the_real_io_thread_under_sched_batch_and_single_calls_take_it_back(
    reactor: Reactor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fresh_bus_context: None
) -> None:
    if not _rpc_context._can_adapt():
        pytest.skip("no thread name prefixes or no /proc here")
    monkeypatch.delenv("PLAIT_BUS_IO_SCHED", raising=False)
    address = f"ipc://{tmp_path}/run/bus.sock"
    server = Bus("server", reactor, bind=address)
    server.expose("add", lambda a, b: a + b)
    server.expose("note", lambda i: None)
    client = Bus("client", reactor, connect=[address])
    server.start()
    started = client.start()
    io_threads = io_threads_of(client)
    assert io_threads is not None and io_threads is io_threads_of(server)
    prefix = f"{io_threads.prefix}/ZMQbg/IO/"

    async def main() -> tuple[object, ...]:
        await started
        # Bursts: each round the client's one pump sends 500 notifications and the
        # server reads them in large pumps. On a loaded machine messages may trickle
        # in (small pumps lower the score), hence rounds until the switch, bounded.
        for _ in range(50):
            if io_threads.batch:
                break
            expected = server.statistics().calls_received + 500
            for i in range(500):
                client.notify("server", "note", i)
            while server.statistics().calls_received < expected:
                await defer_later(reactor, 0.001)
        under_burst = (io_threads.batch, thread_policies(prefix))
        # One call at a time moves two messages a pump: the score falls to 0.
        for _ in range(10 * CAP):
            if not io_threads.batch:
                break
            assert await client.call("server", "add", 1, 1) == 2
        return under_burst, io_threads.batch, io_threads.switches

    outcome: list[object] = []
    d = ensure_deferred(main())
    d.add_both(outcome.append)
    d.add_both(lambda _: reactor.stop())
    reactor.call_later(10, reactor.stop)
    try:
        reactor.run()
    finally:
        client.stop(), server.stop()
    assert outcome == [((True, [_SCHED_BATCH]), False, 2)]
    wait_for(lambda: thread_policies(prefix) == [_SCHED_OTHER])
