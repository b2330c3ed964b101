"""Calls over the in-memory bus: results, errors, cancellation, deadlines, lost peers."""

from __future__ import annotations

from typing import Any

import pytest

from plait.cluster.defer import CancelledError, Deferred
from plait.cluster.rpc import (
    Bus,
    CodecError,
    NoSuchMethod,
    Overloaded,
    PeerLost,
    RemoteError,
    TimeoutError,
)
from tests.cluster.rpc_helpers import Net, failure_of, result_of


class AppError(Exception):
    pass


@pytest.fixture
def net() -> Net:
    return Net()


def pair(net: Net) -> tuple[Any, Any]:
    server = net.bus("server", bind="memory://server")
    client = net.bus("client", connect=("memory://server",))
    return server, client


def start(net: Net, *buses: Any) -> None:
    for bus in buses:
        bus.start()
    net.run()


def test_a_call_fires_with_the_handlers_value(net: Net) -> None:
    server, client = pair(net)
    server.expose("add", lambda a, b, *, c=0: a + b + c)
    start(net, server, client)
    d = client.call("server", "add", 1, 2, c=10)
    assert not d.called
    net.run()
    assert result_of(d) == 13


def test_the_method_decorator_exposes_and_returns_the_function(net: Net) -> None:
    server, client = pair(net)

    @server.method("double")
    def double(x: int) -> int:
        return 2 * x

    start(net, server, client)
    assert double(2) == 4
    d = client.call("server", "double", 21)
    net.run()
    assert result_of(d) == 42


def test_a_handler_may_return_a_deferred_that_fires_later(net: Net) -> None:
    server, client = pair(net)
    pending: Deferred[str] = Deferred()
    server.expose("later", lambda: pending)
    start(net, server, client)
    d = client.call("server", "later")
    net.run()
    assert not d.called
    pending.callback("done")
    net.run()
    assert result_of(d) == "done"


def test_a_handler_may_be_a_coroutine(net: Net) -> None:
    server, client = pair(net)
    pending: Deferred[int] = Deferred()

    async def handler(x: int) -> int:
        return x + await pending

    server.expose("co", handler)
    start(net, server, client)
    d = client.call("server", "co", 1)
    net.run()
    pending.callback(41)
    net.run()
    assert result_of(d) == 42


def test_a_raising_handler_gives_a_remote_error_with_type_message_and_traceback(
    net: Net,
) -> None:
    server, client = pair(net)

    def broken() -> None:
        raise AppError("no luck")

    server.expose("broken", broken)
    start(net, server, client)
    d = client.call("server", "broken")
    net.run()
    error = failure_of(d).value
    assert isinstance(error, RemoteError)
    assert error.remote_type == "tests.cluster.test_rpc_calls.AppError"
    assert error.message == "no luck"
    assert "in broken" in error.remote_traceback and "AppError" in error.remote_traceback
    assert error.exception is None


def test_a_failing_deferred_gives_a_remote_error_rebuilt_when_registered(net: Net) -> None:
    server, client = pair(net)
    client.codec.register_exception(AppError)
    pending: Deferred[None] = Deferred()
    server.expose("fails", lambda: pending)
    start(net, server, client)
    d = client.call("server", "fails")
    net.run()
    pending.errback(AppError("late"))
    net.run()
    error = failure_of(d).value
    assert isinstance(error, RemoteError)
    assert isinstance(error.exception, AppError) and error.exception.args == ("late",)


def test_an_unknown_method_gives_no_such_method(net: Net) -> None:
    server, client = pair(net)
    start(net, server, client)
    d = client.call("server", "nothing")
    net.run()
    error = failure_of(d).value
    assert isinstance(error, NoSuchMethod)
    assert (error.node, error.method) == ("server", "nothing")


def test_an_unknown_node_gives_peer_lost_at_once(net: Net) -> None:
    _, client = pair(net)
    error = failure_of(client.call("nobody", "m")).value
    assert isinstance(error, PeerLost) and error.node == "nobody"


