"""TCP on the native reactor over real loopback sockets (bounded waits)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from plait.cluster.protocol import Protocol
from plait.cluster.reactor import Reactor


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    r = Reactor()
    yield r
    r.close()


def run_until(reactor: Reactor, limit: float = 5.0) -> None:
    """Run ``reactor`` until something stops it, failing the test after ``limit`` s."""
    timed_out = []

    def give_up() -> None:
        timed_out.append(True)
        reactor.stop()

    guard = reactor.call_later(limit, give_up)
    reactor.run(install_signal_handlers=False)
    assert not timed_out, f"the reactor was still running after {limit} s"
    if guard.active():
        guard.cancel()


class Echo(Protocol):
    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def test_an_echo_server_echoes_what_a_client_sends(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    events: list[Any] = []

    class Client(Protocol):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.write(b"hello")

        def data_received(self, data: bytes) -> None:
            events.append(data)
            self.transport.close()

        def connection_lost(self, exc: BaseException | None) -> None:
            events.append(("lost", exc))
            reactor.stop()

    reactor.connect_tcp("127.0.0.1", port.port, Client)
    run_until(reactor)
    assert events == [b"hello", ("lost", None)]
