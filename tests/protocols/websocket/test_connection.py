"""The sans-IO WebSocket connection: a client core paired with a server core, every chunking,
the closing handshake, and every kind of bad input with its close code."""

from __future__ import annotations

from typing import Any

import pytest

from plait.protocols.websocket.core import (
    CLIENT,
    SERVER,
    BytesMessage,
    CloseConnection,
    Connection,
    Event,
    LocalProtocolError,
    Opcode,
    Ping,
    Pong,
    RemoteProtocolError,
    State,
    TextMessage,
    valid_close_code,
)

from ._helpers import CHUNKINGS, MASK, client_frame, feed, server_frame


def fixed_mask() -> bytes:
    return MASK


def make_pair(**kwargs: Any) -> tuple[Connection, Connection]:
    return (
        Connection(CLIENT, mask_source=fixed_mask, **kwargs),
        Connection(SERVER, **kwargs),
    )


@pytest.mark.parametrize("how", CHUNKINGS)
def test_client_to_server_messages_at_every_chunking(how: str) -> None:
    client, server = make_pair()
    events: list[Event] = [
        TextMessage(data="hello"),
        BytesMessage(data=b"\x00\xff" * 100),
        Ping(payload=b"are you there"),
        TextMessage(data="😀 multi-byte " * 20),
        Pong(payload=b""),
        TextMessage(data=""),
        BytesMessage(data=bytes(70000)),
    ]
    wire = b"".join(client.send(e) for e in events)
    assert feed(server, wire, how) == events


@pytest.mark.parametrize("how", CHUNKINGS)
def test_server_to_client_messages_at_every_chunking(how: str) -> None:
    client, server = make_pair()
    events: list[Event] = [
        TextMessage(data="é" * 500), BytesMessage(data=b"abc"), Ping(payload=b"x")
    ]
    wire = b"".join(server.send(e) for e in events)
    assert feed(client, wire, how) == events


@pytest.mark.parametrize("how", CHUNKINGS)
def test_fragmented_messages_reassemble_at_every_chunking(how: str) -> None:
    client, server = make_pair()
    text = "fragments of ✓ text " * 10
    wire = client.send(TextMessage(data=text), fragment_size=3)
    wire += client.send(BytesMessage(data=bytes(range(100))), fragment_size=9)
    assert feed(server, wire, how) == [TextMessage(data=text), BytesMessage(data=bytes(range(100)))]


def test_control_frames_may_come_between_fragments() -> None:
    server = Connection(SERVER)
    wire = (
        client_frame(Opcode.TEXT, b"hel", fin=False)
        + client_frame(Opcode.PING, b"1")
        + client_frame(Opcode.CONTINUATION, b"lo", fin=False)
        + client_frame(Opcode.PONG, b"2")
        + client_frame(Opcode.CONTINUATION, b"!")
    )
    assert feed(server, wire) == [
        Ping(payload=b"1"), Pong(payload=b"2"), TextMessage(data="hello!")
    ]


def test_a_ping_answer_echoes_its_payload() -> None:
    assert Ping(payload=b"abc").response() == Pong(payload=b"abc")


def test_client_frames_are_masked_and_server_frames_are_not() -> None:
    client, server = make_pair()
    assert client.send(TextMessage(data="Hello")) == bytes.fromhex("818537fa213d7f9f4d5158")
    assert server.send(TextMessage(data="Hello")) == bytes.fromhex("810548656c6c6f")


# -- the closing handshake --------------------------------------------------------------


def test_a_closing_handshake_started_by_the_client() -> None:
    client, server = make_pair()
    [event] = feed(server, client.send(CloseConnection(code=1001, reason="going")))
    assert event == CloseConnection(code=1001, reason="going")
    assert isinstance(event, CloseConnection)
    assert (client.state, server.state) == (State.LOCAL_CLOSING, State.REMOTE_CLOSING)
    assert feed(client, server.send(event.response())) == [CloseConnection(code=1001)]
    assert (client.state, server.state) == (State.CLOSED, State.CLOSED)


