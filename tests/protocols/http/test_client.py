"""The HTTP client (Agent, pool, connection adapter) over memory transports and a Clock."""

from __future__ import annotations

import json
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from plait.cluster.defer import CancelledError, Deferred, ensure_deferred
from plait.cluster.failure import Failure
from plait.cluster.interfaces import IProtocol
from plait.cluster.protocol import Protocol
from plait.cluster.testing import IOPump, MemoryReactor
from plait.protocols.http import Headers, Request, Response, Router, Site, StreamingResponse, client
from plait.protocols.http.client import (
    Agent,
    ClientResponse,
    ConnectTimeout,
    HTTPConnectionPool,
    MalformedResponse,
    RequestTimeout,
    ResponseFailed,
    ResponseNeverReceived,
    ResponseTooLarge,
    TooManyRedirects,
)
from plait.protocols.http.client_protocol import HTTPClientProtocol

from ._helpers import CHUNKINGS, split

OK_HELLO = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"


class RawServer(Protocol):
    """A server that records what it receives; the test writes its answers by hand."""

    def __init__(self) -> None:
        self.received = bytearray()

    def data_received(self, data: bytes) -> None:
        self.received += data


class Outcome:
    """Collects what a Deferred fires with, result or failure."""

    def __init__(self, d: Deferred[Any]) -> None:
        self.result: Any = None
        self.failure: Failure | None = None
        self.fired = False
        d.add_callbacks(self._ok, self._bad)

    def _ok(self, result: Any) -> None:
        self.fired, self.result = True, result

    def _bad(self, failure: Failure) -> None:
        self.fired, self.failure = True, failure

    def error(self) -> BaseException:
        assert self.failure is not None, f"expected a failure, got {self.result!r}"
        return self.failure.value


def raw(reactor: MemoryReactor, index: int = -1) -> tuple[RawServer, IOPump]:
    server = RawServer()
    pump = reactor.tcp_clients[index].connect(server)
    return server, pump


def answer(server: RawServer, pump: IOPump, wire: bytes) -> None:
    server.transport.write(wire)
    pump.flush()


def make_site(reactor: MemoryReactor) -> Site:
    router = Router()

    @router.get("/hello")
    def hello(request: Request) -> Response:
        return Response(200, b"hello", headers={"X-Test": "yes"})

    @router.post("/echo")
    async def echo(request: Request) -> Response:
        body = await request.body()
        te = request.headers.get("transfer-encoding") or b"-"
        return Response(200, te + b"|" + body)

    @router.get("/stream")
    def stream(request: Request) -> StreamingResponse:
        return StreamingResponse(200, None, [b"one ", b"two ", b"three"])

    @router.get("/json")
    def as_json(request: Request) -> Response:
        return Response(200, b'{"a": [1, 2]}', headers={"Content-Type": "application/json"})

    return Site(router, clock=reactor.clock)


PUMPS: weakref.WeakKeyDictionary[MemoryReactor, list[IOPump]] = weakref.WeakKeyDictionary()


def flush_all(reactor: MemoryReactor) -> None:
    """Flush every connection ``fetch`` made on ``reactor`` until all are quiet."""
    for _ in range(10):
        if not sum(pump.flush() for pump in PUMPS.get(reactor, [])):
            return


def fetch(agent: Agent, reactor: MemoryReactor, method: str, url: str, **kw: Any) -> Outcome:
    """Run one request against a Site (new connections are wired to one)."""
    before = len(reactor.tcp_clients)
    d = agent.request(method, url, **kw)
    if len(reactor.tcp_clients) > before:
        pump = reactor.tcp_clients[-1].connect(make_site(reactor)())
        PUMPS.setdefault(reactor, []).append(pump)
    flush_all(reactor)
    return Outcome(d)


# -- the happy paths ---------------------------------------------------------------------


def test_client_protocol_provides_iprotocol() -> None:
    assert verifyObject(IProtocol, HTTPClientProtocol())


