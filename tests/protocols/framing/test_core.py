"""The framing cores, fed at every chunking."""

from __future__ import annotations

import doctest
import random
from collections.abc import Iterator

import pytest

from plait.protocols import framing
from plait.protocols.framing import (
    FrameTooLargeError,
    Line,
    LineDecoder,
    LineTooLongError,
    LocalFramingError,
    NetstringDecoder,
    NetstringError,
    PrefixedDecoder,
    RawData,
    RemoteFramingError,
    _lines,
    _netstring,
    _prefixed,
    encode_line,
    encode_netstring,
    encode_prefixed,
)


def chunkings(wire: bytes) -> Iterator[list[bytes]]:
    """Yield ``wire`` whole, byte by byte, and in seeded random splits."""
    yield [wire]
    yield [wire[i : i + 1] for i in range(len(wire))]
    for seed in range(5):
        rng = random.Random(seed)
        pieces, i = [], 0
        while i < len(wire):
            n = rng.randint(1, 9)
            pieces.append(wire[i : i + n])
            i += n
        yield pieces


CHUNKING_IDS = ["whole", "bytewise", *[f"random{s}" for s in range(5)]]


def split(wire: bytes, how: str) -> list[bytes]:
    return list(chunkings(wire))[CHUNKING_IDS.index(how)]


def test_docstring_examples_hold() -> None:
    for module in (_lines, _netstring, _prefixed):
        failures, _ = doctest.testmod(module)
        assert failures == 0, module.__name__


def test_every_remote_error_is_a_framing_error() -> None:
    for cls in (LineTooLongError, NetstringError, FrameTooLargeError):
        assert issubclass(cls, RemoteFramingError)
        assert issubclass(cls, framing.FramingError)
    assert issubclass(LocalFramingError, ValueError)


# Lines ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", CHUNKING_IDS)
def test_lines_are_the_same_whatever_the_chunking(how: str) -> None:
    wire = b"alpha\r\n\r\nbeta gamma\r\n" + b"z" * 300 + b"\r\npartial"
    decoder = LineDecoder(max_length=400)
    got = [e for piece in split(wire, how) for e in decoder.feed(piece)]
    assert got == [Line(line=b"alpha"), Line(line=b""), Line(line=b"beta gamma"),
                   Line(line=b"z" * 300)]
    assert decoder.buffered == len(b"partial")


@pytest.mark.parametrize("how", CHUNKING_IDS)
def test_switching_to_raw_mode_hands_over_the_rest_of_the_stream(how: str) -> None:
    wire = b"LEN 5\r\nhelloNEXT\r\n"
    decoder = LineDecoder()
    lines: list[bytes] = []
    raw = bytearray()
    for piece in split(wire, how):
        decoder.receive_data(piece)
        while (event := decoder.next_event()) is not None:
            if isinstance(event, Line):
                lines.append(event.line)
                if event.line.startswith(b"LEN"):
                    decoder.set_raw_mode()
            else:
                raw += event.data
                if len(raw) >= 5:
                    decoder.set_line_mode(extra=bytes(raw[5:]))
                    del raw[5:]
    assert lines == [b"LEN 5", b"NEXT"]
    assert raw == b"hello"
    assert decoder.line_mode


def test_raw_mode_with_nothing_buffered_needs_data() -> None:
    decoder = LineDecoder()
    decoder.set_raw_mode()
    assert decoder.next_event() is None
    assert decoder.feed(b"abc") == [RawData(data=b"abc")]


@pytest.mark.parametrize("delimiter", [b"\n", b"\r\n", b"\x00", b"--"])
def test_the_delimiter_is_configurable(delimiter: bytes) -> None:
    decoder = LineDecoder(delimiter=delimiter)
    wire = delimiter.join([b"a", b"bb", b"ccc"]) + delimiter
    got = [e for piece in split(wire, "bytewise") for e in decoder.feed(piece)]
    assert [e.line for e in got if isinstance(e, Line)] == [b"a", b"bb", b"ccc"]


