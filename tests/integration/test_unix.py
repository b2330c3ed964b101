"""Unix stream and datagram sockets, and passing descriptors, on the native reactor."""

from __future__ import annotations

import errno
import logging
import os
import socket
import stat
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from plait.cluster._unix import MAX_FDS, UnixStreamTransport
from plait.cluster.defer import CancelledError, Deferred
from plait.cluster.defer import TimeoutError as DeferTimeoutError
from plait.cluster.interfaces import (
    IDatagramTransport,
    IListeningPort,
    IReactorUNIX,
    IUnixTransport,
)
from plait.cluster.protocol import DatagramProtocol, Protocol
from plait.cluster.reactor import Reactor

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux only")


class Peer(Protocol):
    """Records bytes and descriptors; ``wait_for(n)`` fires once ``n`` bytes arrived."""

    def __init__(self) -> None:
        self.received = bytearray()
        self.fds: list[list[int]] = []
        self.bytes_before_fds: list[int] = []
        self.lost: Deferred[BaseException | None] = Deferred()
        self._want: list[tuple[int, Deferred[bytes]]] = []

    def data_received(self, data: bytes) -> None:
        self.received += data
        for want in list(self._want):
            if len(self.received) >= want[0]:
                self._want.remove(want)
                want[1].callback(bytes(self.received))

    def fds_received(self, fds: list[int]) -> None:
        self.bytes_before_fds.append(len(self.received))
        self.fds.append(fds)

    def wait_for(self, size: int) -> Deferred[bytes]:
        d: Deferred[bytes] = Deferred()
        self._want.append((size, d))
        self.data_received(b"")
        return d

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.callback(exc)


