"""The ZeroMQ context of the bus: shared per process, its threads under SCHED_BATCH."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from plait.cluster import _rpc_zmq
from plait.cluster._rpc_zmq import bus_context, new_context
from plait.cluster.defer import CancelledError
from plait.cluster.reactor import Reactor
from plait.cluster.rpc import Bus

_SCHED_BATCH = getattr(os, "SCHED_BATCH", 3)


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    r = Reactor()
    yield r
    r.close()


@pytest.fixture
def probe_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget the outcome of the SCHED_BATCH probe (restored after the test)."""
    monkeypatch.setattr(_rpc_zmq, "_batch_allowed", None)


@pytest.fixture
def options(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The options set on ZeroMQ contexts from now on (recorded, not applied)."""
    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(zmq.Context, "set", lambda ctx, opt, value: seen.append((opt, value)))
    return seen


@pytest.fixture
def fresh_bus_context(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Make the next ``bus_context()`` a new one; terminate it and restore the old after."""
    saved = _rpc_zmq._shared_context
    monkeypatch.setattr(_rpc_zmq, "_shared_context", None)
    yield
    made = _rpc_zmq._shared_context
    if made is not None and made is not saved:
        made[1].term()


def zmq_io_thread_policies() -> list[int]:
    """The scheduling policy of every ZeroMQ I/O thread of this process (Linux)."""
    policies = []
    for tid in os.listdir("/proc/self/task"):
        try:
            name = Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            stat = Path(f"/proc/self/task/{tid}/stat").read_text()
        except FileNotFoundError:  # the thread ended meanwhile
            continue
        if name.startswith("ZMQbg/IO"):
            policies.append(int(stat.rsplit(")", 1)[1].split()[38]))
    return policies


def socket_context(bus: Bus) -> Any:
    return bus.link._socket.context  # type: ignore[attr-defined]


def test_the_buses_of_a_process_share_one_context(reactor: Reactor, tmp_path: Path) -> None:
    address = f"ipc://{tmp_path}/run/bus.sock"
    server = Bus("server", reactor, bind=address)
    client = Bus("client", reactor, connect=[address])
    for bus in (server, client):
        bus.start().add_errback(lambda f: f.trap(CancelledError))  # stopped early
    try:
        assert socket_context(server) is socket_context(client) is bus_context()
        assert bus_context() is not zmq.Context.instance()
    finally:
        client.stop(), server.stop()
    assert not bus_context().closed  # stopping a bus leaves the shared context alone


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SCHED_BATCH is Linux's")
@pytest.mark.parametrize("value", ["", "batch"])
def test_the_io_thread_of_the_bus_context_runs_under_sched_batch(
    value: str,
    reactor: Reactor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fresh_bus_context: None,
) -> None:
    if not _rpc_zmq._can_batch():
        pytest.skip("this process may not use SCHED_BATCH")
    monkeypatch.setenv("PLAIT_BUS_IO_SCHED", value)
    assert bus_context().get(zmq.THREAD_SCHED_POLICY) == _SCHED_BATCH
    server = Bus("server", reactor, bind=f"ipc://{tmp_path}/run/bus.sock")
    server.start()  # the context's threads start with its first socket
    try:
        assert socket_context(server) is bus_context()
        # The thread names itself and takes its policy as it starts: wait for it.
        deadline = time.monotonic() + 5
        while _SCHED_BATCH not in zmq_io_thread_policies() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _SCHED_BATCH in zmq_io_thread_policies()
    finally:
        server.stop()


def test_plait_bus_io_sched_other_keeps_libzmqs_scheduling(
    monkeypatch: pytest.MonkeyPatch, options: list[tuple[int, int]]
) -> None:
    monkeypatch.setenv("PLAIT_BUS_IO_SCHED", "other")
    new_context().term()
    assert options == []


def test_an_unknown_scheduling_value_is_logged_and_the_default_kept(
    monkeypatch: pytest.MonkeyPatch,
    options: list[tuple[int, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    if not _rpc_zmq._can_batch():
        pytest.skip("this process may not use SCHED_BATCH")
    monkeypatch.setenv("PLAIT_BUS_IO_SCHED", "fifo")
    new_context().term()
    assert options == [(zmq.THREAD_SCHED_POLICY, _SCHED_BATCH)]
    assert "PLAIT_BUS_IO_SCHED='fifo' is neither" in caplog.text


def test_a_link_with_an_inproc_address_uses_the_process_context(reactor: Reactor) -> None:
    server = Bus("server", reactor, bind="inproc://plait-test-context")
    server.start()
    try:
        assert socket_context(server) is zmq.Context.instance()
    finally:
        server.stop()


def test_a_forked_process_gets_a_context_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = bus_context()
    monkeypatch.setattr(os, "getpid", lambda: -1)  # as a child sees another pid
    child = bus_context()
    try:
        assert child is not parent
        assert bus_context() is child
    finally:
        monkeypatch.undo()
        child.term()
        _rpc_zmq._shared_context = (os.getpid(), parent)
    assert bus_context() is parent


def test_a_process_that_may_not_use_sched_batch_keeps_the_default_policy(
    monkeypatch: pytest.MonkeyPatch,
    probe_again: None,
    options: list[tuple[int, int]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(*args: Any) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.delenv("PLAIT_BUS_IO_SCHED", raising=False)
    monkeypatch.setattr(os, "sched_setscheduler", refuse, raising=False)
    caplog.set_level("DEBUG", logger="plait.cluster.rpc")
    assert _rpc_zmq._can_batch() is False
    assert "SCHED_BATCH is not available" in caplog.text
    context = new_context()
    context.term()
    assert options == []  # libzmq would abort the process on a policy it cannot set


def test_a_process_that_may_use_sched_batch_asks_libzmq_for_it(
    monkeypatch: pytest.MonkeyPatch, probe_again: None, options: list[tuple[int, int]]
) -> None:
    monkeypatch.delenv("PLAIT_BUS_IO_SCHED", raising=False)
    monkeypatch.setattr(os, "SCHED_BATCH", _SCHED_BATCH, raising=False)
    monkeypatch.setattr(os, "sched_setscheduler", lambda *a: None, raising=False)
    assert _rpc_zmq._can_batch() is True
    context = new_context()
    context.term()
    assert options == [(zmq.THREAD_SCHED_POLICY, _SCHED_BATCH)]


def test_a_platform_without_sched_batch_is_never_probed(
    monkeypatch: pytest.MonkeyPatch, probe_again: None
) -> None:
    calls: list[object] = []
    monkeypatch.delattr(os, "SCHED_BATCH", raising=False)
    monkeypatch.setattr(os, "sched_setscheduler", calls.append, raising=False)
    assert _rpc_zmq._can_batch() is False
    assert calls == []
