"""Thin adapters that put the framing cores on a transport.

Each adapter *has* a sans-IO decoder (composition, not a mixin tower), feeds it from
``data_received`` and calls one method per message. When the peer breaks the
framing, the adapter calls ``framing_failed(exc)``, which by default logs the error
and aborts this connection only; nothing propagates into the reactor.

Names follow Twisted's ``LineReceiver``, ``NetstringReceiver`` and
``Int16StringReceiver``/``Int32StringReceiver``, in snake_case:

- ``LineProtocol``: ``line_received(line)``, ``raw_data_received(data)``,
  ``set_line_mode(extra=b"")``, ``set_raw_mode()``, ``send_line(line)``; class
  attributes ``delimiter`` and ``max_length``.
- ``NetstringProtocol``: ``string_received(payload)``, ``send_string(payload)``;
  class attribute ``max_length``.
- ``PrefixedProtocol`` (``Int16Protocol``, ``Int32Protocol``):
  ``frame_received(payload)``, ``send_frame(payload)``; class attributes
  ``prefix_bits`` and ``max_frame``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from plait.cluster.protocol import Protocol

from ._errors import RemoteFramingError
from ._lines import Line, LineDecoder, encode_line
from ._netstring import NetstringDecoder, encode_netstring
from ._prefixed import PrefixedDecoder, encode_prefixed

__all__ = [
    "Int16Protocol",
    "Int32Protocol",
    "LineProtocol",
    "NetstringProtocol",
    "PrefixedProtocol",
]

_log = logging.getLogger(__name__)


class _FramedProtocol(Protocol):
    """What the three adapters share: the transport, and what a framing error does."""

    def framing_failed(self, exc: RemoteFramingError) -> None:
        """The peer broke the framing: log it and abort this connection.

        Override to answer first (for example with an error line), then abort.

        Args:
            exc: What the decoder found wrong.
        """
        _log.info("aborting connection to %s: %s", self._peer(), exc)
        if self.transport is not None:
            self.transport.abort()

    def _peer(self) -> Any:
        if self.transport is None:
            return None
        return self.transport.get_extra_info("peername")

    def _stopped(self) -> bool:
        return self.transport is None or bool(self.transport.is_closing())

    def _deliver_frames(
        self, decoder: NetstringDecoder | PrefixedDecoder, data: bytes,
        deliver: Callable[[bytes], object],
    ) -> None:
        """Feed ``decoder`` and hand each completed frame to ``deliver`` until the
        decoder needs more bytes, the connection closes, or the peer breaks the framing."""
        decoder.receive_data(data)
        while not self._stopped():
            try:
                frame = decoder.next_frame()
            except RemoteFramingError as exc:
                self.framing_failed(exc)
                return
            if frame is None:
                return
            deliver(frame)


class LineProtocol(_FramedProtocol):
    """Deliver lines to ``line_received``; in raw mode, bytes to ``raw_data_received``.

    Example:
        >>> from plait.cluster.testing import MemoryTransport
        >>> class Shout(LineProtocol):
        ...     def line_received(self, line: bytes) -> None:
        ...         self.send_line(line.upper())
        >>> proto, transport = Shout(), MemoryTransport()
        >>> transport.make_connection(proto)
        >>> proto.data_received(b"hello\\r\\nwor")
        >>> proto.data_received(b"ld\\r\\n")
        >>> transport.value()
        b'HELLO\\r\\nWORLD\\r\\n'

    .. versionadded:: 0.1.0
    """

    delimiter: bytes = b"\r\n"
    max_length: int = 16384
    _decoder: LineDecoder | None = None
    _delivering = False

    @property
    def decoder(self) -> LineDecoder:
        """The sans-IO core (made on first use from ``delimiter`` and ``max_length``)."""
        if self._decoder is None:
            self._decoder = LineDecoder(delimiter=self.delimiter, max_length=self.max_length)
        return self._decoder

    def data_received(self, data: bytes) -> None:
        """Feed the decoder and deliver every line or raw chunk it completes."""
        self.decoder.receive_data(data)
        self._deliver()

    def _deliver(self) -> None:
        if self._delivering:
            return  # a mode switch from inside a callback: the running loop goes on
        self._delivering = True
        try:
            decoder = self.decoder
            while not self._stopped():
                try:
                    event = decoder.next_event()
                except RemoteFramingError as exc:
                    self.framing_failed(exc)
                    return
                if event is None:
                    return
                if type(event) is Line:
                    self.line_received(event.line)
                else:
                    self.raw_data_received(event.data)  # type: ignore[union-attr]
        finally:
            self._delivering = False

    def set_line_mode(self, extra: bytes = b"") -> None:
        """Deliver lines from now on; ``extra`` is parsed before anything buffered.

        Args:
            extra: Bytes to put back in front of the stream, such as the part of
                raw data that belongs to the next line.
        """
        self.decoder.set_line_mode(extra)
        if not self._delivering and self.transport is not None:
            self._deliver()

    def set_raw_mode(self) -> None:
        """Deliver bytes to ``raw_data_received`` from now on, as they arrive."""
        self.decoder.set_raw_mode()
        if not self._delivering and self.transport is not None:
            self._deliver()

    def send_line(self, line: bytes) -> None:
        """Write ``line`` and the delimiter.

        Raises:
            LocalFramingError: ``line`` contains the delimiter.
        """
        self.transport.write(encode_line(line, self.delimiter))

    def line_received(self, line: bytes) -> None:
        """A line arrived (without its delimiter); ignored by default."""

    def raw_data_received(self, data: bytes) -> None:
        """Bytes arrived in raw mode; ignored by default."""


class NetstringProtocol(_FramedProtocol):
    """Deliver netstring payloads to ``string_received``.

    Example:
        >>> from plait.cluster.testing import MemoryTransport
        >>> class Echo(NetstringProtocol):
        ...     def string_received(self, payload: bytes) -> None:
        ...         self.send_string(payload)
        >>> proto, transport = Echo(), MemoryTransport()
        >>> transport.make_connection(proto)
        >>> proto.data_received(b"3:abc,0:,")
        >>> transport.value()
        b'3:abc,0:,'

    .. versionadded:: 0.1.0
    """

    max_length: int = 1 << 20
    _decoder: NetstringDecoder | None = None

    @property
    def decoder(self) -> NetstringDecoder:
        """The sans-IO core (made on first use from ``max_length``)."""
        if self._decoder is None:
            self._decoder = NetstringDecoder(max_length=self.max_length)
        return self._decoder

    def data_received(self, data: bytes) -> None:
        """Feed the decoder and deliver every payload it completes."""
        self._deliver_frames(self.decoder, data, self.string_received)

    def send_string(self, payload: bytes) -> None:
        """Write ``payload`` as a netstring."""
        self.transport.write(encode_netstring(payload))

    def string_received(self, payload: bytes) -> None:
        """A netstring arrived; ignored by default."""


class PrefixedProtocol(_FramedProtocol):
    """Deliver length-prefixed frames to ``frame_received`` (32-bit prefixes here).

    Example:
        >>> from plait.cluster.testing import MemoryTransport
        >>> class Echo(Int16Protocol):
        ...     def frame_received(self, payload: bytes) -> None:
        ...         self.send_frame(payload[::-1])
        >>> proto, transport = Echo(), MemoryTransport()
        >>> transport.make_connection(proto)
        >>> proto.data_received(b"\\x00\\x03abc")
        >>> transport.value()
        b'\\x00\\x03cba'

    .. versionadded:: 0.1.0
    """

    prefix_bits: int = 32
    max_frame: int | None = None
    _decoder: PrefixedDecoder | None = None

    @property
    def decoder(self) -> PrefixedDecoder:
        """The sans-IO core (made on first use from ``prefix_bits`` and ``max_frame``)."""
        if self._decoder is None:
            self._decoder = PrefixedDecoder(prefix_bits=self.prefix_bits, max_frame=self.max_frame)
        return self._decoder

    def data_received(self, data: bytes) -> None:
        """Feed the decoder and deliver every frame it completes."""
        self._deliver_frames(self.decoder, data, self.frame_received)

    def send_frame(self, payload: bytes) -> None:
        """Write ``payload`` behind its length prefix.

        Raises:
            LocalFramingError: ``payload`` is too big for the prefix or ``max_frame``.
        """
        self.transport.write(
            encode_prefixed(payload, prefix_bits=self.prefix_bits, max_frame=self.max_frame)
        )

    def frame_received(self, payload: bytes) -> None:
        """A frame arrived; ignored by default."""


class Int16Protocol(PrefixedProtocol):
    """Frames behind 16-bit big-endian lengths (Twisted's ``Int16StringReceiver``)."""

    prefix_bits = 16


class Int32Protocol(PrefixedProtocol):
    """Frames behind 32-bit big-endian lengths (Twisted's ``Int32StringReceiver``)."""

    prefix_bits = 32
