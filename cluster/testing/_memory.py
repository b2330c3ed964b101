"""MemoryTransport: Twisted's ``StringTransport`` in asyncio's shape.

Theory of operation
-------------------
A MemoryTransport records every byte written to it (``value()``, ``clear()``) and
keeps the state a real stream transport keeps: closing, aborted, half-closed
(``write_eof``), reading paused, writing paused, a registered producer. It runs in
one of two modes.

*Standalone* (made by a test, no peer): the "network" is infinitely fast. Written
bytes are recorded and count as sent at once, so ``get_write_buffer_size()`` is 0
unless the test sets ``buffer_size`` to pretend that the kernel holds a backlog.
``close()`` delivers ``connection_lost(None)`` to the protocol immediately when
that buffer is empty, or as soon as the test sets ``buffer_size`` back to 0.
``abort()`` delivers ``connection_lost(None)`` immediately. A protocol is only
known to the transport if it was given (``MemoryTransport(protocol)``,
``set_protocol`` or ``make_connection``); otherwise close/abort only mark the state.

*Wired* (two transports joined by ``connect_in_memory``): written bytes also wait
in an outbox until ``IOPump`` carries them to the peer, and they count in
``get_write_buffer_size()`` until then. The pump moves bytes only into a peer that
is reading, so a peer that calls ``pause_reading`` makes the writer's buffer grow
past its high-water mark, which calls the writer protocol's ``pause_writing`` (and
pauses a registered push producer) exactly as a full socket would. Everything that
ends a connection (close, abort, EOF) is delivered by the pump, never from inside
the call that asked for it, as asyncio delivers it on a later loop iteration.

Rules (chosen to mirror asyncio's selector transports over TCP):

- ``write`` of something that is not bytes-like raises ``TypeError``. ``write``
  after ``close``/``abort``/``write_eof`` is dropped without raising (and counted
  in ``dropped_bytes``), as the native transport drops it.
- After ``close`` the transport stops reading (asyncio removes its reader).
- A connection that is half-closed both ways (EOF written and received) closes.
- Water marks follow asyncio: ``pause_writing`` once the buffer is *above* ``high``,
  ``resume_writing`` once it is *at or below* ``low``. Defaults: 64 KiB and 16 KiB.
- When the connection is lost, a registered producer gets ``stop_producing()``.
"""

from __future__ import annotations

import logging
import os
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from zope.interface import implementer

from plait.cluster._transport_helpers import DEFAULT_HIGH_WATER, call_hook, write_buffer_limits
from plait.cluster.interfaces import IProducer, IUnixTransport

__all__ = ["DEFAULT_HIGH_WATER", "MemoryTransport", "close_fds"]

_log = logging.getLogger(__name__)

_BYTES_LIKE = (bytes, bytearray, memoryview)


@dataclass(slots=True)
class _Segment:
    """Bytes waiting in a wired transport's outbox; ``fds`` ride with ``send_fds``."""

    data: bytes
    fds: tuple[int, ...] = ()


def close_fds(fds: Iterable[int]) -> None:
    """Close descriptors this module duplicated; a failure is logged, not raised."""
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            _log.debug("closing fd %d failed", fd, exc_info=True)


def _check_bytes(data: object, what: str) -> bytes:
    if not isinstance(data, _BYTES_LIKE):
        raise TypeError(f"{what} expects bytes, bytearray or memoryview, got {type(data).__name__}")
    return bytes(data)


