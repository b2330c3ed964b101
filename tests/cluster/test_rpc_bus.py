"""The bus as a whole over memory: lifecycle, fan-out, pub/sub, hostile input, scale."""

from __future__ import annotations

import gc
from typing import Any

import msgpack
import pytest
from zope.interface.verify import verifyObject

from plait.cluster._rpc_link import IBusLink
from plait.cluster._rpc_memory import MemoryLink
from plait.cluster.defer import CancelledError, Deferred
from plait.cluster.failure import Failure
from plait.cluster.rpc import DROP_REASONS, Bus, NoSuchMethod, PeerLost, RemoteError
from tests.cluster.rpc_helpers import Net, RawPeer, failure_of, result_of


@pytest.fixture
def net() -> Net:
    return Net()


def cluster(net: Net, workers: int = 2) -> tuple[Bus, list[Bus]]:
    server = net.started("supervisor", bind="memory://sup")
    nodes = [net.started(f"worker-{i}", connect=("memory://sup",)) for i in range(workers)]
    return server, nodes


# ------------------------------------------------------------ lifecycle


def test_memory_links_provide_ibuslink(net: Net) -> None:
    assert verifyObject(IBusLink, MemoryLink(net.network, net.clock, "memory://x", []))


def test_start_fires_once_the_connected_peers_answered(net: Net) -> None:
    server = net.started("server", bind="memory://s")
    client = net.bus("client", connect=("memory://s",))
    d = client.start()
    assert not d.called
    net.run()
    assert result_of(d) is client
    assert client.nodes() == ["server"] and server.nodes() == ["client"]


def test_start_twice_fails(net: Net) -> None:
    bus = net.started("a", bind="memory://a")
    assert failure_of(bus.start()).check(RuntimeError)


def test_binding_an_address_in_use_fails_start(net: Net) -> None:
    net.started("a", bind="memory://same")
    assert failure_of(net.bus("b", bind="memory://same").start()).check(OSError)


def test_connecting_to_nothing_fails_start(net: Net) -> None:
    assert failure_of(net.bus("b", connect=("memory://void",)).start()).check(OSError)


def test_a_bus_needs_a_name(net: Net) -> None:
    with pytest.raises(ValueError):
        net.bus("")


def test_stop_says_bye_so_peers_fail_calls_at_once(net: Net) -> None:
    server, (worker, _) = cluster(net)
    worker.expose("slow", lambda: Deferred())
    net.run()
    d = server.call("worker-0", "slow")
    mine = worker.call("supervisor", "whatever")
    net.run()
    failure_of(mine)
    pending = worker.call("supervisor", "never")
    result_of(worker.stop())
    assert failure_of(pending).check(CancelledError)
    net.run()
    assert failure_of(d).check(PeerLost)
    assert server.nodes() == ["worker-1"]
    assert result_of(worker.stop()) is None


def test_exposing_after_start_is_announced_to_peers(net: Net) -> None:
    server, (worker, _) = cluster(net)
    assert server.nodes("late") == []
    worker.expose("late", lambda: "here")
    net.run()
    assert server.nodes("late") == ["worker-0"]


# ------------------------------------------------------------ fan-out


def test_call_any_goes_to_a_node_exposing_the_method_and_balances(net: Net) -> None:
    server, workers = cluster(net, 3)
    for worker in workers:
        worker.expose("who", lambda name=worker.name: name)
    net.run()
    calls = [server.call_any("who") for _ in range(6)]
    net.run()
    answers = [result_of(d) for d in calls]
    assert sorted(answers) == sorted(["worker-0", "worker-1", "worker-2"] * 2)


def test_call_any_prefers_the_node_with_fewer_calls_in_flight(net: Net) -> None:
    server, (busy, idle) = cluster(net)
    busy.expose("work", lambda: Deferred())
    idle.expose("work", lambda: Deferred())
    net.run()
    server.call_any("work")
    server.call_any("work")
    net.run()
    assert busy.statistics().calls_serving == idle.statistics().calls_serving == 1


