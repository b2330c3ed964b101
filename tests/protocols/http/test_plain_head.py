"""The server's plain-head parser agrees with the full parser on every head it takes.

``parse_plain_request_head`` may decline any head (the full parser then decides),
but a head it accepts must be one ``parse_request_head`` accepts with the same
request line, the same framing facts and the same fields.
"""

from __future__ import annotations

import random

import pytest

from plait.protocols.http._errors import RemoteProtocolError
from plait.protocols.http._events import Request
from plait.protocols.http._readers import (
    Framing,
    Limits,
    parse_plain_request_head,
    parse_request_head,
    plain_head_fields,
)

LIMITS = Limits()

PLAIN = [
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:8080",
    b"GET /a?b=c HTTP/1.0",
    b"HEAD /x HTTP/1.1\r\nhost: h\r\nAccept: */*\r\nX-Empty:\r\nX-Ows: \t v \t",
    b"GET / HTTP/1.0\r\nConnection: Keep-Alive",
    b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close",
    b"GET / HTTP/1.1\r\nHost: h\r\nConnection: foo, CLOSE ,bar\r\nConnection: keep-alive",
    b"OPTIONS * HTTP/1.1\r\nHost: h\r\nX-Obs-Text: caf\xc3\xa9",
    b"GET / HTTP/1.1\r\nHost: h\r\nX-Connection: close\r\nX-Host: other",
    b"GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: Connection: close",
]

DECLINED = [
    # Fine heads that carry framing the core must handle.
    b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 0",
    b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked",
    b"GET / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue",
    b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: upgrade",
    b"GET / HTTP/1.1",  # no Host: the core answers 400
    b"GET / HTTP/1.1\r\nHost: a\r\nHost: b",  # two Hosts: 400
    b"GET / HTTP/1.2\r\nHost: h",  # a minor version the fast path leaves alone
    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443",  # a switch proposal
    # Bad heads: the full parser raises.
    b"GET  / HTTP/1.1\r\nHost: h",
    b"GET / HTTP/1.1 \r\nHost: h",
    b"G(T / HTTP/1.1\r\nHost: h",
    b"GET /\xff HTTP/1.1\r\nHost: h",
    b"GET / HTTP/2.0\r\nHost: h",
    b"GET / HTTP/1.1\r\nHost : h",
    b"GET / HTTP/1.1\r\nHost: h\r\n folded",
    b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b",
    b"GET / HTTP/1.1\r\nHost: h\nX: bare-lf",
    b"GET / HTTP/1.1\r\nHost: h\rX: bare-cr",
    b"GET / HTTP/1.1\r\nno colon",
    b"GET / HTTP/1.1\r\n: empty name",
]


def full(head: bytes) -> tuple[Request, Framing] | None:
    try:
        return parse_request_head(head, LIMITS)
    except RemoteProtocolError:
        return None


def assert_agrees(head: bytes, limits: Limits = LIMITS) -> bool:
    plain = parse_plain_request_head(head, limits)
    if plain is None:
        return False
    reference = full(head)
    assert reference is not None, head
    event, framing = reference
    version = event.http_version
    assert plain == (event.method, event.target, version, framing.close, framing.keep_alive)
    assert framing.content_length is None and framing.transfer_codings is None
    assert not framing.expect_continue and not framing.upgrade
    assert framing.host_count == 1 or version == b"1.0"
    fields = plain_head_fields(head)
    assert fields == event.headers
    assert fields.raw_items() == event.headers.raw_items()
    return True


@pytest.mark.parametrize("head", PLAIN)
def test_a_plain_head_parses_as_the_full_parser_parses_it(head: bytes) -> None:
    assert assert_agrees(head)


@pytest.mark.parametrize("head", DECLINED)
def test_a_head_with_framing_or_an_error_is_left_to_the_full_parser(head: bytes) -> None:
    assert parse_plain_request_head(head, LIMITS) is None


def test_more_fields_than_the_limit_are_left_to_the_full_parser() -> None:
    head = b"GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2"
    assert parse_plain_request_head(head, Limits(max_header_count=3)) is not None
    assert parse_plain_request_head(head, Limits(max_header_count=2)) is None
    with pytest.raises(RemoteProtocolError) as info:
        parse_request_head(head, Limits(max_header_count=2))
    assert info.value.status_hint == 431


_ALPHABET = b"GET /HTTP1.0\r\n:; \t,hostconnectiolsekp-avx\x00\x7f\xc3\xa9Hc"


@pytest.mark.parametrize("seed", range(4))
def test_random_heads_are_either_declined_or_parsed_alike(seed: int) -> None:
    rng = random.Random(seed)
    accepted = 0
    for _ in range(3000):
        head = bytearray(rng.choice(PLAIN + DECLINED))
        for _ in range(rng.randint(1, 3)):  # mutate: replace, insert or delete bytes
            i = rng.randrange(len(head) + 1)
            op = rng.random()
            if op < 0.4 and i < len(head):
                head[i] = rng.choice(_ALPHABET)
            elif op < 0.8:
                head[i:i] = bytes([rng.choice(_ALPHABET)])
            elif i < len(head):
                del head[i]
        accepted += assert_agrees(bytes(head))
    assert accepted > 300  # the mutations left plenty of heads the fast path takes