def test_a_line_at_exactly_the_limit_is_accepted() -> None:
    decoder = LineDecoder(max_length=4)
    assert decoder.feed(b"abcd\r\n") == [Line(line=b"abcd")]


def test_a_complete_line_over_the_limit_is_rejected() -> None:
    with pytest.raises(LineTooLongError):
        LineDecoder(max_length=4).feed(b"abcde\r\n")


def test_an_endless_line_is_rejected_before_its_delimiter_arrives() -> None:
    decoder = LineDecoder(max_length=4)
    assert decoder.feed(b"abcd\r") == []  # could still be a 4-byte line
    with pytest.raises(LineTooLongError):
        decoder.feed(b"x")


def test_the_line_decoder_refuses_use_after_an_error() -> None:
    decoder = LineDecoder(max_length=2)
    with pytest.raises(LineTooLongError):
        decoder.feed(b"xxxx")
    with pytest.raises(LineTooLongError):
        decoder.feed(b"\r\n")


def test_line_decoder_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        LineDecoder(delimiter=b"")
    with pytest.raises(ValueError):
        LineDecoder(max_length=-1)


def test_encode_line_appends_the_delimiter_and_refuses_embedded_ones() -> None:
    assert encode_line(b"hi") == b"hi\r\n"
    assert encode_line(b"hi", b"\n") == b"hi\n"
    with pytest.raises(LocalFramingError):
        encode_line(b"a\r\nb")


# Netstrings ------------------------------------------------------------------------


@pytest.mark.parametrize("how", CHUNKING_IDS)
def test_netstrings_are_the_same_whatever_the_chunking(how: str) -> None:
    payloads = [b"hello", b"", b"a,b:c", b"x" * 123]
    wire = b"".join(encode_netstring(p) for p in payloads)
    decoder = NetstringDecoder()
    assert [p for piece in split(wire, how) for p in decoder.feed(piece)] == payloads


def test_netstring_encoding_is_the_reference_format() -> None:
    assert encode_netstring(b"hello world!") == b"12:hello world!,"
    assert encode_netstring(b"") == b"0:,"


def test_netstring_encoding_refuses_payloads_over_the_limit() -> None:
    with pytest.raises(LocalFramingError):
        encode_netstring(b"abc", max_length=2)


@pytest.mark.parametrize(
    "wire",
    [
        pytest.param(b"x:abc,", id="non-digit length"),
        pytest.param(b"-1:a,", id="negative length"),
        pytest.param(b" 1:a,", id="leading space"),
        pytest.param(b"01:a,", id="leading zero"),
        pytest.param(b"00:,", id="double zero"),
        pytest.param(b":abc,", id="empty length"),
        pytest.param(b"3:abc;", id="missing comma"),
        pytest.param(b"3:abcd,", id="payload longer than announced"),
        pytest.param(b"11:", id="over the max"),
        pytest.param(b"999999", id="more digits than the max has"),
    ],
)
def test_a_bad_netstring_is_rejected(wire: bytes) -> None:
    decoder = NetstringDecoder(max_length=10)
    with pytest.raises(NetstringError):
        for i in range(len(wire)):
            decoder.feed(wire[i : i + 1])


def test_an_oversize_netstring_is_rejected_before_its_payload_arrives() -> None:
    decoder = NetstringDecoder(max_length=100)
    with pytest.raises(NetstringError):
        decoder.feed(b"101")  # no colon yet: the digits alone already exceed the max


def test_the_netstring_decoder_refuses_use_after_an_error() -> None:
    decoder = NetstringDecoder()
    with pytest.raises(NetstringError):
        decoder.feed(b"a")
    with pytest.raises(NetstringError):
        decoder.feed(b"1:a,")


