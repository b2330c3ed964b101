"""The HTTP client's content decoding (``decompress``), over memory transports.

The server side is written by hand (``RawServer``), so each test sets the exact
``Content-Encoding``, framing and bytes; real servers are in
tests/integration/test_http_client_decoding.py.
"""

from __future__ import annotations

import gzip
import json
import tracemalloc
import zlib
from typing import Any

import pytest

from plait.cluster.defer import ensure_deferred
from plait.cluster.testing import IOPump, MemoryReactor
from plait.protocols.http.client import (
    Agent,
    ClientResponse,
    MalformedResponse,
    ResponseFailed,
    ResponseTooLarge,
)

from ._helpers import CHUNKINGS, split
from .test_client import Outcome, RawServer, answer, raw

TEXT = b"".join(b"line %d of a compressible body\n" % i for i in range(3000))
KEY = ("http", "example.com", 80)


def sized(body: bytes, *fields: str, status: str = "200 OK") -> bytes:
    head = "".join(f"{field}\r\n" for field in fields)
    return b"HTTP/1.1 %s\r\nContent-Length: %d\r\n%s\r\n" % (
        status.encode(),
        len(body),
        head.encode(),
    ) + body


def chunked(body: bytes, *fields: str) -> bytes:
    head = "".join(f"{field}\r\n" for field in fields)
    wire = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n%s\r\n" % head.encode()
    for i in range(0, len(body), 1000):
        part = body[i : i + 1000]
        wire += b"%x\r\n%s\r\n" % (len(part), part)
    return wire + b"0\r\n\r\n"


def get(agent: Agent, reactor: MemoryReactor, **kw: Any) -> tuple[Outcome, RawServer, IOPump]:
    d = agent.request("GET", "http://example.com/", **kw)
    server, pump = raw(reactor)
    return Outcome(d), server, pump


def respond(wire: bytes, how: str = "whole", **agent_kw: Any) -> tuple[Agent, ClientResponse]:
    """One GET answered with ``wire`` (written in pieces); the agent and response.

    Bytes that wait while reading is paused (the reader fell behind) are delivered
    by ``read``, ``take`` and ``consume`` below, once a reader started.
    """
    reactor = MemoryReactor()
    agent = Agent(reactor, **agent_kw)
    outcome, server, pump = get(agent, reactor)
    for piece in split(wire, how):
        answer(server, pump, piece)
    assert outcome.failure is None, outcome.failure
    response: ClientResponse = outcome.result
    PUMPS[response] = pump
    return agent, response


PUMPS: dict[ClientResponse, IOPump] = {}


def take(response: ClientResponse, d: Any) -> Outcome:
    """``Outcome(d)`` once the bytes that waited for a reader were delivered."""
    pump = PUMPS.pop(response, None)
    outcome = Outcome(d)
    while pump is not None and pump.flush():
        pass
    return outcome


def read(response: ClientResponse) -> Outcome:
    return take(response, response.read())


def consume(response: ClientResponse) -> tuple[Outcome, list[bytes]]:
    got: list[bytes] = []

    async def run() -> None:
        async for chunk in response.stream():
            got.append(chunk)

    return take(response, ensure_deferred(run())), got


def body_error(wire: bytes, **agent_kw: Any) -> tuple[Agent, BaseException]:
    agent, response = respond(wire, **agent_kw)
    return agent, read(response).error()


# -- what is asked for -------------------------------------------------------------------


def test_a_request_asks_for_gzip_and_deflate_by_default() -> None:
    reactor = MemoryReactor()
    _, server, _ = get(Agent(reactor), reactor)
    assert b"\r\nAccept-Encoding: gzip, deflate\r\n" in bytes(server.received)


@pytest.mark.parametrize("value", ["br", "identity", "gzip;q=0.5"])
def test_an_accept_encoding_of_the_request_is_left_alone(value: str) -> None:
    reactor = MemoryReactor()
    _, server, _ = get(Agent(reactor), reactor, headers={"accept-encoding": value})
    head = bytes(server.received)
    assert head.count(b"ccept-") == 1 and f"accept-encoding: {value}\r\n".encode() in head


