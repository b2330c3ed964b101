"""The HTTP client against real peers on 127.0.0.1: the stdlib's ThreadingHTTPServer,
a raw-socket server for odd answers, Plait's own Site, and a Site over TLS.

The native reactor runs in the test's thread (``async def`` tests on the plugin's
``reactor`` fixture); stdlib peers run in threads and are shut down by their fixtures.
Every wait is bounded by the plugin's timeout.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from plait.cluster.reactor import Reactor
from plait.cluster.tls import CertificateVerifyError, client_options, server_options
from plait.protocols.http import Request, Response, Router, Site, StreamingResponse
from plait.protocols.http.client import (
    Agent,
    HTTPConnectionPool,
    MalformedResponse,
    RequestTimeout,
    ResponseNeverReceived,
    ResponseTooLarge,
)
from tests.tls_certs import Certs, make_certs

BIG = 4 * 1024 * 1024


class Handler(BaseHTTPRequestHandler):
    """Answers the paths the tests use, over HTTP/1.1 keep-alive."""

    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests say what went wrong."""

    def setup(self) -> None:
        super().setup()
        server: Any = self.server
        with server.lock:
            server.connections += 1

    def _send(self, status: int, body: bytes, *extra: tuple[str, str]) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/hello":
            self._send(200, b"hello", ("Content-Type", "text/plain"))
        elif self.path == "/close":
            self.close_connection = True
            self._send(200, b"bye", ("Connection", "close"))
        elif self.path == "/big":
            self._send(200, b"x" * BIG)
        elif self.path == "/chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"alpha ", b"beta ", b"gamma"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/redirect":
            self._send(302, b"", ("Location", "/hello"))
        else:
            self._send(404, b"no")

    def do_POST(self) -> None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                body += self.rfile.read(size)
                self.rfile.readline()
            framing = b"chunked"
        else:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            framing = b"length"
        self._send(200, framing + b":" + body)


@pytest.fixture
def stdlib_server() -> Iterator[Any]:
    server: Any = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    server.lock = threading.Lock()
    server.connections = 0
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(5)


def base(server: Any) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}"


Script = Callable[["RawServer", socket.socket], None]


class RawServer:
    """Accepts connections in a thread; each runs the next script ``f(server, conn)``."""

    def __init__(self, scripts: list[Script]) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(10)
        self.port = self.sock.getsockname()[1]
        self.scripts = scripts
        self.requests: list[bytes] = []
        self.thread = threading.Thread(target=self._serve)
        self.thread.start()

    def _serve(self) -> None:
        for script in self.scripts:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                conn.settimeout(10)
                try:
                    script(self, conn)
                except OSError:
                    return

    def read_request(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
        self.requests.append(data)
        return data

    def close(self) -> None:
        self.sock.close()
        self.thread.join(10)


@pytest.fixture
def raw_servers() -> Iterator[list[RawServer]]:
    made: list[RawServer] = []
    yield made
    for server in made:
        server.close()


def raw(made: list[RawServer], *scripts: Script) -> RawServer:
    server = RawServer(list(scripts))
    made.append(server)
    return server


# -- the stdlib server -----------------------------------------------------------------------


async def test_get_from_the_stdlib_server_and_reuse_the_connection(
    reactor: Reactor, stdlib_server: Any
) -> None:
    agent = Agent(reactor)
    for _ in range(3):
        response = await agent.request("GET", base(stdlib_server) + "/hello")
        assert response.status == 200
        assert await response.text() == "hello"
    assert stdlib_server.connections == 1
    await agent.close()


async def test_chunked_response_and_connection_close(reactor: Reactor, stdlib_server: Any) -> None:
    agent = Agent(reactor)
    response = await agent.request("GET", base(stdlib_server) + "/chunked")
    assert await response.read() == b"alpha beta gamma"
    response = await agent.request("GET", base(stdlib_server) + "/close")
    assert await response.read() == b"bye"
    response = await agent.request("GET", base(stdlib_server) + "/hello")
    assert await response.read() == b"hello"
    assert stdlib_server.connections == 2
    await agent.close()


async def test_bytes_and_chunked_bodies_reach_the_stdlib_server(
    reactor: Reactor, stdlib_server: Any
) -> None:
    agent = Agent(reactor)
    response = await agent.request("POST", base(stdlib_server) + "/echo", body=b"abc")
    assert await response.read() == b"length:abc"

    async def chunks() -> Any:
        for part in (b"one", b"two", b"x" * 100_000):
            yield part

    response = await agent.request("POST", base(stdlib_server) + "/echo", body=chunks())
    assert await response.read() == b"chunked:onetwo" + b"x" * 100_000
    await agent.close()


async def test_a_big_body_streams_in_pieces(reactor: Reactor, stdlib_server: Any) -> None:
    agent = Agent(reactor)
    response = await agent.request("GET", base(stdlib_server) + "/big")
    total, pieces = 0, 0
    async for chunk in response.stream():
        total += len(chunk)
        pieces += 1
    assert total == BIG and pieces > 1
    await agent.close()


async def test_max_body_size_refuses_a_big_body(reactor: Reactor, stdlib_server: Any) -> None:
    agent = Agent(reactor, max_body_size=1000)
    with pytest.raises(ResponseTooLarge):
        await agent.request("GET", base(stdlib_server) + "/big")
    await agent.close()


async def test_fifty_concurrent_requests_share_max_per_host_connections(
    reactor: Reactor, stdlib_server: Any
) -> None:
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, max_per_host=4))

    async def one() -> bytes:
        response = await agent.request("GET", base(stdlib_server) + "/hello")
        return await response.read()

    from plait.cluster.defer import ensure_deferred, gather

    bodies = await gather([ensure_deferred(one()) for _ in range(50)])
    assert bodies == [b"hello"] * 50
    assert stdlib_server.connections <= 4
    await agent.close()