def test_a_closing_handshake_started_by_the_server() -> None:
    client, server = make_pair()
    [event] = feed(client, server.send(CloseConnection(code=1000)))
    assert isinstance(event, CloseConnection)
    assert feed(server, client.send(event.response())) == [CloseConnection(code=1000)]
    assert client.state is State.CLOSED and server.state is State.CLOSED


def test_messages_still_arrive_while_our_close_is_in_flight() -> None:
    client, server = make_pair()
    server.send(CloseConnection(code=1000))
    assert feed(server, client.send(TextMessage(data="late"))) == [TextMessage(data="late")]


def test_a_close_without_a_code_reports_1005_and_is_echoed_empty() -> None:
    server = Connection(SERVER)
    [event] = feed(server, client_frame(Opcode.CLOSE, b""))
    assert isinstance(event, CloseConnection) and event.code == 1005
    assert server.send(event.response()) == bytes((0x88, 0x00))


def test_bytes_after_the_peers_close_frame_are_ignored() -> None:
    server = Connection(SERVER)
    wire = client_frame(Opcode.CLOSE, b"\x03\xe8") + client_frame(Opcode.TEXT, b"after")
    assert feed(server, wire) == [CloseConnection(code=1000)]
    assert server.receive_data(client_frame(Opcode.TEXT, b"more")) == []


def test_a_dropped_connection_reports_1006() -> None:
    server = Connection(SERVER)
    assert server.receive_data(b"") == [CloseConnection(code=1006)]
    assert server.state is State.CLOSED


def test_nothing_but_control_frames_after_our_close() -> None:
    client, _ = make_pair()
    client.send(CloseConnection())
    with pytest.raises(LocalProtocolError):
        client.send(TextMessage(data="no"))
    with pytest.raises(LocalProtocolError):
        client.send(CloseConnection())


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_codes_that_may_not_be_sent_are_refused_locally(code: int) -> None:
    if code == 1005:
        assert Connection(SERVER).send(CloseConnection(code=1005)) == bytes((0x88, 0))
        return
    with pytest.raises(LocalProtocolError):
        Connection(SERVER).send(CloseConnection(code=code))


def test_a_too_long_close_reason_is_refused_locally() -> None:
    with pytest.raises(LocalProtocolError):
        Connection(SERVER).send(CloseConnection(code=1000, reason="x" * 124))


def test_a_too_long_ping_is_refused_locally() -> None:
    with pytest.raises(LocalProtocolError):
        Connection(SERVER).send(Ping(payload=bytes(126)))


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1012, 1014, 3000, 4999])
def test_valid_close_codes(code: int) -> None:
    assert valid_close_code(code)


# -- bad input: each fails the connection with its code -----------------------------------


def failure(conn: Connection, wire: bytes, how: str = "whole") -> RemoteProtocolError:
    with pytest.raises(RemoteProtocolError) as info:
        feed(conn, wire, how)
    assert conn.state is State.ERROR
    return info.value


def close_code_of(data: bytes) -> int:
    # An unmasked server close frame: 0x88, length, code.
    assert data[0] == 0x88
    return int.from_bytes(data[2:4], "big")


def test_an_unmasked_client_frame_fails_with_1002() -> None:
    exc = failure(Connection(SERVER), server_frame(Opcode.TEXT, b"hi"))
    assert exc.code == 1002 and close_code_of(exc.data_to_send) == 1002


def test_a_masked_server_frame_fails_the_client_with_1002() -> None:
    client = Connection(CLIENT, mask_source=fixed_mask)
    exc = failure(client, client_frame(Opcode.TEXT, b"hi"))
    assert exc.code == 1002
    assert exc.data_to_send[:2] == bytes((0x88, 0x82))  # the client's close is masked


@pytest.mark.parametrize("how", CHUNKINGS)
def test_bad_utf8_in_a_text_frame_fails_with_1007(how: str) -> None:
    exc = failure(Connection(SERVER), client_frame(Opcode.TEXT, b"ok \xff"), how)
    assert exc.code == 1007 and close_code_of(exc.data_to_send) == 1007


