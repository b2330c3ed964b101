"""connect(): the client adapter on a MemoryReactor and a Clock, against a hand-driven server.

The test plays the server: it reads the client's handshake, answers with bytes it
chooses, and reads the client's frames with a server core. Time moves only on
``clock.advance``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from plait.cluster.defer import CancelledError, Deferred, ensure_deferred
from plait.cluster.failure import Failure
from plait.cluster.interfaces import IProtocol
from plait.cluster.protocol import Protocol
from plait.cluster.task import Clock
from plait.cluster.testing import IOPump, MemoryReactor
from plait.protocols.websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketProtocol,
    connect,
)
from plait.protocols.websocket.core import (
    SERVER,
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


class Recorder(Protocol):
    """The server end: keeps what the client sent."""

    def __init__(self) -> None:
        self.data = b""
        self.lost = False

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True


@dataclass
class Session:
    clock: Clock
    reactor: MemoryReactor
    d: Deferred[WebSocketProtocol]
    server: Recorder = field(default_factory=Recorder)
    pump: IOPump | None = None
    core: Connection = field(default_factory=lambda: Connection(SERVER))
    results: list[Any] = field(default_factory=list)

    def accept_tcp(self) -> None:
        self.pump = self.reactor.tcp_clients[0].connect(self.server)

    def head(self) -> bytes:
        head, _, rest = self.server.data.partition(b"\r\n\r\n")
        self.server.data = rest
        return head

    def key(self, head: bytes) -> bytes:
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.lower() == b"sec-websocket-key":
                return value.strip()
        raise AssertionError("no key")

    def answer(
        self, extra: bytes = b"", *, accept: bytes | None = None, after: bytes = b""
    ) -> None:
        key = self.key(self.head())
        accept = accept_key(key) if accept is None else accept
        self.write(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n" + extra + b"\r\n" + after
        )

    def write(self, data: bytes) -> None:
        assert self.pump is not None
        self.pump.server_transport.write(data)
        self.pump.flush()

    def events(self) -> list[Event]:
        assert self.pump is not None
        self.pump.flush()
        data, self.server.data = self.server.data, b""
        return self.core.receive_data(data) if data else []

    def ws(self) -> WebSocketProtocol:
        assert self.d.called
        out: list[Any] = []
        self.d.add_both(out.append)
        assert isinstance(out[0], WebSocketProtocol), out[0]
        return out[0]

    def run(self, coro: Any) -> list[Any]:
        out: list[Any] = []
        ensure_deferred(coro).add_both(out.append)
        return out


def start(url: str = "ws://example.com/chat?room=1", **kwargs: Any) -> Session:
    clock = Clock()
    reactor = MemoryReactor(clock)
    kwargs.setdefault("compression", False)
    d = connect(url, reactor, clock=clock, **kwargs)
    return Session(clock, reactor, d)


def opened(**kwargs: Any) -> tuple[Session, WebSocketProtocol]:
    s = start(**kwargs)
    s.accept_tcp()
    s.answer()
    return s, s.ws()


def failure_of(d: Deferred[Any]) -> BaseException:
    out: list[Any] = []
    d.add_both(out.append)
    assert isinstance(out[0], Failure), out
    return out[0].value


# -- the handshake -------------------------------------------------------------------------


def test_the_request_carries_the_handshake_and_our_headers() -> None:
    s = start(subprotocols=["chat"], headers=[("Origin", "http://example.com")])
    assert s.reactor.tcp_clients[0].address == ("example.com", 80)
    s.accept_tcp()
    head = s.head()
    assert head.startswith(b"GET /chat?room=1 HTTP/1.1\r\n")
    for line in (b"Host: example.com", b"Upgrade: websocket", b"Connection: Upgrade",
                 b"Sec-WebSocket-Version: 13", b"Sec-WebSocket-Protocol: chat",
                 b"Origin: http://example.com"):
        assert line in head.split(b"\r\n")


def test_a_non_default_port_goes_into_host_and_the_connection() -> None:
    s = start("ws://[::1]:8080")
    assert s.reactor.tcp_clients[0].address == ("::1", 8080)
    s.accept_tcp()
    head = s.head()
    assert head.startswith(b"GET / HTTP/1.1")
    assert b"Host: [::1]:8080" in head.split(b"\r\n")


def test_compression_is_offered_when_asked() -> None:
    s = start(compression=True)
    s.accept_tcp()
    s.answer(b"Sec-WebSocket-Extensions: permessage-deflate\r\n")
    ws = s.ws()
    ws.send("squeeze " * 20)
    s.core = Connection(SERVER, deflate=DeflateParams())
    assert s.events() == [TextMessage(data="squeeze " * 20)]


def test_a_valid_101_gives_an_open_ws_and_the_chosen_subprotocol() -> None:
    s = start(subprotocols=["a", "b"])
    s.accept_tcp()
    s.answer(b"Sec-WebSocket-Protocol: b\r\n")
    ws = s.ws()
    assert ws.open and ws.subprotocol == "b"
    assert verifyObject(IProtocol, ws)


def test_frames_in_the_same_read_as_the_101_are_delivered() -> None:
    s = start()
    s.accept_tcp()
    s.answer(after=serialize_frame(Opcode.TEXT, b"early"))
    ws = s.ws()
    assert s.run(ws.receive()) == ["early"]


@pytest.mark.parametrize(
    ("kwargs", "status"),
    [({"accept": b"wrong="}, 400), ({"extra": b"Sec-WebSocket-Protocol: nope\r\n"}, 400)],
)
def test_a_bad_101_fails_the_connect_and_aborts(kwargs: dict[str, Any], status: int) -> None:
    s = start()
    s.accept_tcp()
    s.answer(**kwargs)
    exc = failure_of(s.d)
    assert isinstance(exc, HandshakeError) and exc.status == status
    assert s.server.lost


def test_a_refusal_fails_the_connect_with_its_status() -> None:
    s = start()
    s.accept_tcp()
    s.head()
    s.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
    exc = failure_of(s.d)
    assert isinstance(exc, HandshakeError) and exc.status == 403


def test_a_garbage_answer_fails_the_connect() -> None:
    s = start()
    s.accept_tcp()
    s.write(b"SSH-2.0-OpenSSH\r\n\r\n")
    assert isinstance(failure_of(s.d), HandshakeError)


def test_a_server_that_hangs_up_during_the_handshake_fails_the_connect() -> None:
    s = start()
    s.accept_tcp()
    assert s.pump is not None
    s.pump.server_transport.close()
    s.pump.flush()
    assert isinstance(failure_of(s.d), HandshakeError | ConnectionError)


def test_a_silent_server_times_out() -> None:
    s = start(open_timeout=5)
    s.accept_tcp()
    s.clock.advance(5)
    assert isinstance(failure_of(s.d), TimeoutError)
    assert s.server.lost or (s.pump is not None and s.pump.client_transport.is_closing())


def test_a_refused_connection_fails_the_connect() -> None:
    s = start()
    s.reactor.tcp_clients[0].fail()
    assert isinstance(failure_of(s.d), ConnectionRefusedError)


def test_cancelling_the_connect_cancels_the_attempt() -> None:
    s = start()
    s.d.cancel()
    assert isinstance(failure_of(s.d), CancelledError)
    assert not s.reactor.tcp_clients[0].pending


@pytest.mark.parametrize(
    "url", ["http://example.com/", "ws:///path", "ws://example.com/#frag", "example.com"]
)
def test_bad_urls_are_refused(url: str) -> None:
    with pytest.raises(ValueError):
        connect(url, MemoryReactor())


# -- the open connection ---------------------------------------------------------------------


def test_messages_flow_both_ways_and_client_frames_are_masked() -> None:
    s, ws = opened()
    ws.send("hi")
    ws.send(b"\x00\x01")
    assert s.pump is not None
    s.pump.flush()
    assert s.server.data[1] & 0x80  # the mask bit
    assert s.events() == [TextMessage(data="hi"), BytesMessage(data=b"\x00\x01")]
    received = s.run(ws.receive())
    assert received == []
    s.write(s.core.send(TextMessage(data="back")))
    assert received == ["back"]


def test_a_ping_from_the_server_is_answered_at_once() -> None:
    s, _ws = opened()
    s.write(s.core.send(Ping(payload=b"marco")))
    assert s.events() == [Pong(payload=b"marco")]


def test_our_ping_fires_with_the_round_trip_on_its_pong() -> None:
    s, ws = opened()
    d = ws.ping(b"1")
    assert s.events() == [Ping(payload=b"1")]
    s.clock.advance(0.25)
    s.write(s.core.send(Pong(payload=b"unrelated")))
    assert not d.called
    s.write(s.core.send(Pong(payload=b"1")))
    out: list[Any] = []
    d.add_callback(out.append)
    assert out == [0.25]


def test_a_pong_answers_every_earlier_ping() -> None:
    s, ws = opened()
    first, second = ws.ping(), ws.ping()
    s.write(s.core.send(Pong(payload=b"plait 2")))
    assert first.called and second.called


def test_a_ping_payload_in_flight_twice_is_refused() -> None:
    _, ws = opened()
    ws.ping(b"x")
    with pytest.raises(ValueError):
        ws.ping(b"x")
    with pytest.raises(ValueError):
        ws.ping(bytes(126))


def test_our_close_completes_when_the_server_answers_and_hangs_up() -> None:
    s, ws = opened()
    closed = ws.close(1001, "bye")
    assert s.events() == [CloseConnection(code=1001, reason="bye")]
    s.write(s.core.send(CloseConnection(code=1001)))
    assert not closed.called  # section 7.1.1: the server closes TCP first
    assert s.pump is not None
    s.pump.server_transport.close()
    s.pump.flush()
    assert closed.called and ws.close_code == 1001


def test_our_close_aborts_after_the_close_timeout() -> None:
    s, ws = opened(close_timeout=3)
    closed = ws.close()
    s.clock.advance(3)
    assert s.pump is not None
    s.pump.flush()
    assert closed.called and ws.close_code == 1006


def test_the_servers_close_is_echoed_and_ends_iteration() -> None:
    s, ws = opened()
    got = s.run(_collect(ws))
    s.write(s.core.send(TextMessage(data="last")))
    s.write(s.core.send(CloseConnection(code=1000, reason="done")))
    assert s.events() == [CloseConnection(code=1000)]
    assert got == [["last"]]
    with pytest.raises(ConnectionClosed) as info:
        ws.send("too late")
    assert info.value.code == 1000 and info.value.reason == "done"


async def _collect(ws: WebSocketProtocol) -> list[str | bytes]:
    return [message async for message in ws]


def test_iteration_raises_on_an_abnormal_close() -> None:
    s, ws = opened()
    got = s.run(_collect(ws))
    assert s.pump is not None
    s.pump.server_transport.abort()
    s.pump.flush()
    assert isinstance(got[0], Failure)
    assert isinstance(got[0].value, ConnectionClosed) and got[0].value.code == 1006


def test_a_masked_server_frame_closes_with_1002() -> None:
    s, ws = opened()
    received = s.run(ws.receive())
    s.write(serialize_frame(Opcode.TEXT, b"masked", mask=b"abcd"))
    assert s.events() == [CloseConnection(code=1002)]
    assert isinstance(received[0], Failure)
    assert isinstance(received[0].value, ConnectionClosed) and received[0].value.code == 1002
    assert s.server.lost


def test_a_message_over_the_limit_closes_with_1009() -> None:
    s, ws = opened(max_message_size=10)
    s.write(s.core.send(BytesMessage(data=bytes(11))))
    assert s.events() == [CloseConnection(code=1009)]
    assert ws.close_code == 1009


def test_keepalive_pings_go_out_on_the_clock_and_a_missing_pong_fails_with_1011() -> None:
    s, ws = opened(ping_interval=5, ping_timeout=2)
    s.clock.advance(5)
    [ping] = s.events()
    assert isinstance(ping, Ping)
    s.write(s.core.send(ping.response()))
    s.clock.advance(5)
    assert len(s.events()) == 1  # the next keepalive ping
    s.clock.advance(2)
    assert s.pump is not None
    s.pump.flush()
    assert s.events() == [CloseConnection(code=1011, reason="keepalive ping timeout")]
    assert ws.close_code == 1011 and s.server.lost


def test_reading_pauses_while_max_queue_messages_wait() -> None:
    s, ws = opened(max_queue=2)
    s.write(s.core.send(TextMessage(data="1")) + s.core.send(TextMessage(data="2")))
    assert s.pump is not None
    assert not s.pump.client_transport.is_reading()
    assert s.run(ws.receive()) == ["1"]
    assert s.pump.client_transport.is_reading()


def test_sending_something_else_than_text_or_bytes_is_a_type_error() -> None:
    _, ws = opened()
    with pytest.raises(TypeError):
        ws.send(42)  # type: ignore[arg-type]


def test_sending_a_non_message_after_the_close_is_still_a_type_error() -> None:
    s, ws = opened()
    s.write(s.core.send(CloseConnection(code=1000)))
    with pytest.raises(TypeError):
        ws.send(42)  # type: ignore[arg-type]
    with pytest.raises(ConnectionClosed):
        ws.send(bytearray(b"late"))


def test_text_bytes_bytearray_and_memoryview_are_sent_as_their_messages() -> None:
    s, ws = opened()
    for message in ("text", b"bytes", bytearray(b"array"), memoryview(b"view" * 200)):
        ws.send(message)
    assert s.pump is not None
    s.pump.flush()
    assert s.events() == [
        TextMessage(data="text"),
        BytesMessage(data=b"bytes"),
        BytesMessage(data=b"array"),
        BytesMessage(data=b"view" * 200),
    ]


def test_close_with_a_code_that_may_not_be_sent_is_a_value_error() -> None:
    _, ws = opened()
    with pytest.raises(ValueError):
        ws.close(1006)


def test_the_handshake_protocol_provides_iprotocol() -> None:
    s = start()
    assert verifyObject(IProtocol, s.reactor.tcp_clients[0].factory())


def test_drain_waits_while_the_write_buffer_is_over_its_high_water_mark() -> None:
    s, ws = opened()
    assert s.pump is not None
    s.pump.client_transport.set_write_buffer_limits(high=100, low=10)
    assert ws.drain().called
    ws.send(bytes(1000))
    waiting = ws.drain()
    assert not waiting.called
    s.pump.flush()
    assert waiting.called
