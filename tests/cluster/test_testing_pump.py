"""connect_in_memory and IOPump: two protocols over wired MemoryTransports."""

from __future__ import annotations

import logging
import os
import resource
from collections.abc import Iterator
from typing import Any

import pytest

from plait.cluster.protocol import Protocol
from plait.cluster.task import Clock
from plait.cluster.testing import IOPump, connect_in_memory
from tests.cluster._recorders import FdRecorder, PullProducer, Recorder


def _memory_pump() -> IOPump:
    return connect_in_memory(Protocol(), Protocol())


def test_connect_in_memory_makes_the_server_connection_first_and_greets() -> None:
    order: list[str] = []

    class Greeter(Recorder):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.name = name

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            order.append(self.name)
            transport.write(b"hello from " + self.name.encode())

    server, client = Greeter("server"), Greeter("client")
    pump = connect_in_memory(server, client)
    assert order == ["server", "client"]
    assert bytes(client.data) == b"hello from server"
    assert bytes(server.data) == b"hello from client"
    assert pump.server is server and pump.client is client
    assert pump.server_transport is server.transport


def test_without_greet_nothing_moves_until_the_pump_runs() -> None:
    class Hello(Recorder):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.write(b"hi")

    server, client = Recorder(), Hello()
    pump = connect_in_memory(server, client, greet=False)
    assert server.data == b""
    assert pump.client_transport.get_write_buffer_size() == 2
    assert pump.pump()
    assert bytes(server.data) == b"hi"
    assert not pump.pump()


def test_flush_returns_the_busy_steps_of_an_exchange() -> None:
    server, client = Recorder(echo=True), Recorder()
    pump = connect_in_memory(server, client)
    client.transport.write(b"ping")
    assert pump.flush() == 2
    assert bytes(client.data) == b"ping"
    assert pump.flush() == 0


def test_flush_raises_runtime_error_when_the_protocols_never_go_quiet() -> None:
    server, client = Recorder(echo=True), Recorder(echo=True)
    pump = connect_in_memory(server, client)
    client.transport.write(b"forever")
    with pytest.raises(RuntimeError, match="still busy after 50 steps"):
        pump.flush(max_iterations=50)


def test_flush_refuses_a_max_iterations_below_one() -> None:
    with pytest.raises(ValueError):
        _memory_pump().flush(max_iterations=0)


def test_peernames_and_socknames_mirror_each_other() -> None:
    pump = _memory_pump()
    server, client = pump.server_transport, pump.client_transport
    assert server.get_extra_info("sockname") == client.get_extra_info("peername")
    assert client.get_extra_info("sockname") == server.get_extra_info("peername")
    assert server.get_extra_info("sockname") != client.get_extra_info("sockname")


def test_close_delivers_eof_then_connection_lost_none_to_both() -> None:
    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client)
    client.transport.write(b"last words")
    client.transport.close()
    assert client.lost == []  # nothing happens inside close()
    pump.flush()
    assert client.lost == [None]
    assert server.events == ["made", ("data", b"last words"), "eof", "lost"]
    assert server.lost == [None]


def test_abort_drops_queued_bytes_and_resets_the_peer() -> None:
    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client)
    client.transport.write(b"never sent")
    client.transport.abort()
    pump.flush()
    assert client.lost == [None]
    assert server.data == b""
    (exc,) = server.lost
    assert isinstance(exc, ConnectionResetError)


def test_a_paused_peer_notices_a_reset_only_when_it_reads_again() -> None:
    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client)
    server.transport.pause_reading()
    client.transport.abort()
    pump.flush()
    assert client.lost == [None] and server.lost == []
    server.transport.resume_reading()
    pump.flush()
    assert isinstance(server.lost[0], ConnectionResetError)


