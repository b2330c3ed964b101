"""The conformance suite over real Unix stream sockets with the native ``Reactor``."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator

import pytest

from plait.cluster.reactor import Reactor
from tests.conformance.suite import PairBuilder, ReactorPairBuilder, TransportConformance


class TestUnixTransport(TransportConformance):
    @pytest.fixture
    def builder(self) -> Iterator[PairBuilder]:
        # A short directory: AF_UNIX paths are limited to about 107 bytes.
        directory = tempfile.mkdtemp(prefix="plait-", dir="/tmp")
        path = f"{directory}/conformance.sock"
        builder = ReactorPairBuilder(
            "unix",
            Reactor,
            listen=lambda reactor, factory: reactor.listen_unix(path, factory),
            connect=lambda reactor, port, factory: reactor.connect_unix(path, factory, 5),
            abort_resets_peer=False,
        )
        try:
            yield builder
        finally:
            builder.close()
            shutil.rmtree(directory)
