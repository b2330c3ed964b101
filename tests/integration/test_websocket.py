"""WebSocket on real loopback sockets, with the ``websockets`` library as the real peer.

Both directions: Plait's client against a ``websockets`` server (an asyncio loop in
a thread of its own), and ``websockets``' sync client (in a thread) against Plait's
server on the native reactor. Every wait is bounded; every thread is joined. Bad
input goes over raw sockets, each case followed by a good client that must still
be served.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed as TheirConnectionClosed
from websockets.sync.client import connect as sync_connect

from plait.cluster.defer import Deferred, ensure_deferred
from plait.cluster.failure import Failure
from plait.cluster.reactor import Reactor
from plait.cluster.tls import client_options
from plait.protocols.http import Router, Site
from plait.protocols.websocket import (
    ConnectionClosed,
    HandshakeError,
    WebSocketProtocol,
    WebSocketResource,
    connect,
)
from plait.protocols.websocket.core import Opcode, serialize_frame
from tests.tls_certs import Certs, make_certs

WAIT = 10.0
MASK = b"\x01\x02\x03\x04"


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    r = Reactor()
    yield r
    r.close()


def drive(reactor: Reactor, until: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Run the reactor until ``until()`` holds or ``timeout`` seconds pass."""
    if until():
        return True
    deadline = time.monotonic() + timeout

    def check() -> None:
        if until() or time.monotonic() >= deadline:
            reactor.stop()
        else:
            reactor.call_later(0.002, check)

    reactor.call_soon(check)
    reactor.run(install_signal_handlers=False)
    return until()