async def test_redirects_are_followed_when_asked(reactor: Reactor, stdlib_server: Any) -> None:
    agent = Agent(reactor, follow_redirects=True)
    response = await agent.request("GET", base(stdlib_server) + "/redirect")
    assert response.status == 200 and await response.read() == b"hello"
    assert [r.status for r in response.history] == [302]
    await agent.close()


# -- odd peers ---------------------------------------------------------------------------------


async def test_connection_refused_errbacks(reactor: Reactor) -> None:
    sock = socket.create_server(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        await Agent(reactor).request("GET", f"http://127.0.0.1:{port}/")


async def test_garbage_from_a_raw_server_is_a_malformed_response(
    reactor: Reactor, raw_servers: list[RawServer]
) -> None:
    def garbage(server: RawServer, conn: socket.socket) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: nope\r\n\r\n")

    server = raw(raw_servers, garbage)
    with pytest.raises(MalformedResponse):
        await Agent(reactor).request("GET", f"http://127.0.0.1:{server.port}/")


async def test_a_server_that_hangs_up_gives_response_never_received(
    reactor: Reactor, raw_servers: list[RawServer]
) -> None:
    def hang_up(server: RawServer, conn: socket.socket) -> None:
        server.read_request(conn)

    server = raw(raw_servers, hang_up)
    with pytest.raises(ResponseNeverReceived):
        await Agent(reactor).request("POST", f"http://127.0.0.1:{server.port}/", body=b"x")


async def test_a_stale_kept_alive_connection_is_retried_for_a_get(
    reactor: Reactor, raw_servers: list[RawServer]
) -> None:
    def answer_then_drop(server: RawServer, conn: socket.socket) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        server.read_request(conn)  # then hang up without answering

    def answer(server: RawServer, conn: socket.socket) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nagain")

    server = raw(raw_servers, answer_then_drop, answer)
    agent = Agent(reactor)
    url = f"http://127.0.0.1:{server.port}/"
    assert await (await agent.request("GET", url)).read() == b"ok"
    assert await (await agent.request("GET", url)).read() == b"again"
    assert len(server.requests) == 3
    await agent.close()


async def test_a_silent_server_times_the_request_out(
    reactor: Reactor, raw_servers: list[RawServer]
) -> None:
    done = threading.Event()

    def silent(server: RawServer, conn: socket.socket) -> None:
        server.read_request(conn)
        done.wait(10)

    server = raw(raw_servers, silent)
    try:
        with pytest.raises(RequestTimeout, match=r"did not complete within 0\.2 seconds"):
            await Agent(reactor, timeout=0.2).request("GET", f"http://127.0.0.1:{server.port}/")
    finally:
        done.set()


# -- Plait's own server, plain and over TLS ------------------------------------------------------


def plait_app() -> Router:
    router = Router()

    @router.get("/hello")
    def hello(request: Request) -> Response:
        return Response(200, b"hello from plait")

    @router.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(200, await request.body())

    @router.get("/stream")
    def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(200, None, [b"%d," % i for i in range(1000)])

    return router


async def test_plait_client_against_plait_site(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Site(plait_app()), interface="127.0.0.1")
    url = f"http://127.0.0.1:{port.get_host()[1]}"
    agent = Agent(reactor)
    try:
        assert await (await agent.request("GET", url + "/hello")).read() == b"hello from plait"
        response = await agent.request("POST", url + "/echo", body=iter([b"a", b"b" * 70_000]))
        assert await response.read() == b"a" + b"b" * 70_000
        response = await agent.request("GET", url + "/stream")
        assert await response.read() == b"".join(b"%d," % i for i in range(1000))
        stats = agent.pool.statistics()[("http", "127.0.0.1", port.get_host()[1])]
        assert stats == (1, 1, 0)
    finally:
        await agent.close()
        await port.stop_listening()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("http-client-tls")))


async def test_https_against_a_plait_site_over_tls(reactor: Reactor, certs: Certs) -> None:
    options = server_options(certs.server_cert, certs.server_key)
    port = reactor.listen_ssl(0, Site(plait_app()), options, interface="127.0.0.1")
    number = port.get_host()[1]
    agent = Agent(reactor, tls_options=lambda host: client_options(host, ca_file=certs.ca))
    try:
        for _ in range(2):
            response = await agent.request("GET", f"https://127.0.0.1:{number}/hello")
            assert await response.read() == b"hello from plait"
        assert agent.pool.statistics()[("https", "127.0.0.1", number)] == (1, 1, 0)
        with pytest.raises(CertificateVerifyError):
            await Agent(reactor).request("GET", f"https://127.0.0.1:{number}/hello")
    finally:
        await agent.close()
        await port.stop_listening()
