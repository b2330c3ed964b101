"""The HTTP/1.1 server adapter on MemoryTransport with a Clock: no sockets, no sleeps."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from plait.cluster.defer import Deferred, succeed
from plait.cluster.interfaces import IProtocol, IProtocolFactory
from plait.protocols.http import (
    Request,
    Response,
    Router,
    Site,
    StreamingResponse,
    SwitchProtocols,
)

from ._helpers import CHUNKINGS
from ._server_helpers import GET, chunked, echo, hello, one, parse, post, serve


def test_the_protocol_provides_iprotocol() -> None:
    served = serve(hello)
    assert verifyObject(IProtocol, served.protocol)


@pytest.mark.parametrize("how", CHUNKINGS)
def test_a_get_is_answered_whatever_the_chunking(how: str) -> None:
    served = serve(hello)
    served.feed(GET, how)
    response = one(served.take())
    assert response.status == 200
    assert response.body == b"Hello, World!"
    assert response.headers["Content-Length"] == "13"
    assert response.headers["Content-Type"] == "text/plain"
    assert response.headers["Server"] == "plait"
    assert response.headers["Date"].endswith(" GMT")
    assert not served.transport.is_closing()


@pytest.mark.parametrize("how", CHUNKINGS)
def test_pipelined_requests_are_answered_in_order(how: str) -> None:
    seen: list[str] = []

    async def app(request: Request) -> Response:
        body = await request.body()
        seen.append(request.path)
        return Response(200, request.path.encode() + b":" + body)

    served = serve(app)
    wire = (
        b"GET /one HTTP/1.1\r\nHost: h\r\n\r\n"
        + post(b"abc", b"/two")
        + b"GET /three HTTP/1.1\r\nHost: h\r\n\r\n"
    )
    served.feed(wire, how)
    responses = parse(served.take(), ("GET", "POST", "GET"))
    assert [r.body for r in responses] == [b"/one:", b"/two:abc", b"/three:"]
    assert seen == ["/one", "/two", "/three"]


def test_pipelined_requests_wait_for_a_slow_answer_before_the_next() -> None:
    pending: list[Deferred[Any]] = []

    def app(request: Request) -> Any:
        if request.path == "/slow":
            d: Deferred[Any] = Deferred()
            pending.append(d)
            return d
        return "fast"

    served = serve(app)
    served.feed(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\nGET /fast HTTP/1.1\r\nHost: h\r\n\r\n")
    assert served.take() == b""
    pending[0].callback("slow")
    responses = parse(served.take(), ("GET", "GET"))
    assert [r.body for r in responses] == [b"slow", b"fast"]


def test_keep_alive_serves_many_requests_on_one_connection() -> None:
    served = serve(hello)
    for _ in range(3):
        served.feed(GET)
        assert one(served.take()).status == 200
    assert not served.transport.is_closing()
    assert served.site.requests == 3


def test_each_request_on_a_kept_alive_connection_sees_its_own_head() -> None:
    def show(request: Request) -> Response:
        return Response(200, b"%s %s %s" % (
            request.raw_method, request.target, request.headers.get("x-n", b"-")
        ))

    served = serve(show)
    heads = [
        b"GET /a HTTP/1.1\r\nHost: h\r\nX-N:  1 \r\n\r\n",
        b"GET /a HTTP/1.1\r\nHost: h\r\nX-N:  1 \r\n\r\n",  # the same head again
        b"HEAD /b HTTP/1.1\r\nHost: h\r\n\r\n",
        b"GET /c?q HTTP/1.1\r\nhost: h\r\nx-n: 3\r\n\r\n",
    ]
    bodies = []
    for head in heads:
        served.feed(head)
        method = head.split(b" ", 1)[0].decode()
        bodies.append(one(served.take(), method).body)
    assert bodies == [b"GET /a 1", b"GET /a 1", b"", b"GET /c?q 3"]
    assert served.site.requests == 4


def test_connection_close_is_honoured() -> None:
    served = serve(hello)
    served.feed(b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
    response = one(served.take())
    assert response.headers["Connection"] == "close"
    assert served.transport.is_closing()


def test_http_1_0_closes_after_the_response() -> None:
    served = serve(hello)
    served.feed(b"GET / HTTP/1.0\r\n\r\n")
    data = served.take()
    assert data.startswith(b"HTTP/1.1 200 OK\r\n")
    assert one(data).body == b"Hello, World!"
    assert served.transport.is_closing()


def test_http_1_0_keep_alive_is_echoed_and_kept() -> None:
    served = serve(hello)
    served.feed(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert one(served.take()).headers["Connection"] == "keep-alive"
    assert not served.transport.is_closing()


def test_http_1_0_streaming_body_is_delimited_by_closing() -> None:
    served = serve(lambda request: StreamingResponse(200, None, [b"a", b"b"]))
    served.feed(b"GET / HTTP/1.0\r\n\r\n")
    data = served.take()
    assert b"Transfer-Encoding" not in data
    assert data.endswith(b"\r\n\r\nab")
    assert served.transport.is_closing()


def test_head_gets_the_headers_without_the_body() -> None:
    served = serve(hello)
    served.feed(b"HEAD / HTTP/1.1\r\nHost: h\r\n\r\n")
    data = served.take()
    assert data.endswith(b"\r\n\r\n")
    assert b"Content-Length: 13\r\n" in data
    served.feed(b"HEAD / HTTP/1.1\r\nHost: h\r\nX-Not-Fast: 1\r\n\r\n" + GET)
    responses = parse(served.take(), ("HEAD", "GET"))
    assert [r.body for r in responses] == [b"", b"Hello, World!"]


@pytest.mark.parametrize("how", CHUNKINGS)
def test_a_content_length_body_reaches_the_handler(how: str) -> None:
    served = serve(echo)
    served.feed(post(b"hello body"), how)
    response = one(served.take(), "POST")
    assert response.body == b"hello body"
    assert response.headers["X-Method"] == "POST"


@pytest.mark.parametrize("how", CHUNKINGS)
def test_a_chunked_body_reaches_the_handler(how: str) -> None:
    served = serve(echo)
    served.feed(chunked(b"hel", b"lo ", b"world"), how)
    assert one(served.take(), "POST").body == b"hello world"


def test_stream_yields_the_body_as_it_arrives() -> None:
    chunks: list[bytes] = []

    async def app(request: Request) -> str:
        async for chunk in request.stream():
            chunks.append(chunk)
        return "done"

    served = serve(app)
    served.feed(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 6\r\n\r\nabc")
    assert chunks == [b"abc"]
    served.feed(b"def")
    assert chunks == [b"abc", b"def"]
    assert one(served.take(), "POST").body == b"done"


def test_expect_100_continue_is_answered_when_the_handler_reads_the_body() -> None:
    gate: Deferred[None] = Deferred()

    async def app(request: Request) -> bytes:
        await gate
        return await request.body()

    served = serve(app)
    served.feed(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
    assert served.take() == b""  # not at once: only when the handler reads
    gate.callback(None)
    assert served.take() == b"HTTP/1.1 100 Continue\r\n\r\n"
    served.feed(b"ok")
    response = one(served.take(), "POST")
    assert response.body == b"ok"
    assert not served.transport.is_closing()


def test_expect_100_continue_unread_body_gets_connection_close() -> None:
    served = serve(hello)
    served.feed(b"POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
    data = served.take()
    assert b"100 Continue" not in data
    assert one(data, "POST").headers["Connection"] == "close"
    assert served.transport.is_closing()


def test_an_unread_body_is_discarded_before_the_next_request() -> None:
    served = serve(hello)
    served.feed(post(b"x" * 100)[:-50])
    assert one(served.take(), "POST").status == 200
    served.feed(b"x" * 50 + GET)
    assert one(served.take()).body == b"Hello, World!"
    assert not served.transport.is_closing()


def test_a_deferred_result_is_sent_when_it_fires() -> None:
    d: Deferred[Any] = Deferred()
    served = serve(lambda request: d)
    served.feed(GET)
    assert served.take() == b""
    d.callback(Response(201, "made"))
    response = one(served.take())
    assert (response.status, response.body) == (201, b"made")
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


@pytest.mark.parametrize(
    ("result", "body", "content_type"),
    [
        (b"raw", b"raw", "application/octet-stream"),
        ("text", b"text", "text/plain; charset=utf-8"),
        (succeed("later"), b"later", "text/plain; charset=utf-8"),
    ],
)
def test_plain_values_become_responses(result: Any, body: bytes, content_type: str) -> None:
    served = serve(lambda request: result)
    served.feed(GET)
    response = one(served.take())
    assert (response.status, response.body) == (200, body)
    assert response.headers["Content-Type"] == content_type


def test_a_coroutine_result_is_awaited() -> None:
    async def app(request: Request) -> Response:
        return Response(202, b"accepted")

    served = serve(app)
    served.feed(GET)
    assert one(served.take()).status == 202


def test_status_204_has_no_body_and_no_length() -> None:
    served = serve(lambda request: Response(204))
    served.feed(GET)
    data = served.take()
    assert data.startswith(b"HTTP/1.1 204 No Content\r\n")
    assert b"Content-Length" not in data
    assert data.endswith(b"\r\n\r\n")


def test_custom_reason_and_dict_headers_are_sent() -> None:
    served = serve(lambda request: Response(299, b"", {"X-A": "1"}, reason="Fine"))
    served.feed(GET)
    data = served.take()
    assert data.startswith(b"HTTP/1.1 299 Fine\r\n")
    assert b"X-A: 1\r\n" in data


def test_an_application_content_length_is_checked_by_the_core(
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = serve(lambda request: Response(200, b"abc", [("Content-Length", "5")]))
    with caplog.at_level(logging.ERROR, logger="plait.http"):
        served.feed(GET)
    assert one(served.take()).status == 500
    assert "cannot be sent" in caplog.text


# -- streaming ---------------------------------------------------------------------------


def test_a_streaming_response_is_chunked_for_http_1_1() -> None:
    async def chunks() -> AsyncIterator[bytes | str]:
        yield b"hello "
        yield "world"

    served = serve(lambda request: StreamingResponse(200, [("X-S", "1")], chunks()))
    served.feed(GET)
    data = served.take()
    assert b"Transfer-Encoding: chunked\r\n" in data
    assert data.endswith(b"6\r\nhello \r\n5\r\nworld\r\n0\r\n\r\n")
    assert one(data).body == b"hello world"
    assert not served.transport.is_closing()


def test_a_streaming_response_with_a_length_is_not_chunked() -> None:
    served = serve(lambda request: StreamingResponse(200, {"Content-Length": "4"}, [b"ab", b"cd"]))
    served.feed(GET + GET)
    responses = parse(served.take(), ("GET", "GET"))
    assert [r.body for r in responses] == [b"abcd", b"abcd"]
    assert "Transfer-Encoding" not in responses[0].headers


def test_async_iteration_waits_while_the_transport_is_paused() -> None:
    produced: list[int] = []

    async def chunks() -> AsyncIterator[bytes]:
        for i in range(3):
            produced.append(i)
            yield b"%d" % i

    served = serve(lambda request: StreamingResponse(200, None, chunks()))
    served.protocol.pause_writing()
    served.feed(GET)
    assert produced == [0]
    served.protocol.resume_writing()
    assert produced == [0, 1, 2]
    assert one(served.take()).body == b"012"


class Producer:
    """A body producer in Twisted's IBodyProducer shape."""

    def __init__(self) -> None:
        self.consumer: Any = None
        self.calls: list[str] = []
        self.done: Deferred[None] = Deferred()

    def start_producing(self, consumer: Any) -> Deferred[None]:
        self.consumer = consumer
        consumer.write(b"first ")
        return self.done

    def pause_producing(self) -> None:
        self.calls.append("pause")

    def resume_producing(self) -> None:
        self.calls.append("resume")

    def stop_producing(self) -> None:
        self.calls.append("stop")


