"""connect_tcp over loopback: refusals, timeouts, cancellation, Happy Eyeballs (RFC 8305)."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest

from plait.cluster._defer import CancelledError, Deferred
from plait.cluster._tcp import interleave_addresses
from plait.cluster.reactor import Reactor
from tests.reactor_support import Echo, Recorder, closed_port, outcome


@pytest.fixture
def unresponsive() -> Iterator[int]:
    """A loopback port whose accept queue is full: a connect to it hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=5)
    yield port
    filler.close()
    server.close()


def test_connecting_to_a_closed_port_errbacks_with_connection_refused(
    reactor: Reactor,
) -> None:
    result = outcome(reactor, reactor.connect_tcp("127.0.0.1", closed_port(), Recorder))
    assert isinstance(result, ConnectionRefusedError)


def test_a_connect_that_hangs_times_out(reactor: Reactor, unresponsive: int) -> None:
    result = outcome(reactor, reactor.connect_tcp("127.0.0.1", unresponsive, Recorder,
                                                  timeout=0.05))
    assert isinstance(result, TimeoutError)
    assert reactor.get_writers() == []


def test_cancelling_a_connect_errbacks_with_cancelled_and_closes_the_socket(
    reactor: Reactor, unresponsive: int
) -> None:
    d = reactor.connect_tcp("127.0.0.1", unresponsive, Recorder)
    reactor.call_later(0.01, d.cancel)
    assert isinstance(outcome(reactor, d), CancelledError)
    assert reactor.get_writers() == [] and reactor.get_delayed_calls() == []


def test_a_client_factory_returning_none_errbacks_the_connect(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    result = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, lambda: None))
    assert isinstance(result, ConnectionAbortedError)


@pytest.mark.parametrize(
    "host,port,timeout",
    [("", 80, 1.0), ("127.0.0.1", 0, 1.0), ("127.0.0.1", 65536, 1.0),
     ("127.0.0.1", 80, -1.0), ("127.0.0.1", 80, 0.0)],
)


def test_connect_tcp_rejects_bad_arguments(
    reactor: Reactor, host: str, port: int, timeout: float
) -> None:
    with pytest.raises(ValueError):
        reactor.connect_tcp(host, port, Recorder, timeout=timeout)


# ----------------------------------------------------------- happy eyeballs


def test_interleave_addresses_alternates_families_starting_with_the_first() -> None:
    v6 = [(socket.AF_INET6, 1, 6, "", (f"::{i}", 80, 0, 0)) for i in (1, 2, 3)]
    v4 = [(socket.AF_INET, 1, 6, "", (f"10.0.0.{i}", 80)) for i in (1, 2)]
    order = interleave_addresses([*v6, *v4, v4[0]])
    assert [a[1][0] for a in order] == ["::1", "10.0.0.1", "::2", "10.0.0.2", "::3"]
    assert interleave_addresses([]) == []


def _fake_resolve(reactor: Reactor, ports: list[int]) -> None:
    from plait.cluster._defer import succeed

    def resolve(host: str, port: int, **kw: Any) -> Deferred[list[Any]]:
        return succeed([(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p))
                        for p in ports])

    reactor.resolve = resolve  # type: ignore[method-assign]


def test_a_refused_address_moves_on_to_the_next_at_once(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    _fake_resolve(reactor, [closed_port(), port.port])
    start = time.monotonic()
    client = outcome(reactor, reactor.connect_tcp("example.test", 80, Recorder))
    assert client.transport.get_extra_info("peername")[1] == port.port
    assert time.monotonic() - start < 0.25  # did not wait for the attempt delay
    client.transport.abort()


def test_a_hanging_address_gets_a_second_attempt_after_the_delay(
    reactor: Reactor, unresponsive: int
) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    _fake_resolve(reactor, [unresponsive, port.port])
    start = time.monotonic()
    client = outcome(reactor, reactor.connect_tcp("example.test", 80, Recorder))
    assert client.transport.get_extra_info("peername")[1] == port.port
    assert time.monotonic() - start >= 0.25
    assert reactor.get_writers() == []  # the losing attempt was closed
    client.transport.abort()


def test_when_every_address_fails_the_last_error_is_reported(reactor: Reactor) -> None:
    _fake_resolve(reactor, [closed_port(), closed_port()])
    result = outcome(reactor, reactor.connect_tcp("example.test", 80, Recorder))
    assert isinstance(result, ConnectionRefusedError)


def test_connect_tcp_to_a_name_resolves_it(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("localhost", port.port, Recorder), limit=10)
    assert client.transport.get_extra_info("peername")[0] == "127.0.0.1"
    client.transport.abort()


def test_connect_tcp_to_a_name_that_does_not_resolve_errbacks(reactor: Reactor) -> None:
    result = outcome(reactor, reactor.connect_tcp("no-such-host.invalid", 80, Recorder),
                     limit=20)
    assert isinstance(result, socket.gaierror)


def test_a_bind_address_of_the_wrong_family_errbacks_instead_of_raising(
    reactor: Reactor,
) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    result = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder,
                                                  bind_address=("::1", 0)))
    assert isinstance(result, OSError)
    assert reactor.get_writers() == []
