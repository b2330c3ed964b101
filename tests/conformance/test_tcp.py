"""The conformance suite over real TCP on 127.0.0.1 with the native ``Reactor``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from plait.cluster.reactor import Reactor
from tests.conformance.suite import PairBuilder, ReactorPairBuilder, TransportConformance


def tcp_builder(make_reactor: type[Reactor] = Reactor) -> ReactorPairBuilder:
    """Pairs over TCP on 127.0.0.1 (an ephemeral port) for ``make_reactor``."""
    return ReactorPairBuilder(
        "tcp",
        make_reactor,
        listen=lambda reactor, factory: reactor.listen_tcp(0, factory, interface="127.0.0.1"),
        connect=lambda reactor, port, factory: reactor.connect_tcp(
            "127.0.0.1", port.get_host()[1], factory, timeout=5
        ),
    )


class TestTCPTransport(TransportConformance):
    @pytest.fixture
    def builder(self) -> Iterator[PairBuilder]:
        builder = tcp_builder()
        yield builder
        builder.close()
