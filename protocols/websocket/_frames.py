"""WebSocket frames (RFC 6455 section 5): parsing, serializing, masking.

Theory of operation. ``FrameReader`` keeps one buffer and a read position;
``next_frame`` returns the next complete frame or None, checking each header as
soon as its bytes are in, *before* buffering the payload, so an oversized or
malformed frame is refused without reading its body. The checks, each with its
section and its close code:

- RSV1-3 must be 0 unless an extension defines them (5.2): 1002. Only
  permessage-deflate's RSV1 is ever allowed, and only when it was negotiated.
- Opcodes 0x3-0x7 and 0xB-0xF are reserved (5.2): 1002.
- Control frames (opcode >= 0x8) carry at most 125 bytes and are never
  fragmented (5.5): 1002.
- A client masks every frame and a server masks none (5.1, 5.3): 1002.
- The payload length uses the minimal encoding, and a 64-bit length has its most
  significant bit clear (5.2): 1002.
- A payload longer than the reader's limit: 1009 (7.4.1).

Message-level rules (fragment sequencing, UTF-8, close payloads) live in
``_connection.py``, which knows about messages; this module knows only frames.
Masking XORs the payload with the 4-byte key repeated (5.3), in C either way:
as one integer XOR for small payloads, as translation tables over four
interleaved slices for large ones (``apply_mask``).

Speed (a server unmasks every byte it receives). The reader unmasks straight out
of its ``bytearray`` (``_unmask``: no copy of the payload first, and strided
slices of a ``bytearray`` cost half those of ``bytes``); the four lanes are
three C passes over each byte, about 1.1 ns a byte, which is most of what a
16 KiB echo costs. The first header byte is checked with one table lookup
(``_REFUSED``), and ``next_parts`` gives the connection a tuple, not a ``Frame``.
"""

from __future__ import annotations

import enum
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

from ._errors import RemoteProtocolError

__all__ = [
    "MAX_CONTROL_PAYLOAD",
    "Frame",
    "FrameReader",
    "Opcode",
    "apply_mask",
    "serialize_frame",
]

MAX_CONTROL_PAYLOAD = 125  # RFC 6455 section 5.5

_U64 = struct.Struct("!Q")
# A frame's header with each payload-length encoding (section 5.2).
_HEAD7 = struct.Struct("!BB")
_HEAD16 = struct.Struct("!BBH")
_HEAD64 = struct.Struct("!BBQ")


class Opcode(enum.IntEnum):
    """Frame opcodes (RFC 6455 section 5.2, section 11.8)."""

    CONTINUATION = 0x0
    TEXT = 0x1
    BINARY = 0x2
    CLOSE = 0x8
    PING = 0x9
    PONG = 0xA


_KNOWN_OPCODES = frozenset(int(op) for op in Opcode)


@dataclass(frozen=True, slots=True)
class Frame:
    """One frame, unmasked.

    Attributes:
        opcode: The frame's opcode (an ``Opcode`` value).
        payload: The (unmasked) payload data.
        fin: The FIN bit: the last frame of its message.
        rsv1: The RSV1 bit (permessage-deflate: the message is compressed).
    """

    opcode: int
    payload: bytes
    fin: bool = True
    rsv1: bool = False


# XOR with one byte as a translation table, for each of the 256 byte values.
_XOR_TABLES = [bytes(b ^ k for b in range(256)) for k in range(256)]
_TRANSLATE_FROM = 512  # measured crossover: below it the integer XOR is faster
# _REPUNITS[k]: k little-endian 32-bit words, each 1 (a key of k words is mask * this).
_REPUNITS = [int.from_bytes(b"\x01\x00\x00\x00" * k, "little") for k in range(129)]


