"""The conformance suite over the memory pair (``connect_in_memory`` + ``IOPump``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from plait.cluster.testing import IOPump, connect_in_memory
from tests.conformance.suite import Pair, PairBuilder, Recorder, TransportConformance


class MemoryPairBuilder(PairBuilder):
    """Pairs joined by ``connect_in_memory``; ``drive`` pumps every pair until quiet."""

    name = "memory"
    abort_resets_peer = True
    carries_fds = True

    def __init__(self) -> None:
        self.pumps: list[IOPump] = []

    def open(self) -> Pair:
        server, client = Recorder(), Recorder()
        self.pumps.append(connect_in_memory(server, client))
        return Pair(server, client, self.drive)

    def close(self) -> None:
        for pump in self.pumps:
            for transport in (pump.server_transport, pump.client_transport):
                transport.abort()
            pump.flush()
        self.pumps.clear()

    def drive(self, until: Callable[[], bool], timeout: float) -> bool:
        # The pump needs no time: ``timeout`` only matters to real loops. The loop
        # guard of ``flush`` bounds the work instead.
        for _ in range(1000):
            if until():
                return True
            moved = False
            for pump in self.pumps:
                moved = pump.pump() or moved
            if not moved:
                return until()
        raise RuntimeError("the memory pair is still busy after 1000 steps")


class TestMemoryTransport(TransportConformance):
    @pytest.fixture
    def builder(self) -> Iterator[PairBuilder]:
        builder = MemoryPairBuilder()
        yield builder
        builder.close()