class NoFds(Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.arrived: Deferred[None] = Deferred()

    def data_received(self, data: bytes) -> None:
        self.received += data
        if not self.arrived.called:
            self.arrived.callback(None)


@pytest.fixture
def sock_path(tmp_path: Path) -> Iterator[str]:
    # AF_UNIX paths are limited to ~107 bytes; pytest's tmp_path can be longer.
    short = Path("/tmp") / f"plait-{uuid.uuid4().hex[:12]}"
    short.mkdir(mode=0o700)
    try:
        yield str(short / "s.sock")
    finally:
        for child in short.iterdir():
            child.unlink()
        short.rmdir()


async def _connected_pair(reactor: Reactor, path: str) -> tuple[Peer, Peer, Any]:
    servers: list[Peer] = []

    def make_server() -> Peer:
        servers.append(Peer())
        return servers[-1]

    port = reactor.listen_unix(path, make_server)
    client = await reactor.connect_unix(path, Peer)
    while not servers or servers[0].transport is None:
        await _next_turn(reactor)
    return servers[0], client, port


def _next_turn(reactor: Reactor) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.call_later(0.001, d.callback, None)
    return d


def _stale_socket(path: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(path)
    sock.close()  # the file stays behind, as after a crash


# ------------------------------------------------------------------- streams


async def test_unix_streams_carry_bytes_both_ways(reactor: Reactor, sock_path: str) -> None:
    assert verifyObject(IReactorUNIX, reactor)
    server, client, port = await _connected_pair(reactor, sock_path)
    assert verifyObject(IListeningPort, port)
    assert verifyObject(IUnixTransport, client.transport)
    assert isinstance(server.transport, UnixStreamTransport)
    assert port.get_host() == sock_path
    with pytest.raises(AttributeError, match="has a path, not a port number"):
        _ = port.port
    assert client.transport.get_extra_info("peername") == sock_path
    client.transport.write(b"ping")
    assert await server.wait_for(4) == b"ping"
    server.transport.write(b"pong")
    assert await client.wait_for(4) == b"pong"
    client.transport.close()
    assert await server.lost is None
    await port.stop_listening()


async def test_the_socket_file_gets_the_mode_and_is_removed_on_stop(
    reactor: Reactor, sock_path: str
) -> None:
    port = reactor.listen_unix(sock_path, Protocol, mode=0o640)
    st = os.stat(sock_path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    await port.stop_listening()
    assert not os.path.exists(sock_path)


async def test_stop_leaves_a_file_that_replaced_the_socket(
    reactor: Reactor, sock_path: str
) -> None:
    port = reactor.listen_unix(sock_path, Protocol)
    os.unlink(sock_path)
    Path(sock_path).write_text("someone else's")
    await port.stop_listening()
    assert Path(sock_path).read_text() == "someone else's"


async def test_a_stale_socket_file_is_replaced(reactor: Reactor, sock_path: str) -> None:
    _stale_socket(sock_path)
    port = reactor.listen_unix(sock_path, Protocol)
    proto = await reactor.connect_unix(sock_path, Protocol)
    proto.transport.close()
    await port.stop_listening()


async def test_a_live_socket_is_not_taken_over(reactor: Reactor, sock_path: str) -> None:
    port = reactor.listen_unix(sock_path, Protocol)
    with pytest.raises(OSError) as info:
        reactor.listen_unix(sock_path, Protocol)
    assert info.value.errno == errno.EADDRINUSE
    with pytest.raises(OSError) as info:
        reactor.listen_unix_datagram(sock_path, DatagramProtocol())
    assert info.value.errno == errno.EADDRINUSE
    proto = await reactor.connect_unix(sock_path, Protocol)  # still serving
    proto.transport.close()
    await port.stop_listening()


def test_a_path_that_is_not_a_socket_is_never_removed(
    reactor: Reactor, sock_path: str
) -> None:
    Path(sock_path).write_text("precious")
    with pytest.raises(FileExistsError):
        reactor.listen_unix(sock_path, Protocol)
    assert Path(sock_path).read_text() == "precious"


@pytest.mark.parametrize(
    ("address", "kwargs", "error"),
    [
        ("", {}, ValueError),
        ("/tmp/a\0b", {}, ValueError),
        (b"/tmp/x", {}, TypeError),
        ("/tmp/x", {"mode": 0o10000}, ValueError),
        ("/tmp/x", {"mode": "660"}, ValueError),
        ("/tmp/x", {"backlog": -1}, ValueError),
    ],
)
def test_bad_listen_unix_arguments_raise(
    reactor: Reactor, address: Any, kwargs: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        reactor.listen_unix(address, Protocol, **kwargs)


@linux_only
async def test_abstract_names_work_and_leave_no_file(reactor: Reactor) -> None:
    name = f"\0plait-test-{uuid.uuid4().hex}"
    server_side: list[Peer] = []

    def make() -> Peer:
        server_side.append(Peer())
        return server_side[-1]

    port = reactor.listen_unix(name, make)
    client = await reactor.connect_unix(name, Peer)
    client.transport.write(b"abstract")
    while not server_side:
        await _next_turn(reactor)
    assert await server_side[0].wait_for(8) == b"abstract"
    client.transport.close()
    await port.stop_listening()


async def test_connecting_to_nothing_fails(reactor: Reactor, sock_path: str) -> None:
    with pytest.raises(FileNotFoundError):
        await reactor.connect_unix(sock_path, Protocol)
    _stale_socket(sock_path)
    with pytest.raises(ConnectionRefusedError):
        await reactor.connect_unix(sock_path, Protocol)


@pytest.mark.parametrize(
    ("path", "factory", "timeout", "error"),
    [
        ("", Protocol, 1.0, ValueError),
        ("/tmp/x", Protocol, 0, ValueError),
        ("/tmp/x", "not callable", 1.0, TypeError),
    ],
)
def test_bad_connect_unix_arguments_raise(
    reactor: Reactor, path: str, factory: Any, timeout: float, error: type[Exception]
) -> None:
    with pytest.raises(error):
        reactor.connect_unix(path, factory, timeout=timeout)


async def test_a_refusing_factory_fails_the_connect(reactor: Reactor, sock_path: str) -> None:
    port = reactor.listen_unix(sock_path, Protocol)
    with pytest.raises(ConnectionAbortedError):
        await reactor.connect_unix(sock_path, lambda: None)
    await port.stop_listening()


async def test_cancelling_a_connect_closes_it(reactor: Reactor, sock_path: str) -> None:
    port = reactor.listen_unix(sock_path, Protocol)
    made: list[Protocol] = []

    class Tracked(Protocol):
        def connection_made(self, transport: Any) -> None:
            made.append(self)

    d = reactor.connect_unix(sock_path, Tracked)
    d.cancel()
    with pytest.raises(CancelledError):
        await d
    await _next_turn(reactor)
    assert made == []
    await port.stop_listening()


async def test_a_full_backlog_is_retried_until_the_timeout(
    reactor: Reactor, sock_path: str
) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(0)
    fillers = []
    try:
        while True:  # fill the backlog: the next connect says EAGAIN
            filler = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            filler.setblocking(False)
            fillers.append(filler)
            if filler.connect_ex(sock_path) != 0:
                break
        with pytest.raises(DeferTimeoutError):
            await reactor.connect_unix(sock_path, Protocol, timeout=0.1)
        d = reactor.connect_unix(sock_path, Protocol, timeout=5)
        await _next_turn(reactor)
        listener.accept()[0].close()  # room again: a retry gets in
        proto = await d
        proto.transport.close()
    finally:
        for filler in fillers:
            filler.close()
        listener.close()


# --------------------------------------------------------------- descriptors


async def test_descriptors_arrive_before_the_bytes_they_came_with(
    reactor: Reactor, sock_path: str
) -> None:
    server, client, port = await _connected_pair(reactor, sock_path)
    read_end, write_end = os.pipe()
    client.transport.write(b"before")
    client.transport.send_fds([read_end, write_end], b"F")
    os.close(read_end)  # the transport sent its own duplicates
    client.transport.write(b"after")
    assert await server.wait_for(12) == b"beforeFafter"
    assert len(server.fds) == 1 and len(server.fds[0]) == 2
    assert server.bytes_before_fds[0] <= len(b"before")
    got_read, got_write = server.fds[0]
    os.write(write_end, b"through the pipe")
    assert os.read(got_read, 100) == b"through the pipe"
    assert os.get_inheritable(got_read) is False
    for fd in (write_end, got_read, got_write):
        os.close(fd)
    client.transport.close()
    await port.stop_listening()


async def test_descriptors_queued_behind_a_full_buffer_keep_their_place(
    reactor: Reactor, sock_path: str
) -> None:
    server, client, port = await _connected_pair(reactor, sock_path)
    server.transport.pause_reading()
    blob = b"x" * (4 << 20)
    client.transport.write(blob)
    assert client.transport.get_write_buffer_size() > 0, "the kernel took everything"
    read_end, write_end = os.pipe()
    client.transport.send_fds([write_end], b"F")
    os.close(write_end)  # the queued message holds a duplicate
    client.transport.write(b"tail")
    server.transport.resume_reading()
    assert await server.wait_for(len(blob) + 5) == blob + b"Ftail"
    assert len(server.fds) == 1
    assert len(blob) - 65536 <= server.bytes_before_fds[0] <= len(blob)
    (got_write,) = server.fds[0]
    os.write(got_write, b"!")
    assert os.read(read_end, 1) == b"!"
    os.close(got_write)
    os.set_blocking(read_end, False)  # a leaked copy would raise BlockingIOError
    assert os.read(read_end, 1) == b""  # every copy of the write end is closed
    os.close(read_end)
    client.transport.close()
    await port.stop_listening()


async def test_a_protocol_without_fds_received_does_not_leak_them(
    reactor: Reactor, sock_path: str
) -> None:
    received: list[NoFds] = []

    def make() -> NoFds:
        received.append(NoFds())
        return received[-1]

    port = reactor.listen_unix(sock_path, make)
    client = await reactor.connect_unix(sock_path, Protocol)
    read_end, write_end = os.pipe()
    client.transport.send_fds([write_end], b"F")
    os.close(write_end)
    while not received:
        await _next_turn(reactor)
    await received[0].arrived
    assert received[0].received == b"F"
    os.set_blocking(read_end, False)  # a leaked copy would raise BlockingIOError
    assert os.read(read_end, 1) == b""  # the receiver closed its copy
    os.close(read_end)
    client.transport.close()
    await port.stop_listening()


async def test_fds_received_raising_aborts_that_connection(
    reactor: Reactor, sock_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken(Peer):
        def fds_received(self, fds: list[int]) -> None:
            for fd in fds:
                os.close(fd)
            raise RuntimeError("cannot use fds")

    servers: list[Broken] = []

    def make() -> Broken:
        servers.append(Broken())
        return servers[-1]

    port = reactor.listen_unix(sock_path, make)
    client = await reactor.connect_unix(sock_path, Peer)
    client.transport.send_fds([0], b"F")
    while not servers:
        await _next_turn(reactor)
    exc = await servers[0].lost
    assert isinstance(exc, RuntimeError) and servers[0].received == b""
    assert any(r.levelno == logging.ERROR and "fds_received" in r.getMessage()
               for r in caplog.records)
    await client.lost
    await port.stop_listening()


async def test_send_fds_checks_its_arguments(reactor: Reactor, sock_path: str) -> None:
    server, client, port = await _connected_pair(reactor, sock_path)
    transport = client.transport
    closed_r, closed_w = os.pipe()
    os.close(closed_r)
    os.close(closed_w)
    with pytest.raises(ValueError, match="at least one byte"):
        transport.send_fds([0], b"")
    with pytest.raises(ValueError, match="descriptors"):
        transport.send_fds([], b"x")
    with pytest.raises(ValueError, match="descriptors"):
        transport.send_fds([0] * (MAX_FDS + 1), b"x")
    with pytest.raises(ValueError, match="not a file descriptor"):
        transport.send_fds([-1], b"x")
    with pytest.raises(TypeError):
        transport.send_fds(["0"], b"x")
    with pytest.raises(TypeError):
        transport.send_fds([0], "x")
    with pytest.raises(OSError) as info:
        transport.send_fds([closed_r], b"x")
    assert info.value.errno == errno.EBADF
    transport.close()
    transport.send_fds([0], b"dropped")  # after close: dropped like write
    await server.lost
    assert server.fds == [] and server.received == b""
    await port.stop_listening()


async def test_adopted_unix_sockets_get_the_unix_transport(
    reactor: Reactor, sock_path: str
) -> None:
    left, right = socket.socketpair()
    proto = reactor.adopt_stream_connection(left.fileno(), socket.AF_UNIX, Peer)
    left.close()
    assert isinstance(proto.transport, UnixStreamTransport)
    read_end, write_end = os.pipe()
    proto.transport.send_fds([write_end], b"F")
    _, fds, _, _ = socket.recv_fds(right, 10, 4)
    assert len(fds) == 1
    for fd in (*fds, read_end, write_end):
        os.close(fd)
    proto.transport.close()
    await proto.lost
    right.close()

    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sock_path)
    listener.listen(8)
    servers: list[Peer] = []

    def make() -> Peer:
        servers.append(Peer())
        return servers[-1]

    port = reactor.adopt_stream_port(listener.fileno(), socket.AF_UNIX, make)
    listener.close()
    client = await reactor.connect_unix(sock_path, Peer)
    while not servers:
        await _next_turn(reactor)
    assert isinstance(servers[0].transport, UnixStreamTransport)
    client.transport.close()
    await port.stop_listening()
    os.unlink(sock_path)


# ----------------------------------------------------------------- datagrams


class Datagrams(DatagramProtocol):
    def __init__(self) -> None:
        self.got: list[tuple[bytes, Any]] = []
        self.waiting: list[tuple[int, Deferred[None]]] = []
        self.paused: list[str] = []

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.got.append((data, addr))
        for want in list(self.waiting):
            if len(self.got) >= want[0]:
                self.waiting.remove(want)
                want[1].callback(None)

    def wait_for(self, count: int) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        self.waiting.append((count, d))
        if len(self.got) >= count:
            self.waiting.remove((count, d))
            d.callback(None)
        return d

    def pause_writing(self) -> None:
        self.paused.append("pause")

    def resume_writing(self) -> None:
        self.paused.append("resume")


async def test_unix_datagrams_go_both_ways(reactor: Reactor, sock_path: str) -> None:
    other_path = sock_path + ".2"
    a, b = Datagrams(), Datagrams()
    a_t = reactor.listen_unix_datagram(sock_path, a, mode=0o600)
    b_t = reactor.listen_unix_datagram(other_path, b)
    assert verifyObject(IDatagramTransport, a_t)
    assert stat.S_IMODE(os.stat(sock_path).st_mode) == 0o600
    a_t.sendto(b"one", other_path)
    await b.wait_for(1)
    assert b.got == [(b"one", sock_path)]
    b_t.connect(sock_path)
    b_t.sendto(b"two")
    await a.wait_for(1)
    assert a.got == [(b"two", other_path)]
    a_t.close()
    b_t.close()
    await _next_turn(reactor)
    assert not os.path.exists(sock_path) and not os.path.exists(other_path)


async def test_a_unix_datagram_to_nobody_goes_to_error_received(
    reactor: Reactor, sock_path: str
) -> None:
    errors: list[Exception] = []

    class Errors(DatagramProtocol):
        def error_received(self, exc: Exception) -> None:
            errors.append(exc)

    transport = reactor.listen_unix_datagram(sock_path, Errors())
    transport.sendto(b"x", sock_path + ".missing")
    assert [type(e) for e in errors] == [FileNotFoundError]
    with pytest.raises(OSError):
        transport.connect(sock_path + ".missing")
    transport.abort()


def test_a_failing_connection_made_leaves_no_socket_file(
    reactor: Reactor, sock_path: str
) -> None:
    class Refuses(DatagramProtocol):
        def connection_made(self, transport: Any) -> None:
            raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        reactor.listen_unix_datagram(sock_path, Refuses())
    assert not os.path.exists(sock_path)


def test_a_stale_datagram_socket_is_replaced(reactor: Reactor, sock_path: str) -> None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(sock_path)
    sock.close()
    transport = reactor.listen_unix_datagram(sock_path, DatagramProtocol())
    transport.abort()


async def test_a_full_receiver_queues_datagrams_with_flow_control(
    reactor: Reactor, sock_path: str
) -> None:
    receiver = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    receiver.bind(sock_path)
    receiver.setblocking(False)
    sender = Datagrams()
    sender_t = reactor.listen_unix_datagram(sock_path + ".send", sender)
    sender_t.set_write_buffer_limits(high=2000)
    payloads = [i.to_bytes(2, "big") * 500 for i in range(2000)]
    for payload in payloads:
        sender_t.sendto(payload, sock_path)
    assert sender_t.get_write_buffer_size() > 0, "the receiver never pushed back"
    assert sender.paused == ["pause"]
    got: list[bytes] = []
    drained: Deferred[None] = Deferred()

    def drain() -> None:
        while True:
            try:
                got.append(receiver.recv(2000))
            except BlockingIOError:
                break
        if len(got) == len(payloads) and not drained.called:
            drained.callback(None)

    reactor.add_reader(receiver.fileno(), drain)
    try:
        await drained
    finally:
        reactor.remove_reader(receiver.fileno())
        receiver.close()
    assert got == payloads
    assert sender_t.get_write_buffer_size() == 0 and sender.paused == ["pause", "resume"]
    lost: Deferred[None] = Deferred()
    sender.connection_lost = lambda exc: lost.callback(None)  # type: ignore[method-assign]
    sender_t.close()
    await lost

