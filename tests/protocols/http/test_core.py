"""The sans-IO HTTP/1.1 connection, fed at every chunking and paired client/server."""

from __future__ import annotations

import doctest

import pytest

from plait.protocols.http import _connection, _headers
from plait.protocols.http.core import (
    CLIENT,
    NEED_DATA,
    PAUSED,
    SERVER,
    Connection,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Headers,
    InformationalResponse,
    Limits,
    LocalProtocolError,
    RemoteProtocolError,
    Request,
    Response,
    State,
)

from ._helpers import CHUNKINGS, ConnectionPair, drain, merge_data, receive

GET = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nUser-Agent: t\r\n\r\n"


def h(*pairs: tuple[str, str]) -> Headers:
    return Headers(pairs)


def server_events(wire: bytes, how: str = "whole", **limits: int) -> list[object]:
    conn = Connection(SERVER, Limits(**limits) if limits else None)
    return list(merge_data(receive(conn, wire, how)))


def test_docstring_examples_hold() -> None:
    for module in (_connection, _headers):
        assert doctest.testmod(module).failed == 0


def test_the_role_must_be_client_or_server() -> None:
    with pytest.raises(ValueError):
        Connection("server")  # type: ignore[arg-type]


# Parsing requests ----------------------------------------------------------------


@pytest.mark.parametrize("how", CHUNKINGS)
def test_a_get_request_parses_the_same_whatever_the_chunking(how: str) -> None:
    events = server_events(GET, how)
    assert len(events) == 2
    request, end = events
    assert isinstance(request, Request)
    assert (request.method, request.target, request.http_version) == (
        b"GET",
        b"/index.html?q=1",
        b"1.1",
    )
    assert request.headers.raw_items() == [(b"Host", b"example.com"), (b"User-Agent", b"t")]
    assert end == EndOfMessage()


@pytest.mark.parametrize("how", CHUNKINGS)
def test_a_content_length_body_arrives_whole_whatever_the_chunking(how: str) -> None:
    wire = b"POST /f HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\nhello world"
    assert server_events(wire, how)[1:] == [Data(data=b"hello world"), EndOfMessage()]


@pytest.mark.parametrize("how", CHUNKINGS)
def test_a_chunked_body_with_extensions_and_trailers_parses(how: str) -> None:
    wire = (
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5;name=value\r\nhello\r\n1 ; x\r\n \r\nA\r\n0123456789\r\n"
        b"0\r\nX-Checksum: abc\r\nX-Other:  2 \r\n\r\n"
    )
    events = server_events(wire, how)
    assert events[1] == Data(data=b"hello 0123456789")
    assert events[2] == EndOfMessage(headers=h(("x-checksum", "abc"), ("x-other", "2")))


def test_empty_lines_before_a_request_line_are_ignored() -> None:
    assert isinstance(server_events(b"\r\n\r\n" + GET)[0], Request)


def test_header_values_lose_surrounding_whitespace_but_keep_inner() -> None:
    wire = b"GET / HTTP/1.1\r\nHost:a\r\nX:  \t a  b \t\r\nEmpty:\r\n\r\n"
    request = server_events(wire)[0]
    assert isinstance(request, Request)
    assert request.headers.get("x") == b"a  b"
    assert request.headers.get("empty") == b""


def test_obs_text_in_a_header_value_is_accepted() -> None:
    request = server_events(b"GET / HTTP/1.1\r\nHost: a\r\nX: caf\xe9\r\n\r\n")[0]
    assert isinstance(request, Request)
    assert request.headers.get("x") == b"caf\xe9"


def test_identical_duplicate_content_lengths_are_accepted() -> None:
    wire = b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nabc"
    assert server_events(wire)[1] == Data(data=b"abc")


def test_transfer_encoding_is_matched_without_regard_to_case() -> None:
    wire = b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n"
    assert server_events(wire)[1] == Data(data=b"x")


# Pipelining, keep-alive and HTTP/1.0 --------------------------------------------------


