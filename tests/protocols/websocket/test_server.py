"""WebSocketResource on the HTTP server (Site), over MemoryTransports with a Clock.

Raw bytes play the client for the handshake and for bad input; Plait's own client
plays it end to end through a MemoryReactor. Every bad input closes that
connection with its code, and the same site then serves a new client.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest

from plait.cluster.defer import Deferred, ensure_deferred
from plait.cluster.failure import Failure
from plait.cluster.task import Clock
from plait.cluster.testing import MemoryReactor, MemoryTransport
from plait.protocols.http import Resource, Router, Site
from plait.protocols.websocket import (
    ConnectionClosed,
    WebSocketProtocol,
    WebSocketResource,
    connect,
)
from plait.protocols.websocket.core import (
    CLIENT,
    BytesMessage,
    CloseConnection,
    Connection,
    DeflateParams,
    Event,
    Opcode,
    Ping,
    Pong,
    TextMessage,
    accept_key,
    serialize_frame,
)

from ._helpers import CHUNKINGS, MASK, client_frame, split

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="


def handshake(path: bytes = b"/ws", extra: bytes = b"", key: bytes = KEY) -> bytes:
    return (
        b"GET " + path + b" HTTP/1.1\r\nHost: example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n" + extra + b"\r\n"
    )


@dataclass
class Seen:
    """What the handlers saw."""

    messages: list[str | bytes] = field(default_factory=list)
    closed: list[int] = field(default_factory=list)
    sockets: list[WebSocketProtocol] = field(default_factory=list)


async def echo(ws: WebSocketProtocol, seen: Seen) -> None:
    seen.sockets.append(ws)
    try:
        async for message in ws:
            seen.messages.append(message)
            ws.send(message)
    except ConnectionClosed as exc:
        seen.closed.append(exc.code)
        raise
    seen.closed.append(ws.close_code or 0)


@dataclass
class Served:
    site: Site
    clock: Clock
    seen: Seen
    transport: MemoryTransport = field(init=False)
    after_head: bytes = b""
    core: Connection = field(default_factory=lambda: Connection(CLIENT, mask_source=lambda: MASK))

    def __post_init__(self) -> None:
        self.open_connection()

    def open_connection(self) -> None:
        protocol = self.site()
        self.transport = MemoryTransport(protocol)
        protocol.connection_made(self.transport)
        self.core = Connection(CLIENT, mask_source=lambda: MASK)

    def feed(self, data: bytes, how: str = "whole") -> None:
        for piece in split(data, how):
            self.transport.get_protocol().data_received(piece)

    def take(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def upgrade(self, path: bytes = b"/ws", extra: bytes = b"") -> bytes:
        self.feed(handshake(path, extra))
        head, _, rest = self.take().partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 101 "), head
        self.after_head = rest  # what the handler sent at once
        return head

    def events(self) -> list[Event]:
        data = self.after_head + self.take()
        self.after_head = b""
        return self.core.receive_data(data) if data else []

    def send(self, event: Event) -> None:
        self.feed(self.core.send(event))


def served(path: str = "/ws", **kwargs: Any) -> Served:
    clock = Clock()
    seen = Seen()
    kwargs.setdefault("clock", clock)
    router = Router()
    router.add_route("GET", path, WebSocketResource(lambda ws: echo(ws, seen), **kwargs))
    return Served(Site(router, clock=clock), clock, seen)


# -- the handshake ---------------------------------------------------------------------------


def test_a_valid_handshake_gets_a_101_with_the_accept_key() -> None:
    s = served()
    head = s.upgrade().split(b"\r\n")
    assert head[0] == b"HTTP/1.1 101 Switching Protocols"
    for line in (b"Upgrade: websocket", b"Connection: Upgrade",
                 b"Sec-WebSocket-Accept: " + accept_key(KEY)):
        assert line in head
    assert [ws.request.path for ws in s.seen.sockets] == ["/ws"]


@pytest.mark.parametrize("how", CHUNKINGS)
def test_messages_echo_at_every_chunking(how: str) -> None:
    s = served()
    s.upgrade()
    events: list[Event] = [
        TextMessage(data="hello"), BytesMessage(data=bytes(300)), TextMessage(data="é" * 70)
    ]
    wire = b"".join(s.core.send(e) for e in events)
    wire += s.core.send(TextMessage(data="in pieces"), fragment_size=2)
    s.feed(wire, how)
    assert s.events() == [*events, TextMessage(data="in pieces")]


def test_frames_sent_with_the_handshake_are_not_lost() -> None:
    s = served()
    s.feed(handshake() + client_frame(Opcode.TEXT, b"eager"))
    head, _, rest = s.take().partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101")
    assert s.core.receive_data(rest) == [TextMessage(data="eager")]


def test_route_placeholders_reach_the_handler() -> None:
    s = served("/rooms/{room}")
    s.upgrade(b"/rooms/lobby")
    assert s.seen.sockets[0].params == {"room": "lobby"}


def test_it_mounts_on_a_resource_tree() -> None:
    clock, seen = Clock(), Seen()
    root = Resource()
    root.put_child("chat", WebSocketResource(lambda ws: echo(ws, seen), clock=clock))
    s = Served(Site(root, clock=clock), clock, seen)
    s.upgrade(b"/chat")
    s.send(TextMessage(data="tree"))
    assert s.events() == [TextMessage(data="tree")]


def test_the_first_subprotocol_the_client_prefers_is_chosen() -> None:
    s = served(subprotocols=["v1", "v2"])
    head = s.upgrade(extra=b"Sec-WebSocket-Protocol: v2, v1\r\n")
    assert b"Sec-WebSocket-Protocol: v2" in head.split(b"\r\n")
    assert s.seen.sockets[0].subprotocol == "v2"


def test_permessage_deflate_is_negotiated_and_used() -> None:
    s = served()
    head = s.upgrade(extra=b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
    assert b"Sec-WebSocket-Extensions: permessage-deflate" in head.split(b"\r\n")
    s.core = Connection(CLIENT, deflate=DeflateParams(), mask_source=lambda: MASK)
    s.send(TextMessage(data="squeeze me " * 30))
    wire = s.take()
    assert wire[0] & 0x40  # RSV1: the echo is compressed
    assert s.core.receive_data(wire) == [TextMessage(data="squeeze me " * 30)]


@pytest.mark.parametrize(
    ("request_bytes", "status", "header"),
    [
        (b"GET /ws HTTP/1.1\r\nHost: h\r\n\r\n", 426, b"Upgrade: websocket"),
        (handshake().replace(b"Version: 13", b"Version: 8"), 426, b"Sec-WebSocket-Version: 13"),
        (handshake(key=b"c2hvcnQ="), 400, None),
    ],
)
def test_a_bad_handshake_gets_an_http_error_and_the_site_keeps_serving(
    request_bytes: bytes, status: int, header: bytes | None
) -> None:
    s = served()
    s.feed(request_bytes)
    head = s.take().partition(b"\r\n\r\n")[0].split(b"\r\n")
    assert head[0].startswith(b"HTTP/1.1 %d" % status)
    if header is not None:
        assert header in head
    assert not s.seen.sockets
    s.open_connection()
    s.upgrade()


# -- the handler and the closing handshake ------------------------------------------------------


def test_the_clients_close_is_echoed_then_the_server_hangs_up() -> None:
    s = served()
    s.upgrade()
    s.send(CloseConnection(code=1001, reason="leaving"))
    assert s.events() == [CloseConnection(code=1001)]
    assert s.transport.disconnected or s.transport.is_closing()
    assert s.seen.closed == [1001]


def test_a_handler_that_returns_closes_with_1000() -> None:
    clock = Clock()
    router = Router()

    async def hello(ws: WebSocketProtocol) -> None:
        ws.send("hello and goodbye")

    router.add_route("GET", "/ws", WebSocketResource(hello, clock=clock))
    s = Served(Site(router, clock=clock), clock, Seen())
    s.upgrade()
    assert s.events() == [TextMessage(data="hello and goodbye"), CloseConnection(code=1000)]


def test_a_handler_that_fails_closes_with_1011_and_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = Clock()
    router = Router()

    async def broken(ws: WebSocketProtocol) -> None:
        await ws.receive()
        raise RuntimeError("handler bug")

    router.add_route("GET", "/ws", WebSocketResource(broken, clock=clock))
    s = Served(Site(router, clock=clock), clock, Seen())
    s.upgrade()
    with caplog.at_level(logging.ERROR, logger="plait.websocket"):
        s.send(TextMessage(data="trigger"))
    assert s.events() == [CloseConnection(code=1011, reason="internal error")]
    assert "handler bug" in caplog.text


def test_a_handler_close_with_a_code_and_reason_times_out_on_a_silent_client() -> None:
    clock = Clock()
    router = Router()
    done: list[Any] = []

    async def closer(ws: WebSocketProtocol) -> None:
        await ws.close(4000, "custom")
        done.append(ws.close_code)

    router.add_route("GET", "/ws", WebSocketResource(closer, clock=clock, close_timeout=2))
    s = Served(Site(router, clock=clock), clock, Seen())
    s.upgrade()
    assert s.events() == [CloseConnection(code=4000, reason="custom")]
    assert not done
    clock.advance(2)
    assert s.transport.aborted and done == [1006]


def test_pings_are_answered_automatically() -> None:
    s = served()
    s.upgrade()
    s.send(Ping(payload=b"echo?"))
    assert s.events() == [Pong(payload=b"echo?")]


def test_keepalive_pings_follow_the_clock_and_a_missing_pong_closes_with_1011() -> None:
    s = served(ping_interval=10, ping_timeout=5)
    s.upgrade()
    s.clock.advance(10)
    [ping] = s.events()
    assert isinstance(ping, Ping)
    s.send(ping.response())
    s.clock.advance(10)
    assert len(s.events()) == 1
    s.clock.advance(5)
    assert s.events() == [CloseConnection(code=1011, reason="keepalive ping timeout")]
    assert s.seen.closed == [1011]


def test_the_resource_tracks_its_open_connections() -> None:
    clock, seen = Clock(), Seen()
    resource = WebSocketResource(lambda ws: echo(ws, seen), clock=clock)
    router = Router()
    router.add_route("GET", "/ws", resource)
    s = Served(Site(router, clock=clock), clock, seen)
    s.upgrade()
    assert len(resource.connections) == 1
    s.transport.abort()
    assert not resource.connections and seen.closed == [1006]


# -- bad input: each closes with its code, and the site still serves -------------------------------


BAD_INPUT = [
    ("unmasked", serialize_frame(Opcode.TEXT, b"no mask"), 1002),
    ("bad utf-8", client_frame(Opcode.TEXT, b"\xc3\x28"), 1007),
    ("bad utf-8 across fragments",
     client_frame(Opcode.TEXT, b"\xe2\x82", fin=False) + client_frame(Opcode.CONTINUATION, b"("),
     1007),
    ("oversized", client_frame(Opcode.BINARY, bytes(2000)), 1009),
    ("reserved bits", bytes([0xC1]) + client_frame(Opcode.TEXT, b"x")[1:], 1002),
    ("long control frame", client_frame(Opcode.PING, bytes(126)), 1002),
    ("fragmented control frame", client_frame(Opcode.PING, b"", fin=False), 1002),
    ("unknown opcode", client_frame(0x5, b""), 1002),
    ("continuation without start", client_frame(Opcode.CONTINUATION, b"x"), 1002),
    ("close code 1005", client_frame(Opcode.CLOSE, (1005).to_bytes(2, "big")), 1002),
    ("close code 999", client_frame(Opcode.CLOSE, (999).to_bytes(2, "big")), 1002),
    ("one-byte close payload", client_frame(Opcode.CLOSE, b"\x03"), 1002),
]


@pytest.mark.parametrize(("name", "wire", "code"), BAD_INPUT, ids=[b[0] for b in BAD_INPUT])
@pytest.mark.parametrize("how", ["whole", "bytewise"])
def test_bad_input_closes_with_its_code_and_the_site_keeps_serving(
    name: str, wire: bytes, code: int, how: str
) -> None:
    s = served(max_message_size=1000)
    s.upgrade()
    s.feed(wire, how)
    data = s.take()
    assert data[:2] == bytes((0x88, 0x02)) and int.from_bytes(data[2:4], "big") == code
    assert s.transport.is_closing()
    assert s.seen.closed == [code]
    s.open_connection()
    s.upgrade()
    s.send(TextMessage(data="still serving"))
    assert s.events() == [TextMessage(data="still serving")]


# -- end to end with Plait's client -------------------------------------------------------------


def test_our_client_and_our_server_talk_through_a_memory_reactor() -> None:
    clock, seen = Clock(), Seen()
    router = Router()
    router.add_route("GET", "/ws", WebSocketResource(lambda ws: echo(ws, seen), clock=clock))
    site = Site(router, clock=clock)
    reactor = MemoryReactor(clock)
    d: Deferred[WebSocketProtocol] = connect(
        "ws://example.com/ws", reactor, clock=clock, subprotocols=["x"]
    )
    pump = reactor.tcp_clients[0].connect(site())
    pump.flush()
    out: list[Any] = []

    async def talk() -> list[Any]:
        ws = await d
        got: list[str | bytes] = []
        messages: list[str | bytes] = ["one", b"two", "three" * 1000]
        for message in messages:
            ws.send(message)
            got.append(await ws.receive())
        await ws.close()
        return [got, ws.close_code, ws._core.compression]

    ensure_deferred(talk()).add_both(out.append)
    for _ in range(20):
        pump.flush()
    assert not isinstance(out[0], Failure), out
    assert out == [[["one", b"two", "three" * 1000], 1000, True]]
    assert seen.closed == [1000]
