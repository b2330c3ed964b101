"""Helpers shared by the WebSocket core tests: chunkings and hand-built frames."""

from __future__ import annotations

import random

from plait.protocols.websocket.core import Connection, Event, serialize_frame

CHUNKINGS = ["whole", "bytewise", "random0", "random1", "random2"]
MASK = b"\x37\xfa\x21\x3d"


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


def feed(conn: Connection, wire: bytes, how: str = "whole") -> list[Event]:
    """Feed ``wire`` in pieces; return every event, in order."""
    events: list[Event] = []
    for piece in split(wire, how):
        events.extend(conn.receive_data(piece))
    return events


def client_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False
) -> bytes:
    """A masked frame, as a client sends it."""
    return serialize_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=MASK)


def server_frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False
) -> bytes:
    """An unmasked frame, as a server sends it."""
    return serialize_frame(opcode, payload, fin=fin, rsv1=rsv1)