def test_decompress_false_asks_for_nothing_and_decodes_nothing() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, decompress=False)
    outcome, server, pump = get(agent, reactor)
    assert b"accept-encoding" not in bytes(server.received).lower()
    encoded = gzip.compress(TEXT)
    answer(server, pump, sized(encoded, "Content-Encoding: gzip"))
    response = outcome.result
    assert not response.decoded and response.length == len(encoded)
    assert read(response).result == encoded


# -- decoding ----------------------------------------------------------------------------


@pytest.mark.parametrize("how", CHUNKINGS[:3])
@pytest.mark.parametrize("frame", [sized, chunked])
@pytest.mark.parametrize(
    ("coding", "encoded"),
    [
        ("gzip", gzip.compress(TEXT)),
        ("x-gzip", gzip.compress(TEXT)),
        ("deflate", zlib.compress(TEXT)),
        ("deflate", zlib.compress(TEXT, wbits=-zlib.MAX_WBITS)),  # raw, as browsers accept
        ("gzip, gzip", gzip.compress(gzip.compress(TEXT))),
        ("identity, deflate, identity, gzip", gzip.compress(zlib.compress(TEXT))),
    ],
)
def test_read_decodes_the_body_at_every_chunking(
    coding: str, encoded: bytes, frame: Any, how: str
) -> None:
    agent, response = respond(frame(encoded, f"Content-Encoding: {coding}"), how)
    assert read(response).result == TEXT
    assert response.decoded and response.length is None
    assert response.headers.get("content-encoding") == coding.encode()  # as received
    assert agent.pool.statistics()[KEY] == (1, 1, 0)  # back in the pool


def test_text_json_and_stream_decode_too() -> None:
    value = {"words": ["gzip"] * 1000}
    payload = json.dumps(value).encode()
    wire = sized(gzip.compress(payload), "Content-Encoding: gzip", "Content-Type: application/json")
    response = respond(wire)[1]
    assert take(response, response.json()).result == value
    response = respond(wire)[1]
    assert take(response, response.text()).result == payload.decode()
    _, response = respond(chunked(gzip.compress(TEXT), "Content-Encoding: gzip"), "random1")
    done, got = consume(response)
    assert done.fired and done.failure is None and b"".join(got) == TEXT


def test_identity_alone_is_not_a_decoding() -> None:
    _, response = respond(sized(b"plain", "Content-Encoding: identity"))
    assert not response.decoded and response.length == 5
    assert read(response).result == b"plain"


@pytest.mark.parametrize("coding", ["br", "zstd", "gzip, br", "compress"])
def test_an_unsupported_coding_leaves_body_and_headers_as_received(coding: str) -> None:
    agent, response = respond(sized(b"\x8b\x00 opaque", f"Content-Encoding: {coding}"))
    assert read(response).result == b"\x8b\x00 opaque"
    assert not response.decoded and response.length == 9
    assert response.headers.get("content-encoding") == coding.encode()
    assert agent.pool.statistics()[KEY] == (1, 1, 0)


@pytest.mark.parametrize(
    ("method", "status"),
    [("HEAD", "200 OK"), ("GET", "204 No Content"), ("GET", "304 Not Modified")],
)
def test_an_empty_body_with_content_encoding_is_not_decoded(method: str, status: str) -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    d = agent.request(method, "http://example.com/")
    server, pump = raw(reactor)
    length = "Content-Length: 1234\r\n" if status != "204 No Content" else ""
    answer(server, pump, f"HTTP/1.1 {status}\r\n{length}Content-Encoding: gzip\r\n\r\n".encode())
    response = Outcome(d).result
    assert read(response).result == b""
    assert not response.decoded
    assert agent.pool.statistics()[KEY] == (1, 1, 0)


