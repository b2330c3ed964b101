"""Line framing with a raw mode, the sans-IO core of ``LineProtocol``.

Theory of operation:

- ``receive_data`` appends to one ``bytearray``; consumed bytes are tracked by an
  offset and compacted away once per ``receive_data`` call, never per line.
- ``next_event`` is pull-based (as h11's ``next_event``) so that the caller may
  switch modes between two events: in line mode it returns the next delimited
  ``Line``; in raw mode it returns every buffered byte as one ``RawData``. It returns
  ``None`` when it needs more data.
- The line limit is enforced before the line is complete: as soon as more than
  ``max_length`` bytes (plus a possible partial delimiter) wait without a delimiter,
  ``LineTooLongError`` is raised, so a peer cannot make us buffer an endless line.
  After an error the decoder refuses further use.
"""

from __future__ import annotations

from dataclasses import dataclass

from ._errors import LineTooLongError, LocalFramingError

__all__ = ["Line", "LineDecoder", "RawData", "encode_line"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Line:
    """One complete line, without its delimiter."""

    line: bytes


@dataclass(frozen=True, slots=True, kw_only=True)
class RawData:
    """Bytes received in raw mode, as they came."""

    data: bytes


class LineDecoder:
    """Split a byte stream into lines, or pass it through in raw mode.

    Args:
        delimiter: The line terminator (default ``b"\\r\\n"``); must not be empty.
        max_length: Longest line accepted, delimiter excluded.

    Example:
        >>> decoder = LineDecoder()
        >>> decoder.receive_data(b"HELLO\\r\\nrest")
        >>> decoder.next_event()
        Line(line=b'HELLO')
        >>> decoder.set_raw_mode()
        >>> decoder.next_event()
        RawData(data=b'rest')

    .. versionadded:: 0.1.0
    """

    def __init__(self, *, delimiter: bytes = b"\r\n", max_length: int = 16384) -> None:
        if not delimiter:
            raise ValueError("the delimiter must not be empty")
        if max_length < 0:
            raise ValueError("max_length must not be negative")
        self.delimiter = delimiter
        self.max_length = max_length
        self._buf = bytearray()
        self._pos = 0
        self._raw = False
        self._failed = False

    @property
    def line_mode(self) -> bool:
        """True in line mode, False in raw mode."""
        return not self._raw

    @property
    def buffered(self) -> int:
        """How many received bytes no event has delivered yet."""
        return len(self._buf) - self._pos

    def set_raw_mode(self) -> None:
        """Deliver what follows as ``RawData`` instead of lines."""
        self._raw = True

    def set_line_mode(self, extra: bytes = b"") -> None:
        """Deliver what follows as lines; ``extra`` is parsed before buffered bytes.

        Args:
            extra: Bytes to put back in front of the stream (for example the part
                of a ``RawData`` that belongs to the next line).
        """
        self._raw = False
        if extra:
            self._buf[self._pos : self._pos] = extra

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; call ``next_event`` to take events out."""
        if self._pos:
            del self._buf[: self._pos]  # one compaction per call, not per line
            self._pos = 0
        self._buf += data

    def next_event(self) -> Line | RawData | None:
        """Return the next event, or ``None`` if more data is needed.

        Raises:
            LineTooLongError: a line is over ``max_length`` (also raised on every
                later call).
        """
        if self._failed:
            raise LineTooLongError("the decoder failed earlier")
        buf = self._buf
        pos = self._pos
        if self._raw:
            if pos == len(buf):
                return None
            self._pos = len(buf)
            return RawData(data=bytes(buf[pos:]))
        end = buf.find(self.delimiter, pos)
        if end < 0:
            if len(buf) - pos > self.max_length + len(self.delimiter) - 1:
                self._failed = True
                raise LineTooLongError(
                    f"more than {self.max_length} bytes without a line delimiter"
                )
            return None
        if end - pos > self.max_length:
            self._failed = True
            raise LineTooLongError(f"a line of {end - pos} bytes exceeds {self.max_length}")
        self._pos = end + len(self.delimiter)
        return Line(line=bytes(buf[pos:end]))

    def feed(self, data: bytes) -> list[Line | RawData]:
        """Receive ``data`` and return every event it completes.

        A convenience for callers that do not switch modes between events; the
        mode in force applies to everything returned.
        """
        self.receive_data(data)
        events: list[Line | RawData] = []
        while (event := self.next_event()) is not None:
            events.append(event)
        return events


def encode_line(line: bytes, delimiter: bytes = b"\r\n") -> bytes:
    """Return ``line`` with its delimiter.

    Raises:
        LocalFramingError: ``line`` contains the delimiter.
    """
    if delimiter in line:
        raise LocalFramingError("the line contains the delimiter")
    return line + delimiter
