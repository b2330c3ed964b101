"""Helpers for the bus tests: buses on a memory network, and a raw peer that speaks bytes."""

from __future__ import annotations

from typing import Any

import msgpack

from plait.cluster._rpc_memory import MemoryLink
from plait.cluster.defer import Deferred
from plait.cluster.failure import Failure
from plait.cluster.rpc import Bus, MemoryNetwork
from plait.cluster.task import Clock


class Net:
    """A clock, a memory network, and a server bus with clients connected to it."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.network = MemoryNetwork()

    def bus(self, name: str, *, bind: str | None = None, connect: tuple[str, ...] = ()) -> Bus:
        return Bus(name, self.clock, bind=bind, connect=connect, network=self.network)

    def started(self, name: str, **kwargs: Any) -> Bus:
        bus = self.bus(name, **kwargs)
        d = bus.start()
        self.run()
        assert isinstance(result_of(d), Bus), "the bus did not start"
        return bus

    def run(self, seconds: float = 0) -> None:
        self.clock.advance(seconds)
        self.clock.advance(0)


def result_of(d: Deferred[Any]) -> Any:
    """The current result of ``d`` (a Failure for a failure), consuming it."""
    box: list[Any] = []
    d.add_both(box.append)
    assert box, f"{d!r} has not fired"
    return box[0]


def failure_of(d: Deferred[Any]) -> Failure:
    outcome = result_of(d)
    assert isinstance(outcome, Failure), f"{d!r} succeeded with {outcome!r}"
    return outcome


class RawPeer:
    """A peer that sends and records raw frames (for hostile-input tests)."""

    def __init__(self, net: Net, address: str, name: str = "raw") -> None:
        self.name = name
        self.net = net
        self.route = b""
        self.frames: list[Any] = []
        self.lost: str | None = None
        self.link = MemoryLink(net.network, net.clock, None, [address])
        self.link.start(self)

    def link_connected(self, route: bytes) -> None:
        self.route = route

    def link_received(self, route: bytes, data: bytes) -> None:
        self.frames.append(msgpack.unpackb(data, strict_map_key=False))

    def link_lost(self, route: bytes, reason: str) -> None:
        self.lost = reason

    def send(self, message: dict[str, Any] | bytes) -> None:
        data = message if isinstance(message, bytes) else msgpack.packb(message)
        self.link.send(self.route, data)
        self.net.run()

    def hello(self) -> None:
        self.send({"v": 1, "t": "hello", "node": self.name, "methods": ["ping"], "topics": []})

    def last(self, kind: str) -> dict[str, Any]:
        matching = [f for f in self.frames if f.get("t") == kind]
        assert matching, f"no {kind} among {self.frames}"
        return matching[-1]  # type: ignore[no-any-return]