def test_an_empty_200_body_with_content_encoding_gzip_reads_as_empty() -> None:
    agent, response = respond(sized(b"", "Content-Encoding: gzip"))
    assert read(response).result == b""
    assert agent.pool.statistics()[KEY] == (1, 1, 0)


def test_gzip_members_in_a_row_and_zero_padding_are_one_body() -> None:
    wire = gzip.compress(b"one ") + gzip.compress(b"two") + b"\x00\x00"
    _, response = respond(sized(wire, "Content-Encoding: gzip"))
    assert read(response).result == b"one two"


# -- bad input ---------------------------------------------------------------------------

CORRUPT = bytearray(gzip.compress(TEXT))
CORRUPT[len(CORRUPT) // 2] ^= 0x55


@pytest.mark.parametrize(
    ("encoded", "coding", "message"),
    [
        (bytes(CORRUPT), "gzip", "invalid gzip data"),
        (b"not gzip at all", "gzip", "no gzip header"),
        (gzip.compress(TEXT) + b"trailing garbage", "gzip", "after the gzip member"),
        (zlib.compress(TEXT) + b"trailing garbage", "deflate", "after the deflate stream"),
        (gzip.compress(TEXT)[:-5], "gzip", "ends before its end"),  # no full trailer
        (zlib.compress(TEXT)[:50], "deflate", "ends before its end"),
    ],
)
def test_a_bad_encoded_body_is_a_malformed_response_and_drops_the_connection(
    encoded: bytes, coding: str, message: str
) -> None:
    agent, error = body_error(sized(encoded, f"Content-Encoding: {coding}"))
    assert isinstance(error, MalformedResponse) and message in str(error)
    assert "example.com" in str(error)
    assert agent.pool.statistics()[KEY] == (0, 0, 0)  # aborted, not pooled


def test_connection_closing_mid_member_fails_the_read_with_response_failed() -> None:
    encoded = gzip.compress(TEXT)
    reactor = MemoryReactor()
    agent = Agent(reactor)
    outcome, server, pump = get(agent, reactor)
    answer(server, pump, sized(encoded, "Content-Encoding: gzip")[:-100])
    body = Outcome(outcome.result.read())
    server.transport.close()
    pump.flush()
    assert isinstance(body.error(), ResponseFailed)
    assert agent.pool.statistics()[KEY] == (0, 0, 0)


def test_a_close_delimited_body_that_stops_inside_the_member_is_response_failed() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    outcome, server, pump = get(agent, reactor)
    wire = b"HTTP/1.0 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + gzip.compress(TEXT)[:-8]
    answer(server, pump, wire)
    body = Outcome(outcome.result.read())
    server.transport.close()
    pump.flush()
    error = body.error()
    assert isinstance(error, ResponseFailed) and "closed early" in str(error)
    assert agent.pool.statistics()[KEY] == (0, 0, 0)


def test_a_close_delimited_gzip_body_that_is_complete_decodes() -> None:
    reactor = MemoryReactor()
    outcome, server, pump = get(Agent(reactor), reactor)
    answer(server, pump, b"HTTP/1.0 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + gzip.compress(TEXT))
    body = Outcome(outcome.result.read())
    server.transport.close()
    pump.flush()
    assert body.result == TEXT


BOMB = gzip.compress(bytes(10_000_000))


def test_a_decompression_bomb_trips_max_body_size_without_inflating_it_all() -> None:
    assert len(BOMB) < 20_000
    tracemalloc.start()
    try:
        agent, error = body_error(
            chunked(BOMB, "Content-Encoding: gzip"), max_body_size=1_000_000
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert isinstance(error, ResponseTooLarge) and "decoded" in str(error)
    assert peak < 4_000_000  # a little over the limit; 10 MB had it all been inflated
    assert agent.pool.statistics()[KEY] == (0, 0, 0)


def test_max_body_size_counts_decoded_bytes_not_the_announced_length() -> None:
    wire = sized(BOMB, "Content-Encoding: gzip")
    _, response = respond(wire, max_body_size=10_000_000)  # exactly the decoded size
    assert read(response).result == bytes(10_000_000)
    _, error = body_error(wire, max_body_size=9_999_999)
    assert isinstance(error, ResponseTooLarge)


def test_endless_empty_gzip_members_trip_max_body_size_on_encoded_bytes() -> None:
    empty = gzip.compress(b"")
    reactor = MemoryReactor()
    agent = Agent(reactor, max_body_size=1000)
    outcome, server, pump = get(agent, reactor)
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 10000000\r\n\r\n"
    answer(server, pump, head)
    body = Outcome(outcome.result.read())
    for _ in range(5000):
        if body.fired:
            break
        answer(server, pump, empty * 10)
    error = body.error()
    assert isinstance(error, ResponseTooLarge) and "encoded" in str(error)


def test_a_slow_reader_pauses_reading_and_the_decoder_keeps_the_rest() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    outcome, server, pump = get(agent, reactor)
    answer(server, pump, sized(BOMB, "Content-Encoding: gzip"))
    response = outcome.result
    assert not pump.client_transport.is_reading()
    assert response._body._size <= 2 * 65536  # unread decoded bytes stay bounded
    tracemalloc.start()
    try:
        total = 0

        async def consume() -> None:
            nonlocal total
            async for chunk in response.stream():
                total += len(chunk)

        done = Outcome(ensure_deferred(consume()))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert done.fired and done.failure is None and total == 10_000_000
    assert peak < 2_000_000
    assert pump.client_transport.is_reading()
    assert agent.pool.statistics()[KEY] == (1, 1, 0)


def test_a_connection_close_response_decodes_in_full_for_a_reader_that_comes_late() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    outcome, server, pump = get(agent, reactor)
    answer(server, pump, sized(BOMB, "Content-Encoding: gzip", "Connection: close"))
    server.transport.close()  # every byte is in; the decoder holds what is unread
    pump.flush()
    body = Outcome(outcome.result.read())
    pump.flush()
    assert body.result == bytes(10_000_000)
    assert agent.pool.statistics()[KEY] == (0, 0, 0)


def test_closing_a_response_while_the_decoder_holds_input_aborts_the_connection() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    outcome, server, pump = get(agent, reactor)
    answer(server, pump, sized(BOMB, "Content-Encoding: gzip"))
    response = outcome.result
    response.close()
    assert isinstance(Outcome(response.read()).error(), ResponseFailed)
    assert pump.client_transport.is_closing()
    pump.flush()
    assert agent.pool.statistics()[KEY] == (0, 0, 0)


def test_the_connection_is_reused_after_a_decoded_body_and_decodes_again() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    outcome, server, pump = get(agent, reactor)
    answer(server, pump, sized(gzip.compress(b"first"), "Content-Encoding: gzip"))
    assert Outcome(outcome.result.read()).result == b"first"
    second = Outcome(agent.request("GET", "http://example.com/"))
    answer(server, pump, sized(zlib.compress(b"second"), "Content-Encoding: deflate"))
    assert Outcome(second.result.read()).result == b"second"
    assert len(reactor.tcp_clients) == 1


def test_a_stream_reader_that_closes_mid_body_stops_the_decoding() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor)
    outcome, server, pump = get(agent, reactor)
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n"
    answer(server, pump, head % len(BOMB))
    response = outcome.result
    got: list[bytes] = []

    async def first_then_close() -> None:
        async for chunk in response.stream():
            got.append(chunk)
            response.close()

    done = Outcome(ensure_deferred(first_then_close()))
    pump.client.data_received(BOMB)  # the reader waits, so the first piece goes to it
    pump.flush()
    assert isinstance(done.error(), ResponseFailed)
    assert got == [bytes(65536)]
    assert response._body._size == 0 and not response._body._chunks  # nothing decoded after
    assert agent.pool.statistics()[KEY] == (0, 0, 0)
