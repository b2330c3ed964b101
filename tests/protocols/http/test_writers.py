"""Serialization of heads and bodies, and the Headers class."""

from __future__ import annotations

import pytest

from plait.protocols.http._writers import (
    ChunkedWriter,
    ContentLengthWriter,
    NoBodyWriter,
    UntilCloseWriter,
    write_request_head,
    write_response_head,
)
from plait.protocols.http.core import Headers, LocalProtocolError


def test_a_request_head_keeps_field_order_and_case() -> None:
    head = write_request_head(b"GET", b"/x", b"1.1", Headers([("Host", "a"), ("x-Y", "1")]))
    assert head == b"GET /x HTTP/1.1\r\nHost: a\r\nx-Y: 1\r\n\r\n"


def test_a_response_head_gets_the_standard_reason_when_none_is_given() -> None:
    assert write_response_head(404, b"", b"1.1", Headers()) == b"HTTP/1.1 404 Not Found\r\n\r\n"
    assert write_response_head(299, b"", b"1.1", Headers()) == b"HTTP/1.1 299 \r\n\r\n"
    assert write_response_head(200, b"Fine", b"1.0", Headers()) == b"HTTP/1.0 200 Fine\r\n\r\n"


@pytest.mark.parametrize("reason", [b"a\r\nX: 1", b"\x00"])
def test_a_reason_with_control_characters_is_refused(reason: bytes) -> None:
    with pytest.raises(LocalProtocolError):
        write_response_head(200, reason, b"1.1", Headers())


def test_chunked_writer_frames_data_and_trailers() -> None:
    writer = ChunkedWriter()
    assert writer.data(b"x" * 26) == b"1a\r\n" + b"x" * 26 + b"\r\n"
    assert writer.end(Headers([("X-Sum", "1")])) == b"0\r\nX-Sum: 1\r\n\r\n"


def test_chunked_trailers_are_validated() -> None:
    with pytest.raises(LocalProtocolError):
        ChunkedWriter().end(Headers([("X", "a\r\nb")]))


def test_until_close_writer_passes_data_through_and_refuses_trailers() -> None:
    writer = UntilCloseWriter()
    assert writer.data(b"abc") == b"abc"
    assert writer.end(Headers()) == b""
    with pytest.raises(LocalProtocolError):
        writer.end(Headers([("X", "1")]))


def test_content_length_writer_counts() -> None:
    writer = ContentLengthWriter(3)
    assert writer.data(b"ab") + writer.data(b"c") == b"abc"
    assert writer.end(Headers()) == b""


def test_no_body_writer_discards_or_refuses() -> None:
    assert NoBodyWriter(discard=True).data(b"dropped") == b""
    assert NoBodyWriter(discard=False).data(b"") == b""
    with pytest.raises(LocalProtocolError):
        NoBodyWriter(discard=False).data(b"x")


# Headers ---------------------------------------------------------------------------


def test_headers_are_case_insensitive_and_multi_valued() -> None:
    headers = Headers([("Set-Cookie", "a=1"), (b"set-cookie", b"b=2"), ("Host", "h")])
    assert headers.get_all("SET-COOKIE") == [b"a=1", b"b=2"]
    assert headers.get(b"host") == b"h"
    assert headers.get("missing") is None
    assert headers.get("missing", b"d") == b"d"
    assert "HOST" in headers and b"host" in headers and "nope" not in headers
    assert 3 not in headers
    assert len(headers) == 3
    assert list(headers) == [(b"set-cookie", b"a=1"), (b"set-cookie", b"b=2"), (b"host", b"h")]


def test_headers_set_replaces_every_field_of_the_name() -> None:
    headers = Headers([("A", "1"), ("B", "2"), ("a", "3")])
    headers.set("a", "4")
    assert headers.raw_items() == [(b"B", b"2"), (b"a", b"4")]
    headers.remove("missing")
    assert len(headers) == 2


def test_headers_get_list_splits_and_drops_empty_elements() -> None:
    headers = Headers([("Accept", "a, b,,"), ("accept", " c ")])
    assert headers.get_list("accept") == [b"a", b"b", b"c"]


def test_headers_compare_by_lower_cased_name_and_value() -> None:
    assert Headers([("A", "1")]) == Headers([("a", "1")])
    assert Headers([("A", "1")]) != Headers([("A", "2")])
    assert Headers() != {}
    copy = Headers([("A", "1")]).copy()
    copy.add("B", "2")
    assert len(copy) == 2
    assert repr(Headers([("A", "1")])) == "Headers([(b'A', b'1')])"


def test_headers_encode_str_as_latin1() -> None:
    assert Headers([("X", "caf\xe9")]).get("x") == b"caf\xe9"
    with pytest.raises(UnicodeEncodeError):
        Headers([("X", "\u20ac")])
