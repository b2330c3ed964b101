"""The opening handshake's pure checks (RFC 6455 section 4), server and client side."""

from __future__ import annotations

import pytest

from plait.protocols.websocket._handshake import parse_extensions
from plait.protocols.websocket.core import (
    HandshakeError,
    accept,
    accept_key,
    check_request,
    check_response,
    new_key,
    request_headers,
)

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="  # RFC 6455 section 1.3


def good_fields(**extra: bytes) -> list[tuple[bytes, bytes]]:
    fields = [
        (b"Host", b"server.example.com"),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"keep-alive, Upgrade"),
        (b"Sec-WebSocket-Key", KEY),
        (b"Sec-WebSocket-Version", b"13"),
    ]
    fields += [(name.replace("_", "-").encode(), value) for name, value in extra.items()]
    return fields


def test_the_rfc_accept_key() -> None:
    assert accept_key(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 section 1.3


def test_new_keys_are_base64_of_16_random_bytes() -> None:
    a, b = new_key(), new_key()
    assert a != b and len(a) == 24


def test_a_valid_request_is_accepted_with_the_rfc_answer() -> None:
    offer = check_request(b"GET", b"1.1", good_fields())
    choice = accept(offer)
    assert dict(choice.headers)[b"Sec-WebSocket-Accept"] == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert choice.subprotocol is None and choice.deflate is None


def test_header_names_and_tokens_are_case_insensitive() -> None:
    fields = [(n.lower(), v.upper() if n == b"Upgrade" else v) for n, v in good_fields()]
    assert check_request(b"GET", b"1.1", fields).key == KEY


def test_the_first_subprotocol_the_client_prefers_is_chosen() -> None:
    offer = check_request(b"GET", b"1.1", good_fields(Sec_WebSocket_Protocol=b"chat.v2, chat.v1"))
    assert accept(offer, subprotocols=["chat.v1", "chat.v2"]).subprotocol == "chat.v2"
    assert accept(offer, subprotocols=["other"]).subprotocol is None


def test_permessage_deflate_is_accepted_from_the_first_acceptable_offer() -> None:
    offer = check_request(
        b"GET", b"1.1",
        good_fields(Sec_WebSocket_Extensions=b"permessage-deflate; server_max_window_bits=8, "
                    b"x-unknown, permessage-deflate; client_max_window_bits"),
    )
    choice = accept(offer)
    assert dict(choice.headers)[b"Sec-WebSocket-Extensions"] == b"permessage-deflate"
    assert choice.deflate is not None
    assert accept(offer, compression=False).deflate is None


@pytest.mark.parametrize(
    ("method", "version", "fields", "status"),
    [
        (b"POST", b"1.1", good_fields(), 400),
        (b"GET", b"1.0", good_fields(), 400),
        (b"GET", b"1.1", [f for f in good_fields() if f[0] != b"Upgrade"], 426),
        (b"GET", b"1.1", [f for f in good_fields() if f[0] != b"Connection"], 426),
        (b"GET", b"1.1", [f for f in good_fields() if f[0] != b"Sec-WebSocket-Key"], 400),
        (b"GET", b"1.1", [*good_fields(), (b"Sec-WebSocket-Key", KEY)], 400),
        (b"GET", b"1.1",
         [(n, b"c2hvcnQ=" if n == b"Sec-WebSocket-Key" else v) for n, v in good_fields()], 400),
        (b"GET", b"1.1",
         [(n, b"!!notbase64!!!!!!!!!!!==" if n == b"Sec-WebSocket-Key" else v)
          for n, v in good_fields()], 400),
        (b"GET", b"1.1",
         [(n, b"8" if n == b"Sec-WebSocket-Version" else v) for n, v in good_fields()], 426),
    ],
)
def test_bad_requests_are_refused_with_a_status(
    method: bytes, version: bytes, fields: list[tuple[bytes, bytes]], status: int
) -> None:
    with pytest.raises(HandshakeError) as info:
        check_request(method, version, fields)
    assert info.value.status == status


def test_a_wrong_version_is_told_which_one_we_speak() -> None:
    fields = [(n, b"8" if n == b"Sec-WebSocket-Version" else v) for n, v in good_fields()]
    with pytest.raises(HandshakeError) as info:
        check_request(b"GET", b"1.1", fields)
    assert (b"Sec-WebSocket-Version", b"13") in info.value.headers  # section 4.4


def test_extension_lists_parse_with_quotes_and_parameters() -> None:
    assert parse_extensions([b'permessage-deflate; client_max_window_bits="10"; x, foo']) == [
        ("permessage-deflate", [("client_max_window_bits", "10"), ("x", None)]),
        ("foo", []),
    ]
    with pytest.raises(HandshakeError):
        parse_extensions([b"; param"])


def response_fields(**extra: bytes) -> list[tuple[bytes, bytes]]:
    fields = [
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Accept", accept_key(KEY)),
    ]
    fields += [(name.replace("_", "-").encode(), value) for name, value in extra.items()]
    return fields


def test_the_client_request_carries_the_handshake_fields() -> None:
    fields = dict(request_headers(KEY, subprotocols=["a", "b"]))
    assert fields[b"Sec-WebSocket-Version"] == b"13"
    assert fields[b"Sec-WebSocket-Protocol"] == b"a, b"
    assert fields[b"Sec-WebSocket-Extensions"].startswith(b"permessage-deflate")


def test_a_valid_response_is_accepted() -> None:
    choice = check_response(
        101,
        response_fields(
            Sec_WebSocket_Protocol=b"b", Sec_WebSocket_Extensions=b"permessage-deflate"
        ),
        KEY, subprotocols=["a", "b"],
    )
    assert choice.subprotocol == "b" and choice.deflate is not None


@pytest.mark.parametrize(
    ("status", "fields", "kwargs"),
    [
        (200, response_fields(), {}),
        (101, [f for f in response_fields() if f[0] != b"Upgrade"], {}),
        (101, [f for f in response_fields() if f[0] != b"Connection"], {}),
        (101, [(n, b"wrong=" if n == b"Sec-WebSocket-Accept" else v)
               for n, v in response_fields()], {}),
        (101, response_fields(Sec_WebSocket_Extensions=b"x-other"), {}),
        (101, response_fields(Sec_WebSocket_Extensions=b"permessage-deflate"),
         {"compression": False}),
        (101, response_fields(Sec_WebSocket_Extensions=b"permessage-deflate, permessage-deflate"),
         {}),
        (101, response_fields(Sec_WebSocket_Extensions=b"permessage-deflate; bogus"), {}),
        (101, response_fields(Sec_WebSocket_Protocol=b"c"), {"subprotocols": ["a"]}),
        (101, response_fields(Sec_WebSocket_Protocol=b"a, a"), {"subprotocols": ["a"]}),
    ],
)
def test_bad_responses_fail_the_client(
    status: int, fields: list[tuple[bytes, bytes]], kwargs: dict[str, object]
) -> None:
    with pytest.raises(HandshakeError):
        check_response(status, fields, KEY, **kwargs)  # type: ignore[arg-type]
