"""plait.cluster.rpc: the bus that joins a cluster's processes, and remote Deferreds.

See docs/rpc.md for the guide and docs/rpc-wire.md for the wire format. A bus is
a named node: ``Bus(name, reactor, bind=..., connect=[...])``; ``expose`` methods,
``call`` other nodes (a remote Deferred), ``call_any``, ``gather``, ``notify``,
``publish``/``subscribe``. Calls end with their result or with ``RemoteError``,
``TimeoutError``, ``PeerLost``, ``NoSuchMethod`` or ``CancelledError``.
"""

from plait.cluster._rpc_bus import Bus, Subscription
from plait.cluster._rpc_codec import Codec
from plait.cluster._rpc_errors import (
    CodecError,
    NoSuchMethod,
    Overloaded,
    PeerLost,
    RemoteError,
    TimeoutError,
    WireError,
)
from plait.cluster._rpc_keys import CurveKeys
from plait.cluster._rpc_memory import MemoryNetwork
from plait.cluster._rpc_peer import DROP_REASONS, BusStatistics
from plait.cluster._rpc_wire import VERSION as WIRE_VERSION

__all__ = [
    "DROP_REASONS",
    "WIRE_VERSION",
    "Bus",
    "BusStatistics",
    "Codec",
    "CodecError",
    "CurveKeys",
    "MemoryNetwork",
    "NoSuchMethod",
    "Overloaded",
    "PeerLost",
    "RemoteError",
    "Subscription",
    "TimeoutError",
    "WireError",
]
