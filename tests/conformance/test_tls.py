"""The conformance suite over TLS (pyOpenSSL memory BIOs) on real TCP, native ``Reactor``.

TLS keeps every TCP behaviour the suite checks: ``abort()`` aborts the TCP
connection under it, so the peer sees the RST (``abort_resets_peer`` stays True);
``write_eof()`` sends ``close_notify`` and a TCP half-close, and the peer may
still answer. TLS transports do not carry descriptors.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from plait.cluster.reactor import Reactor
from plait.cluster.tls import TLSOptions, client_options, server_options
from tests.conformance.suite import PairBuilder, ReactorPairBuilder, TransportConformance
from tests.tls_certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("tls-conformance")))


def tls_builder(server: TLSOptions, client: TLSOptions,
                make_reactor: type[Reactor] = Reactor) -> ReactorPairBuilder:
    """Pairs over TLS on TCP 127.0.0.1 (an ephemeral port) for ``make_reactor``."""
    return ReactorPairBuilder(
        "tls",
        make_reactor,
        listen=lambda reactor, factory: reactor.listen_ssl(
            0, factory, server, interface="127.0.0.1"),
        connect=lambda reactor, port, factory: reactor.connect_ssl(
            "127.0.0.1", port.get_host()[1], factory, client, timeout=5),
    )


class TestTLSTransport(TransportConformance):
    @pytest.fixture
    def builder(self, certs: Certs) -> Iterator[PairBuilder]:
        builder = tls_builder(server_options(certs.server_cert, certs.server_key),
                              client_options("localhost", ca_file=certs.ca))
        yield builder
        builder.close()
