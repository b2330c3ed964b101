"""The HTTP client's content decoding against real servers on 127.0.0.1.

- Plait's own ``Site``, serving pre-compressed bodies with ``Content-Encoding`` set
  by hand (good ones, and the bad ones the client must refuse).
- aiohttp's web server, which compresses responses itself
  (``response.enable_compression()``), run on its own event loop in a thread that
  the fixture stops.

The native reactor runs in the test's thread (``async def`` tests on the plugin's
``reactor`` fixture); every wait is bounded by the plugin's timeout.
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import zlib
from collections.abc import Iterator

import pytest
from aiohttp import web

from plait.cluster.reactor import Reactor
from plait.protocols.http import Request, Response, Router, Site, StreamingResponse
from plait.protocols.http.client import Agent, MalformedResponse, ResponseTooLarge

TEXT = b"".join(b"line %d of a compressible body\n" % i for i in range(50_000))  # ~1.6 MB
SEEN: list[str | None] = []  # the Accept-Encoding each aiohttp request carried


# -- Plait's Site with pre-compressed bodies ----------------------------------------------


def precompressed_app() -> Router:
    router = Router()
    encoded = {
        "gzip": gzip.compress(TEXT),
        "deflate": zlib.compress(TEXT),
        "gzip, gzip": gzip.compress(gzip.compress(TEXT)),
    }

    @router.get("/{coding}")
    def sized(request: Request, coding: str) -> Response:
        coding = coding.replace("+", ", ")
        return Response(200, encoded[coding], headers={"Content-Encoding": coding})

    @router.get("/streamed")
    def streamed(request: Request) -> StreamingResponse:
        body = gzip.compress(TEXT)
        parts = [body[i : i + 4096] for i in range(0, len(body), 4096)]
        return StreamingResponse(200, {"Content-Encoding": "gzip"}, parts)

    @router.get("/corrupt")
    def corrupt(request: Request) -> Response:
        body = bytearray(gzip.compress(TEXT))
        body[len(body) // 2] ^= 0x55
        return Response(200, bytes(body), headers={"Content-Encoding": "gzip"})

    @router.get("/garbage")
    def garbage(request: Request) -> Response:
        return Response(200, gzip.compress(b"ok") + b"junk", headers={"Content-Encoding": "gzip"})

    @router.get("/bomb")
    def bomb(request: Request) -> Response:
        return Response(200, gzip.compress(bytes(10_000_000)), headers={"Content-Encoding": "gzip"})

    return router


async def test_plait_site_precompressed_bodies_decode_and_reuse_one_connection(
    reactor: Reactor,
) -> None:
    port = reactor.listen_tcp(0, Site(precompressed_app()), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.get_host()[1]}"
    agent = Agent(reactor)
    try:
        for path in ("/gzip", "/deflate", "/gzip+gzip", "/streamed"):
            response = await agent.request("GET", url + path)
            assert response.decoded and response.length is None
            assert await response.read() == TEXT, path
        chunks = [chunk async for chunk in (await agent.request("GET", url + "/gzip")).stream()]
        assert b"".join(chunks) == TEXT and max(map(len, chunks)) <= 65536
        assert await (await agent.request("GET", url + "/deflate")).text() == TEXT.decode()
        assert agent.pool.statistics()[("http", "127.0.0.1", port.get_host()[1])] == (1, 1, 0)
    finally:
        await agent.close()
        await port.stop_listening()


async def test_plait_site_bad_bodies_fail_with_client_errors(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Site(precompressed_app()), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.get_host()[1]}"
    agent = Agent(reactor, max_body_size=5_000_000)
    try:
        for path, error in (
            ("/corrupt", MalformedResponse),
            ("/garbage", MalformedResponse),
            ("/bomb", ResponseTooLarge),
        ):
            response = await agent.request("GET", url + path)
            with pytest.raises(error):
                await response.read()
        # Each failure dropped its connection; a good request gets a new one.
        good = await agent.request("GET", url + "/deflate")
        assert await good.read() == TEXT
        assert agent.pool.statistics()[("http", "127.0.0.1", port.get_host()[1])] == (1, 1, 0)
    finally:
        await agent.close()
        await port.stop_listening()


# -- aiohttp's server, compressing by itself -------------------------------------------------


async def aiohttp_text(request: web.Request) -> web.StreamResponse:
    SEEN.append(request.headers.get("Accept-Encoding"))
    force = request.query.get("force")
    if request.query.get("stream"):
        response = web.StreamResponse()
        response.enable_compression(web.ContentCoding(force) if force else None)
        await response.prepare(request)
        for i in range(0, len(TEXT), 100_000):
            await response.write(TEXT[i : i + 100_000])
        await response.write_eof()
        return response
    plain = web.Response(body=TEXT, content_type="text/plain")
    plain.enable_compression(web.ContentCoding(force) if force else None)
    return plain


@pytest.fixture
def aiohttp_server() -> Iterator[str]:
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/", aiohttp_text)
    runner = web.AppRunner(app, access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}/"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


@pytest.mark.parametrize("query", ["", "?force=gzip", "?force=deflate", "?stream=1&force=gzip"])
async def test_aiohttp_compressed_responses_decode(
    reactor: Reactor, aiohttp_server: str, query: str
) -> None:
    SEEN.clear()
    agent = Agent(reactor)
    try:
        response = await agent.request("GET", aiohttp_server + query)
        coding = response.headers.get("content-encoding")
        assert coding in (b"gzip", b"deflate")
        if "force" in query:
            assert coding == query.partition("force=")[2].encode()
        assert response.decoded and await response.read() == TEXT
        assert SEEN == ["gzip, deflate"]
    finally:
        await agent.close()


async def test_aiohttp_compressed_response_with_decompress_false_stays_encoded(
    reactor: Reactor, aiohttp_server: str
) -> None:
    agent = Agent(reactor, decompress=False)
    try:
        response = await agent.request(
            "GET", aiohttp_server + "?force=gzip", headers={"Accept-Encoding": "gzip"}
        )
        assert response.headers.get("content-encoding") == b"gzip" and not response.decoded
        assert gzip.decompress(await response.read()) == TEXT
    finally:
        await agent.close()
