"""Frames (RFC 6455 section 5): serializing, parsing at every chunking, masking, bad headers."""

from __future__ import annotations

import struct

import pytest

from plait.protocols.websocket.core import (
    Frame,
    FrameReader,
    Opcode,
    RemoteProtocolError,
    apply_mask,
    serialize_frame,
)

from ._helpers import CHUNKINGS, MASK, split


def read_all(reader: FrameReader, wire: bytes, how: str) -> list[Frame]:
    frames = []
    for piece in split(wire, how):
        reader.receive_data(piece)
        while (frame := reader.next_frame()) is not None:
            frames.append(frame)
    return frames


def test_rfc_example_unmasked_hello() -> None:
    # RFC 6455 section 5.7: a single-frame unmasked text message.
    assert serialize_frame(Opcode.TEXT, b"Hello") == bytes.fromhex("810548656c6c6f")


def test_rfc_example_masked_hello() -> None:
    # RFC 6455 section 5.7: a single-frame masked text message.
    wire = serialize_frame(Opcode.TEXT, b"Hello", mask=bytes.fromhex("37fa213d"))
    assert wire == bytes.fromhex("818537fa213d7f9f4d5158")


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_length_encodings_round_trip(size: int) -> None:
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    wire = serialize_frame(Opcode.BINARY, payload)
    reader = FrameReader(expect_masked=False, max_payload=1 << 20)
    assert read_all(reader, wire, "whole") == [Frame(Opcode.BINARY, payload)]


@pytest.mark.parametrize(
    ("size", "header"), [(125, 2), (126, 4), (65535, 4), (65536, 10)]
)
def test_the_minimal_length_encoding_is_used(size: int, header: int) -> None:
    assert len(serialize_frame(Opcode.BINARY, bytes(size))) == header + size


@pytest.mark.parametrize("how", CHUNKINGS)
def test_same_frames_whatever_the_chunking(how: str) -> None:
    frames = [
        Frame(Opcode.TEXT, b"alpha", fin=False),
        Frame(Opcode.PING, b"p"),
        Frame(Opcode.CONTINUATION, b"x" * 300, fin=True),
        Frame(Opcode.BINARY, b""),
        Frame(Opcode.CLOSE, b"\x03\xe8bye"),
    ]
    wire = b"".join(
        serialize_frame(f.opcode, f.payload, fin=f.fin, mask=MASK) for f in frames
    )
    reader = FrameReader(expect_masked=True, max_payload=1 << 20)
    assert read_all(reader, wire, how) == frames
    assert reader.buffered == 0


def test_masking_is_its_own_inverse() -> None:
    data = bytes(range(256)) * 5 + b"odd"
    assert apply_mask(apply_mask(data, MASK), MASK) == data
    assert apply_mask(b"", MASK) == b""
    assert apply_mask(b"\x00\x00\x00\x00\x00", MASK) == MASK + MASK[:1]


def bad(wire: bytes, *, masked: bool = True, max_payload: int = 1000, rsv1: bool = False) -> int:
    reader = FrameReader(expect_masked=masked, max_payload=max_payload, allow_rsv1=rsv1)
    reader.receive_data(wire)
    with pytest.raises(RemoteProtocolError) as info:
        reader.next_frame()
    return info.value.code


def test_an_unmasked_client_frame_is_refused() -> None:
    assert bad(serialize_frame(Opcode.TEXT, b"hi")) == 1002  # section 5.1


def test_a_masked_server_frame_is_refused_by_a_client() -> None:
    assert bad(serialize_frame(Opcode.TEXT, b"hi", mask=MASK), masked=False) == 1002


@pytest.mark.parametrize("bit", [0x40, 0x20, 0x10])
def test_reserved_bits_without_an_extension_are_refused(bit: int) -> None:
    wire = bytearray(serialize_frame(Opcode.TEXT, b"hi", mask=MASK))
    wire[0] |= bit
    assert bad(bytes(wire)) == 1002  # section 5.2