def test_get_against_a_site_gives_status_headers_and_body() -> None:
    reactor = MemoryReactor()
    outcome = fetch(Agent(reactor), reactor, "GET", "http://example.com/hello")
    response = outcome.result
    assert isinstance(response, ClientResponse)
    assert (response.status, response.reason, response.version) == (200, "OK", "1.1")
    assert response.headers.get("x-test") == b"yes"
    assert response.length == 5
    assert Outcome(response.read()).result == b"hello"
    assert response.complete


def test_request_head_carries_host_user_agent_and_target() -> None:
    reactor = MemoryReactor()
    Agent(reactor).request("GET", "http://[::1]:8080/a%20b/c?x=1&y=2#frag", {"Accept": "*/*"})
    assert reactor.tcp_clients[0].address == ("::1", 8080)
    server, _ = raw(reactor)
    head = bytes(server.received)
    assert head.startswith(b"GET /a%20b/c?x=1&y=2 HTTP/1.1\r\n")
    assert b"\r\nHost: [::1]:8080\r\n" in head and b"User-Agent: plait/" in head
    assert b"Accept: */*" in head


def test_chunked_streaming_response_is_read_whole() -> None:
    reactor = MemoryReactor()
    outcome = fetch(Agent(reactor), reactor, "GET", "http://example.com/stream")
    assert outcome.result.headers.get("transfer-encoding") == b"chunked"
    assert Outcome(outcome.result.read()).result == b"one two three"


def test_text_and_json_decode_the_body() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    response = fetch(agent, reactor, "GET", "http://example.com/json").result
    assert Outcome(response.json()).result == {"a": [1, 2]}
    response = fetch(agent, reactor, "GET", "http://example.com/hello").result
    assert Outcome(response.text()).result == "hello"


def test_text_uses_the_charset_of_content_type() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor).request("GET", "http://example.com/")
    server, pump = raw(reactor)
    answer(
        server,
        pump,
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=latin-1\r\n"
        b"Content-Length: 2\r\n\r\n\xe9\xe8",
    )
    assert Outcome(Outcome(d).result.text()).result == "\xe9\xe8"


def test_malformed_json_body_errbacks_with_valueerror() -> None:
    reactor = MemoryReactor()
    response = fetch(Agent(reactor), reactor, "GET", "http://example.com/hello").result
    assert isinstance(Outcome(response.json()).error(), json.JSONDecodeError)


@pytest.mark.parametrize("how", CHUNKINGS)
def test_chunked_response_at_every_chunking(how: str) -> None:
    reactor = MemoryReactor()
    d = Agent(reactor).request("GET", "http://example.com/")
    server, pump = raw(reactor)
    wire = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n1;ext=1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n"
    )
    for piece in split(wire, how):
        answer(server, pump, piece)
    assert Outcome(Outcome(d).result.read()).result == b"hello world"


def test_http10_close_delimited_body_is_read_until_close_and_not_reused() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    d = agent.request("GET", "http://example.com/")
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.0 200 OK\r\n\r\nall of ")
    response = Outcome(d).result
    body = Outcome(response.read())
    assert not body.fired
    answer(server, pump, b"it")
    server.transport.close()
    pump.flush()
    assert body.result == b"all of it"
    assert response.version == "1.0"
    agent.request("GET", "http://example.com/")
    assert len(reactor.tcp_clients) == 2


# -- keep-alive and the pool -------------------------------------------------------------


def test_connection_is_reused_after_a_response_is_read_in_full() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    first = fetch(agent, reactor, "GET", "http://example.com/hello").result
    assert Outcome(first.read()).result == b"hello"
    second = fetch(agent, reactor, "GET", "http://example.com/hello")
    assert len(reactor.tcp_clients) == 1
    assert second.result.status == 200
    assert agent.pool.statistics()[("http", "example.com", 80)] == (1, 1, 0)


def test_connection_close_response_is_not_reused() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    d = agent.request("GET", "http://example.com/")
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
    assert Outcome(Outcome(d).result.read()).result == b"ok"
    assert server.transport.is_closing()
    agent.request("GET", "http://example.com/")
    assert len(reactor.tcp_clients) == 2


