"""The sans-IO content decoder (``_content_coding``): gzip and deflate, incrementally."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import Callable

import pytest

from plait.protocols.http._content_coding import (
    ContentDecoder,
    ContentDecodingError,
    TruncatedContent,
    codings_to_undo,
)

from ._helpers import CHUNKINGS, split


def gzip_(data: bytes) -> bytes:
    """gzip with a fixed timestamp: parameters (and so test ids) are the same in every process."""
    return gzip.compress(data, mtime=0)


TEXT = b"".join(b"line %d of a compressible body\n" % i for i in range(2000))


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def drain(decoder: ContentDecoder, size: int = 4096) -> bytes:
    out = bytearray()
    while piece := decoder.read(size):
        assert len(piece) <= size
        out += piece
    return bytes(out)


def decode(codings: list[str], wire: bytes, how: str = "whole") -> bytes:
    decoder = ContentDecoder(codings)
    out = bytearray()
    for piece in split(wire, how):
        decoder.feed(piece)
        out += drain(decoder)
    decoder.finish()
    return bytes(out)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([b"gzip"], ["gzip"]),
        ([b"X-GZIP"], ["gzip"]),
        ([b"Deflate"], ["deflate"]),
        ([b"deflate", b"gzip"], ["deflate", "gzip"]),
        ([b"identity"], []),
        ([b"identity", b"gzip", b" identity "], ["gzip"]),
        ([b"br"], None),
        ([b"gzip", b"zstd"], None),
    ],
)
def test_codings_to_undo_drops_identity_and_refuses_unsupported_codings(
    values: list[bytes], expected: list[str] | None
) -> None:
    assert codings_to_undo(values) == expected


@pytest.mark.parametrize("how", CHUNKINGS)
@pytest.mark.parametrize(
    ("codings", "encode"),
    [
        (["gzip"], gzip_),
        (["x-gzip"], gzip_),
        (["deflate"], zlib.compress),
        (["deflate"], raw_deflate),
        (["gzip", "gzip"], lambda data: gzip_(gzip_(data))),
        (["deflate", "gzip"], lambda data: gzip_(zlib.compress(data))),
    ],
)
def test_every_coding_decodes_at_every_chunking(
    codings: list[str], encode: Callable[[bytes], bytes], how: str
) -> None:
    assert decode(codings, encode(TEXT), how) == TEXT


def test_gzip_members_one_after_another_and_zero_padding_decode_as_one_body() -> None:
    wire = gzip_(b"first ") + b"\x00" * 7 + gzip_(b"second") + b"\x00"
    assert decode(["gzip"], wire, "bytewise") == b"first second"


def test_an_empty_body_decodes_to_nothing_without_error() -> None:
    for codings in (["gzip"], ["deflate"], ["gzip", "deflate"]):
        decoder = ContentDecoder(codings)
        assert decoder.read(100) == b""
        decoder.finish()


def test_a_bomb_is_inflated_only_as_far_as_read_asks() -> None:
    bomb = gzip_(bytes(10_000_000))
    assert len(bomb) < 20_000
    decoder = ContentDecoder(["gzip"])
    decoder.feed(bomb)
    assert decoder.read(1000) == bytes(1000)  # not 10 MB
    total = 1000
    while piece := decoder.read(65536):
        assert len(piece) <= 65536
        total += len(piece)
    assert total == 10_000_000
    decoder.finish()


def test_stacked_bomb_keeps_the_inner_stage_bounded_too() -> None:
    bomb = gzip_(gzip_(bytes(5_000_000)))
    decoder = ContentDecoder(["gzip", "gzip"])
    decoder.feed(bomb)
    assert len(decoder.read(10)) == 10
    assert len(drain(decoder, 65536)) == 5_000_000 - 10
    decoder.finish()


@pytest.mark.parametrize(
    ("codings", "wire", "message"),
    [
        (["gzip"], b"this is not gzip", "no gzip header at the start"),
        (["gzip"], b"\x1f\x8b\x08\x00" + b"\xff" * 40, "invalid gzip data"),
        (["gzip"], gzip_(b"ok") + b"garbage!", "no gzip header after the gzip member"),
        (["gzip"], gzip_(b"ok") + b"x", "no gzip header after the gzip member"),
        (["deflate"], zlib.compress(b"ok") + b"garbage!", "unexpected data after the deflate"),
        (["deflate"], b"\x78\x9c" + b"\xff" * 20, "invalid deflate data"),
    ],
)
def test_corrupt_data_and_trailing_garbage_raise_content_decoding_error(
    codings: list[str], wire: bytes, message: str
) -> None:
    decoder = ContentDecoder(codings)
    decoder.feed(wire)
    with pytest.raises(ContentDecodingError, match=message):
        drain(decoder)


def test_corrupt_gzip_checksum_is_an_error() -> None:
    wire = bytearray(gzip_(TEXT))
    wire[-6] ^= 0xFF  # the CRC32 in the trailer
    decoder = ContentDecoder(["gzip"])
    decoder.feed(bytes(wire))
    with pytest.raises(ContentDecodingError, match="invalid gzip data"):
        drain(decoder)


@pytest.mark.parametrize(
    ("codings", "wire"),
    [
        (["gzip"], gzip_(TEXT)[:-4]),  # no ISIZE
        (["gzip"], gzip_(TEXT)[:100]),  # mid-stream
        (["gzip"], b"\x1f"),  # half a magic number
        (["gzip"], gzip_(b"a") + b"\x1f\x8b"),  # a second member barely begun
        (["deflate"], zlib.compress(TEXT)[:-2]),
        (["deflate"], b"\x78"),
        (["gzip", "gzip"], gzip_(gzip_(TEXT)[:-3])),  # the inner one is cut
    ],
)
def test_data_that_ends_too_soon_raises_truncated_content_at_finish(
    codings: list[str], wire: bytes
) -> None:
    decoder = ContentDecoder(codings)
    decoder.feed(wire)
    drain(decoder)
    with pytest.raises(TruncatedContent):
        decoder.finish()


def test_raw_deflate_and_zlib_deflate_are_told_apart_by_the_header() -> None:
    for wire in (zlib.compress(b"same"), raw_deflate(b"same")):
        assert decode(["deflate"], wire, "bytewise") == b"same"


def test_bad_arguments_raise_valueerror() -> None:
    with pytest.raises(ValueError, match="unsupported content coding 'br'"):
        ContentDecoder(["gzip", "br"])
    with pytest.raises(ValueError, match="max_length must be >= 1"):
        ContentDecoder(["gzip"]).read(0)


def test_received_counts_the_encoded_bytes_fed() -> None:
    decoder = ContentDecoder(["gzip"])
    wire = gzip_(TEXT)
    decoder.feed(wire[:10])
    decoder.feed(b"")
    decoder.feed(wire[10:])
    assert decoder.received == len(wire)
    assert drain(decoder) == TEXT