def test_rsv1_is_allowed_once_deflate_is_negotiated_but_not_rsv2() -> None:
    reader = FrameReader(expect_masked=True, max_payload=100, allow_rsv1=True)
    reader.receive_data(serialize_frame(Opcode.TEXT, b"hi", rsv1=True, mask=MASK))
    frame = reader.next_frame()
    assert frame is not None and frame.rsv1
    wire = bytearray(serialize_frame(Opcode.TEXT, b"hi", mask=MASK))
    wire[0] |= 0x20
    assert bad(bytes(wire), rsv1=True) == 1002


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF])
def test_unknown_opcodes_are_refused(opcode: int) -> None:
    assert bad(serialize_frame(opcode, b"", mask=MASK)) == 1002  # section 5.2


def test_a_control_frame_over_125_bytes_is_refused() -> None:
    assert bad(serialize_frame(Opcode.PING, bytes(126), mask=MASK)) == 1002  # section 5.5


def test_a_fragmented_control_frame_is_refused() -> None:
    assert bad(serialize_frame(Opcode.PING, b"x", fin=False, mask=MASK)) == 1002  # section 5.5


def test_rsv1_on_a_control_frame_is_refused_even_with_deflate() -> None:
    wire = serialize_frame(Opcode.PING, b"x", rsv1=True, mask=MASK)
    assert bad(wire, rsv1=True) == 1002  # RFC 7692 section 6


def test_a_non_minimal_16_bit_length_is_refused() -> None:
    wire = bytes((0x82, 0x80 | 126)) + struct.pack("!H", 5) + MASK + bytes(5)
    assert bad(wire) == 1002


def test_a_non_minimal_64_bit_length_is_refused() -> None:
    wire = bytes((0x82, 0x80 | 127)) + struct.pack("!Q", 200) + MASK + bytes(200)
    assert bad(wire) == 1002


def test_a_64_bit_length_with_the_top_bit_set_is_refused() -> None:
    wire = bytes((0x82, 0x80 | 127)) + struct.pack("!Q", 1 << 63) + MASK
    assert bad(wire, max_payload=1 << 64) == 1002


def test_an_oversized_frame_is_refused_from_its_header_alone() -> None:
    header = bytes((0x82, 0x80 | 126)) + struct.pack("!H", 1001)
    assert bad(header) == 1009  # no payload byte was needed


def test_an_incomplete_frame_waits_for_more() -> None:
    wire = serialize_frame(Opcode.BINARY, bytes(300), mask=MASK)
    reader = FrameReader(expect_masked=True, max_payload=1000)
    for cut in (1, 3, 7, len(wire) - 1):
        reader = FrameReader(expect_masked=True, max_payload=1000)
        reader.receive_data(wire[:cut])
        assert reader.next_frame() is None


@pytest.mark.parametrize("size", [1, 3, 511, 512, 513, 4097, 70001])
def test_both_masking_paths_agree_with_the_definition(size: int) -> None:
    data = bytes((i * 7 + 3) % 256 for i in range(size))
    expected = bytes(b ^ MASK[i % 4] for i, b in enumerate(data))
    assert apply_mask(data, MASK) == expected
    assert apply_mask(bytearray(data), MASK) == expected
    assert apply_mask(memoryview(data), MASK) == expected


def masked_by_definition(data: bytes, mask: bytes) -> bytes:
    return bytes(b ^ mask[i % 4] for i, b in enumerate(data))


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 125, 126, 127, 509, 510, 511, 512, 513,
                                  514, 515, 4097, 16384, 65536, 70001])
@pytest.mark.parametrize("lead", [0, 1, 2, 3])
def test_payloads_at_every_alignment_in_the_buffer_unmask_by_the_definition(
    size: int, lead: int
) -> None:
    # A `lead`-byte frame first puts the payload at each offset modulo 4 of the buffer.
    mask = b"\x9d\x01\xe7\x42"
    data = bytes((i * 31 + 7) % 256 for i in range(size))
    wire = serialize_frame(Opcode.PING, bytes(lead), mask=mask) + serialize_frame(
        Opcode.BINARY, data, mask=mask
    )
    reader = FrameReader(expect_masked=True, max_payload=1 << 20)
    assert read_all(reader, wire, "whole") == [
        Frame(Opcode.PING, bytes(lead)),
        Frame(Opcode.BINARY, data),
    ]
    if size:
        assert wire[-size:] == masked_by_definition(data, mask)  # the wire really is masked