def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 section 5.3).

    Masking and unmasking are the same operation. Small payloads are XORed as one
    integer; larger ones as four interleaved slices (every fourth byte shares a
    mask byte), each mapped through a XOR translation table: both run in C, and
    the slices are two to three times faster than the integer past 512 bytes.
    """
    buf = data if type(data) is bytearray else bytearray(data)
    return _unmask(buf, 0, len(buf), mask)


def _unmask(buf: bytearray, start: int, end: int, mask: bytes | bytearray) -> bytes:
    """``apply_mask(buf[start:end], mask)`` without copying the slice first.

    The four lanes are cut straight out of ``buf`` with a step of 4 (a strided
    slice of a ``bytearray`` is about twice as fast as one of ``bytes``), mapped
    through their tables and written back interleaved: three C passes per byte,
    and the only copy left is the final ``bytes``.
    """
    n = end - start
    if n < _TRANSLATE_FROM:
        if not n:
            return b""
        # The key as an integer: the mask times 0x...0000000100000001, one 1 per word.
        words = (n + 3) >> 2
        value = int.from_bytes(buf[start:end], "little") ^ (
            int.from_bytes(mask, "little") * _REPUNITS[words]
        )
        if n & 3:
            return value.to_bytes(words << 2, "little")[:n]  # the key's last word overhangs
        return value.to_bytes(n, "little")
    out = bytearray(n)
    tables = _XOR_TABLES
    out[0::4] = buf[start:end:4].translate(tables[mask[0]])
    out[1::4] = buf[start + 1 : end : 4].translate(tables[mask[1]])
    out[2::4] = buf[start + 2 : end : 4].translate(tables[mask[2]])
    out[3::4] = buf[start + 3 : end : 4].translate(tables[mask[3]])
    return bytes(out)


def serialize_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """Return the bytes of one frame (RFC 6455 section 5.2).

    Args:
        opcode: The opcode.
        payload: The unmasked payload.
        fin: Whether this is the final frame of its message.
        rsv1: Set RSV1 (a compressed message's first frame, RFC 7692 section 6).
        mask: The 4-byte masking key (a client's frames); None sends unmasked.
    """
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    mask_bit = 0x80 if mask is not None else 0
    if n < 126:
        head = _HEAD7.pack(first, mask_bit | n)
    elif n < 0x10000:
        head = _HEAD16.pack(first, mask_bit | 126, n)
    else:
        head = _HEAD64.pack(first, mask_bit | 127, n)
    if mask is None:
        return head + payload
    return head + mask + apply_mask(payload, mask)


def random_mask() -> bytes:
    """A fresh masking key from a strong source (RFC 6455 section 5.3, section 10.3)."""
    return os.urandom(4)


def _refused_first_bytes(rsv_mask: int) -> bytes:
    """One flag per value of a frame's first byte: 1 where it must be refused."""
    return bytes(
        1 if b & rsv_mask or (b & 0x0F) not in _KNOWN_OPCODES else 0 for b in range(256)
    )


_REFUSED = _refused_first_bytes(0x70)
_REFUSED_WITH_RSV1 = _refused_first_bytes(0x30)


class FrameReader:
    """Split a byte stream into frames, checking each header (see the module docstring).

    Args:
        expect_masked: True on a server (client frames are masked), False on a client.
        max_payload: The largest frame payload accepted (1009 beyond it).
        allow_rsv1: RSV1 may be set (permessage-deflate was negotiated).
    """

    __slots__ = ("_buf", "_mask_bit", "_max_payload", "_pos", "_refused", "_rsv_mask")

    def __init__(
        self, *, expect_masked: bool, max_payload: int, allow_rsv1: bool = False
    ) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._mask_bit = 0x80 if expect_masked else 0
        self._max_payload = max_payload
        self._rsv_mask = 0x30 if allow_rsv1 else 0x70
        self._refused = _REFUSED_WITH_RSV1 if allow_rsv1 else _REFUSED

    def receive_data(self, data: bytes) -> None:
        """Append received bytes (compacting what was consumed once per call)."""
        if self._pos:
            del self._buf[: self._pos]
            self._pos = 0
        self._buf += data

    @property
    def buffered(self) -> int:
        """Bytes received and not yet returned as frames."""
        return len(self._buf) - self._pos

    def next_frame(self) -> Frame | None:
        """The next complete frame, or None until more bytes arrive.

        Raises:
            RemoteProtocolError: the frame breaks section 5 (code 1002) or exceeds
                ``max_payload`` (code 1009).
        """
        parts = self.next_parts()
        return None if parts is None else Frame(*parts)

    def next_parts(self) -> tuple[int, bytes, bool, bool] | None:
        """``next_frame`` as a tuple ``(opcode, payload, fin, rsv1)``: no ``Frame`` built.

        The connection's hot path. The common header (a data frame with a 7-bit or
        16-bit length) is checked with one table lookup and two comparisons; every
        other case goes through the same checks as before, in the same order.

        Raises:
            RemoteProtocolError: as ``next_frame``.
        """
        buf = self._buf
        pos = self._pos
        size = len(buf)
        if size - pos < 2:
            return None
        b0 = buf[pos]
        b1 = buf[pos + 1]
        if self._refused[b0]:
            self._refuse_first_byte(b0)
        if b1 & 0x80 != self._mask_bit:
            # Section 5.1: a server closes on an unmasked frame, a client on a masked one.
            if b1 & 0x80:
                raise RemoteProtocolError("a server frame is masked")
            raise RemoteProtocolError("a client frame is not masked")
        length = b1 & 0x7F
        header = pos + 2
        if b0 & 0x08:
            # Section 5.5: control frames are short and never fragmented.
            if length > MAX_CONTROL_PAYLOAD:
                raise RemoteProtocolError("a control frame longer than 125 bytes")
            if not b0 & 0x80:
                raise RemoteProtocolError("a fragmented control frame")
            if b0 & 0x40:
                raise RemoteProtocolError("RSV1 set on a control frame")  # RFC 7692 section 6
        elif length == 126:
            if size - pos < 4:
                return None
            length = buf[header] << 8 | buf[header + 1]
            header += 2
            if length < 126:
                raise RemoteProtocolError("payload length not minimally encoded")  # 5.2
        elif length == 127:
            if size - pos < 10:
                return None
            (length,) = _U64.unpack_from(buf, header)
            header += 8
            if length >> 63:
                raise RemoteProtocolError("64-bit payload length with its top bit set")  # 5.2
            if length < 0x10000:
                raise RemoteProtocolError("payload length not minimally encoded")  # 5.2
        if length > self._max_payload:
            raise RemoteProtocolError(
                f"a frame of {length} bytes exceeds the limit of {self._max_payload}", 1009
            )
        if b1 & 0x80:
            start = header + 4
            end = start + length
            if size < end:
                return None
            payload = _unmask(buf, start, end, buf[header:start])
        else:
            end = header + length
            if size < end:
                return None
            payload = bytes(buf[header:end])
        self._pos = end
        return b0 & 0x0F, payload, b0 >= 0x80, b0 & 0x40 != 0

    def _refuse_first_byte(self, b0: int) -> None:
        if b0 & self._rsv_mask:
            # RFC 6455 section 5.2: nonzero RSV bits without an extension defining them.
            raise RemoteProtocolError("reserved bits set without a negotiated extension")
        # Section 5.2: reserved opcodes -> fail the connection.
        raise RemoteProtocolError(f"unknown opcode {b0 & 0x0F:#x}")


MaskSource = Callable[[], bytes]
"""Returns a 4-byte masking key for each frame a client sends."""