@pytest.mark.parametrize("how", CHUNKINGS)
def test_pipelined_requests_are_answered_in_order(how: str) -> None:
    second = b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
    third = b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n"
    server = Connection(SERVER)
    events = receive(server, GET + second + third, how)
    targets = []
    for _ in range(3):
        request = events[0]
        assert isinstance(request, Request)
        targets.append(request.target)
        assert events[-1] == EndOfMessage()
        assert server.next_event() in (PAUSED, NEED_DATA)
        out = server.send(Response(status_code=200, headers=h(("Content-Length", "0"))))
        assert out.startswith(b"HTTP/1.1 200 OK\r\n")
        server.send(EndOfMessage())
        server.start_next_cycle()
        events = drain(server)
    assert targets == [b"/index.html?q=1", b"/2", b"/3"]


def test_a_received_request_waits_in_paused_until_the_response_is_sent() -> None:
    server = Connection(SERVER)
    receive(server, GET + GET)
    assert server.next_event() is PAUSED
    with pytest.raises(LocalProtocolError):
        server.start_next_cycle()


def test_http11_keeps_alive_by_default() -> None:
    pair = ConnectionPair()
    pair.send(CLIENT, [Request(method=b"GET", target=b"/", headers=h(("Host", "a"))),
                       EndOfMessage()])
    got = pair.send(SERVER, [Response(status_code=200, headers=h(("Content-Length", "1"))),
                             Data(data=b"x"), EndOfMessage()])
    assert isinstance(got[0], Response)
    assert b"connection" not in got[0].headers
    assert pair.client.states == {CLIENT: State.DONE, SERVER: State.DONE}
    pair.client.start_next_cycle()
    pair.server.start_next_cycle()
    assert pair.server.states == {CLIENT: State.IDLE, SERVER: State.IDLE}


def test_connection_close_from_the_client_closes_after_the_response() -> None:
    server = Connection(SERVER)
    receive(server, b"GET / HTTP/1.1\r\nHost: a\r\nConnection: Close\r\n\r\n")
    out = server.send(Response(status_code=200, headers=h(("Content-Length", "0"))))
    assert b"\r\nConnection: close\r\n" in out
    server.send(EndOfMessage())
    assert server.our_state is State.MUST_CLOSE
    assert not server.keep_alive
    with pytest.raises(LocalProtocolError):
        server.start_next_cycle()


def test_connection_close_from_the_server_app_ends_keep_alive() -> None:
    server = Connection(SERVER)
    receive(server, GET)
    server.send(Response(status_code=200, headers=h(("Connection", "close"),
                                                     ("Content-Length", "0"))))
    assert not server.keep_alive


def test_http10_closes_without_the_keep_alive_header() -> None:
    server = Connection(SERVER)
    receive(server, b"GET / HTTP/1.0\r\n\r\n")
    assert server.their_http_version == b"1.0"
    assert not server.keep_alive
    out = server.send(Response(status_code=200))
    assert out == b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n"  # close-delimited
    assert server.send(Data(data=b"body")) == b"body"
    server.send(EndOfMessage())
    assert server.our_state is State.MUST_CLOSE


