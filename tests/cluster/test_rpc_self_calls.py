"""A node calling itself: the same semantics as a call to a peer, on a loopback peer."""

from __future__ import annotations

from typing import Any

import pytest

from plait.cluster.defer import CancelledError, Deferred
from plait.cluster.rpc import NoSuchMethod, PeerLost, RemoteError, TimeoutError
from tests.cluster.rpc_helpers import Net, RawPeer, failure_of, result_of


class AppError(Exception):
    pass


@pytest.fixture
def net() -> Net:
    return Net()


def test_a_node_calls_its_own_methods_through_the_codec_on_a_later_turn(net: Net) -> None:
    bus = net.started("worker-0")
    bus.expose("echo", lambda *args, **kwargs: [args, kwargs])
    d = bus.call("worker-0", "echo", (1, 2), b"raw", key="value")
    assert not d.called  # never inside call()
    net.run()
    assert result_of(d) == [[[1, 2], b"raw"], {"key": "value"}]  # tuples arrive as lists
    assert bus.statistics().calls_received == 1
    assert bus.statistics().dropped == 0


def test_a_node_that_calls_itself_is_not_listed_among_its_peers(net: Net) -> None:
    bus = net.started("worker-0", bind="memory://w0")
    bus.expose("ping", lambda: "pong")
    d = bus.call("worker-0", "ping")
    net.run()
    assert result_of(d) == "pong"
    assert bus.nodes() == [] and bus.nodes("ping") == []
    assert bus.statistics().peers == ()
    assert failure_of(bus.call_any("ping")).check(NoSuchMethod)
    assert result_of(bus.gather("ping")) == {}


def test_errors_of_a_call_to_oneself_arrive_as_remote_errors(net: Net) -> None:
    bus = net.started("worker-0")

    def broken() -> None:
        raise AppError("it broke")

    bus.expose("broken", broken)
    failed = bus.call("worker-0", "broken")
    missing = bus.call("worker-0", "nothing-here")
    net.run()
    error = failure_of(failed).value
    assert isinstance(error, RemoteError) and error.message == "it broke"
    assert "AppError" in error.remote_type and "raise AppError" in error.remote_traceback
    assert failure_of(missing).check(NoSuchMethod)


def test_cancelling_a_call_to_oneself_cancels_the_handlers_deferred(net: Net) -> None:
    bus = net.started("worker-0")
    cancelled: list[bool] = []
    bus.expose("slow", lambda: Deferred(lambda d: cancelled.append(True)))
    d = bus.call("worker-0", "slow")
    net.run()
    assert bus.statistics().calls_serving == 1
    d.cancel()
    assert failure_of(d).check(CancelledError)
    assert cancelled == []  # the cancel travels like any other message
    net.run()
    assert cancelled == [True]
    assert bus.statistics().calls_serving == 0


def test_a_call_to_oneself_times_out_and_its_deadline_stops_the_work(net: Net) -> None:
    bus = net.started("worker-0")
    cancelled: list[bool] = []
    bus.expose("slow", lambda: Deferred(lambda d: cancelled.append(True)))
    d = bus.call("worker-0", "slow", timeout=2.0)
    net.run(1.0)
    assert not d.called and cancelled == []
    net.run(1.5)
    assert failure_of(d).check(TimeoutError)
    assert cancelled == [True]


def test_a_deferred_passed_to_oneself_arrives_as_a_remote_deferred(net: Net) -> None:
    bus = net.started("worker-0")
    received: list[Deferred[Any]] = []

    def watch(d: Deferred[Any]) -> str:
        received.append(d)
        return "watching"

    bus.expose("watch", watch)
    original: Deferred[str] = Deferred()
    d = bus.call("worker-0", "watch", original)
    net.run()
    assert result_of(d) == "watching"
    [remote] = received
    assert remote is not original and not remote.called
    original.callback("done")
    net.run()
    assert result_of(remote) == "done"


def test_notify_to_oneself_runs_the_method(net: Net) -> None:
    bus = net.started("worker-0")
    seen: list[int] = []
    bus.expose("note", seen.append)
    bus.notify("worker-0", "note", 5)
    assert seen == []
    net.run()
    assert seen == [5]


def test_stopping_fails_calls_to_oneself_and_later_ones_find_no_node(net: Net) -> None:
    bus = net.started("worker-0")
    cancelled: list[bool] = []
    bus.expose("slow", lambda: Deferred(lambda d: cancelled.append(True)))
    d = bus.call("worker-0", "slow")
    net.run()
    bus.stop()
    assert failure_of(d).check(CancelledError)
    assert cancelled == [True]
    net.run()
    assert bus.statistics().dropped == 0  # the bye to itself is not counted as garbage
    assert bus.statistics().peers_lost == 0
    assert failure_of(bus.call("worker-0", "slow")).check(PeerLost)


def test_calls_to_oneself_and_to_a_peer_run_side_by_side(net: Net) -> None:
    server = net.started("server", bind="memory://server")
    client = net.started("client", connect=("memory://server",))
    server.expose("where", lambda: "server")
    client.expose("where", lambda: "client")
    here, there = client.call("client", "where"), client.call("server", "where")
    net.run()
    assert (result_of(here), result_of(there)) == ("client", "server")
    assert client.nodes() == ["server"]


def test_a_peer_saying_hello_under_this_nodes_name_is_dropped_and_counted(
    net: Net, caplog: pytest.LogCaptureFixture
) -> None:
    bus = net.started("worker-0", bind="memory://w0")
    bus.expose("ping", lambda: "pong")
    impostor = RawPeer(net, "memory://w0", name="worker-0")
    impostor.hello()
    assert bus.nodes() == []
    assert bus.statistics().dropped_by_reason["invalid"] == 1
    assert "says hello under this node's own name" in caplog.text
    d = bus.call("worker-0", "ping")  # still itself, not the impostor
    net.run()
    assert result_of(d) == "pong" and impostor.frames == []
