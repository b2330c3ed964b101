"""Bad input and limits: every case is a RemoteProtocolError with the right status hint."""

from __future__ import annotations

import random

import pytest

from plait.protocols.http.core import (
    CLIENT,
    SERVER,
    Connection,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Headers,
    Limits,
    RemoteProtocolError,
    Request,
    State,
)

from ._helpers import receive

HOST = b"Host: a\r\n"


def post(*fields: bytes, body: bytes = b"") -> bytes:
    return b"POST / HTTP/1.1\r\n" + HOST + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


BAD_REQUESTS = [
    # RFC 9112 section 3: request-line = method SP request-target SP HTTP-version
    pytest.param(b"GET /\r\n" + HOST + b"\r\n", 400, id="no version"),
    pytest.param(b"GET  / HTTP/1.1\r\n" + HOST + b"\r\n", 400, id="two spaces"),
    pytest.param(b"GET\t/ HTTP/1.1\r\n" + HOST + b"\r\n", 400, id="tab separator"),
    pytest.param(b"GET / HTTP/1.1 \r\n" + HOST + b"\r\n", 400, id="trailing space"),
    pytest.param(b"G(T / HTTP/1.1\r\n" + HOST + b"\r\n", 400, id="method not a token"),
    pytest.param(b" / HTTP/1.1\r\n" + HOST + b"\r\n", 400, id="empty method"),
    pytest.param(b"GET /\xff HTTP/1.1\r\n" + HOST + b"\r\n", 400, id="non-ASCII target"),
    pytest.param(b"GET / http/1.1\r\n" + HOST + b"\r\n", 400, id="lower-case version"),
    pytest.param(b"GET / HTTP/1.x\r\n" + HOST + b"\r\n", 400, id="non-digit version"),
    pytest.param(b"GET / HTTP/11\r\n" + HOST + b"\r\n", 400, id="version without dot"),
    pytest.param(b"GET / HTTP/2.0\r\n" + HOST + b"\r\n", 505, id="HTTP/2 over 1.1 framing"),
    # RFC 9112 section 3.2: exactly one Host in HTTP/1.1
    pytest.param(b"GET / HTTP/1.1\r\n\r\n", 400, id="no Host"),
    pytest.param(b"GET / HTTP/1.1\r\n" + HOST + HOST + b"\r\n", 400, id="two Hosts"),
    # RFC 9112 section 5.2: obsolete line folding
    pytest.param(post(b"X: a", b" folded"), 400, id="obs-fold SP"),
    pytest.param(post(b"X: a", b"\tfolded: x"), 400, id="obs-fold HTAB"),
    # RFC 9112 section 5.1 / RFC 9110 section 5.1: field names are tokens, no space
    pytest.param(post(b"X : a"), 400, id="space before colon"),
    pytest.param(post(b"X Y: a"), 400, id="space in name"),
    pytest.param(post(b": a"), 400, id="empty name"),
    pytest.param(post(b"no colon"), 400, id="no colon"),
    pytest.param(post(b"X\x00: a"), 400, id="NUL in name"),
    # RFC 9110 section 5.5: no CTL or NUL in values; RFC 9112 section 2.2: no bare CR
    pytest.param(post(b"X: a\x00b"), 400, id="NUL in value"),
    pytest.param(post(b"X: a\x01b"), 400, id="CTL in value"),
    pytest.param(post(b"X: a\x7fb"), 400, id="DEL in value"),
    pytest.param(post(b"X: a\rb"), 400, id="bare CR in value"),
    pytest.param(post(b"X: a\nY: b"), 400, id="bare LF line end"),
    # RFC 9110 section 8.6, RFC 9112 section 6.3: Content-Length
    pytest.param(post(b"Content-Length: -1"), 400, id="negative length"),
    pytest.param(post(b"Content-Length: +1", body=b"x"), 400, id="signed length"),
    pytest.param(post(b"Content-Length: 1a"), 400, id="non-digit length"),
    pytest.param(post(b"Content-Length: 0x10"), 400, id="hex length"),
    pytest.param(post(b"Content-Length:"), 400, id="empty length"),
    pytest.param(post(b"Content-Length: 1 2"), 400, id="space inside length"),
    pytest.param(post(b"Content-Length: \xd9\xa1"), 400, id="non-ASCII digit"),
    pytest.param(post(b"Content-Length: 1, 2", body=b"xx"), 400, id="list of two lengths"),
    pytest.param(post(b"Content-Length: 1", b"Content-Length: 2", body=b"xx"), 400,
                 id="two different lengths"),
    pytest.param(post(b"Content-Length: 1,", body=b"x"), 400, id="empty list element"),
    # RFC 9112 section 6.3 item 3 and 11.2: both Content-Length and Transfer-Encoding
    pytest.param(post(b"Content-Length: 3", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"),
                 400, id="CL and TE"),
    pytest.param(post(b"Transfer-Encoding: chunked", b"Content-Length: 3", body=b"0\r\n\r\n"),
                 400, id="TE and CL"),
    # RFC 9112 section 6.1, 6.3 item 4, section 7: Transfer-Encoding
    pytest.param(post(b"Transfer-Encoding: gzip"), 400, id="TE not chunked"),
    pytest.param(post(b"Transfer-Encoding: chunked, gzip"), 400, id="chunked not final"),
    pytest.param(post(b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity"), 400,
                 id="chunked not final across fields"),
    pytest.param(post(b"Transfer-Encoding: chunked, chunked"), 400, id="chunked twice"),
    pytest.param(post(b"Transfer-Encoding: xchunked"), 400, id="lookalike coding"),
    pytest.param(post(b"Transfer-Encoding: chunked;q=1"), 400, id="coding with a parameter"),
    pytest.param(post(b"Transfer-Encoding:"), 400, id="empty coding"),
    pytest.param(post(b"Transfer-Encoding: gzip, chunked"), 501, id="unsupported coding"),
    pytest.param(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 400,
                 id="TE in HTTP/1.0"),
    # RFC 9112 section 7.1: chunk-size = 1*HEXDIG, chunk data then CRLF
    pytest.param(post(b"Transfer-Encoding: chunked", body=b"zz\r\n"), 400, id="non-hex size"),
    pytest.param(post(b"Transfer-Encoding: chunked", body=b"+5\r\n"), 400, id="signed size"),
    pytest.param(post(b"Transfer-Encoding: chunked", body=b"1_0\r\n"), 400, id="underscore"),
    pytest.param(post(b"Transfer-Encoding: chunked", body=b" 5\r\n"), 400, id="leading space"),
    pytest.param(post(b"Transfer-Encoding: chunked", body=b"\r\n"), 400, id="empty size"),
    pytest.param(post(b"Transfer-Encoding: chunked", body=b"1" * 17 + b"\r\n"), 400,
                 id="size overflow"),
    pytest.param(post(b"Transfer-Encoding: chunked", body=b"0" * 16 + b"1\r\n"), 400,
                 id="size with many leading zeros"),
    pytest.param(post(b"Transfer-Encoding: chunked", body=b"2\r\nabc\r\n"), 400,
                 id="data longer than size"),
    pytest.param(post(b"Transfer-Encoding: chunked", body=b"2\nab\r\n"), 400,
                 id="bare LF after size"),
    pytest.param(post(b"Transfer-Encoding: chunked", body=b"2;\x00\r\nab\r\n"), 400,
                 id="NUL in extension"),
    pytest.param(post(b"Transfer-Encoding: chunked", body=b"0\r\nX : y\r\n\r\n"), 400,
                 id="bad trailer"),
    pytest.param(b"GARBAGE\r\n\r\n", 400, id="garbage"),
]


@pytest.mark.parametrize("how", ["whole", "bytewise"])
@pytest.mark.parametrize("wire,status", BAD_REQUESTS)
def test_a_bad_request_is_rejected_with_its_status_hint(wire: bytes, status: int, how: str) -> None:
    server = Connection(SERVER)
    with pytest.raises(RemoteProtocolError) as info:
        receive(server, wire, how)
    assert info.value.status_hint == status
    assert server.their_state is State.ERROR


# Limits: RFC 9112 section 3 (414), RFC 6585 section 5 (431), RFC 9110 15.5.14 (413) -----

LIMITS = Limits(max_request_line=40, max_header_bytes=60, max_header_count=3, max_body=10)


def limited() -> Connection:
    return Connection(SERVER, LIMITS)


def test_a_request_line_at_the_limit_is_accepted() -> None:
    line = b"GET /" + b"a" * 26 + b" HTTP/1.1"
    assert len(line) == 40
    assert isinstance(receive(limited(), line + b"\r\n" + HOST + b"\r\n")[0], Request)


@pytest.mark.parametrize("how", ["whole", "bytewise"])
def test_a_long_request_line_is_414_before_its_end_arrives(how: str) -> None:
    server = limited()
    with pytest.raises(RemoteProtocolError) as info:
        receive(server, b"GET /" + b"a" * 40, how)  # no CRLF yet
    assert info.value.status_hint == 414


def test_a_complete_long_request_line_is_414() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        receive(limited(), b"GET /" + b"a" * 40 + b" HTTP/1.1\r\n" + HOST + b"\r\n")
    assert info.value.status_hint == 414


@pytest.mark.parametrize("how", ["whole", "bytewise"])
def test_a_large_header_block_is_431_before_its_end_arrives(how: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        receive(limited(), b"GET / HTTP/1.1\r\n" + HOST + b"X: " + b"v" * 80, how)
    assert info.value.status_hint == 431


def test_a_complete_large_header_block_is_431() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        receive(limited(), b"GET / HTTP/1.1\r\n" + HOST + b"X: " + b"v" * 80 + b"\r\n\r\n")
    assert info.value.status_hint == 431


def test_too_many_header_fields_is_431() -> None:
    wire = b"GET / HTTP/1.1\r\n" + HOST + b"A: 1\r\nB: 2\r\nC: 3\r\n\r\n"
    with pytest.raises(RemoteProtocolError) as info:
        receive(limited(), wire)
    assert info.value.status_hint == 431


def test_a_large_content_length_is_413_before_the_body_arrives() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        receive(limited(), post(b"Content-Length: 11"))
    assert info.value.status_hint == 413


def test_an_absurd_content_length_is_413_without_converting_it() -> None:
    server = Connection(SERVER, Limits(max_header_bytes=100_000))
    with pytest.raises(RemoteProtocolError) as info:
        receive(server, post(b"Content-Length: " + b"9" * 5000))
    assert info.value.status_hint == 413


def test_a_body_at_the_limit_is_accepted() -> None:
    events = receive(limited(), post(b"Content-Length: 10", body=b"0123456789"))
    assert events[1:] == [Data(data=b"0123456789"), EndOfMessage()]


@pytest.mark.parametrize("how", ["whole", "bytewise"])
def test_chunks_adding_up_over_the_limit_are_413_before_their_data_arrives(how: str) -> None:
    wire = post(b"Transfer-Encoding: chunked", body=b"6\r\nabcdef\r\n5\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        receive(limited(), wire, how)
    assert info.value.status_hint == 413


def test_a_long_chunk_size_line_is_rejected() -> None:
    server = Connection(SERVER, Limits(max_chunk_line=8))
    with pytest.raises(RemoteProtocolError):
        receive(server, post(b"Transfer-Encoding: chunked", body=b"1;ext=" + b"x" * 10))


def test_a_large_trailer_block_is_431() -> None:
    with pytest.raises(RemoteProtocolError) as info:
        receive(limited(), post(b"Transfer-Encoding: chunked", body=b"0\r\nX: " + b"v" * 80))
    assert info.value.status_hint == 431


def test_no_body_limit_means_unlimited() -> None:
    server = Connection(SERVER, Limits(max_body=None))
    events = receive(server, post(b"Content-Length: 2000000", body=b"x" * 2_000_000))
    assert sum(len(e.data) for e in events if isinstance(e, Data)) == 2_000_000


# Responses, as a client parses them ---------------------------------------------------


def client_after_get() -> Connection:
    client = Connection(CLIENT)
    client.send(Request(method=b"GET", target=b"/", headers=Headers([("Host", "a")])))
    client.send(EndOfMessage())
    return client


@pytest.mark.parametrize("wire", [
    pytest.param(b"HTTP/1.1 2000 OK\r\n\r\n", id="four-digit status"),
    pytest.param(b"HTTP/1.1 20 OK\r\n\r\n", id="two-digit status"),
    pytest.param(b"HTTP/1.1 099 Low\r\n\r\n", id="status below 100"),
    pytest.param(b"HTTP/1.1\r\n\r\n", id="no status"),
    pytest.param(b"HTTP/1.1 abc OK\r\n\r\n", id="non-digit status"),
    pytest.param(b"HTTX/1.1 200 OK\r\n\r\n", id="bad version"),
    pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                 id="CL and TE"),
    pytest.param(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
                 id="unsupported coding"),
    pytest.param(b"HTTP/1.1 200 OK\r\nX: a\x00\r\n\r\n", id="NUL"),
])
def test_a_bad_response_is_a_remote_error(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        receive(client_after_get(), wire)


def test_a_response_with_a_non_chunked_coding_reads_until_close() -> None:
    events = receive(client_after_get(),
                     b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nzzz", eof=True)
    assert events[1:3] == [Data(data=b"zzz"), EndOfMessage()]


def test_a_response_over_the_body_limit_is_rejected() -> None:
    client = Connection(CLIENT, Limits(max_body=3))
    client.send(Request(method=b"GET", target=b"/", headers=Headers([("Host", "a")])))
    with pytest.raises(RemoteProtocolError):
        receive(client, b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n")


def test_a_response_with_an_empty_reason_parses() -> None:
    events = receive(client_after_get(), b"HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n")
    assert events[0].reason == b""  # type: ignore[union-attr]


# Mutation fuzzing: garbage is a RemoteProtocolError, never a crash -------------------

SEEDS = [
    b"GET / HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n",
    b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"3;e=1\r\nabc\r\n0\r\nT: 1\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
]
ALPHABET = b"\x00\t\n\r :;,-0123456789aAfFzZ\x7f\xff"


def mutate(rng: random.Random, wire: bytes) -> bytes:
    data = bytearray(wire)
    for _ in range(rng.randint(1, 4)):
        i = rng.randrange(len(data) + 1)
        op = rng.randrange(3)
        if op == 0 and i < len(data):
            data[i] = rng.choice(ALPHABET)
        elif op == 1:
            data[i:i] = bytes([rng.choice(ALPHABET)])
        elif i < len(data):
            del data[i]
    return bytes(data)


@pytest.mark.parametrize("seed", range(8))
def test_mutated_requests_parse_or_raise_remote_errors_only(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(150):
        wire = mutate(rng, rng.choice(SEEDS))
        how = rng.choice(["whole", "bytewise", "random0", "random1"])
        server = Connection(SERVER, Limits(max_body=100))
        try:
            events = receive(server, wire + wire, how, eof=rng.random() < 0.5)
        except RemoteProtocolError as exc:
            assert exc.status_hint in (400, 413, 414, 431, 501, 505)
            assert server.their_state is State.ERROR
            continue
        assert all(type(e) in (Request, Data, EndOfMessage, ConnectionClosed) for e in events)


@pytest.mark.parametrize("seed", range(4))
def test_mutated_responses_parse_or_raise_remote_errors_only(seed: int) -> None:
    rng = random.Random(seed)
    responses = [
        b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\nx\r\n0\r\n\r\n",
        b"HTTP/1.0 200 OK\r\n\r\nuntil close",
    ]
    for _ in range(100):
        client = client_after_get()
        try:
            receive(client, mutate(rng, rng.choice(responses)), "random0", eof=True)
        except RemoteProtocolError:
            assert client.their_state is State.ERROR


def test_a_client_accepts_large_bodies_by_default_and_a_server_does_not() -> None:
    assert Connection(CLIENT).limits.max_body is None
    assert Connection(SERVER).limits.max_body == 1 << 20
    client = client_after_get()
    events = receive(client, b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n")
    assert events[0].status_code == 200  # type: ignore[union-attr]


@pytest.mark.parametrize("field", ["max_request_line", "max_header_bytes", "max_header_count",
                                   "max_chunk_line", "max_body"])
def test_limits_refuse_nonsense_values(field: str) -> None:
    with pytest.raises(ValueError):
        Limits(**{field: -1})