@pytest.mark.parametrize("how", CHUNKINGS)
def test_utf8_split_across_fragments_is_valid(how: str) -> None:
    euro = "€".encode()
    wire = client_frame(Opcode.TEXT, euro[:1], fin=False) + client_frame(
        Opcode.CONTINUATION, euro[1:]
    )
    assert feed(Connection(SERVER), wire, how) == [TextMessage(data="€")]


def test_bad_utf8_split_across_fragments_fails_with_1007_at_the_bad_fragment() -> None:
    server = Connection(SERVER)
    assert server.receive_data(client_frame(Opcode.TEXT, b"\xe2\x82", fin=False)) == []
    exc = failure(server, client_frame(Opcode.CONTINUATION, b"\x28", fin=False))
    assert exc.code == 1007  # the message has not ended: failed fast


def test_a_truncated_utf8_sequence_at_the_end_of_a_message_fails_with_1007() -> None:
    wire = client_frame(Opcode.TEXT, b"\xe2", fin=False) + client_frame(Opcode.CONTINUATION, b"")
    assert failure(Connection(SERVER), wire).code == 1007


def test_an_oversized_message_fails_with_1009() -> None:
    exc = failure(Connection(SERVER, max_message_size=100), client_frame(Opcode.TEXT, bytes(101)))
    assert exc.code == 1009 and close_code_of(exc.data_to_send) == 1009


def test_an_oversized_fragmented_message_fails_with_1009_as_it_grows() -> None:
    server = Connection(SERVER, max_message_size=100)
    assert server.receive_data(client_frame(Opcode.BINARY, bytes(60), fin=False)) == []
    exc = failure(server, client_frame(Opcode.CONTINUATION, bytes(60), fin=False))
    assert exc.code == 1009


def test_a_message_of_exactly_the_limit_is_accepted() -> None:
    server = Connection(SERVER, max_message_size=100)
    wire = client_frame(Opcode.BINARY, bytes(50), fin=False) + client_frame(
        Opcode.CONTINUATION, bytes(50)
    )
    assert feed(server, wire) == [BytesMessage(data=bytes(100))]


def test_reserved_bits_without_an_extension_fail_with_1002() -> None:
    wire = bytearray(client_frame(Opcode.TEXT, b"x"))
    wire[0] |= 0x40
    assert failure(Connection(SERVER), bytes(wire)).code == 1002


def test_a_control_frame_over_125_bytes_fails_with_1002() -> None:
    assert failure(Connection(SERVER), client_frame(Opcode.PING, bytes(126))).code == 1002


def test_a_fragmented_control_frame_fails_with_1002() -> None:
    assert failure(Connection(SERVER), client_frame(Opcode.PING, b"", fin=False)).code == 1002


def test_an_unknown_opcode_fails_with_1002() -> None:
    assert failure(Connection(SERVER), client_frame(0x3, b"")).code == 1002


def test_a_continuation_without_a_start_fails_with_1002() -> None:
    assert failure(Connection(SERVER), client_frame(Opcode.CONTINUATION, b"x")).code == 1002


def test_a_new_message_inside_a_fragmented_one_fails_with_1002() -> None:
    wire = client_frame(Opcode.TEXT, b"a", fin=False) + client_frame(Opcode.BINARY, b"b")
    assert failure(Connection(SERVER), wire).code == 1002


