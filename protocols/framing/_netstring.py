"""Netstrings (https://cr.yp.to/proto/netstrings.txt), the sans-IO core.

Theory of operation: a netstring is ``<length>:<payload>,`` where ``<length>`` is
ASCII decimal without leading zeros (``0`` itself is fine). The decoder validates
the length digits as they arrive, so a bad or oversize length is rejected as soon as
it is visible and before any of the payload is buffered: no digits, a non-digit, a
leading zero, more digits than ``max_length`` has, or a value over ``max_length``.
A payload not followed by ``,`` is rejected too. Consumed bytes are compacted away
once per ``receive_data`` call. After an error the decoder refuses further use.
"""

from __future__ import annotations

from ._errors import LocalFramingError, NetstringError

__all__ = ["NetstringDecoder", "encode_netstring"]


class NetstringDecoder:
    """Turn a byte stream into netstring payloads. Pure: no I/O, no time.

    Args:
        max_length: Largest payload accepted.

    Example:
        >>> NetstringDecoder().feed(b"5:hello,0:,")
        [b'hello', b'']

    .. versionadded:: 0.1.0
    """

    def __init__(self, *, max_length: int = 1 << 20) -> None:
        if max_length < 0:
            raise ValueError("max_length must not be negative")
        self.max_length = max_length
        self._max_digits = len(str(max_length))
        self._buf = bytearray()
        self._pos = 0
        self._need: int | None = None  # payload length once the header is read
        self._failed = False

    def _fail(self, message: str) -> NetstringError:
        self._failed = True
        return NetstringError(message)

    def _check_digits(self, digits: bytes | bytearray, complete: bool) -> int | None:
        """Validate length digits; return their value (None if empty and incomplete)."""
        if not digits:
            if complete:
                raise self._fail("a netstring length has no digits")
            return None
        if not digits.isdigit():  # bytes.isdigit is ASCII-only
            raise self._fail(f"a netstring length is not decimal: {bytes(digits)!r}")
        if len(digits) > 1 and digits[0] == 0x30:
            raise self._fail("a netstring length has a leading zero")
        if len(digits) > self._max_digits:
            raise self._fail(f"a netstring is longer than {self.max_length} bytes")
        value = int(digits)
        if value > self.max_length:
            raise self._fail(f"a netstring of {value} bytes exceeds {self.max_length}")
        return value

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; call ``next_frame`` to take payloads out."""
        if self._pos:
            del self._buf[: self._pos]  # one compaction per call, not per payload
            self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        """Return the next complete payload, or ``None`` if more data is needed.

        Payloads completed before a bad netstring are all returned before the
        error is raised.

        Raises:
            NetstringError: the stream is not a valid netstring sequence (also
                raised on every later call).
        """
        if self._failed:
            raise NetstringError("the decoder failed earlier")
        buf = self._buf
        pos = self._pos
        need = self._need
        if need is None:
            colon = buf.find(b":", pos, pos + self._max_digits + 1)
            if colon < 0:
                # Validate the digits seen so far, to fail before buffering more.
                self._check_digits(buf[pos : pos + self._max_digits + 1], False)
                return None
            need = self._check_digits(buf[pos:colon], True)
            assert need is not None
            self._need = need
            pos = self._pos = colon + 1
        if len(buf) - pos <= need:
            return None
        if buf[pos + need] != 0x2C:  # b","
            raise self._fail("a netstring payload is not followed by a comma")
        self._pos = pos + need + 1
        self._need = None
        return bytes(buf[pos : pos + need])

    def feed(self, data: bytes) -> list[bytes]:
        """Receive ``data`` and return every payload it completes.

        Raises:
            NetstringError: as ``next_frame`` (payloads of the same call that came
                before the bad netstring are lost with it; use ``next_frame`` to
                keep them).
        """
        self.receive_data(data)
        out: list[bytes] = []
        while (payload := self.next_frame()) is not None:
            out.append(payload)
        return out


def encode_netstring(payload: bytes, *, max_length: int | None = None) -> bytes:
    """Return ``payload`` as a netstring.

    Raises:
        LocalFramingError: ``payload`` is longer than ``max_length``.
    """
    if max_length is not None and len(payload) > max_length:
        raise LocalFramingError(f"a payload of {len(payload)} bytes exceeds {max_length}")
    return b"%d:%b," % (len(payload), payload)
