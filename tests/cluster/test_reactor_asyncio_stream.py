"""AsyncioStreamTransport: Plait's TCP transport over uvloop's, before and after attach.

The conformance suite (tests/conformance/test_asyncio.py) covers an attached
connection; these tests cover what a protocol does inside ``connection_made``,
before uvloop has told the bridge (writes, close, abort, pause, a raise), which
transport a protocol gets, and bad input. Real sockets on 127.0.0.1, uvloop.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import uvloop
from zope.interface.verify import verifyObject

from plait.cluster._reactor_asyncio import _UvloopStreamTransport
from plait.cluster._reactor_asyncio_stream import AsyncioStreamTransport
from plait.cluster.defer import Deferred
from plait.cluster.interfaces import ITransport
from plait.cluster.protocol import Protocol
from plait.cluster.reactor import AsyncioReactor


@pytest.fixture
def reactor() -> Iterator[AsyncioReactor]:
    loop = uvloop.new_event_loop()
    r = AsyncioReactor(loop)
    yield r
    r.close()
    loop.close()


class Peer(Protocol):
    """Records what arrives and how the connection ended."""

    def __init__(self) -> None:
        self.data = b""
        self.lost: list[BaseException | None] = []

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


def drive(reactor: AsyncioReactor, until: Callable[[], bool], timeout: float = 5.0) -> bool:
    """Run the reactor until ``until()`` or ``timeout``; whether it held."""
    deadline = reactor.seconds() + timeout

    def check() -> None:
        if until() or reactor.seconds() >= deadline:
            reactor.stop()
        else:
            reactor.call_later(0.002, check)

    reactor.call_soon(check)
    reactor.run(install_signal_handlers=False)
    return until()


def connect(reactor: AsyncioReactor, server_factory: Callable[[], Any],
            client: Any) -> tuple[Any, Any]:
    """Listen with ``server_factory``, connect ``client``; (port, server protocol)."""
    servers: list[Any] = []

    def factory() -> Any:
        protocol = server_factory()
        servers.append(protocol)
        return protocol

    port = reactor.listen_tcp(0, factory, interface="127.0.0.1")
    outcome: list[Any] = []
    d: Deferred[Any] = reactor.connect_tcp("127.0.0.1", port.get_host()[1], lambda: client,
                                           timeout=5)
    d.add_both(outcome.append)
    assert drive(reactor, lambda: bool(outcome) and bool(servers))
    assert outcome == [client]
    return port, servers[0]


def _attached(transport: Any) -> bool:
    return transport._t is not None


def test_tcp_connections_on_uvloop_get_the_adapter_over_uvloops_transport(
        reactor: AsyncioReactor) -> None:
    client = Peer()
    _, server = connect(reactor, Peer, client)
    for protocol in (client, server):
        transport = protocol.transport
        assert isinstance(transport, AsyncioStreamTransport)
        assert verifyObject(ITransport, transport)
        assert drive(reactor, functools.partial(_attached, transport))
        assert type(transport._t).__module__.startswith("uvloop")


def test_a_buffered_protocol_keeps_the_native_transport_which_sees_an_rst_after_bytes(
        reactor: AsyncioReactor) -> None:
    class Buffered(Peer):
        def __init__(self) -> None:
            super().__init__()
            self.buf = bytearray(1024)

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buf

        def buffer_updated(self, nbytes: int) -> None:
            self.data += bytes(self.buf[:nbytes])

    client = Buffered()
    _, server = connect(reactor, Peer, client)
    assert isinstance(client.transport, _UvloopStreamTransport)
    server.transport.write(b"into the buffer")
    assert drive(reactor, lambda: client.data == b"into the buffer")
    # Bytes and an RST in one readable event: uvloop calls the reader once, then
    # drops it; reading until EAGAIN sees the reset in that call.
    server.transport.write(b" and the last bytes")
    server.transport.abort()
    assert drive(reactor, lambda: bool(client.lost))
    assert client.data == b"into the buffer and the last bytes"
    assert isinstance(client.lost[0], ConnectionError)


def test_writes_and_close_inside_connection_made_are_delivered_in_order(
        reactor: AsyncioReactor) -> None:
    class Greeter(Peer):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.write(b"hello ")
            transport.write(bytearray(b"from "))
            transport.writelines([memoryview(b"connection_made")])
            assert transport.get_write_buffer_size() == len(b"hello from connection_made")
            transport.close()
            transport.write(b" dropped")
            assert transport.is_closing()

    client = Peer()
    _, server = connect(reactor, Greeter, client)
    assert drive(reactor, lambda: bool(client.lost) and bool(server.lost))
    assert client.data == b"hello from connection_made"
    assert client.lost == [None] and server.lost == [None]


def test_write_eof_inside_connection_made_half_closes_after_the_bytes(
        reactor: AsyncioReactor) -> None:
    class HalfCloser(Peer):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.write(b"last words")
            transport.write_eof()
            transport.write(b" dropped")

    class Answerer(Peer):
        def eof_received(self) -> bool:
            self.transport.write(b"ok")
            self.transport.close()
            return True

    client = Answerer()
    _, server = connect(reactor, HalfCloser, client)
    assert drive(reactor, lambda: bool(server.lost) and bool(client.lost))
    assert client.data == b"last words"
    assert server.data == b"ok"


def test_abort_inside_connection_made_resets_the_peer(reactor: AsyncioReactor) -> None:
    class Refuser(Peer):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.write(b"never sent")
            transport.abort()

    client = Peer()
    _, server = connect(reactor, Refuser, client)
    assert drive(reactor, lambda: bool(client.lost) and bool(server.lost))
    assert server.lost == [None]
    assert client.data == b""
    assert isinstance(client.lost[0], ConnectionError)


def test_a_connection_made_that_raises_ends_the_connection_with_that_error(
        reactor: AsyncioReactor) -> None:
    boom = RuntimeError("boom in connection_made")

    class Broken(Peer):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            raise boom

    client = Peer()
    _, server = connect(reactor, Broken, client)
    assert drive(reactor, lambda: bool(client.lost) and bool(server.lost))
    assert server.lost == [boom]
    assert len(client.lost) == 1


def test_reading_paused_inside_connection_made_holds_data_until_resumed(
        reactor: AsyncioReactor) -> None:
    class Paused(Peer):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.pause_reading()
            assert not transport.is_reading()

    client = Peer()
    _, server = connect(reactor, Paused, client)
    client.transport.write(b"held back")
    assert not drive(reactor, lambda: bool(server.data), 0.05)
    server.transport.resume_reading()
    assert server.transport.is_reading()
    assert drive(reactor, lambda: server.data == b"held back")


def test_set_protocol_sends_what_follows_to_the_new_protocol(reactor: AsyncioReactor) -> None:
    client = Peer()
    _, server = connect(reactor, Peer, client)
    client.transport.write(b"one")
    assert drive(reactor, lambda: server.data == b"one")
    other = Peer()
    server.transport.set_protocol(other)
    assert server.transport.get_protocol() is other
    client.transport.write(b"two")
    assert drive(reactor, lambda: other.data == b"two")
    assert server.data == b"one"


def test_set_protocol_inside_connection_made_takes_effect_on_attach(
        reactor: AsyncioReactor) -> None:
    other = Peer()

    class Switcher(Peer):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.set_protocol(other)

    client = Peer()
    _, server = connect(reactor, Switcher, client)
    client.transport.write(b"for the other")
    assert drive(reactor, lambda: other.data == b"for the other")
    assert server.data == b""


@pytest.mark.parametrize("bad", ["text", 3, None])
def test_writing_what_is_not_bytes_like_raises_type_error(reactor: AsyncioReactor,
                                                          bad: Any) -> None:
    errors: list[BaseException] = []

    class Writer(Peer):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            try:
                transport.write(bad)  # before attach: checked here
            except TypeError as exc:
                errors.append(exc)

    client = Peer()
    _, server = connect(reactor, Writer, client)
    assert len(errors) == 1
    assert drive(reactor, lambda: server.transport._t is not None)
    with pytest.raises(TypeError):
        server.transport.write(bad)  # after attach: uvloop checks it


def test_a_socket_the_loop_refuses_ends_the_protocol_with_the_error(
        reactor: AsyncioReactor) -> None:
    import socket

    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)  # not a stream socket
    try:
        protocol = Peer()
        transport = AsyncioStreamTransport(reactor, a, protocol)
        transport._start()
        assert drive(reactor, lambda: bool(protocol.lost))
        assert isinstance(protocol.lost[0], ValueError)
        assert transport.is_closing()
    finally:
        a.close()
        b.close()


def test_the_water_marks_are_checked_and_kept(reactor: AsyncioReactor) -> None:
    client = Peer()
    connect(reactor, Peer, client)
    transport = client.transport
    with pytest.raises(ValueError):
        transport.set_write_buffer_limits(high=1, low=2)
    transport.set_write_buffer_limits(high=400)
    assert transport.get_write_buffer_limits() == (100, 400)
    assert transport.can_write_eof()