def test_call_any_without_any_node_gives_no_such_method(net: Net) -> None:
    server, _ = cluster(net)
    error = failure_of(server.call_any("absent")).value
    assert isinstance(error, NoSuchMethod) and error.method == "absent"


def test_gather_collects_each_nodes_result_or_failure(net: Net) -> None:
    server, (ok, broken) = cluster(net)
    ok.expose("stats", lambda n: {"n": n})
    broken.expose("stats", lambda n: 1 / 0)
    net.run()
    d = server.gather("stats", 5)
    net.run()
    results = result_of(d)
    assert results["worker-0"] == {"n": 5}
    assert isinstance(results["worker-1"], Failure)
    assert results["worker-1"].check(RemoteError)
    assert list(results) == ["worker-0", "worker-1"]


def test_gather_on_named_nodes_reports_unknown_ones_as_lost(net: Net) -> None:
    server, (ok, _) = cluster(net)
    ok.expose("ping", lambda: "pong")
    net.run()
    d = server.gather("ping", nodes=["worker-0", "ghost"])
    net.run()
    results = result_of(d)
    assert results["worker-0"] == "pong" and results["ghost"].check(PeerLost)


def test_gather_with_nobody_fires_with_an_empty_map(net: Net) -> None:
    server, _ = cluster(net)
    assert result_of(server.gather("absent")) == {}


def test_cancelling_gather_cancels_the_calls_in_flight(net: Net) -> None:
    server, workers = cluster(net)
    cancelled: list[str] = []
    for worker in workers:
        worker.expose("slow", lambda n=worker.name: Deferred(lambda d: cancelled.append(n)))
    net.run()
    d = server.gather("slow")
    net.run()
    d.cancel()
    net.run()
    assert sorted(cancelled) == ["worker-0", "worker-1"]
    assert failure_of(d).check(CancelledError)


def test_notify_runs_the_method_and_sends_nothing_back(net: Net) -> None:
    server, (worker, _) = cluster(net)
    seen: list[Any] = []
    worker.expose("log", seen.append)
    worker.expose("boom", lambda: 1 / 0)
    net.run()
    server.notify("worker-0", "log", "line")
    server.notify("worker-0", "boom")
    server.notify("worker-0", "absent")
    server.notify("ghost", "log", "x")
    net.run()
    assert seen == ["line"]
    assert server.statistics().calls_in_flight == 0
    assert worker.statistics().calls_received == 3


# ------------------------------------------------------------ publish/subscribe


def test_publish_reaches_subscribers_on_every_node_including_this_one(net: Net) -> None:
    server, (w0, _w1) = cluster(net)
    got: list[tuple[str, Any]] = []
    w0.subscribe("config", lambda m: got.append(("w0", m)))
    server.subscribe("config", lambda m: got.append(("sup", m)))
    net.run()
    assert server.publish("config", {"level": 2}) == 1
    assert got == []
    net.run()
    assert sorted(got) == [("sup", {"level": 2}), ("w0", {"level": 2})]


def test_a_cancelled_subscription_receives_nothing_more(net: Net) -> None:
    server, (w0, _) = cluster(net)
    got: list[Any] = []
    subscription = w0.subscribe("t", got.append)
    net.run()
    server.publish("t", 1)
    net.run()
    subscription.cancel()
    subscription.cancel()
    net.run()
    assert server.publish("t", 2) == 0
    net.run()
    assert got == [1]


def test_a_failing_subscriber_does_not_stop_the_others(net: Net) -> None:
    server, (w0, _) = cluster(net)
    got: list[Any] = []
    w0.subscribe("t", lambda m: 1 / 0)
    w0.subscribe("t", got.append)
    net.run()
    server.publish("t", "x")
    net.run()
    assert got == ["x"]


# ------------------------------------------------------------ hostile input