def test_pool_keys_by_scheme_host_and_port() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    for url in ("http://a.test/", "http://a.test:81/", "http://b.test/"):
        fetch(agent, reactor, "GET", url)
    assert len(reactor.tcp_clients) == 3
    assert set(agent.pool.statistics()) == {
        ("http", "a.test", 80),
        ("http", "a.test", 81),
        ("http", "b.test", 80),
    }


def test_requests_over_max_per_host_wait_for_a_free_connection() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, max_per_host=1))
    first = Outcome(agent.request("GET", "http://example.com/1"))
    second = Outcome(agent.request("GET", "http://example.com/2"))
    assert len(reactor.tcp_clients) == 1
    assert agent.pool.statistics()[("http", "example.com", 80)] == (1, 0, 1)
    server, pump = raw(reactor)
    answer(server, pump, OK_HELLO)
    assert first.result.status == 200 and second.fired is False
    pump.flush()
    assert server.received.count(b"GET /2 HTTP/1.1") == 1
    answer(server, pump, OK_HELLO)
    assert second.result.status == 200
    assert len(reactor.tcp_clients) == 1


def test_a_queued_request_connects_when_a_connection_is_lost() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, max_per_host=1))
    first = Outcome(agent.request("GET", "http://example.com/1"))
    Outcome(agent.request("GET", "http://example.com/2"))
    reactor.tcp_clients[0].fail()
    assert isinstance(first.error(), ConnectionRefusedError)
    assert len(reactor.tcp_clients) == 2


def test_cancelling_a_queued_request_leaves_the_queue() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, max_per_host=1))
    agent.request("GET", "http://example.com/1")
    queued = agent.request("GET", "http://example.com/2")
    outcome = Outcome(queued)
    queued.cancel()
    assert isinstance(outcome.error(), CancelledError)
    assert agent.pool.statistics()[("http", "example.com", 80)] == (1, 0, 0)


def test_idle_connection_is_closed_after_idle_timeout() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, idle_timeout=5))
    fetch(agent, reactor, "GET", "http://example.com/hello")
    reactor.advance(4.9)
    assert agent.pool.statistics()[("http", "example.com", 80)] == (1, 1, 0)
    reactor.advance(0.2)
    flush_all(reactor)
    assert agent.pool.statistics()[("http", "example.com", 80)] == (0, 0, 0)


def test_non_persistent_pool_closes_after_each_response() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False))
    fetch(agent, reactor, "GET", "http://example.com/hello")
    fetch(agent, reactor, "GET", "http://example.com/hello")
    assert len(reactor.tcp_clients) == 2


def test_agent_close_closes_idle_connections() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    fetch(agent, reactor, "GET", "http://example.com/hello")
    closed = Outcome(agent.close())
    flush_all(reactor)
    assert closed.fired and closed.failure is None


def test_pool_rejects_bad_settings() -> None:
    with pytest.raises(ValueError):
        HTTPConnectionPool(MemoryReactor(), max_per_host=0)
    with pytest.raises(ValueError):
        HTTPConnectionPool(MemoryReactor(), idle_timeout=-1)


# -- request bodies ----------------------------------------------------------------------


def test_bytes_body_is_sent_with_content_length() -> None:
    reactor = MemoryReactor()
    outcome = fetch(Agent(reactor), reactor, "POST", "http://example.com/echo", body=b"data")
    assert Outcome(outcome.result.read()).result == b"-|data"


def test_post_without_body_sends_content_length_zero() -> None:
    reactor = MemoryReactor()
    Agent(reactor).request("POST", "http://example.com/")
    server, _ = raw(reactor)
    assert b"Content-Length: 0\r\n" in server.received


def test_iterable_body_is_sent_chunked() -> None:
    reactor = MemoryReactor()
    outcome = fetch(
        Agent(reactor), reactor, "POST", "http://example.com/echo", body=iter([b"ab", b"", b"cd"])
    )
    assert Outcome(outcome.result.read()).result == b"chunked|abcd"