def test_an_argument_without_encoding_fails_the_call_with_codec_error(net: Net) -> None:
    server, client = pair(net)
    start(net, server, client)
    assert failure_of(client.call("server", "m", {1, 2})).check(CodecError)
    assert client.statistics().calls_in_flight == 0


def test_a_result_without_encoding_comes_back_as_a_remote_codec_error(net: Net) -> None:
    server, client = pair(net)
    server.expose("bad", lambda: {1, 2})
    start(net, server, client)
    d = client.call("server", "bad")
    net.run()
    error = failure_of(d).value
    assert isinstance(error, RemoteError) and error.remote_type == "plait.cluster.rpc.CodecError"


def test_calls_are_answered_in_order(net: Net) -> None:
    server, client = pair(net)
    seen: list[int] = []

    def note(i: int) -> int:
        seen.append(i)
        return i

    server.expose("note", note)
    start(net, server, client)
    results: list[int] = []
    for i in range(20):
        client.call("server", "note", i).add_callback(results.append)
    net.run()
    assert seen == results == list(range(20))


def test_bytes_and_str_arguments_stay_apart_across_the_bus(net: Net) -> None:
    server, client = pair(net)
    server.expose("types", lambda *a: [type(x).__name__ for x in a])
    start(net, server, client)
    d = client.call("server", "types", b"x", "x")
    net.run()
    assert result_of(d) == ["bytes", "str"]


# ------------------------------------------------------------ cancellation and time


def test_cancel_on_the_caller_cancels_the_callees_deferred(net: Net) -> None:
    server, client = pair(net)
    cancelled: list[bool] = []
    server.expose("slow", lambda: Deferred(lambda d: cancelled.append(True)))
    start(net, server, client)
    d = client.call("server", "slow")
    net.run()
    assert server.statistics().calls_serving == 1
    d.cancel()
    assert failure_of(d).check(CancelledError)
    net.run()
    assert cancelled == [True]
    assert server.statistics().calls_serving == 0
    assert client.statistics().calls_in_flight == 0
    assert server.statistics().dropped == client.statistics().dropped == 0


def test_a_cancelled_call_gets_no_answer_even_if_the_handler_ignores_cancel(net: Net) -> None:
    server, client = pair(net)
    stubborn: Deferred[int] = Deferred(lambda d: d.callback(5))
    server.expose("stubborn", lambda: stubborn)
    start(net, server, client)
    d = client.call("server", "stubborn")
    net.run()
    d.cancel()
    net.run()
    assert failure_of(d).check(CancelledError)
    assert client.statistics().dropped_by_reason["unknown_call"] == 0


def test_a_timeout_fails_the_call_and_cancels_the_callee(net: Net) -> None:
    server, client = pair(net)
    cancelled: list[bool] = []
    server.expose("slow", lambda: Deferred(lambda d: cancelled.append(True)))
    start(net, server, client)
    d = client.call("server", "slow", timeout=2.0)
    net.run(1.9)
    assert not d.called
    net.run(0.2)
    assert failure_of(d).check(TimeoutError)
    assert cancelled == [True]
    assert server.statistics().calls_serving == 0


def test_an_answer_before_the_timeout_cancels_the_timer(net: Net) -> None:
    server, client = pair(net)
    server.expose("fast", lambda: 1)
    start(net, server, client)
    d = client.call("server", "fast", timeout=5.0)
    net.run()
    assert result_of(d) == 1
    assert net.clock.get_delayed_calls() == []


def test_rpc_timeout_is_the_deferred_timeout_and_a_builtin_timeout() -> None:
    import builtins

    from plait.cluster import defer

    assert TimeoutError is defer.TimeoutError
    assert issubclass(TimeoutError, builtins.TimeoutError)


# ------------------------------------------------------------ lost peers


