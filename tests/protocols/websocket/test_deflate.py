"""permessage-deflate (RFC 7692): negotiation, the codec, and compressed messages end to end."""

from __future__ import annotations

import zlib

import pytest

from plait.protocols.websocket._deflate import (
    accept_offer,
    client_offer,
    parse_response,
)
from plait.protocols.websocket.core import (
    CLIENT,
    SERVER,
    BytesMessage,
    Connection,
    DeflateCodec,
    DeflateParams,
    NegotiationError,
    Opcode,
    RemoteProtocolError,
    TextMessage,
)

from ._helpers import CHUNKINGS, client_frame, feed


def pair(**server: bool) -> tuple[Connection, Connection]:
    _, server_params = accept_offer([("client_max_window_bits", None)], **server)
    return (
        Connection(CLIENT, deflate=parse_response([])),
        Connection(SERVER, deflate=server_params),
    )


def test_rfc_example_compressed_hello() -> None:
    # RFC 7692 section 7.2.3.1: "Hello" compressed is c1 07 f2 48 cd c9 c9 07 00.
    codec = DeflateCodec(DeflateParams())
    assert codec.compress(b"Hello") == bytes.fromhex("f248cdc9c90700")
    assert DeflateCodec(DeflateParams()).decompress(
        bytes.fromhex("f248cdc9c90700"), 100, final=True
    ) == b"Hello"


def test_the_rfc_example_decompresses_from_the_wire() -> None:
    server = Connection(SERVER, deflate=DeflateParams())
    wire = client_frame(Opcode.TEXT, bytes.fromhex("f248cdc9c90700"), rsv1=True)
    assert feed(server, wire) == [TextMessage(data="Hello")]


@pytest.mark.parametrize("how", CHUNKINGS)
def test_compressed_messages_round_trip_at_every_chunking(how: str) -> None:
    client, server = pair()
    messages = ["hello " * 50, "", "é" * 10, "hello " * 50]
    wire = b"".join(client.send(TextMessage(data=m)) for m in messages)
    wire += client.send(BytesMessage(data=bytes(5000)), fragment_size=7)
    assert feed(server, wire, how) == [TextMessage(data=m) for m in messages] + [
        BytesMessage(data=bytes(5000))
    ]


def test_context_takeover_makes_repeats_smaller() -> None:
    client, _ = pair()
    first = client.send(TextMessage(data="a fairly long repeated sentence " * 4))
    second = client.send(TextMessage(data="a fairly long repeated sentence " * 4))
    assert len(second) < len(first)


def test_no_context_takeover_compresses_each_message_alone() -> None:
    _, server = pair(server_no_context_takeover=True)
    client = Connection(CLIENT, deflate=DeflateParams())
    first = server.send(TextMessage(data="a fairly long repeated sentence " * 4))
    second = server.send(TextMessage(data="a fairly long repeated sentence " * 4))
    assert first == second
    assert feed(client, first + second) == [
        TextMessage(data="a fairly long repeated sentence " * 4)
    ] * 2


def test_a_decompression_bomb_is_refused_as_it_inflates() -> None:
    server = Connection(SERVER, deflate=DeflateParams(), max_message_size=10_000)
    bomb = DeflateCodec(DeflateParams()).compress(bytes(10_000_000))
    assert len(bomb) < 20_000
    with pytest.raises(RemoteProtocolError) as info:
        feed(server, client_frame(Opcode.BINARY, bomb, rsv1=True))
    assert info.value.code == 1009


def test_corrupt_compressed_data_is_1007() -> None:
    server = Connection(SERVER, deflate=DeflateParams())
    with pytest.raises(RemoteProtocolError) as info:
        feed(server, client_frame(Opcode.BINARY, b"\xff\xff\xff\xff", rsv1=True))
    assert info.value.code == 1007


def test_rsv1_on_a_continuation_frame_is_refused() -> None:
    server = Connection(SERVER, deflate=DeflateParams())
    wire = client_frame(Opcode.TEXT, b"", fin=False, rsv1=True)
    wire += client_frame(Opcode.CONTINUATION, b"", rsv1=True)
    with pytest.raises(RemoteProtocolError) as info:
        feed(server, wire)
    assert info.value.code == 1002  # RFC 7692 section 6.1


def test_an_uncompressed_message_may_follow_on_a_deflate_connection() -> None:
    server = Connection(SERVER, deflate=DeflateParams())
    assert feed(server, client_frame(Opcode.TEXT, b"plain")) == [TextMessage(data="plain")]


def test_the_client_offer_names_the_extension() -> None:
    assert client_offer() == "permessage-deflate; client_max_window_bits"
    assert client_offer(client_no_context_takeover=True).endswith("client_no_context_takeover")


def test_a_server_echoes_what_the_offer_asks() -> None:
    text, params = accept_offer(
        [("server_no_context_takeover", None), ("client_no_context_takeover", None),
         ("server_max_window_bits", "10")]
    )
    assert text == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover;"
        " server_max_window_bits=10"
    )
    assert params.reset_compressor and params.compress_bits == 10


def test_a_smaller_server_window_compresses_with_that_window() -> None:
    _, params = accept_offer([("server_max_window_bits", "9")])
    data = DeflateCodec(params).compress(bytes(range(256)) * 40)
    out = zlib.decompressobj(-9).decompress(data + b"\x00\x00\xff\xff")
    assert out == bytes(range(256)) * 40


@pytest.mark.parametrize(
    "params",
    [
        [("server_max_window_bits", "8")],  # zlib cannot compress with 8 bits
        [("server_max_window_bits", "16")],
        [("server_max_window_bits", "07")],
        [("server_max_window_bits", None)],
        [("client_max_window_bits", "x")],
        [("server_no_context_takeover", "1")],
        [("server_no_context_takeover", None), ("server_no_context_takeover", None)],
        [("unknown", None)],
    ],
)
def test_a_server_declines_offers_it_cannot_accept(params: list[tuple[str, str | None]]) -> None:
    with pytest.raises(NegotiationError):
        accept_offer(params)


def test_a_client_follows_the_servers_response() -> None:
    params = parse_response(
        [("client_max_window_bits", "12"), ("client_no_context_takeover", None)]
    )
    assert params.compress_bits == 12 and params.reset_compressor


@pytest.mark.parametrize(
    "params",
    [
        [("client_max_window_bits", "8")],
        [("server_max_window_bits", "20")],
        [("mystery", None)],
    ],
)
def test_a_client_refuses_a_bad_response(params: list[tuple[str, str | None]]) -> None:
    with pytest.raises(NegotiationError):
        parse_response(params)