def test_async_iterable_body_is_sent_chunked() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b"x" * 3
        yield b"y"

    reactor = MemoryReactor()
    outcome = fetch(Agent(reactor), reactor, "POST", "http://example.com/echo", body=chunks())
    assert Outcome(outcome.result.read()).result == b"chunked|xxxy"


class Producer:
    """A body producer in Twisted's IBodyProducer shape."""

    def __init__(self, parts: list[bytes], length: int | None) -> None:
        self.parts = parts
        self.length = length
        self.events: list[str] = []
        self.finished: Deferred[None] = Deferred()

    def start_producing(self, consumer: Any) -> Deferred[None]:
        for part in self.parts:
            consumer.write(part)
        return self.finished

    def pause_producing(self) -> None:
        self.events.append("pause")

    def resume_producing(self) -> None:
        self.events.append("resume")

    def stop_producing(self) -> None:
        self.events.append("stop")


@pytest.mark.parametrize(("length", "framing"), [(6, b"-"), (None, b"chunked")])
def test_producer_body_is_sent_sized_or_chunked(length: int | None, framing: bytes) -> None:
    reactor = MemoryReactor()
    producer = Producer([b"abc", b"def"], length)
    outcome = fetch(Agent(reactor), reactor, "POST", "http://example.com/echo", body=producer)
    producer.finished.callback(None)
    flush_all(reactor)
    assert Outcome(outcome.result.read()).result == framing + b"|abcdef"


def test_producer_is_paused_and_resumed_with_the_transport() -> None:
    reactor = MemoryReactor()
    producer = Producer([], None)
    Agent(reactor).request("POST", "http://example.com/", body=producer)
    _, pump = raw(reactor)
    protocol = pump.client
    protocol.pause_writing()
    protocol.resume_writing()
    assert producer.events == ["pause", "resume"]


def test_paused_writing_stops_the_iterable_until_resumed() -> None:
    reactor = MemoryReactor()
    sent: list[int] = []
    protocol = HTTPClientProtocol()
    server = RawServer()
    from plait.cluster.testing import connect_in_memory

    pump = connect_in_memory(server, protocol, clock=reactor.clock)
    protocol.pause_writing()

    def chunks() -> Iterator[bytes]:
        for i in range(3):
            sent.append(i)
            yield b"%d" % i

    from plait.protocols.http.client_protocol import Exchange

    protocol.start(
        Exchange(
            method=b"POST",
            target=b"/",
            headers=Headers([("Host", "x"), ("Transfer-Encoding", "chunked")]),
            body=chunks(),
            url="http://x/",
            max_body_size=None,
            on_response=lambda r: None,
            on_done=lambda e, h: None,
        )
    )
    assert sent == [0]
    protocol.resume_writing()
    assert sent == [0, 1, 2]
    pump.flush()
    assert server.received.endswith(b"1\r\n2\r\n0\r\n\r\n")


def test_body_of_unsupported_type_raises_typeerror_at_once() -> None:
    with pytest.raises(TypeError):
        Agent(MemoryReactor()).request("POST", "http://example.com/", body=12)
    with pytest.raises(TypeError):
        Agent(MemoryReactor()).request("POST", "http://example.com/", body="text")


def test_failing_body_iterable_fails_the_request_and_drops_the_connection() -> None:
    def chunks() -> Iterator[bytes]:
        yield b"a"
        raise OSError("disk gone")

    reactor = MemoryReactor()
    d = Agent(reactor).request("POST", "http://example.com/", body=chunks())
    server, pump = raw(reactor)
    outcome = Outcome(d)
    assert isinstance(outcome.error(), OSError)
    pump.flush()
    assert server.transport.is_closing()


# -- response streaming and back-pressure -------------------------------------------------