@pytest.mark.parametrize("code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2000, 2999, 5000, 65535])
def test_an_invalid_close_code_fails_with_1002(code: int) -> None:
    exc = failure(Connection(SERVER), client_frame(Opcode.CLOSE, code.to_bytes(2, "big")))
    assert exc.code == 1002


def test_a_one_byte_close_payload_fails_with_1002() -> None:
    assert failure(Connection(SERVER), client_frame(Opcode.CLOSE, b"\x03")).code == 1002


def test_a_close_reason_that_is_not_utf8_fails_with_1007() -> None:
    assert failure(Connection(SERVER), client_frame(Opcode.CLOSE, b"\x03\xe8\xff")).code == 1007


def test_a_failure_after_our_close_sends_no_second_close() -> None:
    server = Connection(SERVER)
    server.send(CloseConnection())
    assert failure(server, server_frame(Opcode.TEXT, b"unmasked")).data_to_send == b""


def test_a_failed_connection_refuses_further_use() -> None:
    server = Connection(SERVER)
    failure(server, client_frame(0x3, b""))
    with pytest.raises(LocalProtocolError):
        server.receive_data(client_frame(Opcode.TEXT, b"x"))
    with pytest.raises(LocalProtocolError):
        server.send(TextMessage(data="x"))


def test_bad_constructor_arguments_are_refused() -> None:
    with pytest.raises(ValueError):
        Connection("server")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Connection(SERVER, max_message_size=0)


@pytest.mark.parametrize("role", [CLIENT, SERVER])
@pytest.mark.parametrize("fragment_size", [None, 1, 100, 5000])
@pytest.mark.parametrize(
    ("data", "event"),
    [
        ("héllo " * 50, TextMessage(data="héllo " * 50)),
        (b"\x00\xff" * 300, BytesMessage(data=b"\x00\xff" * 300)),
        (bytearray(b"abc"), BytesMessage(data=b"abc")),
        (memoryview(b"xyz" * 200), BytesMessage(data=b"xyz" * 200)),
        ("", TextMessage(data="")),
    ],
)
def test_send_data_gives_the_bytes_of_send_with_the_event(
    role: Any, fragment_size: int | None, data: Any, event: Any
) -> None:
    a = Connection(role, mask_source=fixed_mask)
    b = Connection(role, mask_source=fixed_mask)
    wire = a.send_data(data, fragment_size=fragment_size)
    assert wire == b.send(event, fragment_size=fragment_size)
    peer = Connection(SERVER if role is CLIENT else CLIENT)
    assert feed(peer, wire, "random1") == [event]


def test_send_data_refuses_what_is_not_a_message_and_closed_states() -> None:
    server = Connection(SERVER)
    with pytest.raises(TypeError):
        server.send_data(42)  # type: ignore[arg-type]
    server.send(CloseConnection(code=1000))
    with pytest.raises(LocalProtocolError):
        server.send_data(b"late")
    with pytest.raises(TypeError):
        server.send_data(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("how", CHUNKINGS)
@pytest.mark.parametrize("opcode", [Opcode.TEXT, Opcode.BINARY])
def test_large_fragments_crossing_read_boundaries_reassemble(how: str, opcode: int) -> None:
    # Fragments big enough for the table unmasking, fed in pieces that end inside
    # headers, masks and payloads, with a ping between two of them.
    text = "ünïcode " * 150  # multi-byte characters fall across fragment ends
    data = text.encode() if opcode == Opcode.TEXT else bytes(range(256)) * 5
    parts = [data[:700], data[700:701], data[701:]]
    wire = (
        client_frame(opcode, parts[0], fin=False)
        + client_frame(Opcode.PING, b"mid")
        + client_frame(Opcode.CONTINUATION, parts[1], fin=False)
        + client_frame(Opcode.CONTINUATION, parts[2])
        + client_frame(Opcode.BINARY, bytes(600))
    )
    expected = TextMessage(data=text) if opcode == Opcode.TEXT else BytesMessage(data=data)
    assert feed(Connection(SERVER), wire, how) == [
        Ping(payload=b"mid"),
        expected,
        BytesMessage(data=bytes(600)),
    ]


def test_an_uncompressed_frame_over_the_limit_fails_with_1009_under_deflate() -> None:
    # With deflate the reader allows some slack for compressed frames; a plain frame
    # over the message limit is still refused.
    from plait.protocols.websocket.core import DeflateParams

    server = Connection(SERVER, deflate=DeflateParams(), max_message_size=100)
    assert feed(server, client_frame(Opcode.BINARY, bytes(100))) == [
        BytesMessage(data=bytes(100))
    ]
    exc = failure(server, client_frame(Opcode.BINARY, bytes(101)))
    assert exc.code == 1009 and close_code_of(exc.data_to_send) == 1009
    text_server = Connection(SERVER, deflate=DeflateParams(), max_message_size=100)
    assert failure(text_server, client_frame(Opcode.TEXT, bytes(101))).code == 1009