@pytest.mark.parametrize("size", [1, 2, 3, 4, 5, 63, 64, 65, 510, 511, 512, 513, 1027])
def test_a_payload_equal_to_its_mask_unmasks_to_zeros(size: int) -> None:
    # The integer XOR is all zero bits here: its bytes must still come out at full length.
    data = (MASK * (size // 4 + 1))[:size]
    assert apply_mask(data, MASK) == bytes(size)
    assert apply_mask(bytes(size), MASK) == data


@pytest.mark.parametrize(("size", "opcode"), [(5, Opcode.TEXT), (600, Opcode.BINARY),
                                              (70000, Opcode.BINARY)])
def test_a_frame_split_at_every_byte_offset_still_parses(size: int, opcode: int) -> None:
    payload = bytes((i * 13) % 256 for i in range(size))
    wire = serialize_frame(opcode, payload, mask=MASK) + serialize_frame(
        Opcode.PONG, b"next", mask=MASK
    )
    first = len(wire) - 10  # the PONG is 2 + 4 + 4 bytes
    # Every offset of the header, mask and the first and last payload bytes; for the
    # small frames that is every offset there is.
    cuts = sorted(set(range(0, min(first, 40))) | set(range(max(0, first - 40), len(wire) + 1)))
    if size <= 600:
        cuts = list(range(len(wire) + 1))
    for cut in cuts:
        reader = FrameReader(expect_masked=True, max_payload=1 << 20)
        frames = []
        for piece in (wire[:cut], wire[cut:]):
            reader.receive_data(piece)
            while (frame := reader.next_frame()) is not None:
                frames.append(frame)
        assert frames == [Frame(opcode, payload), Frame(Opcode.PONG, b"next")], cut
        assert reader.buffered == 0


@pytest.mark.parametrize("allow_rsv1", [False, True])
def test_every_first_byte_is_accepted_or_refused_by_the_rules(allow_rsv1: bool) -> None:
    # The reader checks the first byte against a table; each of the 256 values must get
    # the verdict and the message the rules of section 5.2 give.
    for b0 in range(256):
        opcode, rsv = b0 & 0x0F, b0 & (0x30 if allow_rsv1 else 0x70)
        wire = bytes((b0, 0x80 | 1)) + MASK + b"\x00"
        reader = FrameReader(expect_masked=True, max_payload=100, allow_rsv1=allow_rsv1)
        reader.receive_data(wire)
        if rsv:
            with pytest.raises(RemoteProtocolError, match="reserved bits"):
                reader.next_frame()
        elif opcode not in {int(op) for op in Opcode}:
            with pytest.raises(RemoteProtocolError, match=f"unknown opcode {opcode:#x}"):
                reader.next_frame()
        elif opcode >= 0x8 and not b0 & 0x80:
            with pytest.raises(RemoteProtocolError, match="fragmented control"):
                reader.next_frame()
        elif opcode >= 0x8 and b0 & 0x40:
            with pytest.raises(RemoteProtocolError, match="RSV1 set on a control"):
                reader.next_frame()
        else:
            assert reader.next_frame() == Frame(
                opcode, MASK[:1], fin=bool(b0 & 0x80), rsv1=bool(b0 & 0x40)
            ), hex(b0)


def test_next_parts_is_next_frame_as_a_tuple() -> None:
    wire = serialize_frame(Opcode.TEXT, b"abc", fin=False, mask=MASK) + serialize_frame(
        Opcode.CONTINUATION, bytes(700), mask=MASK
    )
    reader = FrameReader(expect_masked=True, max_payload=1000)
    reader.receive_data(wire)
    assert reader.next_parts() == (Opcode.TEXT, b"abc", False, False)
    assert reader.next_parts() == (Opcode.CONTINUATION, bytes(700), True, False)
    assert reader.next_parts() is None


def test_an_unmasked_frame_with_a_16_bit_length_is_read_by_a_client() -> None:
    payload = bytes(range(256)) * 3
    reader = FrameReader(expect_masked=False, max_payload=1000)
    reader.receive_data(serialize_frame(Opcode.BINARY, payload))
    assert reader.next_frame() == Frame(Opcode.BINARY, payload)