def test_stream_yields_chunks_and_pauses_reading_past_high_water() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor).request("GET", "http://example.com/")
    server, pump = raw(reactor)
    size = 200_000
    answer(server, pump, b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % size)
    response = Outcome(d).result
    protocol = pump.client
    protocol.data_received(b"a" * 70_000)
    assert not pump.client_transport.is_reading()
    got: list[bytes] = []

    async def consume() -> None:
        async for chunk in response.stream():
            got.append(chunk)

    done = Outcome(ensure_deferred(consume()))
    assert pump.client_transport.is_reading()
    protocol.data_received(b"b" * (size - 70_000))
    assert done.fired and done.failure is None
    assert b"".join(got) == b"a" * 70_000 + b"b" * (size - 70_000)


def test_read_resumes_a_connection_paused_by_unread_chunks() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor).request("GET", "http://example.com/")
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
    response = Outcome(d).result
    pump.client.data_received(b"a" * 70_000)
    assert not pump.client_transport.is_reading()
    body = Outcome(response.read())
    assert pump.client_transport.is_reading()
    pump.client.data_received(b"b" * 30_000)
    assert body.result == b"a" * 70_000 + b"b" * 30_000


def test_reading_a_body_twice_at_once_is_refused() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor).request("GET", "http://example.com/")
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    response = Outcome(d).result
    first = Outcome(response.read())
    with pytest.raises(RuntimeError):
        response.read()
    answer(server, pump, b"hello")
    assert first.result == b"hello"


def test_closing_an_unread_response_aborts_the_connection() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    d = agent.request("GET", "http://example.com/")
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel")
    response = Outcome(d).result
    response.close()
    pump.flush()
    assert isinstance(Outcome(response.read()).error(), ResponseFailed)
    assert agent.pool.statistics()[("http", "example.com", 80)] == (0, 0, 0)


# -- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wire",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"HTTP/1.1 2x0 OK\r\n\r\n",
        b"SMTP ready\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    ],
)
def test_malformed_response_errbacks_and_the_connection_is_dropped(wire: bytes) -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    d = agent.request("GET", "http://example.com/")
    server, pump = raw(reactor)
    outcome = Outcome(d)
    answer(server, pump, wire)
    if outcome.failure is None:  # the head was fine; the body is the broken part
        outcome = Outcome(outcome.result.read())
    assert isinstance(outcome.error(), MalformedResponse)
    assert "example.com" in str(outcome.error())
    assert agent.pool.statistics()[("http", "example.com", 80)] == (0, 0, 0)


def test_server_closing_before_responding_gives_response_never_received() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor).request("POST", "http://example.com/", body=b"x")
    server, pump = raw(reactor)
    server.transport.close()
    pump.flush()
    error = Outcome(d).error()
    assert isinstance(error, ResponseNeverReceived)
    assert "closed before any response" in str(error)


def test_server_closing_mid_body_fails_the_read_with_response_failed() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor).request("GET", "http://example.com/")
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel")
    response = Outcome(d).result
    server.transport.close()
    pump.flush()
    assert isinstance(Outcome(response.read()).error(), ResponseFailed)


def test_partial_head_then_close_is_a_malformed_response() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor).request("GET", "http://example.com/")
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 200 OK\r\nContent-Le")
    server.transport.close()
    pump.flush()
    assert isinstance(Outcome(d).error(), MalformedResponse)


def reuse_then_server_closes(method: str, body: bytes | None) -> tuple[MemoryReactor, Outcome]:
    """Read one response, then send ``method`` on the kept connection, which the
    server closes without answering (it timed the idle connection out meanwhile)."""
    reactor = MemoryReactor()
    agent = Agent(reactor)
    d = agent.request("GET", "http://example.com/")
    server, pump = raw(reactor)
    answer(server, pump, OK_HELLO)
    Outcome(Outcome(d).result.read())
    second = Outcome(agent.request(method, "http://example.com/again", body=body))
    assert len(reactor.tcp_clients) == 1  # sent on the reused connection
    server.transport.close()
    pump.flush()
    return reactor, second


def test_idempotent_request_on_a_stale_connection_is_retried_once_on_a_fresh_one() -> None:
    reactor, second = reuse_then_server_closes("GET", None)
    assert len(reactor.tcp_clients) == 2
    assert not second.fired
    server, pump = raw(reactor)
    assert server.received.startswith(b"GET /again HTTP/1.1")
    answer(server, pump, OK_HELLO)
    assert second.result.status == 200


