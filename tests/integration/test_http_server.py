"""The HTTP server on real loopback sockets, with real peers: curl, http.client, urllib.

The reactor runs in a background thread for the length of one test; clients run in
the test's thread with timeouts, and every curl process is bounded by
``--max-time`` and killed if it outlives its wait.
"""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import flask
import pytest

from plait.cluster.reactor import Reactor
from plait.cluster.threads import defer_to_thread_pool
from plait.protocols.http import Request, Response, Router, Site, StreamingResponse, WSGIApp

CURL = shutil.which("curl")
BIG = bytes(range(256)) * 4096  # 1 MiB


def make_router() -> Router:
    router = Router()

    @router.get("/hello/{name}")
    def hello(request: Request, name: str) -> str:
        return f"hello {name} {request.query.get('x', [''])[0]}"

    @router.post("/echo")
    async def echo(request: Request) -> Response:
        return Response(200, await request.body(), [("Content-Type", "application/octet-stream")])

    @router.get("/big")
    def big(request: Request) -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for i in range(0, len(BIG), 65536):
                yield BIG[i : i + 65536]

        return StreamingResponse(200, [("Content-Type", "application/octet-stream")], chunks())

    return router


class Server:
    """A Site listening on 127.0.0.1:0, its reactor running in a thread."""

    def __init__(self, app: Any, **kwargs: Any) -> None:
        self.reactor = Reactor()
        self.site = Site(app, **kwargs)
        self.port_obj = self.reactor.listen_tcp(0, self.site, interface="127.0.0.1")
        self.port: int = self.port_obj.get_host()[1]
        self.thread = threading.Thread(
            target=self.reactor.run, kwargs={"install_signal_handlers": False}, daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.reactor.call_from_thread(self.reactor.stop)
        self.thread.join(10)
        assert not self.thread.is_alive(), "the reactor did not stop"
        self.reactor.close()


@pytest.fixture
def server() -> Iterator[Server]:
    s = Server(make_router())
    yield s
    s.stop()


def curl(*args: str, input: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    if CURL is None:
        pytest.skip("curl is not installed")
    # subprocess.run kills the child if it outlives the timeout.
    return subprocess.run(
        [CURL, "--silent", "--show-error", "--max-time", "10", *args],
        input=input,
        capture_output=True,
        timeout=20,
        check=False,
    )


def test_http_client_keeps_one_connection_for_several_requests(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/hello/ada?x=1")
        first = conn.getresponse()
        assert (first.status, first.read()) == (200, b"hello ada 1")
        sock = conn.sock
        conn.request("POST", "/echo", body=b"some body")
        second = conn.getresponse()
        assert second.read() == b"some body"
        conn.request("HEAD", "/hello/bob")
        third = conn.getresponse()
        assert third.getheader("Content-Length") == "10"
        assert third.read() == b""
        assert conn.sock is sock  # the same connection all along
    finally:
        conn.close()


def test_urllib_gets_pages_and_errors(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    with urllib.request.urlopen(base + "/hello/urllib", timeout=10) as response:
        assert response.read() == b"hello urllib "
        assert response.headers["Server"] == "plait"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(base + "/missing", timeout=10)
    assert info.value.code == 404
    request = urllib.request.Request(base + "/hello/x", method="DELETE")
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(request, timeout=10)
    assert info.value.code == 405
    assert info.value.headers["Allow"] == "GET, HEAD"


def test_a_streamed_megabyte_arrives_whole(server: Server) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        conn.request("GET", "/big")
        response = conn.getresponse()
        assert response.getheader("Transfer-Encoding") == "chunked"
        assert response.read() == BIG
    finally:
        conn.close()


def test_curl_gets_posts_and_uploads_chunked(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    assert curl(base + "/hello/curl?x=2").stdout == b"hello curl 2"
    assert curl("--data-binary", "posted", base + "/echo").stdout == b"posted"
    chunked = curl("-H", "Transfer-Encoding: chunked", "--data-binary", "@-", base + "/echo",
                   input=b"streamed upload")  # fmt: skip
    assert chunked.stdout == b"streamed upload"


def test_curl_with_http_1_0_and_expect_100_continue(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    old = curl("--http1.0", "-i", base + "/hello/old")
    assert old.stdout.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"Connection: close" in old.stdout
    expect = curl("-i", "-H", "Expect: 100-continue", "--data-binary", "x" * 2000, base + "/echo")
    assert b"HTTP/1.1 100 Continue" in expect.stdout
    assert expect.stdout.endswith(b"x" * 2000)


def test_pipelined_requests_on_a_raw_socket_are_answered_in_order(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(
            b"GET /hello/1 HTTP/1.1\r\nHost: h\r\n\r\n"
            b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
            b"GET /hello/3 HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    bodies = [part.split(b"\r\n\r\n", 1)[1] for part in data.split(b"HTTP/1.1 200 OK")[1:]]
    assert bodies == [b"hello 1 ", b"abc", b"hello 3 "]


def test_a_malformed_request_gets_400_and_the_server_keeps_serving(server: Server) -> None:
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(b"NOT HTTP AT ALL\r\n\r\n")
        data = sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 400 Bad Request\r\n")
        assert sock.recv(65536) == b""  # closed
    assert curl(f"http://127.0.0.1:{server.port}/hello/after").stdout == b"hello after "


def test_a_slowloris_client_is_cut_off_while_others_are_served() -> None:
    server = Server(make_router(), header_timeout=0.5)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=10) as slow:
            start = time.monotonic()
            received = b""
            for byte in b"GET /hello/slow HTTP/1.1\r\nHost: h\r\nX-Dribble: " + b"a" * 100:
                try:
                    slow.sendall(bytes([byte]))
                except OSError:
                    break
                served = curl(f"http://127.0.0.1:{server.port}/hello/fast").stdout
                assert served == b"hello fast "
                slow.settimeout(0.1)
                try:
                    received = slow.recv(65536)
                except TimeoutError:
                    continue
                break
            assert received.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
            assert time.monotonic() - start < 8
    finally:
        server.stop()


def test_flask_through_wsgi_over_real_sockets() -> None:
    app = flask.Flask("plait_integration")

    @app.route("/json", methods=["POST"])
    def as_json() -> Any:
        return flask.jsonify(length=len(flask.request.get_data()))

    server = Server(WSGIApp(app))
    try:
        result = curl("--data-binary", "12345", f"http://127.0.0.1:{server.port}/json")
        assert json.loads(result.stdout) == {"length": 5}
    finally:
        server.stop()


def test_drain_lets_the_request_in_flight_finish() -> None:
    arrived, release = threading.Event(), threading.Event()

    def slow(request: Request) -> Any:
        arrived.set()
        reactor = request.reactor
        d = defer_to_thread_pool(reactor, reactor.get_thread_pool(), release.wait, 10)
        return d.add_callback(lambda released: f"released {released}")

    server = Server(slow)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("GET", "/")
        assert arrived.wait(10)
        drained = threading.Event()
        server.reactor.call_from_thread(
            lambda: server.site.drain().add_callback(lambda _: drained.set())
        )
        release.set()
        response = conn.getresponse()
        assert response.read() == b"released True"
        assert response.getheader("Connection") == "close"
        assert drained.wait(10)
        conn.close()
    finally:
        server.stop()