def test_http10_keeps_alive_with_the_header_and_gets_it_echoed() -> None:
    server = Connection(SERVER)
    receive(server, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    assert server.keep_alive
    out = server.send(Response(status_code=200, headers=h(("Content-Length", "2"))))
    assert b"\r\nConnection: keep-alive\r\n" in out
    server.send(Data(data=b"ok"))
    server.send(EndOfMessage())
    server.start_next_cycle()


def test_http10_keep_alive_ends_when_the_response_has_no_length() -> None:
    server = Connection(SERVER)
    receive(server, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    out = server.send(Response(status_code=200, headers=h(("Transfer-Encoding", "chunked"))))
    assert b"Transfer-Encoding" not in out and b"Connection: close" in out
    assert not server.keep_alive


def test_a_response_without_length_to_http11_is_chunked() -> None:
    server = Connection(SERVER)
    receive(server, GET)
    out = server.send(Response(status_code=200, headers=h(("Content-Type", "text/plain"))))
    assert b"\r\nTransfer-Encoding: chunked\r\n" in out
    assert server.send(Data(data=b"hello")) == b"5\r\nhello\r\n"
    assert server.send(Data(data=b"")) == b""
    assert server.send(EndOfMessage()) == b"0\r\n\r\n"


# Expect: 100-continue and HEAD -------------------------------------------------------


def test_expect_100_continue_raises_a_flag_until_answered() -> None:
    pair = ConnectionPair()
    request = Request(method=b"PUT", target=b"/", headers=h(
        ("Host", "a"), ("Expect", "100-continue"), ("Content-Length", "3")))
    pair.send(CLIENT, [request])
    assert pair.client.client_is_waiting_for_100_continue
    assert pair.server.they_are_waiting_for_100_continue
    got = pair.send(SERVER, [InformationalResponse(status_code=100)])
    assert got == [InformationalResponse(status_code=100, reason=b"Continue")]
    assert not pair.server.they_are_waiting_for_100_continue
    assert not pair.client.client_is_waiting_for_100_continue
    assert pair.send(CLIENT, [Data(data=b"abc"), EndOfMessage()]) == [
        Data(data=b"abc"), EndOfMessage()]


def test_expect_100_continue_is_ignored_for_http10() -> None:
    server = Connection(SERVER)
    receive(server, b"PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n")
    assert not server.they_are_waiting_for_100_continue


def test_the_client_sending_its_body_clears_the_100_continue_flag() -> None:
    pair = ConnectionPair()
    pair.send(CLIENT, [Request(method=b"PUT", target=b"/", headers=h(
        ("Host", "a"), ("Expect", "100-continue"), ("Content-Length", "1")))])
    pair.send(CLIENT, [Data(data=b"x")])
    assert not pair.server.they_are_waiting_for_100_continue


def test_a_head_response_carries_no_body_even_with_content_length() -> None:
    pair = ConnectionPair()
    pair.send(CLIENT, [Request(method=b"HEAD", target=b"/", headers=h(("Host", "a"))),
                       EndOfMessage()])
    wire = pair.server.send(Response(status_code=200, headers=h(("Content-Length", "5"))))
    assert pair.server.send(Data(data=b"hello")) == b""  # dropped: HEAD
    wire += pair.server.send(EndOfMessage())
    assert wire.endswith(b"Content-Length: 5\r\n\r\n")
    events = receive(pair.client, wire)
    assert [type(e) for e in events] == [Response, EndOfMessage]
    pair.client.start_next_cycle()


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_responses_have_no_body(status: int) -> None:
    pair = ConnectionPair()
    pair.send(CLIENT, [Request(method=b"GET", target=b"/", headers=h(("Host", "a"))),
                       EndOfMessage()])
    got = pair.send(SERVER, [Response(status_code=status), EndOfMessage()])
    assert [type(e) for e in got] == [Response, EndOfMessage]
    assert b"transfer-encoding" not in got[0].headers  # type: ignore[union-attr]
    with pytest.raises(LocalProtocolError):
        Connection(SERVER).send(Data(data=b""))


def test_a_body_on_a_bodiless_request_is_refused() -> None:
    client = Connection(CLIENT)
    client.send(Request(method=b"GET", target=b"/", headers=h(("Host", "a"))))
    with pytest.raises(LocalProtocolError):
        client.send(Data(data=b"x"))


# Round trips through a client/server pair ----------------------------------------------


@pytest.mark.parametrize("how", CHUNKINGS)
@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_round_trip_of_a_request_and_response_with_bodies(how: str, framing: str) -> None:
    pair = ConnectionPair()
    length = ("Content-Length", "10") if framing == "content-length" else (
        "Transfer-Encoding", "chunked")
    request = Request(method=b"POST", target=b"/upload", headers=h(("Host", "a"), length))
    got = pair.send(CLIENT, [request, Data(data=b"01234"), Data(data=b"56789"),
                             EndOfMessage()], how)
    assert got == [request, Data(data=b"0123456789"), EndOfMessage()]
    response = Response(status_code=201, headers=h(length), reason=b"Created")
    got = pair.send(SERVER, [response, Data(data=b"abcdefghij"), EndOfMessage()], how)
    assert got == [response, Data(data=b"abcdefghij"), EndOfMessage()]
    for conn in (pair.client, pair.server):
        conn.start_next_cycle()


@pytest.mark.parametrize("how", CHUNKINGS)
def test_round_trip_of_trailers(how: str) -> None:
    pair = ConnectionPair()
    pair.send(CLIENT, [Request(method=b"GET", target=b"/", headers=h(("Host", "a"))),
                       EndOfMessage()])
    trailers = h(("X-Sum", "42"))
    got = pair.send(SERVER, [Response(status_code=200), Data(data=b"x"),
                             EndOfMessage(headers=trailers)], how)
    assert got[-1] == EndOfMessage(headers=trailers)


@pytest.mark.parametrize("how", CHUNKINGS)
def test_a_response_without_length_reads_until_the_server_closes(how: str) -> None:
    client = Connection(CLIENT)
    client.send(Request(method=b"GET", target=b"/", headers=h(("Host", "a"))))
    client.send(EndOfMessage())
    events = receive(client, b"HTTP/1.0 200 OK\r\n\r\nall of it", how, eof=True)
    assert merge_data(events)[1:] == [Data(data=b"all of it"), EndOfMessage(),
                                      ConnectionClosed()]
    assert not client.keep_alive


def test_a_client_sees_several_informational_responses_before_the_final_one() -> None:
    client = Connection(CLIENT)
    client.send(Request(method=b"GET", target=b"/", headers=h(("Host", "a"))))
    client.send(EndOfMessage())
    events = receive(client, b"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n"
                             b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
    assert [type(e) for e in events] == [InformationalResponse, Response, EndOfMessage]


# Protocol switches ----------------------------------------------------------------------


def test_an_accepted_upgrade_switches_both_sides_and_keeps_trailing_bytes() -> None:
    pair = ConnectionPair()
    request = Request(method=b"GET", target=b"/ws", headers=h(
        ("Host", "a"), ("Connection", "Upgrade"), ("Upgrade", "websocket")))
    wire = pair.client.send(request) + pair.client.send(EndOfMessage())
    assert pair.client.our_state is State.MIGHT_SWITCH_PROTOCOL
    assert receive(pair.server, wire + b"\x81\x00")[0] == request
    assert pair.server.next_event() is PAUSED
    wire = pair.server.send(InformationalResponse(status_code=101, headers=h(
        ("Upgrade", "websocket"), ("Connection", "Upgrade"))))
    assert pair.server.states == {CLIENT: State.SWITCHED_PROTOCOL,
                                  SERVER: State.SWITCHED_PROTOCOL}
    assert pair.server.trailing_data == (b"\x81\x00", False)
    receive(pair.client, wire + b"frames")
    assert pair.client.states[CLIENT] is State.SWITCHED_PROTOCOL
    assert pair.client.trailing_data == (b"frames", False)


def test_a_declined_upgrade_is_an_ordinary_exchange() -> None:
    pair = ConnectionPair()
    pair.send(CLIENT, [Request(method=b"GET", target=b"/", headers=h(
        ("Host", "a"), ("Upgrade", "h2c"))), EndOfMessage()])
    pair.send(SERVER, [Response(status_code=200, headers=h(("Content-Length", "0"))),
                       EndOfMessage()])
    assert pair.client.states == {CLIENT: State.DONE, SERVER: State.DONE}


def test_a_101_without_an_upgrade_request_is_refused() -> None:
    server = Connection(SERVER)
    receive(server, GET)
    with pytest.raises(LocalProtocolError):
        server.send(InformationalResponse(status_code=101))


def test_a_2xx_to_connect_opens_a_tunnel() -> None:
    pair = ConnectionPair()
    pair.send(CLIENT, [Request(method=b"CONNECT", target=b"example.com:443",
                               headers=h(("Host", "example.com:443"))), EndOfMessage()])
    wire = pair.server.send(Response(status_code=200))
    receive(pair.client, wire + b"tls")
    assert pair.client.states[SERVER] is State.SWITCHED_PROTOCOL
    assert pair.client.trailing_data == (b"tls", False)


# End of file -----------------------------------------------------------------------------


def test_a_clean_close_between_requests_is_connection_closed() -> None:
    events = receive(Connection(SERVER), GET, eof=True)
    assert [type(e) for e in events] == [Request, EndOfMessage, ConnectionClosed]


def test_a_close_before_anything_is_connection_closed() -> None:
    server = Connection(SERVER)
    server.receive_data(b"")
    assert server.next_event() == ConnectionClosed()
    assert server.next_event() == ConnectionClosed()
    with pytest.raises(LocalProtocolError):
        server.receive_data(b"late")


@pytest.mark.parametrize("wire", [
    pytest.param(b"GET / HTTP/1.1\r\nHost: a\r\n", id="in the head"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nab", id="in a body"),
    pytest.param(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
                 id="in a chunk"),
])
def test_a_close_mid_message_is_a_remote_error(wire: bytes) -> None:
    with pytest.raises(RemoteProtocolError):
        receive(Connection(SERVER), wire, eof=True)


# Errors and the ERROR state ------------------------------------------------------------


def test_after_a_remote_error_the_core_refuses_to_parse_but_a_server_may_answer() -> None:
    server = Connection(SERVER)
    server.receive_data(b"GARBAGE\r\n\r\n")
    with pytest.raises(RemoteProtocolError) as info:
        server.next_event()
    assert info.value.status_hint == 400
    assert server.their_state is State.ERROR
    with pytest.raises(RemoteProtocolError):
        server.next_event()
    out = server.send(Response(status_code=400, headers=h(("Content-Length", "0"))))
    assert out == b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    server.send(EndOfMessage())
    assert server.our_state is State.MUST_CLOSE


def test_after_a_local_error_the_core_refuses_to_send() -> None:
    server = Connection(SERVER)
    with pytest.raises(LocalProtocolError):
        server.send(Data(data=b"too early"))
    assert server.our_state is State.ERROR
    with pytest.raises(LocalProtocolError):
        server.send(Response(status_code=200))


def test_send_failed_puts_our_side_in_error() -> None:
    client = Connection(CLIENT)
    client.send_failed()
    assert client.our_state is State.ERROR


@pytest.mark.parametrize("event", [
    pytest.param(Response(status_code=200, headers=h(("X", "a\r\nInjected: 1"))), id="CRLF"),
    pytest.param(Response(status_code=200, headers=h(("X", "a\nb"))), id="LF"),
    pytest.param(Response(status_code=200, headers=h(("X", "a\x00b"))), id="NUL"),
    pytest.param(Response(status_code=200, headers=h(("Bad Name", "v"))), id="name"),
    pytest.param(Response(status_code=200, headers=h(("Content-Length", "-1"))), id="length"),
    pytest.param(Response(status_code=99), id="status"),
    pytest.param(InformationalResponse(status_code=200), id="informational status"),
    pytest.param(Request(method=b"GET", target=b"/", headers=h(("Host", "a"))), id="role"),
])
def test_a_server_refuses_to_send_invalid_events(event: Request | Response) -> None:
    server = Connection(SERVER)
    receive(server, GET)
    with pytest.raises(LocalProtocolError):
        server.send(event)


@pytest.mark.parametrize("request_", [
    pytest.param(Request(method=b"GET", target=b"/"), id="no Host"),
    pytest.param(Request(method=b"GET", target=b"/", headers=h(("Host", "a"), ("Host", "b"))),
                 id="two Hosts"),
    pytest.param(Request(method=b"G T", target=b"/", headers=h(("Host", "a"))), id="method"),
    pytest.param(Request(method=b"GET", target=b"/ x", headers=h(("Host", "a"))), id="target"),
    pytest.param(Request(method=b"GET", target=b"/", headers=h(("Host", "a")),
                         http_version=b"2.0"), id="version"),
    pytest.param(Request(method=b"GET", target=b"/", headers=h(
        ("Host", "a"), ("Transfer-Encoding", "gzip"))), id="coding"),
    pytest.param(Request(method=b"GET", target=b"/", headers=h(
        ("Host", "a"), ("Transfer-Encoding", "chunked"), ("Content-Length", "1"))), id="both"),
    pytest.param(Response(status_code=200), id="role"),
])
def test_a_client_refuses_to_send_invalid_requests(request_: Request | Response) -> None:
    with pytest.raises(LocalProtocolError):
        Connection(CLIENT).send(request_)


def test_a_content_length_body_must_match_its_length() -> None:
    server = Connection(SERVER)
    receive(server, GET)
    server.send(Response(status_code=200, headers=h(("Content-Length", "3"))))
    with pytest.raises(LocalProtocolError):
        server.send(Data(data=b"four"))
    server = Connection(SERVER)
    receive(server, GET)
    server.send(Response(status_code=200, headers=h(("Content-Length", "3"))))
    server.send(Data(data=b"ab"))
    with pytest.raises(LocalProtocolError):
        server.send(EndOfMessage())


def test_trailers_need_a_chunked_body() -> None:
    server = Connection(SERVER)
    receive(server, GET)
    server.send(Response(status_code=200, headers=h(("Content-Length", "0"))))
    with pytest.raises(LocalProtocolError):
        server.send(EndOfMessage(headers=h(("X", "1"))))


def test_a_101_from_a_server_that_was_not_asked_is_a_remote_error() -> None:
    client = Connection(CLIENT)
    client.send(Request(method=b"GET", target=b"/", headers=h(("Host", "a"))))
    client.receive_data(b"HTTP/1.1 101 Switching Protocols\r\n\r\n")
    with pytest.raises(RemoteProtocolError):
        client.next_event()


def test_a_client_must_close_after_a_response_with_connection_close() -> None:
    client = Connection(CLIENT)
    client.send(Request(method=b"GET", target=b"/", headers=h(("Host", "a"))))
    client.send(EndOfMessage())
    receive(client, b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
    assert client.states == {CLIENT: State.MUST_CLOSE, SERVER: State.MUST_CLOSE}


def test_a_client_keeps_an_http10_server_alive_only_with_the_header() -> None:
    for header, alive in ((b"Connection: keep-alive\r\n", True), (b"", False)):
        client = Connection(CLIENT)
        client.send(Request(method=b"GET", target=b"/", headers=h(
            ("Host", "a"), ("Connection", "keep-alive"))))
        client.send(EndOfMessage())
        receive(client, b"HTTP/1.0 200 OK\r\n" + header + b"Content-Length: 0\r\n\r\n")
        assert client.keep_alive is alive


def test_an_http10_client_request_without_keep_alive_closes() -> None:
    client = Connection(CLIENT)
    client.send(Request(method=b"GET", target=b"/", http_version=b"1.0"))
    assert not client.keep_alive


def test_a_response_with_both_lengths_to_http11_drops_content_length() -> None:
    server = Connection(SERVER)
    receive(server, GET)
    out = server.send(Response(status_code=200, headers=h(
        ("Content-Length", "3"), ("Transfer-Encoding", "chunked"))))
    assert b"Content-Length" not in out and b"Transfer-Encoding: chunked" in out


def test_a_response_with_both_lengths_to_http10_keeps_content_length() -> None:
    server = Connection(SERVER)
    receive(server, b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    out = server.send(Response(status_code=200, headers=h(
        ("Content-Length", "3"), ("Transfer-Encoding", "chunked"))))
    assert b"Transfer-Encoding" not in out and b"Content-Length: 3" in out
    assert server.send(Data(data=b"abc")) == b"abc"
    server.send(EndOfMessage())
    assert server.keep_alive


def test_a_server_refuses_to_send_a_transfer_coding_other_than_chunked() -> None:
    server = Connection(SERVER)
    receive(server, GET)
    with pytest.raises(LocalProtocolError):
        server.send(Response(status_code=200, headers=h(("Transfer-Encoding", "gzip, chunked"))))


def test_an_answer_to_a_request_whose_body_was_bad_closes_the_connection() -> None:
    server = Connection(SERVER)
    server.receive_data(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
    assert isinstance(server.next_event(), Request)
    with pytest.raises(RemoteProtocolError):
        server.next_event()
    out = server.send(Response(status_code=400, headers=h(("Content-Length", "0"))))
    assert b"Connection: close" in out
