"""Content codings (RFC 9110 section 8.4): undoing gzip and deflate, incrementally.

A sans-IO core: bytes in, bytes out, no I/O and no clock. The HTTP client
(``client_protocol``) uses it to decode response bodies as they arrive.

Theory of operation. ``codings_to_undo`` reads the ``Content-Encoding`` list:
codings are listed in the order they were applied, so they are undone in reverse;
``identity`` is dropped, and one unsupported coding (``br``, ``zstd``, ...) makes the
whole body undecodable here (``None``: hand it out as received). A
``ContentDecoder`` chains one ``_Inflater`` per coding, the outermost first. Each
inflater *pulls* from the one before it (the first from the queue of received
bytes) and inflates with ``zlib.decompressobj(...).decompress(data, max_length)``,
so one ``read(n)`` never makes more than ``n`` bytes of output, nor more than
``_STEP`` bytes in any inner stage, however well the input compresses: a
decompression bomb costs memory only as fast as the caller asks for output. Input
that zlib did not take yet (``unconsumed_tail``) stays with the inflater.

gzip (``x-gzip`` too) may hold several members one after another (RFC 1952), and
zero bytes after a member are padding, as Python's ``gzip`` module allows; any
other byte after a member must start a new member, or it is an error. deflate is
the zlib format (RFC 1950) in the standard, but some servers send raw deflate
(RFC 1951), which browsers accept: the first two bytes decide (a zlib header has
compression method 8 and a check value divisible by 31). Bytes after the end of a
deflate stream are an error. ``finish()`` checks that every stage ended cleanly:
an empty body is fine (nothing to decode), a body that ends inside a gzip member or
a deflate stream raises ``TruncatedContent``.
"""

from __future__ import annotations

import zlib
from collections import deque
from collections.abc import Callable, Sequence

__all__ = [
    "ACCEPT_ENCODING",
    "SUPPORTED_CODINGS",
    "ContentDecoder",
    "ContentDecodingError",
    "TruncatedContent",
    "codings_to_undo",
]

SUPPORTED_CODINGS = frozenset({"gzip", "x-gzip", "deflate"})
"""The codings a ``ContentDecoder`` undoes (besides ``identity``, which needs nothing)."""

ACCEPT_ENCODING = b"gzip, deflate"
"""The ``Accept-Encoding`` value that asks for what ``ContentDecoder`` can undo."""

_STEP = 65536  # the most output an inner stage makes per pull
_GZIP_MAGIC = b"\x1f\x8b"


class ContentDecodingError(ValueError):
    """The body is not valid data for its content coding."""


class TruncatedContent(ContentDecodingError):
    """The body ended before the end of its encoded data (a gzip trailer, say)."""


def codings_to_undo(values: Sequence[bytes]) -> list[str] | None:
    """The codings to undo for these ``Content-Encoding`` list elements.

    Args:
        values: The list elements of every ``Content-Encoding`` field, in order
            (``Headers.get_list``).

    Returns:
        The codings in the order they were applied (lower-cased, ``x-gzip`` as
        ``gzip``, ``identity`` dropped; possibly empty), or ``None`` when one of
        them is not supported.
    """
    codings: list[str] = []
    for value in values:
        name = value.strip(b" \t").lower().decode("latin-1")
        if name == "identity":
            continue
        if name not in SUPPORTED_CODINGS:
            return None
        codings.append("gzip" if name == "x-gzip" else name)
    return codings


