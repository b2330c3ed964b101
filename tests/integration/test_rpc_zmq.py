"""The bus on real ZeroMQ sockets and the native reactor: ipc://, tcp://, dead peers, CURVE."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq
from zope.interface.verify import verifyObject

from plait.cluster import _rpc_keys
from plait.cluster._rpc_link import IBusLink
from plait.cluster._rpc_zmq import ZmqLink
from plait.cluster.defer import CancelledError, Deferred
from plait.cluster.failure import Failure
from plait.cluster.reactor import Reactor
from plait.cluster.rpc import Bus as _Bus
from plait.cluster.rpc import PeerLost, RemoteError

CHILD = Path(__file__).with_name("rpc_child.py")


_made: list[_Bus] = []


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    r = Reactor()
    yield r
    while _made:  # no socket outlives its test, passed or failed
        _made.pop().stop()
    r.close()


def Bus(*args: Any, **kwargs: Any) -> _Bus:  # noqa: N802 - stands in for the class
    bus = _Bus(*args, **kwargs)
    _made.append(bus)
    return bus


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return path


def run_until(reactor: Reactor, done: Callable[[], bool], timeout: float = 5.0) -> None:
    """Run the reactor until ``done()`` or ``timeout`` seconds; fail on timeout."""
    deadline = time.monotonic() + timeout

    def check() -> None:
        if done() or time.monotonic() > deadline:
            reactor.stop()
        else:
            reactor.call_later(0.002, check)

    reactor.call_soon(check)
    reactor.run(install_signal_handlers=False)
    assert done(), f"not done after {timeout} s"


def outcome(d: Deferred[Any]) -> list[Any]:
    box: list[Any] = []
    d.add_both(box.append)
    return box


def started(reactor: Reactor, *buses: _Bus) -> None:
    boxes = [outcome(bus.start()) for bus in buses]
    run_until(reactor, lambda: all(boxes))
    for box in boxes:
        assert not isinstance(box[0], Failure), box[0]


@pytest.fixture
def child(run_dir: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    procs: list[subprocess.Popen[str]] = []

    def spawn(
        name: str, bind: str, *extra: str, ready: bool = True
    ) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, str(CHILD), name, bind, *extra],
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        if not ready:  # a child that connects to us starts once our reactor answers
            return proc, ""
        line = proc.stdout.readline()  # bounded by the child's own start (pytest timeout)
        assert line.startswith("READY "), line
        return proc, line.split()[1]

    yield spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)


# ------------------------------------------------------------ basics


def test_zmq_links_provide_ibuslink(reactor: Reactor) -> None:
    link = ZmqLink(reactor, "n", bind=None, connect=[], curve=None, max_message=100,
                   heartbeat=1, heartbeat_timeout=3)
    assert verifyObject(IBusLink, link)


def test_calls_round_trip_over_ipc_in_a_private_directory(
    reactor: Reactor, run_dir: Path
) -> None:
    address = f"ipc://{run_dir}/bus.sock"
    server = Bus("server", reactor, bind=address)
    server.expose("add", lambda a, b: a + b)
    client = Bus("client", reactor, connect=[address])
    started(reactor, server, client)
    box = outcome(client.call("server", "add", 2, 3))
    run_until(reactor, lambda: bool(box))
    assert box == [5]
    client.stop()
    server.stop()


def test_a_bus_on_zeromq_calls_itself_and_its_peer(reactor: Reactor, run_dir: Path) -> None:
    address = f"ipc://{run_dir}/bus.sock"
    server = Bus("server", reactor, bind=address)
    server.expose("name", lambda: "server")
    client = Bus("client", reactor, connect=[address])
    client.expose("name", lambda: "client")
    started(reactor, server, client)
    here = outcome(client.call("client", "name"))
    there = outcome(client.call("server", "name"))
    run_until(reactor, lambda: bool(here and there))
    assert (here, there) == (["client"], ["server"])
    assert client.nodes() == ["server"] and client.statistics().dropped == 0
    client.stop()
    server.stop()


def test_an_ipc_directory_open_to_others_is_refused(reactor: Reactor, tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    shared.chmod(0o755)
    box = outcome(Bus("server", reactor, bind=f"ipc://{shared}/bus.sock").start())
    assert isinstance(box[0], Failure) and box[0].check(PermissionError)


def test_a_missing_ipc_directory_is_created_private(reactor: Reactor, tmp_path: Path) -> None:
    address = f"ipc://{tmp_path}/new/bus.sock"
    bus = Bus("server", reactor, bind=address)
    started(reactor, bus)
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    bus.stop()


def test_tcp_port_zero_reports_the_port_chosen(reactor: Reactor) -> None:
    server = Bus("server", reactor, bind="tcp://127.0.0.1:0")
    started(reactor, server)
    assert server.endpoint is not None and not server.endpoint.endswith(":0")
    server.stop()


def test_cancel_and_remote_deferreds_cross_real_sockets(reactor: Reactor, run_dir: Path) -> None:
    address = f"ipc://{run_dir}/bus.sock"
    server = Bus("server", reactor, bind=address)
    cancelled: list[bool] = []
    later: Deferred[str] = Deferred()
    server.expose("slow", lambda: Deferred(lambda d: cancelled.append(True)))
    server.expose("later", lambda: {"when": later})
    client = Bus("client", reactor, connect=[address])
    started(reactor, server, client)
    slow = client.call("server", "slow")
    run_until(reactor, lambda: server.statistics().calls_serving == 1)
    slow.cancel()
    run_until(reactor, lambda: cancelled == [True])
    assert isinstance(outcome(slow)[0].value, CancelledError)
    box = outcome(client.call("server", "later"))
    run_until(reactor, lambda: bool(box))
    remote = outcome(box[0]["when"])
    reactor.call_later(0.01, later.callback, "now")
    run_until(reactor, lambda: bool(remote))
    assert remote == ["now"]


def test_ten_thousand_concurrent_calls_over_zmq_are_all_answered(
    reactor: Reactor, run_dir: Path
) -> None:
    address = f"ipc://{run_dir}/bus.sock"
    server = Bus("server", reactor, bind=address)
    server.expose("double", lambda x: 2 * x)
    client = Bus("client", reactor, connect=[address])
    started(reactor, server, client)
    results: dict[int, int] = {}

    def store(result: int, i: int) -> None:
        results[i] = result

    for i in range(10_000):
        client.call("server", "double", i, timeout=60.0).add_callback(store, i)
    run_until(reactor, lambda: len(results) == 10_000, timeout=60)
    assert all(results[i] == 2 * i for i in range(10_000))
    assert client.statistics().calls_in_flight == 0
    assert len(client.link._outbox) == 0  # type: ignore[attr-defined]
    timers = [c.func.__name__ for c in reactor.get_delayed_calls()]
    assert "_time_out" not in timers and "_deadline" not in timers  # all were cancelled


# ------------------------------------------------------------ hostile input


def test_hostile_frames_from_raw_pyzmq_are_dropped_counted_and_the_node_answers(
    reactor: Reactor, run_dir: Path
) -> None:
    address = f"ipc://{run_dir}/bus.sock"
    server = Bus("server", reactor, bind=address, max_message=1000)
    server.expose("ping", lambda: "pong")
    started(reactor, server)
    raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    raw.connect(address)
    hello = {"v": 1, "t": "hello", "node": "raw", "methods": [], "topics": []}
    frames: list[Any] = [
        b"\xc1 garbage",
        msgpack.packb(hello),
        b"",
        msgpack.packb({"v": 1, "t": "call", "id": 1, "method": "ping"})[:-3],  # truncated
        msgpack.packb({"v": 1, "t": "call", "id": 1, "method": "x" * 2000}),  # oversize
        msgpack.packb({"v": 9, "t": "call", "id": 1, "method": "ping"}),
        msgpack.packb({"v": 1, "t": "warp", "id": 1}),
        msgpack.packb({"v": 1, "t": "call", "id": 1, "method": "ping", "kwargs": {1: 2}}),
        msgpack.packb({"v": 1, "t": "call", "id": 1, "method": "ping", "kwargs": {b"k": 2}}),
        msgpack.packb({"v": 1, "t": "result", "id": 77, "value": 1}),
        [b"two", b"frames"],
    ]
    for frame in frames:
        if isinstance(frame, list):
            raw.send_multipart(frame)
        else:
            raw.send(frame)
    raw.send(msgpack.packb({"v": 1, "t": "call", "id": 2, "method": "ping"}))
    run_until(reactor, lambda: server.statistics().calls_received == 1)
    stats = server.statistics()
    assert dict(stats.dropped_by_reason) == {
        "garbage": 5,  # garbage, empty, truncated, an int map key, two frames
        "oversize": 1,
        "version": 1,
        "type": 1,
        "invalid": 1,  # bytes key in kwargs
        "unknown_peer": 0,
        "unknown_call": 1,
        "unknown_ref": 0,
        "duplicate_call": 0,
    }
    assert raw.poll(5000)
    welcome = msgpack.unpackb(raw.recv())
    assert welcome["t"] == "welcome" and welcome["node"] == "server"
    assert raw.poll(5000)
    assert msgpack.unpackb(raw.recv()) == {"v": 1, "t": "result", "id": 2, "value": "pong"}
    raw.close()
    server.stop()


# ------------------------------------------------------------ dead peers


def test_a_callee_killed_mid_call_fails_the_call_with_peer_lost(
    reactor: Reactor, run_dir: Path, child: Callable[..., Any]
) -> None:
    proc, endpoint = child("victim", f"ipc://{run_dir}/victim.sock")
    client = Bus("client", reactor, connect=[endpoint])
    started(reactor, client)
    box = outcome(client.call("victim", "never"))
    run_until(reactor, lambda: client.statistics().calls_in_flight == 1)
    reactor.call_later(0.05, os.kill, proc.pid, signal.SIGKILL)
    start = time.monotonic()
    run_until(reactor, lambda: bool(box), timeout=5)
    assert isinstance(box[0], Failure) and box[0].check(PeerLost)
    assert time.monotonic() - start < 2.0  # the documented bound for a killed process
    client.stop()


def test_a_killed_node_that_had_connected_to_us_is_lost_and_its_calls_fail(
    reactor: Reactor, run_dir: Path, child: Callable[..., Any]
) -> None:
    address = f"ipc://{run_dir}/hub.sock"
    hub = Bus("hub", reactor, bind=address)
    started(reactor, hub)
    proc, _ = child("worker-0", f"connect:{address}", ready=False)
    run_until(reactor, lambda: hub.nodes() == ["worker-0"], timeout=10)
    box = outcome(hub.call("worker-0", "never"))
    run_until(reactor, lambda: hub.statistics().calls_in_flight == 1)
    os.kill(proc.pid, signal.SIGKILL)
    run_until(reactor, lambda: bool(box), timeout=5)
    assert isinstance(box[0], Failure) and box[0].check(PeerLost)
    assert hub.nodes() == []


def test_a_restarted_node_is_called_again_after_its_new_hello(
    reactor: Reactor, run_dir: Path, child: Callable[..., Any]
) -> None:
    address = f"ipc://{run_dir}/svc.sock"
    first, _ = child("svc", address)
    client = Bus("client", reactor, connect=[address])
    started(reactor, client)
    before = outcome(client.call("svc", "pid"))
    run_until(reactor, lambda: bool(before))
    first.kill()
    first.wait(5)
    run_until(reactor, lambda: client.nodes() == [])
    child("svc", address)
    run_until(reactor, lambda: client.nodes() == ["svc"], timeout=10)
    after = outcome(client.call("svc", "pid"))
    run_until(reactor, lambda: bool(after))
    assert isinstance(after[0], int) and after[0] != before[0]


def test_a_frozen_callee_is_found_dead_by_zmtp_heartbeats(
    reactor: Reactor, tmp_path: Path, child: Callable[..., Any]
) -> None:
    proc, endpoint = child("frozen", "tcp://127.0.0.1:0")
    client = Bus("client", reactor, connect=[endpoint], heartbeat=0.1, heartbeat_timeout=0.4)
    started(reactor, client)
    box = outcome(client.call("frozen", "never"))
    run_until(reactor, lambda: client.statistics().calls_in_flight == 1)
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        run_until(reactor, lambda: bool(box), timeout=5)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
    assert isinstance(box[0], Failure) and box[0].check(PeerLost)
    client.stop()


def test_errors_from_a_child_process_arrive_as_remote_errors(
    reactor: Reactor, run_dir: Path, child: Callable[..., Any]
) -> None:
    _, endpoint = child("worker", f"ipc://{run_dir}/w.sock")
    client = Bus("client", reactor, connect=[endpoint])
    started(reactor, client)
    box = outcome(client.call("worker", "fail"))
    run_until(reactor, lambda: bool(box))
    error = box[0].value
    assert isinstance(error, RemoteError) and error.remote_type == "ZeroDivisionError"
    assert isinstance(error.exception, ZeroDivisionError)
    client.stop()


# ------------------------------------------------------------ CURVE


def test_curve_keys_are_saved_private_and_load_back(tmp_path: Path) -> None:
    keys = _rpc_keys.generate()
    path = tmp_path / "bus.key"
    _rpc_keys.save(keys, path)
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = _rpc_keys.load(path)
    assert (loaded.public, loaded.secret) == (keys.public, keys.secret)
    path.chmod(0o644)
    with pytest.raises(PermissionError):
        _rpc_keys.load(path)


def test_curve_buses_with_the_cluster_key_talk(reactor: Reactor, tmp_path: Path) -> None:
    keys = _rpc_keys.generate()
    server = Bus("server", reactor, bind="tcp://127.0.0.1:0", curve=keys)
    server.expose("add", lambda a, b: a + b)
    started(reactor, server)
    client = Bus("client", reactor, connect=[server.endpoint or ""], curve=keys)
    started(reactor, client)
    box = outcome(client.call("server", "add", 1, 1))
    run_until(reactor, lambda: bool(box))
    assert box == [2]
    client.stop()
    server.stop()


@pytest.mark.parametrize("who", ["plaintext", "stranger"])
def test_a_peer_without_the_right_key_cannot_call_anything(
    reactor: Reactor, tmp_path: Path, child: Callable[..., Any], who: str
) -> None:
    keys = _rpc_keys.generate()
    keyfile = tmp_path / "cluster.key"
    _rpc_keys.save(keys, keyfile)
    _, endpoint = child("guarded", "tcp://127.0.0.1:0", str(keyfile))
    raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    raw.setsockopt(zmq.LINGER, 0)
    if who == "stranger":  # knows the server's public key, but has a key of its own
        public, secret = zmq.curve_keypair()
        raw.curve_publickey, raw.curve_secretkey = public, secret
        raw.curve_serverkey = keys.public
    raw.connect(endpoint)
    raw.send(msgpack.packb({"v": 1, "t": "hello", "node": who}))
    raw.send(msgpack.packb({"v": 1, "t": "call", "id": 1, "method": "pid"}))
    assert not raw.poll(700), "the guarded bus answered a peer without the key"
    raw.close()
    # ... while a peer with the key is answered.
    client = Bus("client", reactor, connect=[endpoint], curve=keys)
    started(reactor, client)
    box = outcome(client.call("guarded", "pid"))
    run_until(reactor, lambda: bool(box))
    assert isinstance(box[0], int)
    client.stop()
