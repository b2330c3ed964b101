"""What a bus node knows about each peer, and its statistics.

A peer exists from its hello (or its welcome) until it is lost; everything that
depends on it hangs off its ``_Peer`` record so that losing it is one sweep:

* ``serving``: calls it made to us that are still running (call id -> entry);
* ``exported``: our Deferreds it holds references to (ref -> Deferred);
* ``proxies``: its Deferreds we hold as remote Deferreds (ref -> Deferred).

The calls *we* made to it live in the node's single ``_calls`` table (the hot
path looks them up by id only); losing a peer scans that table once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from plait.cluster.interfaces import IDelayedCall

__all__ = ["BusStatistics", "DROP_REASONS"]

#: Why a received message can be dropped; each is a counter in ``statistics()``.
DROP_REASONS = (
    "garbage",  # not one msgpack map, bad UTF-8, unregistered extension code
    "oversize",  # bigger than the bus's max_message
    "version",  # "v" missing or not 1
    "type",  # "t" missing or unknown
    "invalid",  # a field missing or of the wrong type
    "unknown_peer",  # anything but hello/welcome from a route that never said hello
    "unknown_call",  # a result, error or cancel for a call id not in flight
    "unknown_ref",  # a ref-* message for a Deferred reference not held
    "duplicate_call",  # a call id already being served for that peer
)


@dataclass(frozen=True, slots=True, kw_only=True)
class BusStatistics:
    """A snapshot of a bus's counters (``Bus.statistics()``).

    Attributes:
        name: The node's name.
        peers: The names of the peers known now, sorted.
        calls_in_flight: Calls this node made that await an answer.
        calls_serving: Calls this node is running for its peers.
        calls_sent: Calls and notifications sent since the start.
        calls_received: Calls and notifications received since the start.
        calls_refused: Calls answered with ``Overloaded`` since the start (the
            caller had ``max_serving`` calls running here already).
        peers_lost: Peers lost since the start (death, bye, ``peer_lost``).
        dropped: Received messages dropped, all reasons together.
        dropped_by_reason: The same, by reason (see ``DROP_REASONS``).
    """

    name: str
    peers: tuple[str, ...]
    calls_in_flight: int
    calls_serving: int
    calls_sent: int
    calls_received: int
    calls_refused: int
    peers_lost: int
    dropped: int
    dropped_by_reason: Mapping[str, int] = field(default_factory=dict)


class _Serving:
    """A call we run for a peer, until it answers or is cancelled."""

    __slots__ = ("deferred", "timer")

    def __init__(self, deferred: Any) -> None:
        self.deferred = deferred
        self.timer: IDelayedCall | None = None


class _Peer:
    __slots__ = (
        "exported",
        "methods",
        "name",
        "outstanding",
        "proxies",
        "route",
        "serving",
        "topics",
    )

    def __init__(self, name: str, route: bytes) -> None:
        self.name = name
        self.route = route
        self.methods: frozenset[str] = frozenset()
        self.topics: frozenset[str] = frozenset()
        self.outstanding = 0
        self.serving: dict[int, _Serving] = {}
        self.exported: dict[int, Any] = {}
        self.proxies: dict[int, Any] = {}

    def __repr__(self) -> str:
        return f"<peer {self.name!r} route={self.route!r}>"


class _OutCall:
    """A call we made, until its answer, its timeout, its cancel or its peer's loss."""

    __slots__ = ("deferred", "peer", "timer")

    def __init__(self, deferred: Any, peer: _Peer) -> None:
        self.deferred = deferred
        self.peer = peer
        self.timer: IDelayedCall | None = None


def _new_counter() -> Counter[str]:
    return Counter({reason: 0 for reason in DROP_REASONS})
