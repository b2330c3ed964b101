"""Length-prefixed frames (16- or 32-bit big-endian prefixes), the sans-IO core.

Theory of operation: each frame is an unsigned big-endian length followed by that
many payload bytes. The prefix is checked against ``max_frame`` as soon as it is
complete, before any of the body is buffered, so an oversize announcement costs the
peer its connection and us nothing. ``receive_data`` buffers, ``next_frame`` pulls
one frame at a time (``feed`` does both); consumed bytes are compacted away once per
``receive_data`` call. After an error the decoder refuses further use.
"""

from __future__ import annotations

import struct

from ._errors import FrameTooLargeError, LocalFramingError

__all__ = ["PrefixedDecoder", "encode_prefixed"]

_STRUCTS = {16: struct.Struct("!H"), 32: struct.Struct("!I")}


def _prefix_struct(prefix_bits: int) -> struct.Struct:
    try:
        return _STRUCTS[prefix_bits]
    except KeyError:
        raise ValueError(f"prefix_bits must be 16 or 32, not {prefix_bits!r}") from None


class PrefixedDecoder:
    """Turn a byte stream into length-prefixed frames. Pure: no I/O, no time.

    Args:
        prefix_bits: 16 or 32.
        max_frame: Largest payload accepted; defaults to 1 MiB, capped at what
            the prefix can express.

    Example:
        >>> PrefixedDecoder(prefix_bits=16).feed(b"\\x00\\x02hi\\x00")
        [b'hi']

    .. versionadded:: 0.1.0
    """

    def __init__(self, *, prefix_bits: int = 32, max_frame: int | None = None) -> None:
        self._struct = _prefix_struct(prefix_bits)
        ceiling = (1 << prefix_bits) - 1
        if max_frame is None:
            max_frame = min(1 << 20, ceiling)
        if max_frame < 0:
            raise ValueError("max_frame must not be negative")
        self.prefix_bits = prefix_bits
        self.max_frame = min(max_frame, ceiling)
        self._buf = bytearray()
        self._pos = 0
        self._failed = False

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; call ``next_frame`` to take frames out."""
        if self._pos:
            del self._buf[: self._pos]  # one compaction per call, not per frame
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        """Return the next complete frame payload, or ``None`` if more data is needed.

        Frames completed before an oversize prefix are all returned before the
        error is raised.

        Raises:
            FrameTooLargeError: a prefix exceeds ``max_frame`` (also raised on
                every later call).
        """
        if self._failed:
            raise FrameTooLargeError("the decoder failed earlier")
        buf = self._buf
        pos = self._pos
        header = self._struct.size
        if len(buf) - pos < header:
            return None
        (size,) = self._struct.unpack_from(buf, pos)
        if size > self.max_frame:
            self._failed = True
            del buf[:]
            raise FrameTooLargeError(f"a frame of {size} bytes exceeds {self.max_frame}")
        end = pos + header + size
        if end > len(buf):
            return None
        self._pos = end
        return bytes(buf[pos + header : end])

    def feed(self, data: bytes) -> list[bytes]:
        """Receive ``data`` and return every frame payload it completes.

        Raises:
            FrameTooLargeError: as ``next_frame`` (frames of the same call that
                came before the oversize prefix are lost with it; use
                ``next_frame`` to keep them).
        """
        self.receive_data(data)
        frames: list[bytes] = []
        while (frame := self.next_frame()) is not None:
            frames.append(frame)
        return frames


def encode_prefixed(
    payload: bytes, *, prefix_bits: int = 32, max_frame: int | None = None
) -> bytes:
    """Return ``payload`` behind its length prefix.

    Raises:
        LocalFramingError: ``payload`` is longer than ``max_frame`` or than the
            prefix can express.
    """
    prefix = _prefix_struct(prefix_bits)
    limit = (1 << prefix_bits) - 1
    if max_frame is not None:
        limit = min(limit, max_frame)
    if len(payload) > limit:
        raise LocalFramingError(f"a frame of {len(payload)} bytes exceeds {limit}")
    return prefix.pack(len(payload)) + payload