def test_a_body_producer_is_paused_and_resumed_with_the_transport() -> None:
    producer = Producer()
    served = serve(lambda request: StreamingResponse(200, None, producer))
    served.feed(GET)
    served.protocol.pause_writing()
    served.protocol.resume_writing()
    producer.consumer.write(b"second")
    producer.done.callback(None)
    assert producer.calls == ["pause", "resume"]
    assert one(served.take()).body == b"first second"


def test_a_body_producer_is_stopped_when_the_client_leaves() -> None:
    producer = Producer()
    served = serve(lambda request: StreamingResponse(200, None, producer))
    served.feed(GET)
    served.transport.abort()
    assert producer.calls == ["stop"]


def test_a_failing_stream_aborts_the_connection(caplog: pytest.LogCaptureFixture) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"part"
        raise RuntimeError("broken generator")

    served = serve(lambda request: StreamingResponse(200, None, chunks()))
    with caplog.at_level(logging.ERROR, logger="plait.http"):
        served.feed(GET)
    assert served.transport.aborted
    assert "broken generator" in caplog.text


def test_a_stream_is_closed_when_the_client_leaves() -> None:
    closed: list[bool] = []
    gate: Deferred[None] = Deferred()

    async def chunks() -> AsyncIterator[bytes]:
        try:
            yield b"a"
            await gate
            yield b"b"
        finally:
            closed.append(True)

    served = serve(lambda request: StreamingResponse(200, None, chunks()))
    served.feed(GET)
    served.transport.abort()
    assert closed == [True]