HOSTILE: list[tuple[Any, str]] = [
    (b"\xc1\xc1garbage", "garbage"),
    (b"", "garbage"),
    (msgpack.packb([1, 2, 3]), "garbage"),
    (msgpack.packb({1: "int key"}), "garbage"),
    (b"\x91" * 5000, "garbage"),
    (msgpack.packb({"v": 2, "t": "call"}), "version"),
    (msgpack.packb({"t": "call"}), "version"),
    (msgpack.packb({"v": 1, "t": "explode"}), "type"),
    (msgpack.packb({"v": 1, "t": "call", "id": "x", "method": "ping"}), "invalid"),
    (msgpack.packb({"v": 1, "t": "call", "id": 1, "method": "ping", "kwargs": {b"k": 1}}),
     "invalid"),
    (msgpack.packb({"v": 1, "t": "result", "id": 999_999, "value": 1}), "unknown_call"),
    (msgpack.packb({"v": 1, "t": "error", "id": 999_999,
                    "error": {"type": "E", "message": "m"}}), "unknown_call"),
    (msgpack.packb({"v": 1, "t": "cancel", "id": 424242}), "unknown_call"),
    (msgpack.packb({"v": 1, "t": "ref-result", "ref": 5, "value": 1}), "unknown_ref"),
    (msgpack.packb({"v": 1, "t": "ref-cancel", "ref": 5}), "unknown_ref"),
]


@pytest.mark.parametrize(("frame", "reason"), HOSTILE, ids=[r for _, r in HOSTILE])
def test_hostile_frames_are_dropped_counted_and_the_node_keeps_answering(
    net: Net, frame: bytes, reason: str
) -> None:
    server = net.started("server", bind="memory://s")
    server.expose("ping", lambda: "pong")
    raw = RawPeer(net, "memory://s")
    raw.hello()
    raw.send(frame)
    stats = server.statistics()
    assert stats.dropped == 1 and stats.dropped_by_reason[reason] == 1
    raw.send({"v": 1, "t": "call", "id": 1, "method": "ping", "args": [], "kwargs": {}})
    assert raw.last("result") == {"v": 1, "t": "result", "id": 1, "value": "pong"}


def test_every_drop_reason_is_reported_even_at_zero(net: Net) -> None:
    server = net.started("server", bind="memory://s")
    assert set(server.statistics().dropped_by_reason) == set(DROP_REASONS)


def test_messages_before_hello_are_dropped_as_unknown_peer(net: Net) -> None:
    server = net.started("server", bind="memory://s")
    server.expose("ping", lambda: "pong")
    raw = RawPeer(net, "memory://s")
    raw.send({"v": 1, "t": "call", "id": 1, "method": "ping"})
    assert server.statistics().dropped_by_reason["unknown_peer"] == 1
    assert raw.frames == []


def test_oversize_messages_are_dropped(net: Net) -> None:
    server = Bus("server", net.clock, bind="memory://s", network=net.network, max_message=100)
    server.start()
    server.expose("ping", lambda: "pong")
    raw = RawPeer(net, "memory://s")
    raw.hello()
    raw.send({"v": 1, "t": "call", "id": 1, "method": "ping", "args": ["x" * 200]})
    assert server.statistics().dropped_by_reason["oversize"] == 1
    raw.send({"v": 1, "t": "call", "id": 2, "method": "ping"})
    assert raw.last("result")["value"] == "pong"


def test_a_reused_call_id_is_dropped_while_the_first_runs(net: Net) -> None:
    server = net.started("server", bind="memory://s")
    server.expose("slow", lambda: Deferred())
    raw = RawPeer(net, "memory://s")
    raw.hello()
    raw.send({"v": 1, "t": "call", "id": 1, "method": "slow"})
    raw.send({"v": 1, "t": "call", "id": 1, "method": "slow"})
    assert server.statistics().dropped_by_reason["duplicate_call"] == 1