def run(reactor: Reactor, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` on the reactor (bounded); return its result or raise its error."""
    d: Deferred[Any] = ensure_deferred(coro)
    out: list[Any] = []
    d.add_both(out.append)
    assert drive(reactor, lambda: bool(out)), "the coroutine did not finish in time"
    if isinstance(out[0], Failure):
        out[0].raise_exception()
    return out[0]


class ThreadedServer:
    """A ``websockets`` asyncio server on 127.0.0.1, in a thread of its own."""

    def __init__(self, handler: Callable[[ServerConnection], Any], **kwargs: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = asyncio.run_coroutine_threadsafe(
            self._start(handler, kwargs), self.loop
        ).result(WAIT)
        self.port: int = self.server.sockets[0].getsockname()[1]

    async def _start(self, handler: Any, kwargs: dict[str, Any]) -> Any:
        return await serve(handler, "127.0.0.1", 0, **kwargs)

    def stop(self) -> None:
        async def close() -> None:
            self.server.close()
            await self.server.wait_closed()

        try:
            asyncio.run_coroutine_threadsafe(close(), self.loop).result(WAIT)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(WAIT)
            self.loop.close()


@pytest.fixture
def their_server() -> Iterator[Callable[..., ThreadedServer]]:
    servers: list[ThreadedServer] = []

    def start(handler: Callable[[ServerConnection], Any], **kwargs: Any) -> ThreadedServer:
        server = ThreadedServer(handler, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


async def their_echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


# -- Plait's client against the websockets server -----------------------------------------


@pytest.mark.parametrize("compression", [True, False])
def test_our_client_echoes_through_their_server(
    reactor: Reactor, their_server: Callable[..., ThreadedServer], compression: bool
) -> None:
    server = their_server(their_echo, compression="deflate" if compression else None)

    async def main() -> list[Any]:
        ws = await connect(f"ws://127.0.0.1:{server.port}/", reactor, compression=compression)
        got: list[str | bytes] = []
        messages: list[str | bytes] = ["hello", "é✓" * 1000, b"\x00\xff" * 8192, b"", ""]
        for message in messages:
            ws.send(message)
            got.append(await ws.receive())
        await ws.close()
        return [got, ws.close_code, ws._core.compression]

    got, code, compressed = run(reactor, main())
    assert got == ["hello", "é✓" * 1000, b"\x00\xff" * 8192, b"", ""]
    assert code == 1000 and compressed is compression


def test_our_client_negotiates_a_subprotocol_with_their_server(
    reactor: Reactor, their_server: Callable[..., ThreadedServer]
) -> None:
    server = their_server(their_echo, subprotocols=["chat.v2", "chat.v1"])

    async def main() -> str | None:
        ws = await connect(
            f"ws://127.0.0.1:{server.port}/", reactor, subprotocols=["chat.v1", "chat.v2"]
        )
        await ws.close()
        return ws.subprotocol

    assert run(reactor, main()) in ("chat.v1", "chat.v2")


def test_our_client_sees_their_close_code_and_reason(
    reactor: Reactor, their_server: Callable[..., ThreadedServer]
) -> None:
    async def closer(ws: ServerConnection) -> None:
        await ws.send("bye soon")
        await ws.close(4000, "done here")

    server = their_server(closer)

    async def main() -> tuple[list[str | bytes], int, str]:
        ws = await connect(f"ws://127.0.0.1:{server.port}/", reactor)
        got = [message async for message in _until_closed(ws)]
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        await ws.wait_closed()
        return got, info.value.code, info.value.reason

    assert run(reactor, main()) == (["bye soon"], 4000, "done here")


async def _until_closed(ws: WebSocketProtocol) -> Any:
    while True:
        try:
            yield await ws.receive()
        except ConnectionClosed:
            return


def test_our_ping_gets_their_pong(
    reactor: Reactor, their_server: Callable[..., ThreadedServer]
) -> None:
    server = their_server(their_echo)

    async def main() -> float:
        ws = await connect(f"ws://127.0.0.1:{server.port}/", reactor)
        rtt = await ws.ping()
        await ws.close()
        return rtt

    assert run(reactor, main()) >= 0


def test_a_message_over_our_limit_closes_with_1009_on_both_sides(
    reactor: Reactor, their_server: Callable[..., ThreadedServer]
) -> None:
    seen: list[int | None] = []

    async def big(ws: ServerConnection) -> None:
        try:
            await ws.send(b"x" * 5000)
            await ws.wait_closed()
        finally:
            seen.append(ws.close_code)

    server = their_server(big, compression=None)

    async def main() -> int:
        ws = await connect(
            f"ws://127.0.0.1:{server.port}/", reactor, max_message_size=1000, compression=False
        )
        with pytest.raises(ConnectionClosed) as info:
            await ws.receive()
        await ws.wait_closed()
        return info.value.code

    assert run(reactor, main()) == 1009
    deadline = time.monotonic() + WAIT
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    assert seen == [1009]


def test_a_refused_handshake_fails_our_connect_with_the_status(
    reactor: Reactor, their_server: Callable[..., ThreadedServer]
) -> None:
    def forbid(connection: Any, request: Any) -> Any:
        return connection.respond(403, "no\n")

    server = their_server(their_echo, process_request=forbid)
    with pytest.raises(HandshakeError) as info:
        run(reactor, _connect_only(f"ws://127.0.0.1:{server.port}/", reactor))
    assert info.value.status == 403


async def _connect_only(url: str, reactor: Reactor) -> WebSocketProtocol:
    return await connect(url, reactor)


def test_connecting_to_a_closed_port_fails_with_connection_refused(reactor: Reactor) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionRefusedError):
        run(reactor, _connect_only(f"ws://127.0.0.1:{port}/", reactor))


def test_our_client_speaks_wss_to_their_tls_server(
    reactor: Reactor, their_server: Callable[..., ThreadedServer], tmp_path: Path
) -> None:
    certs: Certs = make_certs(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certs.server_cert, certs.server_key)
    server = their_server(their_echo, ssl=context)

    async def main() -> str | bytes:
        ws = await connect(
            f"wss://localhost:{server.port}/", reactor,
            tls_options=client_options("localhost", ca_file=certs.ca),
        )
        ws.send("over tls")
        got = await ws.receive()
        await ws.close()
        return got

    assert run(reactor, main()) == "over tls"


# -- the websockets client against Plait's server -------------------------------------------


class OurServer:
    """Plait's Site with WebSocketResources, listening on 127.0.0.1."""

    def __init__(self, reactor: Reactor) -> None:
        self.reactor = reactor
        self.closed: list[int | None] = []
        router = Router()
        router.add_route("GET", "/echo", WebSocketResource(self.echo, max_message_size=4096))
        router.add_route("GET", "/bye", WebSocketResource(self.bye))
        router.add_route(
            "GET", "/proto", WebSocketResource(self.proto, subprotocols=["chat.v1"])
        )
        self.port = reactor.listen_tcp(0, Site(router), interface="127.0.0.1").get_host()[1]

    async def echo(self, ws: WebSocketProtocol) -> None:
        try:
            async for message in ws:
                ws.send(message)
        finally:
            self.closed.append(ws.close_code)

    async def bye(self, ws: WebSocketProtocol) -> None:
        ws.send("bye")
        await ws.close(4001, "see you")

    async def proto(self, ws: WebSocketProtocol) -> None:
        ws.send(ws.subprotocol or "")
        await ws.wait_closed()


def in_thread(reactor: Reactor, f: Callable[[], Any]) -> Any:
    """Run the blocking ``f`` in a thread while the reactor serves; its result or error."""
    out: list[Any] = []

    def target() -> None:
        try:
            out.append(("ok", f()))
        except BaseException as exc:
            out.append(("error", exc))

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    drive(reactor, lambda: bool(out))
    thread.join(WAIT)
    assert out, "the client thread did not finish in time"
    kind, value = out[0]
    if kind == "error":
        raise value
    return value


@pytest.mark.parametrize("compression", ["deflate", None])
def test_their_client_echoes_through_our_server(reactor: Reactor, compression: str | None) -> None:
    server = OurServer(reactor)

    def client() -> list[Any]:
        with sync_connect(
            f"ws://127.0.0.1:{server.port}/echo", compression=compression,
            open_timeout=WAIT, close_timeout=WAIT,
        ) as ws:
            got: list[Any] = []
            messages: list[str | bytes] = ["hello", "é✓" * 300, b"\x00\xff" * 1024, b"", ""]
            for message in messages:
                ws.send(message)
                got.append(ws.recv(timeout=WAIT))
            ws.send(["frag", "mented"])  # an iterable: one message in two fragments
            got.append(ws.recv(timeout=WAIT))
            latency = ws.ping().wait(WAIT)
            got.append(latency)
            return got

    got = in_thread(reactor, client)
    assert got == ["hello", "é✓" * 300, b"\x00\xff" * 1024, b"", "", "fragmented", True]
    drive(reactor, lambda: bool(server.closed))
    assert server.closed == [1000]


def test_their_client_sees_our_close_code(reactor: Reactor) -> None:
    server = OurServer(reactor)

    def client() -> tuple[str, int | None, str | None]:
        with sync_connect(f"ws://127.0.0.1:{server.port}/bye", open_timeout=WAIT) as ws:
            first = ws.recv(timeout=WAIT)
            with pytest.raises(TheirConnectionClosed):
                ws.recv(timeout=WAIT)
            assert ws.close_code is not None
            return str(first), ws.close_code, ws.close_reason

    assert in_thread(reactor, client) == ("bye", 4001, "see you")


def test_their_client_gets_the_subprotocol_it_offered(reactor: Reactor) -> None:
    server = OurServer(reactor)

    def client() -> tuple[str | None, Any]:
        with sync_connect(
            f"ws://127.0.0.1:{server.port}/proto", subprotocols=["x", "chat.v1"],  # type: ignore[list-item]
            open_timeout=WAIT,
        ) as ws:
            return ws.subprotocol, ws.recv(timeout=WAIT)

    assert in_thread(reactor, client) == ("chat.v1", "chat.v1")


def test_an_oversized_message_from_their_client_closes_with_1009(reactor: Reactor) -> None:
    server = OurServer(reactor)

    def client() -> int | None:
        with sync_connect(
            f"ws://127.0.0.1:{server.port}/echo", compression=None, open_timeout=WAIT
        ) as ws:
            ws.send(b"x" * 5000)
            with pytest.raises(TheirConnectionClosed):
                ws.recv(timeout=WAIT)
            return ws.close_code

    assert in_thread(reactor, client) == 1009


HANDSHAKE = (
    b"GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)

RAW_BAD_INPUT = [
    ("unmasked frame", serialize_frame(Opcode.TEXT, b"hi"), 1002),
    ("bad utf-8", serialize_frame(Opcode.TEXT, b"\xff", mask=MASK), 1007),
    ("bad utf-8 across fragments",
     serialize_frame(Opcode.TEXT, b"\xe2\x82", fin=False, mask=MASK)
     + serialize_frame(Opcode.CONTINUATION, b"(", mask=MASK), 1007),
    ("oversized", serialize_frame(Opcode.BINARY, bytes(5000), mask=MASK), 1009),
    ("reserved bits", serialize_frame(Opcode.TEXT, b"x", rsv1=True, mask=MASK), 1002),
    ("long ping", serialize_frame(Opcode.PING, bytes(126), mask=MASK), 1002),
    ("fragmented ping", serialize_frame(Opcode.PING, b"", fin=False, mask=MASK), 1002),
    ("unknown opcode", serialize_frame(0xB, b"", mask=MASK), 1002),
    ("lone continuation", serialize_frame(Opcode.CONTINUATION, b"x", mask=MASK), 1002),
    ("close code 1005", serialize_frame(Opcode.CLOSE, b"\x03\xed", mask=MASK), 1002),
    ("close code 999", serialize_frame(Opcode.CLOSE, b"\x03\xe7", mask=MASK), 1002),
    ("one-byte close", serialize_frame(Opcode.CLOSE, b"\x03", mask=MASK), 1002),
]


@pytest.mark.parametrize(
    ("name", "wire", "code"), RAW_BAD_INPUT, ids=[case[0] for case in RAW_BAD_INPUT]
)
def test_bad_input_over_a_socket_closes_with_its_code_and_the_server_keeps_serving(
    reactor: Reactor, name: str, wire: bytes, code: int
) -> None:
    server = OurServer(reactor)

    def raw_client() -> bytes:
        with socket.create_connection(("127.0.0.1", server.port), timeout=WAIT) as sock:
            sock.sendall(HANDSHAKE)
            data = b""
            while b"\r\n\r\n" not in data:
                data += sock.recv(4096)
            assert data.startswith(b"HTTP/1.1 101")
            sock.sendall(wire)
            answer = b""
            while chunk := sock.recv(4096):  # the server closes after its close frame
                answer += chunk
            return answer

    answer = in_thread(reactor, raw_client)
    assert answer[:2] == b"\x88\x02" and int.from_bytes(answer[2:4], "big") == code

    def good_client() -> Any:
        with sync_connect(f"ws://127.0.0.1:{server.port}/echo", open_timeout=WAIT) as ws:
            ws.send("still here")
            return ws.recv(timeout=WAIT)

    assert in_thread(reactor, good_client) == "still here"