# -- access log and apps -----------------------------------------------------------------


def test_the_access_log_has_a_combined_format_line(caplog: pytest.LogCaptureFixture) -> None:
    served = serve(hello)
    with caplog.at_level(logging.INFO, logger="plait.http.access"):
        served.feed(
            b"GET /a?b=1 HTTP/1.1\r\nHost: h\r\nUser-Agent: tester/1\r\nReferer: http://r/\r\n\r\n"
        )
        served.feed(post(b"xy"))
    lines = [r.getMessage() for r in caplog.records if r.name == "plait.http.access"]
    assert len(lines) == 2
    assert lines[0].startswith("127.0.0.1 - - [")
    assert '] "GET /a?b=1 HTTP/1.1" 200 13 "http://r/" "tester/1"' in lines[0]
    assert '"POST / HTTP/1.1" 200 13 "-" "-"' in lines[1]


def test_a_router_is_an_app() -> None:
    router = Router()

    @router.get("/items/{id}")
    def item(request: Request, id: str) -> str:
        return f"item {id}"

    served = serve(router)
    served.feed(b"GET /items/7 HTTP/1.1\r\nHost: h\r\n\r\nPUT /items/7 HTTP/1.1\r\nHost: h\r\n\r\n")
    first, second = parse(served.take(), ("GET", "PUT"))
    assert first.body == b"item 7"
    assert second.status == 405
    assert second.headers["Allow"] == "GET, HEAD"