class _Inflater:
    """Undoes one coding; pulls its input from ``source(n)`` (``b""``: none now)."""

    __slots__ = ("_buffer", "_coding", "_ended", "_more", "_obj", "_source", "_started")

    def __init__(self, coding: str, source: Callable[[int], bytes]) -> None:
        self._coding = coding
        self._source = source
        self._obj: zlib._Decompress | None = None
        self._buffer = b""  # input not inflated yet
        self._more = False  # the last call filled max_length: zlib may hold more output
        self._started = False  # any input seen
        self._ended = False  # a gzip member or the deflate stream ended (and none begun since)

    def read(self, n: int) -> bytes:
        """Up to ``n`` decoded bytes; ``b""`` when more input is needed.

        Raises:
            ContentDecodingError: the input is not valid data for the coding.
        """
        while True:
            if self._buffer or self._more:
                out = self._inflate(n)
                if out:
                    return out
                if self._buffer and self._obj is None and not self._can_start():
                    pass  # a partial header: pull more input below
                elif self._buffer or self._more:
                    continue
            chunk = self._source(_STEP)
            if not chunk:
                return b""
            self._started = True
            self._buffer += chunk

    def _can_start(self) -> bool:
        """Whether ``_buffer`` holds enough to pick how to start the next stream."""
        return len(self._buffer) >= 2

    def _inflate(self, n: int) -> bytes:
        obj = self._obj
        if obj is None:
            obj = self._begin()
            if obj is None:
                return b""
        try:
            out = obj.decompress(self._buffer, n)
        except zlib.error as exc:
            raise ContentDecodingError(f"invalid {self._coding} data: {exc}") from exc
        self._more = len(out) == n
        if obj.eof:
            self._obj = None
            self._ended = True
            self._more = False
            self._buffer = obj.unused_data
            if self._buffer and self._coding == "deflate":
                raise ContentDecodingError(
                    f"{len(self._buffer)} bytes of unexpected data after the deflate stream"
                )
        else:
            self._buffer = obj.unconsumed_tail
        return out

    def _begin(self) -> zlib._Decompress | None:
        """Start the next gzip member or the deflate stream; None: not yet (or padding)."""
        if self._coding == "gzip":
            if self._ended:
                self._buffer = self._buffer.lstrip(b"\x00")  # padding after a member
                if not self._buffer:
                    return None
            if not _GZIP_MAGIC.startswith(self._buffer[:2]):
                where = "after the gzip member" if self._ended else "at the start"
                raise ContentDecodingError(f"invalid gzip data: no gzip header {where}")
            if not self._can_start():
                return None
            wbits = 16 + zlib.MAX_WBITS
        else:
            if self._ended:  # unreachable: data after the stream raised already
                raise ContentDecodingError("unexpected data after the deflate stream")
            if not self._can_start():
                return None
            cmf, flg = self._buffer[0], self._buffer[1]
            zlib_header = cmf & 0x0F == 8 and cmf >> 4 <= 7 and (cmf << 8 | flg) % 31 == 0
            wbits = zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS
        self._ended = False
        self._obj = zlib.decompressobj(wbits)
        return self._obj

    def finish(self) -> None:
        """Check that the input ended cleanly (call once ``read`` returned ``b""``).

        Raises:
            TruncatedContent: the input ended inside a gzip member or deflate stream.
        """
        if not self._started:
            return  # an empty body: nothing was encoded
        if self._obj is not None or self._buffer or not self._ended:
            raise TruncatedContent(f"the {self._coding} data ends before its end")


class ContentDecoder:
    """Undoes a list of content codings, incrementally, with bounded output per read.

    Args:
        codings: The codings in the order they were applied (``codings_to_undo``).

    Raises:
        ValueError: an unsupported coding.

    Example:
        >>> import gzip
        >>> decoder = ContentDecoder(["gzip"])
        >>> decoder.feed(gzip.compress(b"hello " * 3))
        >>> decoder.read(10), decoder.read(100), decoder.read(100)
        (b'hello hell', b'o hello ', b'')
        >>> decoder.finish()
    """

    __slots__ = ("_input", "_last", "_stages", "received")

    def __init__(self, codings: Sequence[str]) -> None:
        for coding in codings:
            if coding not in SUPPORTED_CODINGS:
                raise ValueError(f"unsupported content coding {coding!r}")
        self._input: deque[bytes] = deque()
        self.received = 0
        """Encoded bytes fed so far."""
        source: Callable[[int], bytes] = self._pop
        self._stages: list[_Inflater] = []
        for coding in reversed(codings):
            stage = _Inflater("gzip" if coding == "x-gzip" else coding, source)
            self._stages.append(stage)
            source = stage.read
        self._last = source

    def _pop(self, _: int) -> bytes:
        return self._input.popleft() if self._input else b""

    def feed(self, data: bytes) -> None:
        """Add received (encoded) bytes."""
        if data:
            self.received += len(data)
            self._input.append(data)

    def read(self, max_length: int) -> bytes:
        """Decode up to ``max_length`` bytes; ``b""`` when every byte fed is decoded.

        Raises:
            ValueError: ``max_length`` is not positive.
            ContentDecodingError: the data is not valid for its coding.
        """
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, not {max_length!r}")
        return self._last(max_length)

    def finish(self) -> None:
        """The encoded input ended: check that it ended cleanly.

        Call it once ``read`` returned ``b""``.

        Raises:
            TruncatedContent: the data ends before its end (a missing gzip trailer).
        """
        for stage in self._stages:
            stage.finish()
