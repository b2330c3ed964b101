"""Helpers shared by the HTTP core tests: chunkings and a client/server pair."""

from __future__ import annotations

import random

from plait.protocols.http.core import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    SERVER,
    Connection,
    ConnectionClosed,
    Event,
    Limits,
    NextEventSignal,
)

CHUNKINGS = ["whole", "bytewise", "random0", "random1", "random2", "random3"]


def split(wire: bytes, how: str) -> list[bytes]:
    """Return ``wire`` whole, byte by byte, or in seeded random pieces of 1-12 bytes."""
    if how == "whole":
        return [wire]
    if how == "bytewise":
        return [wire[i : i + 1] for i in range(len(wire))]
    rng = random.Random(int(how.removeprefix("random")))
    pieces, i = [], 0
    while i < len(wire):
        n = rng.randint(1, 12)
        pieces.append(wire[i : i + n])
        i += n
    return pieces


def receive(conn: Connection, wire: bytes, how: str = "whole", eof: bool = False) -> list[Event]:
    """Feed ``wire`` in pieces, draining events after each; stop draining at PAUSED."""
    events: list[Event] = []
    pieces = split(wire, how) + ([b""] if eof else [])
    for piece in pieces:
        conn.receive_data(piece)
        while True:
            event = conn.next_event()
            if event is NEED_DATA or event is PAUSED:
                break
            assert not isinstance(event, NextEventSignal)
            events.append(event)
            if isinstance(event, ConnectionClosed):
                return events
    return events


def drain(conn: Connection) -> list[Event]:
    """Take events until NEED_DATA or PAUSED, without feeding anything."""
    events: list[Event] = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA or event is PAUSED:
            return events
        assert not isinstance(event, NextEventSignal)
        events.append(event)


def merge_data(events: list[Event]) -> list[Event]:
    """Join consecutive Data events, so chunkings compare equal."""
    from plait.protocols.http.core import Data

    out: list[Event] = []
    for event in events:
        if isinstance(event, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(data=out[-1].data + event.data)
        else:
            out.append(event)
    return out


class ConnectionPair:
    """A client core wired to a server core (h11's ConnectionPair)."""

    def __init__(self, limits: Limits | None = None) -> None:
        self.conn = {CLIENT: Connection(CLIENT, limits), SERVER: Connection(SERVER, limits)}

    @property
    def client(self) -> Connection:
        return self.conn[CLIENT]

    @property
    def server(self) -> Connection:
        return self.conn[SERVER]

    def send(self, role: object, events: list[Event], how: str = "whole") -> list[Event]:
        """Send ``events`` from ``role``; return what the other side parsed."""
        sender = self.conn[role]  # type: ignore[index]
        receiver = self.server if sender is self.client else self.client
        wire = b"".join(sender.send(e) for e in events)
        got = receive(receiver, wire, how)
        if any(isinstance(e, ConnectionClosed) for e in events):
            got += receive(receiver, b"", eof=True)
        return merge_data(got)