def test_write_eof_lets_a_peer_that_keeps_open_answer() -> None:
    server, client = Recorder(keep_open=True), Recorder()
    pump = connect_in_memory(server, client)
    client.transport.write(b"q")
    client.transport.write_eof()
    pump.flush()
    assert server.events[-1] == "eof" and server.lost == []
    server.transport.write(b"a")
    server.transport.close()
    pump.flush()
    assert client.events == ["made", ("data", b"a"), "eof", "lost"]
    assert client.lost == [None] and server.lost == [None]


def test_write_eof_closes_a_peer_whose_eof_received_returns_false() -> None:
    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client)
    client.transport.write_eof()
    pump.flush()
    assert server.lost == [None]
    assert client.events[-2:] == ["eof", "lost"]
    assert client.lost == [None]


def test_pause_reading_holds_bytes_at_the_writer_until_resume() -> None:
    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client)
    server.transport.pause_reading()
    client.transport.write(b"held")
    pump.flush()
    assert server.data == b""
    assert client.transport.get_write_buffer_size() == 4
    server.transport.resume_reading()
    pump.flush()
    assert bytes(server.data) == b"held"
    assert client.transport.get_write_buffer_size() == 0


def test_a_peer_that_stops_reading_makes_the_writer_pause_and_resume() -> None:
    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client)
    client.transport.set_write_buffer_limits(high=8, low=0)
    server.transport.pause_reading()
    client.transport.write(b"123456789")
    assert client.events[-1] == "pause_writing"
    server.transport.resume_reading()
    pump.flush()
    assert client.events[-1] == "resume_writing"


def test_a_close_waits_while_the_peer_does_not_read() -> None:
    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client)
    server.transport.pause_reading()
    client.transport.write(b"data")
    client.transport.close()
    pump.flush()
    assert client.lost == [] and server.lost == []
    server.transport.resume_reading()
    pump.flush()
    assert client.lost == [None] and server.lost == [None]
    assert bytes(server.data) == b"data"


def test_exception_in_data_received_aborts_that_side_with_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client)
    boom = ValueError("bad bytes")
    server.fail = boom
    client.transport.write(b"x")
    with caplog.at_level(logging.ERROR):
        pump.flush()
    assert server.lost == [boom]
    assert isinstance(client.lost[0], ConnectionResetError)
    assert "aborting its connection" in caplog.text


def test_exception_in_eof_received_aborts_that_side_with_it() -> None:
    boom = RuntimeError("eof handler broke")

    class BadEof(Recorder):
        def eof_received(self) -> bool:
            raise boom

    server, client = BadEof(), Recorder()
    pump = connect_in_memory(server, client)
    client.transport.write_eof()
    pump.flush()
    assert server.lost == [boom]
    assert isinstance(client.lost[0], ConnectionResetError)


def test_writing_to_a_peer_that_is_gone_resets_the_writer() -> None:
    server, client = Recorder(keep_open=True), Recorder()
    pump = connect_in_memory(server, client)
    client.transport.close()
    pump.flush()
    assert client.lost == [None] and server.lost == []
    server.transport.write(b"into the void")
    pump.flush()
    assert isinstance(server.lost[0], ConnectionResetError)


@pytest.fixture
def pipe() -> Iterator[tuple[int, int]]:
    r, w = os.pipe()
    yield r, w
    os.close(r)
    os.close(w)


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def test_fds_arrive_as_copies_before_the_bytes_that_carry_them(pipe: tuple[int, int]) -> None:
    r, w = pipe
    server, client = FdRecorder(), Recorder()
    pump = connect_in_memory(server, client)
    client.transport.write(b"a")
    client.transport.send_fds([r], b"b")
    client.transport.write(b"c")
    assert client.transport.sent_fds == [[r]]
    pump.flush()
    (copy,) = server.events[2][1]
    assert server.events[1:] == [("data", b"a"), ("fds", [copy]), ("data", b"bc")]
    assert copy != r
    os.write(w, b"through")
    assert os.read(copy, 10) == b"through"
    os.close(copy)


