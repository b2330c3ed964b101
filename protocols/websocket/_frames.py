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

_U16 = struct.Struct("!H")
_U64 = struct.Struct("!Q")


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


def apply_mask(data: bytes | bytearray | memoryview, mask: bytes) -> bytes:
    """XOR ``data`` with the 4-byte ``mask`` repeated (RFC 6455 section 5.3).

    Masking and unmasking are the same operation. Small payloads are XORed as one
    integer; larger ones as four interleaved slices (every fourth byte shares a
    mask byte), each mapped through a XOR translation table: both run in C, and
    the slices are two to three times faster than the integer past 512 bytes.
    """
    n = len(data)
    if not n:
        return b""
    if n < _TRANSLATE_FROM:
        key = (mask * (n // 4 + 1))[:n]
        value = int.from_bytes(data, "little") ^ int.from_bytes(key, "little")
        return value.to_bytes(n, "little")
    src = bytes(data) if isinstance(data, memoryview) else data
    out = bytearray(n)
    tables = _XOR_TABLES
    out[0::4] = src[0::4].translate(tables[mask[0]])
    out[1::4] = src[1::4].translate(tables[mask[1]])
    out[2::4] = src[2::4].translate(tables[mask[2]])
    out[3::4] = src[3::4].translate(tables[mask[3]])
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
        head = bytes((first, mask_bit | n))
    elif n < 0x10000:
        head = bytes((first, mask_bit | 126)) + _U16.pack(n)
    else:
        head = bytes((first, mask_bit | 127)) + _U64.pack(n)
    if mask is None:
        return head + payload
    return head + mask + apply_mask(payload, mask)


def random_mask() -> bytes:
    """A fresh masking key from a strong source (RFC 6455 section 5.3, section 10.3)."""
    return os.urandom(4)


class FrameReader:
    """Split a byte stream into frames, checking each header (see the module docstring).

    Args:
        expect_masked: True on a server (client frames are masked), False on a client.
        max_payload: The largest frame payload accepted (1009 beyond it).
        allow_rsv1: RSV1 may be set (permessage-deflate was negotiated).
    """

    def __init__(
        self, *, expect_masked: bool, max_payload: int, allow_rsv1: bool = False
    ) -> None:
        self._buf = bytearray()
        self._pos = 0
        self._expect_masked = expect_masked
        self._max_payload = max_payload
        self._rsv_mask = 0x30 if allow_rsv1 else 0x70

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
        buf = self._buf
        pos = self._pos
        available = len(buf) - pos
        if available < 2:
            return None
        b0 = buf[pos]
        b1 = buf[pos + 1]
        if b0 & self._rsv_mask:
            # RFC 6455 section 5.2: nonzero RSV bits without an extension defining them.
            raise RemoteProtocolError("reserved bits set without a negotiated extension")
        opcode = b0 & 0x0F
        if opcode not in _KNOWN_OPCODES:
            # Section 5.2: reserved opcodes -> fail the connection.
            raise RemoteProtocolError(f"unknown opcode {opcode:#x}")
        fin = bool(b0 & 0x80)
        masked = bool(b1 & 0x80)
        if masked != self._expect_masked:
            # Section 5.1: a server closes on an unmasked frame, a client on a masked one.
            if masked:
                raise RemoteProtocolError("a server frame is masked")
            raise RemoteProtocolError("a client frame is not masked")
        length = b1 & 0x7F
        header = 2
        if opcode >= 0x8:
            # Section 5.5: control frames are short and never fragmented.
            if length > MAX_CONTROL_PAYLOAD:
                raise RemoteProtocolError("a control frame longer than 125 bytes")
            if not fin:
                raise RemoteProtocolError("a fragmented control frame")
            if b0 & 0x40:
                raise RemoteProtocolError("RSV1 set on a control frame")  # RFC 7692 section 6
        elif length == 126:
            if available < 4:
                return None
            (length,) = _U16.unpack_from(buf, pos + 2)
            header = 4
            if length < 126:
                raise RemoteProtocolError("payload length not minimally encoded")  # 5.2
        elif length == 127:
            if available < 10:
                return None
            (length,) = _U64.unpack_from(buf, pos + 2)
            header = 10
            if length >> 63:
                raise RemoteProtocolError("64-bit payload length with its top bit set")  # 5.2
            if length < 0x10000:
                raise RemoteProtocolError("payload length not minimally encoded")  # 5.2
        if length > self._max_payload:
            raise RemoteProtocolError(
                f"a frame of {length} bytes exceeds the limit of {self._max_payload}", 1009
            )
        if masked:
            end = pos + header + 4 + length
            if len(buf) < end:
                return None
            mask = bytes(buf[pos + header : pos + header + 4])
            payload = apply_mask(buf[pos + header + 4 : end], mask)
        else:
            end = pos + header + length
            if len(buf) < end:
                return None
            payload = bytes(buf[pos + header : end])
        self._pos = end
        return Frame(opcode, payload, fin, bool(b0 & 0x40))


MaskSource = Callable[[], bytes]
"""Returns a 4-byte masking key for each frame a client sends."""
