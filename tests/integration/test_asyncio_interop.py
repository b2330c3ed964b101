"""Plait and asyncio libraries on one loop, both ways round, on asyncio's loop and uvloop.

- A Plait protocol (served by ``AsyncioReactor.listen_tcp``) that, for each line,
  opens an asyncio stream (``asyncio.open_connection``) to another server, awaits
  its answer and writes it back.
- A Plait program that fetches a page with aiohttp's client from an aiohttp server,
  both on the reactor's loop (aiohttp needs a current asyncio Task: the coroutine
  runs in one, and the Plait side waits with ``Deferred.from_future``).
- A plain asyncio program that serves a Plait ``Protocol`` subclass with
  ``loop.create_server``, and connects to it with another one through
  ``loop.create_connection``; the callback names are asyncio's, so no adapter is
  needed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any, cast

import aiohttp
import pytest
import uvloop
from aiohttp import web

from plait.cluster.defer import Deferred, ensure_deferred
from plait.cluster.protocol import Protocol
from plait.cluster.reactor import AsyncioReactor
from tests.reactor_support import run_deferred

_LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(_LOOPS))
def loop(request: pytest.FixtureRequest) -> Iterator[asyncio.AbstractEventLoop]:
    the_loop = _LOOPS[request.param]()
    yield the_loop
    the_loop.close()


# ------------------------------------------ asyncio streams inside a Plait protocol


class Relay(Protocol):
    """For each line, ask the upper-casing asyncio server over an asyncio stream."""

    upstream_port = 0

    def __init__(self) -> None:
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while b"\n" in self.buffer:
            line, self.buffer = self.buffer.split(b"\n", 1)
            ensure_deferred(self.ask(line))

    async def ask(self, line: bytes) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        writer.write(line + b"\n")
        await writer.drain()
        answer = await reader.readline()
        writer.close()
        await writer.wait_closed()
        self.transport.write(b"relayed " + answer)


class Collector(Protocol):
    def __init__(self, lines: int) -> None:
        self.data = b""
        self.lines = lines
        self.done: Deferred[bytes] = Deferred()

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.data.count(b"\n") >= self.lines and not self.done.called:
            self.done.callback(self.data)


def test_a_plait_protocol_awaits_asyncio_streams_on_the_same_loop(
        loop: asyncio.AbstractEventLoop) -> None:
    reactor = AsyncioReactor(loop)

    async def upper(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        line = await reader.readline()
        writer.write(line.upper())
        await writer.drain()
        writer.close()

    async def main() -> bytes:
        upstream = await asyncio.start_server(upper, "127.0.0.1", 0)
        Relay.upstream_port = upstream.sockets[0].getsockname()[1]
        port = reactor.listen_tcp(0, Relay, interface="127.0.0.1")
        client = Collector(lines=2)
        try:
            await reactor.connect_tcp("127.0.0.1", port.get_host()[1], lambda: client,
                                      timeout=5)
            client.transport.write(b"one\ntwo\n")
            return await client.done
        finally:
            client.transport.close()
            await port.stop_listening()
            upstream.close()
            await upstream.wait_closed()

    try:
        got = run_deferred(reactor, lambda: ensure_deferred(main()))
    finally:
        reactor.close()
    assert sorted(got.splitlines()) == [b"relayed ONE", b"relayed TWO"]


# --------------------------------------------- aiohttp's client in a Plait program


def test_a_plait_program_fetches_a_page_with_aiohttp(loop: asyncio.AbstractEventLoop) -> None:
    reactor = AsyncioReactor(loop)

    async def hello(request: web.Request) -> web.Response:
        return web.Response(text=f"hello {request.query['name']}")

    async def fetch(url: str) -> tuple[int, str]:
        async with aiohttp.ClientSession() as session, session.get(url) as response:
            return response.status, await response.text()

    async def main() -> tuple[int, str]:
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            # aiohttp wants a current Task (its timeouts): run it in one.
            task = asyncio.get_running_loop().create_task(fetch(f"http://127.0.0.1:{port}/?name=plait"))
            return await Deferred.from_future(task)
        finally:
            await runner.cleanup()

    try:
        got = run_deferred(reactor, lambda: ensure_deferred(main()))
    finally:
        reactor.close()
    assert got == (200, "hello plait")


# ------------------------------------------ a Plait protocol in a plain asyncio program


class PlaitEcho(Protocol):
    """A Plait protocol: echoes, and says goodbye on EOF."""

    lost: list[BaseException | None] = []

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)

    def eof_received(self) -> bool:
        self.transport.write(b"bye")
        self.transport.close()
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        PlaitEcho.lost.append(exc)


class PlaitClient(Protocol):
    def __init__(self, done: asyncio.Future[bytes]) -> None:
        self.done = done
        self.data = b""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        transport.write(b"ping")

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.data == b"ping":
            self.transport.write_eof()

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.done.done():
            self.done.set_result(self.data)


def as_asyncio(factory: Callable[[], Protocol]) -> Callable[[], asyncio.Protocol]:
    return cast(Callable[[], asyncio.Protocol], factory)


def test_a_plain_asyncio_program_serves_and_uses_plait_protocols(
        loop: asyncio.AbstractEventLoop) -> None:
    PlaitEcho.lost = []

    async def program() -> tuple[bytes, bytes]:
        # Plait protocols are asyncio protocols by shape, not by class: cast for mypy.
        server = await loop.create_server(as_asyncio(PlaitEcho), "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        # an asyncio streams client ...
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"hello")
        writer.write_eof()
        streamed = await asyncio.wait_for(reader.read(), 5)
        writer.close()
        # ... and a Plait protocol as an asyncio client
        done: asyncio.Future[bytes] = loop.create_future()
        await loop.create_connection(as_asyncio(lambda: PlaitClient(done)), "127.0.0.1", port)
        plait_client = await asyncio.wait_for(done, 5)
        server.close()
        await server.wait_closed()
        return streamed, plait_client

    streamed, plait_client = loop.run_until_complete(program())
    assert streamed == b"hellobye"
    assert plait_client == b"pingbye"
    assert PlaitEcho.lost == [None, None]
