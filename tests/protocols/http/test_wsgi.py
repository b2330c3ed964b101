"""WSGIApp: PEP 3333 applications (Flask included) served through a Site.

The HTTP side is a MemoryTransport; the application runs in a real Reactor's
thread pool, so each test runs that reactor until the response is complete
(bounded: a test fails after 5 seconds instead of hanging).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any

import flask
import pytest

from plait.cluster.reactor import Reactor
from plait.cluster.testing import MemoryTransport
from plait.protocols.http import Headers, Request, Site, WSGIApp
from plait.protocols.http._wsgi import StartResponse, build_environ

from ._server_helpers import Parsed, one


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    r = Reactor()
    yield r
    r.close()


def fetch(
    reactor: Reactor, app: Any, wire: bytes, method: str = "GET", pause: bool = False
) -> tuple[Parsed, MemoryTransport]:
    """Serve ``wire`` on one memory connection; run the reactor until the answer is in."""
    site = Site(app, reactor=reactor)
    protocol = site()
    transport = MemoryTransport(protocol)
    protocol.connection_made(transport)
    if pause:
        protocol.pause_writing()
        reactor.call_later(0.05, protocol.resume_writing)
    protocol.data_received(wire)
    deadline = reactor.seconds() + 5

    def check() -> None:
        if site.requests or transport.is_closing() or reactor.seconds() > deadline:
            reactor.stop()
        else:
            reactor.call_later(0.001, check)

    reactor.call_soon(check)
    reactor.run(install_signal_handlers=False)
    assert reactor.seconds() <= deadline, "no response within 5 seconds"
    return one(transport.value(), method), transport


def make_flask() -> flask.Flask:
    app = flask.Flask("plait_test")

    @app.get("/hello/<name>")
    def hello(name: str) -> str:
        return f"hello {name} {flask.request.args.get('x', '')}"

    @app.post("/echo")
    def echo() -> Any:
        return flask.jsonify(
            got=flask.request.get_data(as_text=True), kind=flask.request.content_type
        )

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("flask handler failed")

    return app


def test_a_flask_app_answers_a_get(reactor: Reactor) -> None:
    response, transport = fetch(
        reactor, WSGIApp(make_flask()), b"GET /hello/ada?x=1 HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    assert response.status == 200
    assert response.body == b"hello ada 1"
    assert response.headers["Content-Type"].startswith("text/html")
    assert not transport.is_closing()


def test_a_flask_app_reads_the_request_body(reactor: Reactor) -> None:
    wire = (
        b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: text/plain\r\n"
        b"Content-Length: 5\r\n\r\nhello"
    )
    response, _ = fetch(reactor, WSGIApp(make_flask()), wire, "POST")
    assert response.status == 200
    assert response.headers["Content-Type"] == "application/json"
    assert b'"got":"hello"' in response.body.replace(b" ", b"")
    assert b'"kind":"text/plain"' in response.body.replace(b" ", b"")


def test_flask_errors_and_missing_routes_keep_flask_statuses(reactor: Reactor) -> None:
    missing, _ = fetch(reactor, WSGIApp(make_flask()), b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n")
    assert missing.status == 404
    failed, _ = fetch(reactor, WSGIApp(make_flask()), b"GET /boom HTTP/1.1\r\nHost: h\r\n\r\n")
    assert failed.status == 500


def test_the_environ_is_complete() -> None:
    request = Request(
        b"POST",
        b"/a%20b/c?q=1&r=2",
        Headers(
            [
                ("Host", "example.com:8080"),
                ("Content-Type", "text/plain"),
                ("Content-Length", "3"),
                ("X-Two", "a"),
                ("X-Two", "b"),
                ("Cookie", "a=1"),
                ("Cookie", "b=2"),
            ]
        ),
        client=("10.0.0.1", 5555),
        server=("127.0.0.1", 8080),
    )
    environ = build_environ(request, b"abc")
    for key in (
        "REQUEST_METHOD", "SCRIPT_NAME", "PATH_INFO", "QUERY_STRING", "CONTENT_TYPE",
        "CONTENT_LENGTH", "SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL",
        "wsgi.version", "wsgi.url_scheme", "wsgi.input", "wsgi.errors",
        "wsgi.multithread", "wsgi.multiprocess", "wsgi.run_once",
    ):  # fmt: skip
        assert key in environ, key
    assert environ["REQUEST_METHOD"] == "POST"
    assert environ["PATH_INFO"] == "/a b/c"
    assert environ["QUERY_STRING"] == "q=1&r=2"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("example.com", "8080")
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["CONTENT_TYPE"] == "text/plain"
    assert environ["CONTENT_LENGTH"] == "3"
    assert environ["HTTP_X_TWO"] == "a,b"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert environ["REMOTE_ADDR"] == "10.0.0.1"
    assert environ["wsgi.input"].read() == b"abc"
    assert environ["wsgi.errors"] is sys.stderr


def test_the_environ_handles_script_name_ipv6_hosts_and_no_host() -> None:
    request = Request(b"GET", b"/app/x", Headers([("Host", "[::1]:81")]))
    environ = build_environ(request, b"", script_name="/app")
    assert (environ["SCRIPT_NAME"], environ["PATH_INFO"]) == ("/app", "/x")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("[::1]", "81")
    bare = build_environ(Request(b"GET", b"/", http_version=b"1.0"), b"")
    assert (bare["SERVER_NAME"], bare["SERVER_PORT"]) == ("localhost", "80")
    assert bare["SERVER_PROTOCOL"] == "HTTP/1.0"
    assert bare["CONTENT_LENGTH"] == ""


def test_start_response_twice_without_exc_info_is_refused() -> None:
    start = StartResponse()
    start("200 OK", [])
    with pytest.raises(AssertionError):
        start("500 Oops", [])


def test_start_response_with_exc_info_replaces_the_head_before_it_was_sent() -> None:
    start = StartResponse()
    start("200 OK", [("A", "1")])
    try:
        raise ValueError("late failure")
    except ValueError:
        start("500 Internal Server Error", [("B", "2")], sys.exc_info())
    assert (start.status, start.headers) == ("500 Internal Server Error", [("B", "2")])


def test_start_response_with_exc_info_reraises_after_the_head_was_sent() -> None:
    start = StartResponse()
    start("200 OK", [])
    start.head_sent = True
    try:
        raise ValueError("after the head")
    except ValueError:
        info = sys.exc_info()
    with pytest.raises(ValueError, match="after the head"):
        start("500 Internal Server Error", [], info)


@pytest.mark.parametrize(
    ("status", "headers", "error"),
    [("OK", [], ValueError), ("200OK", [], ValueError), ("200 OK", [(b"A", "1")], TypeError)],
)
def test_start_response_refuses_malformed_heads(
    status: str, headers: list[Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        StartResponse()(status, headers)


class ClosingBody:
    """A WSGI body iterable with close(), which the server must call."""

    def __init__(self, chunks: list[bytes]) -> None:
        self.chunks = chunks
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.chunks)

    def close(self) -> None:
        self.closed = True


def test_a_streamed_body_is_sent_chunked_and_its_iterable_closed(reactor: Reactor) -> None:
    body = ClosingBody([b"one ", b"", b"two"])

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> ClosingBody:
        start_response("200 OK", [("Content-Type", "text/plain")])
        return body

    response, _ = fetch(reactor, WSGIApp(app), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert response.body == b"one two"
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert body.closed


def test_a_streamed_body_waits_for_a_paused_transport(reactor: Reactor) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [])
        for i in range(5):
            yield b"%d" % i

    response, _ = fetch(reactor, WSGIApp(app), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n", pause=True)
    assert response.body == b"01234"


def test_a_list_body_is_closed_too_and_sent_with_a_length(reactor: Reactor) -> None:
    closed: list[bool] = []

    class Body(list[bytes]):
        def close(self) -> None:
            closed.append(True)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Body:
        start_response("201 Created", [("X-A", "1")])
        return Body([b"ab", b"cd"])

    response, _ = fetch(reactor, WSGIApp(app), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (response.status, response.body) == (201, b"abcd")
    assert response.headers["Content-Length"] == "4"
    assert closed == [True]


def test_the_write_callable_sends_before_the_iterable(reactor: Reactor) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        write = start_response("200 OK", [])
        write(b"written ")
        return [b"returned"]

    response, _ = fetch(reactor, WSGIApp(app), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert response.body == b"written returned"


def test_an_app_that_raises_before_its_head_is_a_500(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        raise RuntimeError("wsgi app exploded")

    with caplog.at_level(logging.ERROR, logger="plait.http"):
        response, _ = fetch(reactor, WSGIApp(app), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert response.status == 500
    assert b"exploded" not in response.body
    assert "wsgi app exploded" in caplog.text


def test_an_app_that_never_starts_the_response_is_a_500(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        return [b"no head"]

    with caplog.at_level(logging.ERROR, logger="plait.http"):
        response, _ = fetch(reactor, WSGIApp(app), b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert response.status == 500


def test_an_app_that_fails_mid_stream_aborts_the_connection(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [])
        yield b"partial"
        raise RuntimeError("mid-stream failure")

    site = Site(WSGIApp(app), reactor=reactor)
    protocol = site()
    transport = MemoryTransport(protocol)
    protocol.connection_made(transport)
    with caplog.at_level(logging.ERROR, logger="plait.http"):
        protocol.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
        guard = reactor.call_later(5, reactor.stop)

        def check() -> None:
            if transport.is_closing():
                reactor.stop()
            else:
                reactor.call_later(0.001, check)

        reactor.call_soon(check)
        reactor.run(install_signal_handlers=False)
    assert guard.active(), "no abort within 5 seconds"
    guard.cancel()
    assert transport.aborted
    assert b"partial" in transport.value()
    assert "mid-stream failure" in caplog.text


def test_a_wsgi_app_without_a_reactor_is_refused() -> None:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        return []

    d = WSGIApp(app)(Request(b"GET", b"/"))
    with pytest.raises(RuntimeError, match="needs a reactor"):
        d.send(None)


def streaming_forever(seen: list[BaseException]) -> Any:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterator[bytes]:
        start_response("200 OK", [])
        try:
            while True:
                yield b"x" * 1024
        except BaseException as exc:  # recorded: the test checks how the stream ended
            seen.append(exc)
            raise
        finally:
            seen.append(GeneratorExit())

    return app


@pytest.mark.timeout(20)
def test_a_client_that_leaves_stops_a_streaming_app_in_its_thread(reactor: Reactor) -> None:
    ended: list[BaseException] = []
    site = Site(WSGIApp(streaming_forever(ended)), reactor=reactor)
    protocol = site()
    transport = MemoryTransport(protocol)
    protocol.connection_made(transport)
    protocol.pause_writing()  # a client that reads nothing
    protocol.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")

    def check() -> None:
        if len(transport.value()) > 1024 and not transport.is_closing():
            transport.abort()  # the client goes away mid-stream
        if ended:
            reactor.stop()
        else:
            reactor.call_later(0.001, check)

    reactor.call_soon(check)
    guard = reactor.call_later(10, reactor.stop)
    reactor.run(install_signal_handlers=False)
    assert guard.active(), "the application thread never noticed the client left"
    guard.cancel()
    assert ended


@pytest.mark.timeout(20)
def test_a_reactor_shutting_down_stops_a_blocked_streaming_app(reactor: Reactor) -> None:
    ended: list[BaseException] = []
    site = Site(WSGIApp(streaming_forever(ended)), reactor=reactor)
    protocol = site()
    transport = MemoryTransport(protocol)
    protocol.connection_made(transport)
    protocol.pause_writing()  # the app's thread blocks on the second block

    def check() -> None:
        if len(transport.value()) > 1024:
            reactor.stop()  # shutting down with the thread waiting for room
        else:
            reactor.call_later(0.001, check)

    protocol.data_received(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    reactor.call_soon(check)
    reactor.run(install_signal_handlers=False)  # returns only if the pool could stop
    assert ended