def test_retry_on_a_fresh_connection_is_not_retried_again() -> None:
    reactor, second = reuse_then_server_closes("GET", None)
    server, pump = raw(reactor)
    server.transport.close()
    pump.flush()
    assert isinstance(second.error(), ResponseNeverReceived)
    assert len(reactor.tcp_clients) == 2


def test_post_on_a_stale_connection_is_not_retried() -> None:
    reactor, second = reuse_then_server_closes("POST", b"once")
    assert isinstance(second.error(), ResponseNeverReceived)
    assert len(reactor.tcp_clients) == 1


def test_response_body_over_max_body_size_by_content_length_errbacks() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor, max_body_size=4).request("GET", "http://example.com/")
    server, pump = raw(reactor)
    answer(server, pump, OK_HELLO)
    error = Outcome(d).error()
    assert isinstance(error, ResponseTooLarge) and "limit of 4" in str(error)
    assert server.transport.is_closing()


def test_chunked_response_body_over_max_body_size_fails_the_read() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor, max_body_size=8).request("GET", "http://example.com/")
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
    read = Outcome(Outcome(d).result.read())
    answer(server, pump, b"5\r\nworld\r\n0\r\n\r\n")
    assert isinstance(read.error(), ResponseTooLarge)


def test_connection_refused_errbacks_with_connectionrefusederror() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor).request("GET", "http://example.com/")
    reactor.tcp_clients[0].fail(ConnectionRefusedError("refused"))
    assert isinstance(Outcome(d).error(), ConnectionRefusedError)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("ftp://example.com/", "unsupported URL scheme"),
        ("example.com/path", "unsupported URL scheme"),
        ("http:///path", "no host"),
        ("http://example.com:99999/", "invalid port"),
        ("http://example.com:0/", "invalid port"),
        ("http://example.com:x/", "invalid port"),
        ("http://exa mple.com/", "spaces or control"),
        ("http://example.com/\r\nX: y", "spaces or control"),
        ("", "unsupported URL scheme"),
    ],
)
def test_invalid_url_raises_valueerror_at_once(url: str, message: str) -> None:
    reactor = MemoryReactor()
    with pytest.raises(ValueError, match=message):
        Agent(reactor).request("GET", url)
    assert reactor.tcp_clients == []


@pytest.mark.parametrize(
    ("method", "headers"),
    [
        ("GE T", None),
        ("", None),
        ("GET", {"Bad Name": "x"}),
        ("GET", {"X-Inject": "a\r\nEvil: 1"}),
        ("GET", [("only-one",)]),
        ("CONNECT", None),
        ("GET", {"Upgrade": "websocket", "Connection": "upgrade"}),
    ],
)
def test_bad_method_or_header_raises_valueerror_at_once(method: str, headers: Any) -> None:
    with pytest.raises(ValueError):
        Agent(MemoryReactor()).request(method, "http://example.com/", headers)


def test_url_that_is_not_a_string_raises_valueerror() -> None:
    with pytest.raises(ValueError):
        Agent(MemoryReactor()).request("GET", b"http://example.com/")  # type: ignore[arg-type]


def test_agent_rejects_bad_settings() -> None:
    settings: list[dict[str, Any]] = [
        {"connect_timeout": 0},
        {"timeout": -1},
        {"max_body_size": -1},
    ]
    for kwargs in settings:
        with pytest.raises(ValueError):
            Agent(MemoryReactor(), **kwargs)
    with pytest.raises(ValueError):
        Agent(MemoryReactor()).request("GET", "http://example.com/", timeout=0)


def test_unsolicited_bytes_on_an_idle_connection_drop_it() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    d = agent.request("GET", "http://example.com/")
    server, pump = raw(reactor)
    answer(server, pump, OK_HELLO)
    Outcome(Outcome(d).result.read())
    answer(server, pump, b"HTTP/1.1 200 OK\r\n")
    assert agent.pool.statistics()[("http", "example.com", 80)] == (0, 0, 0)


