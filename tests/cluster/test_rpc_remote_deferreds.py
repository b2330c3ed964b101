"""Deferreds cross the bus as values and arrive as remote Deferreds."""

from __future__ import annotations

from typing import Any

import pytest

from plait.cluster.defer import CancelledError, Deferred
from plait.cluster.rpc import CodecError, PeerLost, RemoteError
from tests.cluster.rpc_helpers import Net, failure_of, result_of


@pytest.fixture
def net() -> Net:
    return Net()


def buses(net: Net) -> tuple[Any, Any]:
    server = net.started("server", bind="memory://server")
    client = net.started("client", connect=("memory://server",))
    return server, client


def test_a_deferred_inside_a_result_arrives_as_a_remote_deferred(net: Net) -> None:
    server, client = buses(net)
    original: Deferred[str] = Deferred()
    server.expose("job", lambda: {"id": 7, "done": original})
    d = client.call("server", "job")
    net.run()
    value = result_of(d)
    assert value["id"] == 7
    remote = value["done"]
    assert isinstance(remote, Deferred) and not remote.called
    original.callback("finished")
    net.run()
    assert result_of(remote) == "finished"
    assert server.statistics().dropped == client.statistics().dropped == 0


def test_a_deferred_that_already_fired_arrives_after_the_message_carrying_it(net: Net) -> None:
    server, client = buses(net)
    fired: Deferred[int] = Deferred()
    fired.callback(3)
    server.expose("job", lambda: [fired])
    d = client.call("server", "job")
    net.run()
    [remote] = result_of(d)
    assert result_of(remote) == 3


def test_a_deferred_passed_as_an_argument_reaches_the_callee_as_a_remote_deferred(
    net: Net,
) -> None:
    server, client = buses(net)
    received: list[Deferred[Any]] = []

    def watch(d: Deferred[Any]) -> str:
        received.append(d)
        return "watching"

    server.expose("watch", watch)
    mine: Deferred[str] = Deferred()
    d = client.call("server", "watch", mine)
    net.run()
    assert result_of(d) == "watching"
    got: list[Any] = []
    received[0].add_callback(got.append)
    mine.callback("news")
    net.run()
    assert got == ["news"]


def test_a_failing_original_fails_the_remote_deferred_with_remote_error(net: Net) -> None:
    server, client = buses(net)
    original: Deferred[str] = Deferred()
    server.expose("job", lambda: original)
    server.expose("wrap", lambda: [original])
    d = client.call("server", "wrap")
    net.run()
    [remote] = result_of(d)
    original.errback(KeyError("gone"))
    net.run()
    error = failure_of(remote).value
    assert isinstance(error, RemoteError) and error.remote_type == "KeyError"
    assert isinstance(error.exception, KeyError)


def test_cancelling_a_remote_deferred_cancels_the_original(net: Net) -> None:
    server, client = buses(net)
    cancelled: list[bool] = []
    original: Deferred[str] = Deferred(lambda d: cancelled.append(True))
    server.expose("job", lambda: [original])
    d = client.call("server", "job")
    net.run()
    [remote] = result_of(d)
    remote.cancel()
    net.run()
    assert failure_of(remote).check(CancelledError)
    assert cancelled == [True]
    assert server.statistics().dropped == 0


def test_losing_the_owner_fails_its_remote_deferreds_with_peer_lost(net: Net) -> None:
    server, client = buses(net)
    server.expose("job", lambda: [Deferred()])
    d = client.call("server", "job")
    net.run()
    [remote] = result_of(d)
    net.network.crash("server")
    net.run()
    assert failure_of(remote).check(PeerLost)


def test_a_value_without_encoding_fails_the_remote_deferred(net: Net) -> None:
    server, client = buses(net)
    original: Deferred[Any] = Deferred()
    server.expose("job", lambda: [original])
    d = client.call("server", "job")
    net.run()
    [remote] = result_of(d)
    original.callback({1, 2})
    net.run()
    error = failure_of(remote).value
    assert isinstance(error, RemoteError) and error.remote_type == "plait.cluster.rpc.CodecError"


def test_a_deferred_cannot_be_published(net: Net) -> None:
    server, _ = buses(net)
    with pytest.raises(CodecError):
        server.publish("topic", Deferred())


def test_a_remote_deferred_can_be_sent_on_to_a_third_node(net: Net) -> None:
    server, client = buses(net)
    third = net.started("third", connect=("memory://server",))
    original: Deferred[str] = Deferred()
    server.expose("job", lambda: [original])
    got: list[Any] = []
    third.expose("watch", lambda d: d.add_callback(got.append) and None)
    d = client.call("server", "job")
    net.run()
    [remote] = result_of(d)
    relay = server.call("third", "watch", remote)
    net.run()
    assert result_of(relay) is None
    original.callback("relayed")
    net.run()
    assert got == ["relayed"]