def test_a_reply_from_another_peer_is_not_accepted_for_our_call(net: Net) -> None:
    server = net.started("server", bind="memory://s")
    worker = net.started("worker", connect=("memory://s",))
    worker.expose("slow", lambda: Deferred())
    net.run()
    d = server.call("worker", "slow")
    raw = RawPeer(net, "memory://s", name="intruder")
    raw.hello()
    forged = {"v": 1, "t": "result", "id": 1, "value": "forged"}
    raw.send(forged)
    assert not d.called
    assert server.statistics().dropped_by_reason["unknown_call"] == 1


def test_the_callee_deadline_cancels_work_even_without_a_cancel_message(net: Net) -> None:
    server = net.started("server", bind="memory://s")
    cancelled: list[bool] = []
    server.expose("slow", lambda: Deferred(lambda d: cancelled.append(True)))
    raw = RawPeer(net, "memory://s")
    raw.hello()
    raw.send({"v": 1, "t": "call", "id": 1, "method": "slow", "timeout": 3})
    net.run(2.9)
    assert cancelled == []
    net.run(0.2)
    assert cancelled == [True]
    assert [f for f in raw.frames if f["t"] in ("result", "error")] == []


def test_a_handler_given_bad_keyword_arguments_answers_with_an_error(net: Net) -> None:
    server = net.started("server", bind="memory://s")
    server.expose("ping", lambda: "pong")
    raw = RawPeer(net, "memory://s")
    raw.hello()
    raw.send({"v": 1, "t": "call", "id": 1, "method": "ping", "kwargs": {"a b": 1}})
    assert raw.last("error")["error"]["type"] == "TypeError"


# ------------------------------------------------------------ scale


def test_ten_thousand_concurrent_calls_are_all_answered_and_nothing_is_kept(net: Net) -> None:
    server = net.started("server", bind="memory://s")
    client = net.started("client", connect=("memory://s",))
    pending: list[Deferred[int]] = []

    def later(i: int) -> Deferred[int]:
        d: Deferred[int] = Deferred()
        pending.append(d)
        return d

    server.expose("later", later)
    # Each call has a timeout: a timer on the caller and a deadline on the callee,
    # 20,000 timers that are all cancelled when the answers come (O(log n) each).
    calls = [client.call("server", "later", i, timeout=30.0) for i in range(10_000)]
    net.run()
    assert server.statistics().calls_serving == 10_000
    assert client.statistics().calls_in_flight == 10_000
    assert len(net.clock.get_delayed_calls()) == 20_000
    for i, d in enumerate(pending):
        d.callback(i * 2)
    net.run()
    assert [result_of(d) for d in calls] == [i * 2 for i in range(10_000)]
    assert server.statistics().calls_serving == client.statistics().calls_in_flight == 0
    assert net.clock.get_delayed_calls() == []
    gc.collect()


def test_a_call_on_the_wire_has_exactly_the_documented_layout(net: Net) -> None:
    server = net.started("server", bind="memory://s")
    raw = RawPeer(net, "memory://s")
    raw.hello()
    d = server.call("raw", "ping", 1, b"x", k="v", timeout=5)
    net.run()
    call = raw.last("call")
    assert call == {
        "v": 1, "t": "call", "id": call["id"], "method": "ping",
        "args": [1, b"x"], "kwargs": {"k": "v"}, "timeout": 5,
    }
    raw.send({"v": 1, "t": "result", "id": call["id"], "value": "pong"})
    assert result_of(d) == "pong"


def test_memory_stays_bounded_over_rounds_of_thousands_of_calls(net: Net) -> None:
    """Each call leaves nothing behind: a second round of calls allocates no more."""
    import tracemalloc

    server = net.started("server", bind="memory://s")
    client = net.started("client", connect=("memory://s",))
    server.expose("echo", lambda x: x)

    def one_round() -> None:
        calls = [client.call("server", "echo", i) for i in range(3_000)]
        net.run()
        assert [result_of(d) for d in calls] == list(range(3_000))

    one_round()
    gc.collect()
    tracemalloc.start()
    try:
        one_round()
        gc.collect()
        first, _ = tracemalloc.get_traced_memory()
        one_round()
        gc.collect()
        second, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert second - first < 64 * 1024, f"grew by {second - first} bytes"