def test_response_before_the_request_body_ends_closes_the_connection() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    producer = Producer([b"abc"], None)
    d = agent.request("POST", "http://example.com/", body=producer)
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 413 Too Large\r\nContent-Length: 0\r\n\r\n")
    assert Outcome(d).result.status == 413
    assert producer.events == ["stop"]
    pump.flush()
    assert agent.pool.statistics()[("http", "example.com", 80)] == (0, 0, 0)


# -- timeouts and cancellation ---------------------------------------------------------------


def test_connect_timeout_errbacks_with_connecttimeout() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor, connect_timeout=3).request("GET", "http://example.com/")
    outcome = Outcome(d)
    reactor.advance(2.9)
    assert not outcome.fired
    reactor.advance(0.2)
    error = outcome.error()
    assert isinstance(error, ConnectTimeout) and isinstance(error, TimeoutError)
    assert "connecting to example.com port 80 timed out after 3 seconds" in str(error)


def test_request_timeout_errbacks_and_aborts_the_connection() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, timeout=10)
    d = agent.request("GET", "http://example.com/slow")
    server, pump = raw(reactor)
    outcome = Outcome(d)
    reactor.advance(10)
    error = outcome.error()
    assert isinstance(error, RequestTimeout) and isinstance(error, TimeoutError)
    assert "GET http://example.com/slow did not complete within 10 seconds" in str(error)
    pump.flush()
    assert server.transport.is_closing()
    assert agent.pool.statistics()[("http", "example.com", 80)] == (0, 0, 0)


def test_request_timeout_covers_the_body() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor).request("GET", "http://example.com/", timeout=5)
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhel")
    read = Outcome(Outcome(d).result.read())
    reactor.advance(5)
    assert isinstance(read.error(), RequestTimeout)


def test_request_timeout_is_cancelled_once_the_body_arrived() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, timeout=5)
    response = fetch(agent, reactor, "GET", "http://example.com/hello").result
    body = Outcome(response.read())
    reactor.advance(6)
    flush_all(reactor)
    assert body.result == b"hello"
    assert agent.pool.statistics()[("http", "example.com", 80)] == (1, 1, 0)


def test_cancelling_before_the_response_aborts_the_connection() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    d = agent.request("GET", "http://example.com/")
    server, pump = raw(reactor)
    outcome = Outcome(d)
    d.cancel()
    assert isinstance(outcome.error(), CancelledError)
    pump.flush()
    assert server.transport.is_closing()
    answer(server, pump, OK_HELLO)  # too late: nobody listens
    assert agent.pool.statistics()[("http", "example.com", 80)] == (0, 0, 0)


def test_cancelling_while_connecting_cancels_the_connection_attempt() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    d = agent.request("GET", "http://example.com/")
    outcome = Outcome(d)
    d.cancel()
    assert isinstance(outcome.error(), CancelledError)
    assert not reactor.tcp_clients[0].pending
    assert agent.pool.statistics()[("http", "example.com", 80)] == (0, 0, 0)


# -- redirects and the default agent ---------------------------------------------------------


def test_redirects_are_not_followed_by_default() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor).request("GET", "http://example.com/")
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 302 Found\r\nLocation: /next\r\nContent-Length: 0\r\n\r\n")
    assert Outcome(d).result.status == 302


def test_followed_303_turns_post_into_get_and_strips_credentials_across_origins() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, follow_redirects=True)
    d = agent.request("POST", "http://example.com/start", {"Authorization": "secret"}, b"form")
    outcome = Outcome(d)
    server, pump = raw(reactor)
    answer(
        server,
        pump,
        b"HTTP/1.1 303 See Other\r\nLocation: http://other.test/done\r\nContent-Length: 0\r\n\r\n",
    )
    other, other_pump = raw(reactor)
    assert other.received.startswith(b"GET /done HTTP/1.1\r\n")
    assert b"Authorization" not in other.received and b"form" not in other.received
    answer(other, other_pump, OK_HELLO)
    response = outcome.result
    assert response.status == 200 and response.url == "http://other.test/done"
    assert [r.status for r in response.history] == [303]