def test_netstring_decoder_rejects_a_negative_limit() -> None:
    with pytest.raises(ValueError):
        NetstringDecoder(max_length=-1)


# Length-prefixed frames -------------------------------------------------------------


@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("how", CHUNKING_IDS)
def test_prefixed_frames_are_the_same_whatever_the_chunking(bits: int, how: str) -> None:
    payloads = [b"alpha", b"", b"z" * 300]
    wire = b"".join(encode_prefixed(p, prefix_bits=bits) for p in payloads)
    decoder = PrefixedDecoder(prefix_bits=bits)
    assert [f for piece in split(wire, how) for f in decoder.feed(piece)] == payloads


def test_prefixes_are_big_endian() -> None:
    assert encode_prefixed(b"ab", prefix_bits=16) == b"\x00\x02ab"
    assert encode_prefixed(b"ab", prefix_bits=32) == b"\x00\x00\x00\x02ab"


@pytest.mark.parametrize("bits,prefix", [(16, b"\x00\x0b"), (32, b"\x00\x00\x00\x0b")])
def test_an_oversize_prefix_is_rejected_before_the_body_arrives(bits: int, prefix: bytes) -> None:
    decoder = PrefixedDecoder(prefix_bits=bits, max_frame=10)
    with pytest.raises(FrameTooLargeError):
        decoder.feed(prefix)
    with pytest.raises(FrameTooLargeError):
        decoder.feed(b"more")


def test_a_frame_at_exactly_the_limit_is_accepted() -> None:
    decoder = PrefixedDecoder(prefix_bits=16, max_frame=3)
    assert decoder.feed(b"\x00\x03abc") == [b"abc"]


def test_the_16_bit_limit_is_capped_by_the_prefix() -> None:
    assert PrefixedDecoder(prefix_bits=16, max_frame=1 << 30).max_frame == 65535
    assert PrefixedDecoder(prefix_bits=32).max_frame == 1 << 20


def test_encoding_refuses_frames_the_prefix_or_limit_cannot_carry() -> None:
    with pytest.raises(LocalFramingError):
        encode_prefixed(b"x" * 65536, prefix_bits=16)
    with pytest.raises(LocalFramingError):
        encode_prefixed(b"abc", max_frame=2)


@pytest.mark.parametrize("bits", [0, 8, 24, 64])
def test_unsupported_prefix_sizes_are_refused(bits: int) -> None:
    with pytest.raises(ValueError):
        PrefixedDecoder(prefix_bits=bits)
    with pytest.raises(ValueError):
        encode_prefixed(b"", prefix_bits=bits)


def test_prefixed_decoder_rejects_a_negative_limit() -> None:
    with pytest.raises(ValueError):
        PrefixedDecoder(max_frame=-1)


def test_next_frame_returns_good_netstrings_before_raising_for_a_bad_one() -> None:
    decoder = NetstringDecoder()
    decoder.receive_data(b"1:a,1:b,x")
    assert decoder.next_frame() == b"a"
    assert decoder.next_frame() == b"b"
    with pytest.raises(NetstringError):
        decoder.next_frame()


def test_next_frame_returns_good_frames_before_raising_for_an_oversize_prefix() -> None:
    decoder = PrefixedDecoder(prefix_bits=16, max_frame=4)
    decoder.receive_data(b"\x00\x01a\x00\x05")
    assert decoder.next_frame() == b"a"
    with pytest.raises(FrameTooLargeError):
        decoder.next_frame()


@pytest.mark.parametrize("how", CHUNKING_IDS)
def test_pulling_frames_one_at_a_time_matches_feed(how: str) -> None:
    wire = b"".join(encode_prefixed(p) for p in [b"x", b"yy", b""])
    decoder = PrefixedDecoder()
    got = []
    for piece in split(wire, how):
        decoder.receive_data(piece)
        while (frame := decoder.next_frame()) is not None:
            got.append(frame)
    assert got == [b"x", b"yy", b""]