def test_a_crashed_callee_fails_calls_in_flight_with_peer_lost(net: Net) -> None:
    server, client = pair(net)
    server.expose("slow", lambda: Deferred())
    start(net, server, client)
    d = client.call("server", "slow")
    net.run()
    net.network.crash("server")
    net.run()
    error = failure_of(d).value
    assert isinstance(error, PeerLost) and error.node == "server"
    assert client.nodes() == []
    assert client.statistics().peers_lost == 1
    assert failure_of(client.call("server", "slow")).check(PeerLost)


def test_a_crashed_caller_gets_its_calls_cancelled_on_the_callee(net: Net) -> None:
    server, client = pair(net)
    cancelled: list[bool] = []
    server.expose("slow", lambda: Deferred(lambda d: cancelled.append(True)))
    start(net, server, client)
    client.call("server", "slow").add_errback(lambda f: None)
    net.run()
    net.network.crash("client")
    net.run()
    assert cancelled == [True]
    assert server.statistics().calls_serving == 0


def test_peer_lost_declared_by_the_supervisor_fails_calls_at_once(net: Net) -> None:
    server, client = pair(net)
    server.expose("slow", lambda: Deferred())
    start(net, server, client)
    d = client.call("server", "slow")
    net.run()
    assert client.peer_lost("server", "process exited with -9")
    error = failure_of(d).value
    assert isinstance(error, PeerLost) and "exited" in str(error)
    assert not client.peer_lost("server")


def test_a_node_coming_back_under_its_name_replaces_the_old_route(net: Net) -> None:
    server = net.started("server", bind="memory://server")
    first = net.started("w", connect=("memory://server",))
    first.expose("who", lambda: "first")
    net.run()
    d = server.call("w", "never-answered")
    second = net.started("w", connect=("memory://server",))
    second.expose("who", lambda: "second")
    net.run()
    assert failure_of(d).check(PeerLost, NoSuchMethod)
    later = server.call("w", "who")
    net.run()
    assert result_of(later) == "second"


# ------------------------------------------------------------ the serving limit


def test_calls_beyond_max_serving_are_refused_with_overloaded_and_counted(net: Net) -> None:
    server = Bus("server", net.clock, bind="memory://limited", network=net.network,
                 max_serving=3)
    client = net.bus("client", connect=("memory://limited",))
    pending: list[Deferred[int]] = []

    def hold() -> Deferred[int]:
        pending.append(Deferred())
        return pending[-1]

    server.expose("hold", hold)
    server.expose("quick", lambda: "quick")
    start(net, server, client)
    held = [client.call("server", "hold") for _ in range(3)]
    refused = client.call("server", "hold")
    quick = client.call("server", "quick")  # refused too: the limit is reached
    net.run()
    error = failure_of(refused).value
    assert isinstance(error, Overloaded) and (error.node, error.limit) == ("server", 3)
    assert "already runs 3 calls" in str(error)
    assert failure_of(quick).check(Overloaded)
    assert len(pending) == 3  # the refused call never ran
    stats = server.statistics()
    assert (stats.calls_serving, stats.calls_refused, stats.dropped) == (3, 2, 0)
    pending[0].callback(7)
    net.run()
    assert result_of(held[0]) == 7
    again = client.call("server", "hold")  # room for one more
    net.run()
    assert len(pending) == 4 and not again.called


def test_the_serving_limit_is_per_peer(net: Net) -> None:
    server = Bus("server", net.clock, bind="memory://limited", network=net.network,
                 max_serving=1)
    first = net.bus("first", connect=("memory://limited",))
    second = net.bus("second", connect=("memory://limited",))
    server.expose("hold", lambda: Deferred())
    start(net, server, first, second)
    a, b = first.call("server", "hold"), second.call("server", "hold")
    c = first.call("server", "hold")
    net.run()
    assert not a.called and not b.called
    assert failure_of(c).check(Overloaded)
    assert server.statistics().calls_serving == 2


def test_max_serving_must_allow_one_call(net: Net) -> None:
    with pytest.raises(ValueError, match="max_serving"):
        Bus("server", net.clock, bind="memory://limited", network=net.network, max_serving=0)
