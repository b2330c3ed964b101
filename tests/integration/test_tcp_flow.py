"""TCP transports over loopback: writes, half-close, flow control, producers, BufferedProtocol."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from plait.cluster.protocol import Protocol
from plait.cluster.reactor import Reactor
from tests.reactor_support import Echo, Recorder, outcome, run_until


def test_writelines_sends_every_buffer_in_order(reactor: Reactor) -> None:
    got: list[bytes] = []

    class Collect(Protocol):
        def data_received(self, data: bytes) -> None:
            got.append(data)
            if b"".join(got) == b"abcdef" * 1000:
                reactor.stop()

    port = reactor.listen_tcp(0, Collect, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    client.transport.writelines([b"abc", bytearray(b"def")] * 1000)
    run_until(reactor)
    assert b"".join(got) == b"abcdef" * 1000
    client.transport.abort()


def test_writelines_hands_many_buffers_to_the_kernel_in_one_sendmsg(
    reactor: Reactor, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, int]] = []
    real_sendmsg, real_send = socket.socket.sendmsg, socket.socket.send

    def sendmsg(sock: socket.socket, buffers: Any, *args: Any) -> int:
        buffers = list(buffers)
        calls.append(("sendmsg", len(buffers)))
        return real_sendmsg(sock, buffers, *args)

    def send(sock: socket.socket, data: Any, *args: Any) -> int:
        calls.append(("send", 1))
        return real_send(sock, data, *args)

    got: list[bytes] = []
    chunks = [b"%03d" % i for i in range(100)]

    class Collect(Protocol):
        def data_received(self, data: bytes) -> None:
            got.append(data)
            if b"".join(got) == b"".join(chunks):
                reactor.stop()

    port = reactor.listen_tcp(0, Collect, interface="127.0.0.1")
    monkeypatch.setattr(socket.socket, "sendmsg", sendmsg)
    monkeypatch.setattr(socket.socket, "send", send)
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    calls.clear()
    client.transport.writelines(chunks)
    assert calls == [("sendmsg", 100)]
    run_until(reactor)
    assert b"".join(got) == b"".join(chunks)
    client.transport.abort()


@pytest.mark.parametrize("bad", ["text", 42, None, [b"x"]])
def test_write_rejects_what_is_not_bytes(reactor: Reactor, bad: Any) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    with pytest.raises(TypeError):
        client.transport.write(bad)
    with pytest.raises(TypeError):
        client.transport.writelines([b"ok", bad])
    client.transport.abort()


# ------------------------------------------------------------ half-close


def test_eof_received_returning_true_keeps_the_connection_half_open(reactor: Reactor) -> None:
    class Answer(Protocol):
        def data_received(self, data: bytes) -> None:
            self.got = data

        def eof_received(self) -> bool:
            self.transport.write(b"answer to " + self.got)
            self.transport.close()
            return True

    port = reactor.listen_tcp(0, Answer, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                  lambda: Recorder(on_lost=reactor.stop)))
    assert client.transport.can_write_eof()
    client.transport.write(b"question")
    client.transport.write_eof()
    client.transport.write(b"after eof: dropped")
    run_until(reactor)
    assert client.data == b"answer to question"
    assert client.events == ["made", "eof", ("lost", None)]


def test_eof_received_returning_none_closes_the_connection(reactor: Reactor) -> None:
    servers: list[Recorder] = []

    def make() -> Recorder:
        servers.append(Recorder(on_lost=reactor.stop))
        return servers[-1]

    port = reactor.listen_tcp(0, make, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    client.transport.write_eof()
    run_until(reactor)
    assert servers[0].events == ["made", "eof", ("lost", None)]
    client.transport.abort()


# ----------------------------------------------------------- flow control


def test_pause_reading_stops_data_until_resume(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, lambda: Recorder(b"hello"), interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    client.transport.pause_reading()
    assert not client.transport.is_reading()
    reactor.call_later(0.05, reactor.stop)
    run_until(reactor)
    assert client.data == b""
    client.transport.resume_reading()
    assert client.transport.is_reading()
    reactor.call_later(0.05, reactor.stop)
    run_until(reactor)
    assert client.data == b"hello"
    client.transport.abort()


def test_pause_and_resume_writing_follow_the_water_marks(reactor: Reactor) -> None:
    servers: list[Any] = []

    class Writer(Recorder):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            servers.append(self)
            transport.set_write_buffer_limits(high=1024)
            assert transport.get_write_buffer_limits() == (256, 1024)
            while "paused" not in self.events:
                transport.write(b"y" * 65536)
            self.events.append(("buffered", transport.get_write_buffer_size() > 1024))

        def pause_writing(self) -> None:
            self.events.append("paused")

        def resume_writing(self) -> None:
            self.events.append("resumed")
            reactor.stop()

    port = reactor.listen_tcp(0, Writer, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    run_until(reactor)  # the client reads everything; the server drains and resumes
    assert servers[0].events == ["made", "paused", ("buffered", True), "resumed"]
    client.transport.abort()


@pytest.mark.parametrize("high,low", [(10, 20), (-1, None), (None, -4)])
def test_bad_water_marks_are_refused(reactor: Reactor, high: Any, low: Any) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    with pytest.raises(ValueError):
        client.transport.set_write_buffer_limits(high, low)
    client.transport.abort()


def test_a_push_producer_is_paused_and_resumed(reactor: Reactor) -> None:
    events: list[str] = []

    class Producer:
        def pause_producing(self) -> None:
            events.append("pause")

        def resume_producing(self) -> None:
            events.append("resume")
            transport.unregister_producer()
            reactor.stop()

        def stop_producing(self) -> None:
            events.append("stop")

    port = reactor.listen_tcp(0, Recorder, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    transport = client.transport
    transport.set_write_buffer_limits(high=1024)
    transport.register_producer(Producer(), True)
    with pytest.raises(RuntimeError):
        transport.register_producer(Producer(), True)
    while "pause" not in events:
        transport.write(b"z" * 65536)
    run_until(reactor)
    assert events == ["pause", "resume"]
    transport.abort()


def test_a_pull_producer_is_asked_until_it_unregisters(reactor: Reactor) -> None:
    received: list[bytes] = []

    class Sink(Protocol):
        def data_received(self, data: bytes) -> None:
            received.append(data)
            if len(b"".join(received)) == 5 * 100_000:
                reactor.stop()

    class Chunks:
        left = 5

        def resume_producing(self) -> None:
            transport.write(b"c" * 100_000)
            self.left -= 1
            if not self.left:
                transport.unregister_producer()

        def stop_producing(self) -> None:
            pass

    port = reactor.listen_tcp(0, Sink, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    transport = client.transport
    producer = Chunks()
    transport.register_producer(producer, False)
    run_until(reactor)
    assert producer.left == 0
    transport.abort()


def test_a_producer_is_stopped_when_the_connection_is_lost(reactor: Reactor) -> None:
    events: list[str] = []

    class Producer:
        def pause_producing(self) -> None:
            events.append("pause")

        def resume_producing(self) -> None:
            events.append("resume")

        def stop_producing(self) -> None:
            events.append("stop")
            reactor.stop()

    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    client.transport.register_producer(Producer(), True)
    client.transport.abort()
    run_until(reactor)
    assert events == ["stop"]
    late: list[str] = []

    class Late:
        def stop_producing(self) -> None:
            late.append("stop")

    client.transport.register_producer(Late(), True)
    assert late == ["stop"]


# ------------------------------------------------------- buffered protocols


def test_an_asyncio_buffered_protocol_is_read_into_its_own_buffer(reactor: Reactor) -> None:
    import asyncio

    class BufferedEcho(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(7)  # small: a message arrives in several reads
            self.reads = 0

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buf

        def buffer_updated(self, nbytes: int) -> None:
            self.reads += 1
            self.transport.write(bytes(self.buf[:nbytes]))

    servers: list[BufferedEcho] = []

    def make() -> BufferedEcho:
        servers.append(BufferedEcho())
        return servers[-1]

    port = reactor.listen_tcp(0, make, interface="127.0.0.1")
    message = b"buffered protocols work too"

    class Client(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.data == message:
                reactor.stop()

    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                  lambda: Client(message)))
    run_until(reactor)
    assert client.data == message
    assert servers[0].reads >= 4
    client.transport.abort()


def test_a_protocol_without_data_received_or_get_buffer_is_refused(reactor: Reactor) -> None:
    a, b = socket.socketpair()
    from plait.cluster._stream import StreamTransport

    with pytest.raises(TypeError):
        StreamTransport(reactor, a, object())
    a.close()
    b.close()


def test_set_protocol_can_switch_to_a_buffered_protocol_mid_connection(
    reactor: Reactor,
) -> None:
    import asyncio

    class Upper(asyncio.BufferedProtocol):
        def __init__(self, transport: Any) -> None:
            self.transport = transport
            self.buf = bytearray(64)

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buf

        def buffer_updated(self, nbytes: int) -> None:
            self.transport.write(bytes(self.buf[:nbytes]).upper())

    class Switcher(Protocol):
        def data_received(self, data: bytes) -> None:
            self.transport.write(b"switched;")
            self.transport.set_protocol(Upper(self.transport))
            assert isinstance(self.transport.get_protocol(), Upper)

    port = reactor.listen_tcp(0, Switcher, interface="127.0.0.1")

    class Client(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.data == b"switched;":
                self.transport.write(b"then buffered")
            elif self.data == b"switched;THEN BUFFERED":
                reactor.stop()

    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                  lambda: Client(b"go")))
    run_until(reactor)
    assert client.data == b"switched;THEN BUFFERED"
    client.transport.abort()