def test_the_request_carries_its_parts() -> None:
    seen: list[Request] = []

    def app(request: Request) -> str:
        seen.append(request)
        return "ok"

    served = serve(app)
    served.feed(b"GET /p%20q?x=1&x=2&y= HTTP/1.1\r\nHost: h\r\nX-Twice: 1\r\nx-twice: 2\r\n\r\n")
    request = seen[0]
    assert (request.method, request.path, request.version) == ("GET", "/p q", "1.1")
    assert request.query == {"x": ["1", "2"], "y": [""]}
    assert request.headers.get_all("X-TWICE") == [b"1", b"2"]
    assert request.client == ("127.0.0.1", 54321)
    assert request.body_complete


def test_a_site_refuses_an_app_that_is_not_callable() -> None:
    with pytest.raises(TypeError):
        Site(42)


def test_build_protocol_makes_a_new_protocol_for_twisted_users() -> None:
    site = Site(hello)
    assert verifyObject(IProtocolFactory, site)
    site.start_factory()
    site.stop_factory()
    first, second = site.build_protocol(None), site.build_protocol(("127.0.0.1", 1))
    assert first is not second
    assert verifyObject(IProtocol, first)


def test_headers_added_to_a_response_after_it_was_made_are_sent() -> None:
    def app(request: Request) -> Response:
        response = Response(200, "hi", {"X-First": "1"})
        response.headers.append((b"X-Later", b"2"))
        return response

    served = serve(app)
    served.feed(GET)
    response = one(served.take())
    assert (response.headers["X-First"], response.headers["X-Later"]) == ("1", "2")
    assert response.headers["Content-Type"] == "text/plain; charset=utf-8"


def test_a_str_body_keeps_an_explicit_content_type() -> None:
    served = serve(lambda request: Response(200, "<p>hi</p>", [("Content-Type", "text/html")]))
    served.feed(GET)
    response = one(served.take())
    assert response.headers.get_all("Content-Type") == ["text/html"]


class Echo:
    """A protocol that takes a connection over after a 101."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.received: list[bytes] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.received.append(data)
        self.transport.write(data.upper())

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        pass


UPGRADE = b"GET /chat HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: shout\r\n\r\n"


@pytest.mark.parametrize("later", [False, True])
def test_switch_protocols_sends_101_and_hands_over_the_connection(later: bool) -> None:
    echo_protocol = Echo()
    switch = SwitchProtocols(echo_protocol, [("Upgrade", "shout"), ("Connection", "Upgrade")])
    served = serve(lambda request: succeed(switch) if later else switch)
    served.feed(UPGRADE + b"early bytes")
    data = served.take()
    assert data.startswith(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: shout\r\n")
    assert data.endswith(b"\r\n\r\nEARLY BYTES")
    assert served.transport.get_protocol() is echo_protocol
    assert echo_protocol.transport is served.transport
    served.transport.get_protocol().data_received(b"more")
    assert served.take() == b"MORE"
    assert served.site.connections == set()
    served.clock.advance(3600)  # the HTTP timeouts no longer apply
    assert not served.transport.is_closing()


def test_switch_protocols_without_an_upgrade_request_is_a_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = serve(lambda request: SwitchProtocols(Echo(), [("Upgrade", "shout")]))
    with caplog.at_level(logging.ERROR, logger="plait.http"):
        served.feed(GET)
    assert one(served.take()).status == 500
    assert "cannot be sent" in caplog.text