def test_followed_307_keeps_method_and_body() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, follow_redirects=True)
    outcome = Outcome(agent.request("PUT", "http://example.com/a", body=b"data"))
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 307 Temp\r\nLocation: /b\r\nContent-Length: 0\r\n\r\n")
    pump.flush()
    assert server.received.endswith(b"\r\n\r\ndata")
    assert b"PUT /b HTTP/1.1" in server.received
    answer(server, pump, OK_HELLO)
    assert outcome.result.status == 200


def test_too_many_redirects_errbacks() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, follow_redirects=True, max_redirects=2)
    outcome = Outcome(agent.request("GET", "http://example.com/"))
    server, pump = raw(reactor)
    for _ in range(3):
        answer(server, pump, b"HTTP/1.1 302 F\r\nLocation: /loop\r\nContent-Length: 0\r\n\r\n")
        pump.flush()
    assert isinstance(outcome.error(), TooManyRedirects)


def test_module_level_get_and_request_use_the_default_agent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reactor = MemoryReactor()
    monkeypatch.setattr(client, "_default_agent", Agent(reactor))
    first = Outcome(client.get("http://example.com/a"))
    Outcome(client.request("DELETE", "http://example.com/b"))
    server, pump = raw(reactor, 0)
    answer(server, pump, OK_HELLO)
    assert first.result.status == 200
    server2, _ = raw(reactor, 1)
    assert server2.received.startswith(b"DELETE /b HTTP/1.1")


# -- HTTPS and HEAD ----------------------------------------------------------------------------


class TLSMemoryReactor(MemoryReactor):
    """A MemoryReactor whose connect_ssl records the options and connects in memory."""

    def __init__(self) -> None:
        super().__init__()
        self.tls: list[tuple[str, int, Any]] = []

    def connect_ssl(
        self, host: str, port: int, factory: Any, options: Any, timeout: float = 30.0
    ) -> Deferred[Any]:
        self.tls.append((host, port, options))
        return self.connect_tcp(host, port, factory, timeout)


def test_https_url_on_a_reactor_without_tls_raises_valueerror() -> None:
    with pytest.raises(ValueError, match="cannot make TLS connections"):
        Agent(MemoryReactor()).request("GET", "https://example.com/")


def test_https_connects_with_the_tls_options_for_the_host() -> None:
    reactor = TLSMemoryReactor()
    agent = Agent(reactor, tls_options=lambda host: ("options for", host))
    d = agent.request("GET", "https://example.com/")
    assert reactor.tls == [("example.com", 443, ("options for", "example.com"))]
    server, pump = raw(reactor)
    assert b"Host: example.com\r\n" in server.received
    answer(server, pump, OK_HELLO)
    assert Outcome(d).result.status == 200
    assert ("https", "example.com", 443) in agent.pool.statistics()


def test_tls_options_that_raise_errback_the_request() -> None:
    def refuse(host: str) -> Any:
        raise ValueError(f"no certificate for {host}")

    reactor = TLSMemoryReactor()
    agent = Agent(reactor, tls_options=refuse)
    error = Outcome(agent.request("GET", "https://example.com/")).error()
    assert isinstance(error, ValueError) and "no certificate" in str(error)
    assert agent.pool.statistics()[("https", "example.com", 443)] == (0, 0, 0)


def test_head_response_has_no_body_and_the_connection_is_reused() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    d = agent.request("HEAD", "http://example.com/")
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n")
    response = Outcome(d).result
    assert response.length == 5
    assert Outcome(response.read()).result == b""
    agent.request("GET", "http://example.com/")
    assert len(reactor.tcp_clients) == 1


def test_informational_responses_before_the_final_one_are_skipped() -> None:
    reactor = MemoryReactor()
    d = Agent(reactor).request("POST", "http://example.com/", {"Expect": "100-continue"}, b"x")
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\n\r\n")
    outcome = Outcome(d)
    assert not outcome.fired
    answer(server, pump, OK_HELLO)
    assert outcome.result.status == 200
