"""The conformance suite on ``AsyncioReactor``: TCP, Unix and TLS, asyncio's loop and uvloop.

The transports are the native ones (``AsyncioReactor`` shares them with ``Reactor``
through ``ReactorBase``); what changes is the loop that drives their
``add_reader``/``add_writer``/``call_soon``/``call_later``. Each class runs every
check of ``TransportConformance`` once on the default asyncio loop and once on
uvloop.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import uvloop

from plait.cluster.reactor import AsyncioReactor
from plait.cluster.tls import client_options, server_options
from tests.conformance.suite import PairBuilder, ReactorPairBuilder, TransportConformance
from tests.tls_certs import Certs, make_certs


class UvloopReactor(AsyncioReactor):
    """An ``AsyncioReactor`` on a uvloop loop of its own, closed with the reactor."""

    def __init__(self) -> None:
        super().__init__(uvloop.new_event_loop())

    def close(self) -> None:
        super().close()
        self.loop.close()


LOOPS: dict[str, Callable[[], AsyncioReactor]] = {
    "asyncio": AsyncioReactor,
    "uvloop": UvloopReactor,
}


@pytest.fixture(params=sorted(LOOPS))
def make_reactor(request: pytest.FixtureRequest) -> Callable[[], AsyncioReactor]:
    return LOOPS[request.param]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("tls-asyncio-conformance")))


def test_the_default_loop_is_asyncio_and_the_other_is_uvloop() -> None:
    plain, fast = AsyncioReactor(), UvloopReactor()
    try:
        assert isinstance(plain.loop, asyncio.SelectorEventLoop)
        assert isinstance(fast.loop, uvloop.Loop)
    finally:
        plain.close()
        fast.close()


class TestTCPTransportOnAsyncio(TransportConformance):
    @pytest.fixture
    def builder(self, make_reactor: Callable[[], AsyncioReactor]) -> Iterator[PairBuilder]:
        builder = ReactorPairBuilder(
            "tcp",
            make_reactor,
            listen=lambda reactor, factory: reactor.listen_tcp(0, factory, interface="127.0.0.1"),
            connect=lambda reactor, port, factory: reactor.connect_tcp(
                "127.0.0.1", port.get_host()[1], factory, timeout=5),
        )
        yield builder
        builder.close()


class TestUnixTransportOnAsyncio(TransportConformance):
    @pytest.fixture
    def builder(self, make_reactor: Callable[[], AsyncioReactor]) -> Iterator[PairBuilder]:
        # Not tmp_path: a socket path must fit in sun_path (108 bytes).
        directory = tempfile.mkdtemp(prefix="plait-conf-aio-")
        path = str(Path(directory) / "s.sock")
        builder = ReactorPairBuilder(
            "unix",
            make_reactor,
            listen=lambda reactor, factory: reactor.listen_unix(path, factory),
            connect=lambda reactor, port, factory: reactor.connect_unix(path, factory, timeout=5),
            abort_resets_peer=False,
            carries_fds=True,
        )
        try:
            yield builder
        finally:
            builder.close()
            shutil.rmtree(directory, ignore_errors=True)


class TestTLSTransportOnAsyncio(TransportConformance):
    @pytest.fixture
    def builder(self, make_reactor: Callable[[], AsyncioReactor],
                certs: Certs) -> Iterator[PairBuilder]:
        server = server_options(certs.server_cert, certs.server_key)
        client = client_options("localhost", ca_file=certs.ca)
        builder = ReactorPairBuilder(
            "tls",
            make_reactor,
            listen=lambda reactor, factory: reactor.listen_ssl(
                0, factory, server, interface="127.0.0.1"),
            connect=lambda reactor, port, factory: reactor.connect_ssl(
                "127.0.0.1", port.get_host()[1], factory, client, timeout=5),
        )
        yield builder
        builder.close()