def test_fds_to_a_protocol_without_fds_received_are_closed_with_a_warning(
    caplog: pytest.LogCaptureFixture, pipe: tuple[int, int]
) -> None:
    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client)
    with caplog.at_level(logging.WARNING):
        client.transport.send_fds([pipe[0]], b"z")
        (copy,) = client.transport._outbox[0].fds
        pump.flush()
    assert bytes(server.data) == b"z"
    assert "no fds_received" in caplog.text
    assert not _is_open(copy) and _is_open(pipe[0])


def test_fds_that_are_never_delivered_are_closed(pipe: tuple[int, int]) -> None:
    server, client = FdRecorder(), Recorder()
    pump = connect_in_memory(server, client)
    client.transport.send_fds([pipe[0]])
    (copy,) = client.transport._outbox[0].fds
    client.transport.abort()
    pump.flush()
    assert not _is_open(copy)
    assert server.events == ["made", "lost"]


def test_send_fds_of_a_closed_descriptor_raises_os_error(pipe: tuple[int, int]) -> None:
    pump = _memory_pump()
    not_open = resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 1
    assert not _is_open(not_open)
    with pytest.raises(OSError):
        pump.client_transport.send_fds([pipe[0], not_open])
    assert pump.client_transport.sent_fds == []
    assert pump.client_transport.get_write_buffer_size() == 0


def test_a_pull_producer_is_resumed_each_time_the_pump_drains_the_buffer() -> None:
    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client)
    producer = PullProducer(client.transport, [b"1", b"2", b"3"])
    client.transport.register_producer(producer, False)
    pump.flush()
    assert bytes(server.data) == b"123"
    assert producer.calls == ["resume"] * 4
    assert client.transport.producer is None


def test_a_wired_pull_producer_is_first_resumed_by_the_pump_not_by_registration() -> None:
    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client)
    producer = PullProducer(client.transport, [b"x"])
    client.transport.register_producer(producer, False)
    assert producer.calls == []
    pump.flush()
    assert producer.calls == ["resume", "resume"] and bytes(server.data) == b"x"


def test_an_exception_in_a_pull_producer_aborts_the_connection_with_it() -> None:
    boom = RuntimeError("producer broke")

    class Broken(PullProducer):
        def resume_producing(self) -> None:
            raise boom

    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client)
    producer = Broken(client.transport, [])
    client.transport.register_producer(producer, False)
    pump.flush()
    assert client.lost == [boom]
    assert isinstance(server.lost[0], ConnectionResetError)


def test_a_connection_half_closed_both_ways_is_closed_on_both_sides() -> None:
    server, client = Recorder(keep_open=True), Recorder(keep_open=True)
    pump = connect_in_memory(server, client)
    client.transport.write_eof()
    pump.flush()
    assert server.events[-1] == "eof" and server.lost == []
    server.transport.write(b"reply")
    server.transport.write_eof()
    pump.flush()
    assert client.events == ["made", ("data", b"reply"), "eof", "lost"]
    assert client.lost == [None] and server.lost == [None]


def test_a_producer_is_stopped_after_connection_lost_is_delivered() -> None:
    order: list[str] = []

    class Lost(Recorder):
        def connection_lost(self, exc: BaseException | None) -> None:
            order.append("connection_lost")

    class Stop(PullProducer):
        def stop_producing(self) -> None:
            order.append("stop_producing")

    server, client = Recorder(), Lost()
    pump = connect_in_memory(server, client)
    client.transport.register_producer(Stop(client.transport, [b"a"] * 100), True)
    client.transport.abort()
    pump.flush()
    assert order == ["connection_lost", "stop_producing"]


def test_the_pump_advances_its_clock_by_zero_on_every_step() -> None:
    clock = Clock()
    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client, clock=clock)
    clock.call_later(0, client.transport.write, b"later")
    assert pump.flush() == 1
    assert bytes(server.data) == b"later"
    assert clock.seconds() == 0
