"""plait.cluster.testing: fakes and helpers for testing Plait code.

The pytest plugin lives in ``plait.cluster.testing.pytest_plugin`` and is registered
through the ``pytest11`` entry point.
"""

from plait.cluster.testing._memory import MemoryTransport
from plait.cluster.testing._ports import (
    AdoptedConnection,
    AdoptedPort,
    ClientConnection,
    DatagramServer,
    MemoryDatagramTransport,
    MemoryListeningPort,
    StreamServer,
)
from plait.cluster.testing._pump import IOPump, connect_in_memory
from plait.cluster.testing._reactor import MemoryReactor

__all__ = [
    "AdoptedConnection",
    "AdoptedPort",
    "ClientConnection",
    "DatagramServer",
    "IOPump",
    "MemoryDatagramTransport",
    "MemoryListeningPort",
    "MemoryReactor",
    "MemoryTransport",
    "StreamServer",
    "connect_in_memory",
]