@implementer(IUnixTransport)
class MemoryTransport:
    """An in-memory stream transport that records what is written to it.

    Args:
        protocol: The protocol that receives ``connection_lost`` and the flow-control
            callbacks. ``connection_made`` is not called; use ``make_connection``.
        peername: What ``get_extra_info("peername")`` returns.
        sockname: What ``get_extra_info("sockname")`` returns.
        extra: More ``get_extra_info`` values (they override the two above).

    Example:
        >>> transport = MemoryTransport()
        >>> transport.write(b"hello ")
        >>> transport.writelines([b"wor", b"ld"])
        >>> transport.value()
        b'hello world'
        >>> transport.close()
        >>> transport.is_closing()
        True
    """

    def __init__(
        self,
        protocol: Any = None,
        *,
        peername: Any = ("127.0.0.1", 54321),
        sockname: Any = ("127.0.0.1", 12345),
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        self._protocol = protocol
        self._extra: dict[str, Any] = {"peername": peername, "sockname": sockname}
        if extra:
            self._extra.update(extra)
        self._written = bytearray()
        self.sent_fds: list[list[int]] = []
        """Every ``send_fds`` call's descriptors, in order."""
        self.dropped_bytes = 0
        """Bytes passed to ``write`` after ``close``/``abort`` and dropped."""
        self.producer: IProducer | None = None
        """The registered producer, if any."""
        self.streaming = False
        """Whether ``producer`` is a push (streaming) producer."""
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._backlog = 0
        self._writing_paused = False
        self._reading = True
        self._closing = False
        self._close_requested = False
        self._abort_requested = False
        self._abort_exc: BaseException | None = None
        self._eof_written = False
        self._lost = False
        # Wired mode, set by connect_in_memory and read by the pump.
        self._peer: MemoryTransport | None = None
        self._outbox: deque[_Segment] = deque()
        self._outbox_size = 0
        self._eof_delivered = False
        self._eof_received = False
        self._reset_pending = False

    # ------------------------------------------------------------ recording

    def value(self) -> bytes:
        """Every byte written since the transport was made or last ``clear()``ed."""
        return bytes(self._written)

    def clear(self) -> None:
        """Forget the bytes recorded so far (what is in flight still travels)."""
        self._written.clear()

    def make_connection(self, protocol: Any) -> None:
        """Adopt ``protocol`` and call its ``connection_made(self)``."""
        self._protocol = protocol
        protocol.connection_made(self)

    @property
    def eof_written(self) -> bool:
        """True once ``write_eof`` was called."""
        return self._eof_written

    @property
    def aborted(self) -> bool:
        """True once ``abort`` was called (or a protocol error aborted the connection)."""
        return self._abort_requested

    @property
    def disconnected(self) -> bool:
        """True once ``connection_lost`` was delivered (or would have been, with no protocol)."""
        return self._lost

    @property
    def buffer_size(self) -> int:
        """Bytes counted as unsent; setting it simulates the kernel's backlog.

        Setting the size calls ``pause_writing``/``resume_writing`` (and pauses or
        resumes a push producer) when it crosses the water marks, and completes a
        pending ``close()`` of a standalone transport when it reaches 0.

        Raises:
            ValueError: on a negative size.
            TypeError: on a size that is not an int.
        """
        return self.get_write_buffer_size()

    @buffer_size.setter
    def buffer_size(self, size: int) -> None:
        if not isinstance(size, int) or isinstance(size, bool):
            raise TypeError(f"buffer_size must be an int, got {type(size).__name__}")
        if size < 0:
            raise ValueError(f"buffer_size must be >= 0, got {size}")
        self._backlog = size
        self._check_water_marks()
        if self._peer is None and self._close_requested and self.get_write_buffer_size() == 0:
            self._connection_lost(None)

    # ------------------------------------------------------------ ITransport

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Record ``data`` (and queue it for the peer when wired).

        Dropped (and counted in ``dropped_bytes``) once closing or after ``write_eof``.

        Raises:
            TypeError: ``data`` is not bytes-like.
        """
        payload = _check_bytes(data, "write()")
        if self._closing or self._eof_written:
            self._drop(len(payload))
            return
        if payload:
            self._queue(_Segment(payload))

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Write several buffers as one.

        Raises:
            TypeError: an item is not bytes-like (nothing is written then).
        """
        chunks = [_check_bytes(item, "writelines()") for item in list_of_data]
        self.write(b"".join(chunks))

    def send_fds(self, fds: Sequence[int], data: bytes | bytearray | memoryview = b"\0") -> None:
        """Record ``fds`` (in ``sent_fds``) and ``data``; a wired peer gets ``fds_received``.

        Wired, the descriptors are duplicated here, as the kernel does with
        SCM_RIGHTS: the caller may close its own at once, and the receiving protocol
        owns (and must close) the copies it gets. Copies that are never delivered
        (aborted connection, a receiver without ``fds_received``) are closed.
        Standalone, only the numbers are recorded.

        Raises:
            TypeError: ``data`` is not bytes-like or an fd is not an int.
            ValueError: ``data`` is empty or an fd is negative.
            OSError: wired, an fd is not open (``EBADF``).
        """
        payload = _check_bytes(data, "send_fds()")
        if not payload:
            raise ValueError("send_fds() needs at least one byte of data")
        numbers = list(fds)
        for fd in numbers:
            if not isinstance(fd, int) or isinstance(fd, bool):
                raise TypeError(f"file descriptors must be ints, got {type(fd).__name__}")
            if fd < 0:
                raise ValueError(f"file descriptors must be >= 0, got {fd}")
        if self._closing or self._eof_written:
            self._drop(len(payload))
            return
        copies: list[int] = []
        if self._peer is not None:
            try:
                for fd in numbers:
                    copies.append(os.dup(fd))
            except OSError:
                close_fds(copies)
                raise
        self.sent_fds.append(numbers)
        self._queue(_Segment(payload, tuple(copies)))

    def write_eof(self) -> None:
        """Half-close: the peer gets ``eof_received`` once the queued bytes are out."""
        if self._closing or self._eof_written:
            return
        self._eof_written = True

    def can_write_eof(self) -> bool:
        """Always True."""
        return True

    def close(self) -> None:
        """Stop reading and close once the buffer is empty.

        Standalone, ``connection_lost(None)`` is delivered at once if the buffer is
        empty; wired, the pump delivers it after the last queued byte has left.
        """
        if self._closing:
            return
        self._closing = True
        self._close_requested = True
        if self._peer is None and self.get_write_buffer_size() == 0:
            self._connection_lost(None)

    def abort(self) -> None:
        """Close at once, dropping buffered bytes.

        Standalone, ``connection_lost(None)`` is delivered at once; wired, the pump
        delivers ``connection_lost(None)`` here and ``ConnectionResetError`` to the peer.
        """
        self._abort(None)

    def is_closing(self) -> bool:
        """True once ``close``/``abort`` was called or the connection was lost."""
        return self._closing

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``peername``, ``sockname`` and whatever ``extra`` was given."""
        return self._extra.get(name, default)

    def pause_reading(self) -> None:
        """Stop delivering ``data_received`` (wired: the bytes wait at the writer)."""
        self._reading = False

    def resume_reading(self) -> None:
        """Deliver ``data_received`` again."""
        self._reading = True

    def is_reading(self) -> bool:
        """True unless reading is paused or the transport is closing."""
        return self._reading and not self._closing

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks, with asyncio's defaults and checks.

        With neither given, ``high`` is 64 KiB; a missing ``high`` is ``4 * low``; a
        missing ``low`` is ``high // 4``. The new marks take effect at once.

        Raises:
            ValueError: unless ``high >= low >= 0``.
            TypeError: a limit is not an int.
        """
        for limit in (high, low):
            if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool)):
                raise TypeError(f"write buffer limits must be ints, got {type(limit).__name__}")
        high, low = write_buffer_limits(high, low)
        self._high, self._low = high, low
        self._check_water_marks()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """``(low, high)``, as asyncio returns them."""
        return self._low, self._high

    def get_write_buffer_size(self) -> int:
        """Bytes queued for the peer plus the simulated ``buffer_size`` backlog."""
        return self._outbox_size + self._backlog

    def get_protocol(self) -> Any:
        """The protocol this transport delivers to."""
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        """Deliver to ``protocol`` from now on."""
        self._protocol = protocol

    # ------------------------------------------------------------ IConsumer

    def register_producer(self, producer: IProducer, streaming: bool) -> None:
        """Attach a push (``streaming=True``) or pull producer, Twisted's way.

        A push producer is paused and resumed with the write buffer's water marks.
        A pull producer, standalone, gets ``resume_producing()`` once, now; wired, it
        gets one on every pump step that finds the buffer empty (the native transport
        asks again each time its buffer empties), until it unregisters; an exception
        from it aborts the connection with that exception. On a lost connection the
        producer is stopped at once.

        Raises:
            RuntimeError: a producer is registered already.
        """
        if self.producer is not None:
            raise RuntimeError(f"producer {self.producer!r} is already registered")
        if self._lost:
            producer.stop_producing()
            return
        self.producer = producer
        self.streaming = bool(streaming)
        if self.streaming:
            if self._writing_paused:
                self._producer_call("pause_producing")
        elif self._peer is None:
            self._producer_call("resume_producing")

    def unregister_producer(self) -> None:
        """Detach the producer (no-op when none is registered)."""
        self.producer = None
        self.streaming = False

    # ------------------------------------------------------------ internals

    def _drop(self, size: int) -> None:
        self.dropped_bytes += size
        _log.debug("%r: dropped %d bytes written after close", self, size)

    def _queue(self, segment: _Segment) -> None:
        self._written += segment.data
        if self._peer is not None:
            self._outbox.append(segment)
            self._outbox_size += len(segment.data)
        self._check_water_marks()

    def _drop_outbox(self) -> None:
        for segment in self._outbox:
            if segment.fds:
                close_fds(segment.fds)
        self._outbox.clear()
        self._outbox_size = 0

    def _take_outbox(self) -> list[_Segment]:
        """The pump takes everything queued; flow control follows."""
        segments = list(self._outbox)
        self._outbox.clear()
        self._outbox_size = 0
        return segments

    def _after_drain(self) -> None:
        """The pump emptied the outbox: resume writing."""
        self._check_water_marks()

    def _pull(self) -> bool:
        """The pump found the outbox empty: ask a pull producer for more."""
        producer: Any = self.producer  # an IPullProducer when not streaming
        if producer is None or self.streaming or self._closing:
            return False
        try:
            producer.resume_producing()
        except Exception as exc:
            _log.exception("%r: pull producer resume_producing() failed; aborting", self)
            self._abort(exc)
        return True

    def _check_water_marks(self) -> None:
        size = self.get_write_buffer_size()
        if not self._writing_paused and size > self._high and not self._lost:
            self._writing_paused = True
            self._protocol_call("pause_writing")
            if self.streaming:
                self._producer_call("pause_producing")
        elif self._writing_paused and size <= self._low:
            self._writing_paused = False
            if self._lost:
                return
            self._protocol_call("resume_writing")
            if self.streaming:
                self._producer_call("resume_producing")

    def _protocol_call(self, name: str) -> None:
        call_hook(self._protocol, name, _log, "%r: protocol %s() failed", self, name)

    def _producer_call(self, name: str) -> None:
        call_hook(self.producer, name, _log, "%r: producer %s() failed", self, name)

    def _abort(self, exc: BaseException | None) -> None:
        if self._lost or self._abort_requested:
            return
        self._closing = True
        self._abort_requested = True
        self._abort_exc = exc
        self._drop_outbox()
        self._backlog = 0
        if self._peer is None:
            self._connection_lost(exc)

    def _connection_lost(self, exc: BaseException | None) -> None:
        """Deliver ``connection_lost(exc)`` once, then stop any producer."""
        if self._lost:
            return
        self._lost = True
        self._closing = True
        self._drop_outbox()
        if self._protocol is not None:
            try:
                self._protocol.connection_lost(exc)
            except Exception:
                _log.exception("%r: protocol connection_lost() failed", self)
        producer, self.producer = self.producer, None
        self.streaming = False
        if producer is not None:
            try:
                producer.stop_producing()
            except Exception:
                _log.exception("%r: producer stop_producing() failed", self)

    def __repr__(self) -> str:
        state = "lost" if self._lost else "closing" if self._closing else "open"
        return f"<MemoryTransport {state} sockname={self._extra.get('sockname')!r}>"
