"""The socket stream transport shared by TCP and Unix stream connections.

Theory of operation:

- Reading: the transport is the reader callback of its fd. Each readable event does
  one ``recv(max_read)`` and hands the bytes to ``protocol.data_received``. ``b""``
  is the peer's EOF: ``eof_received()`` returning a true value keeps our side open
  (half-close), anything else closes. An exception from the protocol aborts *this*
  connection with that exception (``connection_lost(exc)``; a TCP peer gets an RST)
  and is logged; the reactor and the other connections carry on. An ``asyncio.BufferedProtocol``
  (``get_buffer``/``buffer_updated``, no ``data_received``) is read with
  ``recv_into`` straight into its buffer, as asyncio does.
- Writing: ``write`` sends straight to the socket while nothing is buffered and
  buffers only what the kernel did not take; a non-empty buffer means the fd is
  registered as writable (that invariant is kept everywhere). The writable callback
  sends the buffer with one ``sendmsg`` of up to ``IOV_MAX`` chunks.
- Flow control: over the high-water mark the protocol gets ``pause_writing()`` and a
  push producer ``pause_producing()``; under the low-water mark ``resume_writing()``
  and ``resume_producing()``. A pull producer is asked for more whenever the buffer
  is empty.
- Closing: ``close()`` stops reading and closes once the buffer is sent; ``abort()``
  drops the buffer and closes at once, with an RST for TCP (``SO_LINGER`` 0). Either
  way ``connection_lost`` is called exactly once, from the loop, never from inside
  the caller's ``write``/``close``. A write after close is dropped silently (asyncio
  warns; a peer's close must not crash the writer). Errors from the socket
  (``ECONNRESET``, ``EPIPE``) close at once and reach ``connection_lost(exc)``.
"""

from __future__ import annotations

import logging
import os
import socket
import struct
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import Any

from zope.interface import implementer

from plait.cluster._transport_helpers import WriteFlowControl, write_buffer_limits
from plait.cluster.interfaces import ITransport

__all__ = ["StreamTransport"]

_log = logging.getLogger("plait.reactor")

_IOV_MAX = min(getattr(os, "sysconf", lambda _: 1024)("SC_IOV_MAX") or 1024, 1024)
_LINGER_RST = struct.pack("ii", 1, 0)
_BYTES_LIKE = (bytes, bytearray, memoryview)
_INET = (socket.AF_INET, socket.AF_INET6)


def _is_buffered(protocol: Any) -> bool:
    """True for an ``asyncio.BufferedProtocol`` (``get_buffer``/``buffer_updated`` and
    no ``data_received``), which is read with ``recv_into`` into its own buffer.

    Raises:
        TypeError: ``protocol`` has neither way of receiving data.
    """
    if hasattr(protocol, "data_received"):
        return False
    if hasattr(protocol, "get_buffer") and hasattr(protocol, "buffer_updated"):
        return True
    raise TypeError(f"{protocol!r} has neither data_received nor get_buffer/buffer_updated")


def _not_for_buffered(data: bytes) -> None:
    raise TypeError("a BufferedProtocol is fed through get_buffer/buffer_updated")


def _check_bytes(data: object) -> None:
    if not isinstance(data, _BYTES_LIKE):
        raise TypeError(f"data must be bytes, bytearray or memoryview, not {type(data).__name__}")


@implementer(ITransport)
class StreamTransport(WriteFlowControl):
    """A connected, non-blocking stream socket driven by a reactor.

    The creator calls ``_start()`` once, which calls ``protocol.connection_made``
    and starts reading.

    Args:
        reactor: The reactor (``add_reader``, ``add_writer``, ``call_soon``).
        sock: A connected socket; the transport sets it non-blocking and owns it.
        protocol: The protocol to deliver to.
        extra: Extra ``get_extra_info`` entries.
    """

    #: Most bytes read per readable event.
    max_read = 65536

    def __init__(self, reactor: Any, sock: socket.socket, protocol: Any,
                 extra: dict[str, Any] | None = None) -> None:
        sock.setblocking(False)
        self._reactor = reactor
        self._sock: socket.socket = sock
        self._fd = sock.fileno()
        self._recv = sock.recv
        self._send = sock.send
        self._protocol = protocol
        self._buffered = _is_buffered(protocol)
        self._data_received: Callable[[bytes], object] = (
            _not_for_buffered if self._buffered else protocol.data_received)
        self._buffer: deque[bytes | memoryview] = deque()
        self._buffer_size = 0
        self._high = 64 * 1024
        self._low = 16 * 1024
        self._protocol_paused = False
        self._closing = False  # close()/abort() called, or the connection was lost
        self._lost = False  # connection_lost is scheduled or done
        self._eof_written = False  # write_eof() called
        self._eof_received = False
        self._reading = False  # registered as a reader
        self._read_paused = False
        self._producer: Any = None
        self._streaming = False
        self._producer_paused = False
        self._dropped_writes = 0
        self._extra: dict[str, Any] = {"socket": sock}
        for name, get in (("sockname", sock.getsockname), ("peername", sock.getpeername)):
            try:
                self._extra[name] = get()
            except OSError:
                self._extra[name] = None
        if extra:
            self._extra.update(extra)

    def _start(self) -> None:
        """Call ``connection_made`` and start reading (once, by the creator)."""
        try:
            self._protocol.connection_made(self)
        except Exception as exc:
            _log.exception("connection_made of %r failed; aborting", self._protocol)
            self._abort_with(exc)
            return
        if not self._closing and not self._read_paused:
            self._reading = True
            self._reactor.add_reader(self._fd, self._reader())

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        return f"<{type(self).__name__} fd={self._fd} {state} peer={self._extra['peername']}>"

    # ------------------------------------------------------------------ reading

    def _on_readable(self) -> None:
        try:
            data = self._recv(self.max_read)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc)
            return
        if data:
            try:
                self._data_received(data)
            except Exception as exc:
                _log.exception("data_received of %r failed; aborting its connection",
                               self._protocol)
                self._abort_with(exc)
        else:
            self._on_eof()

    def _reader(self) -> Callable[[], None]:
        """The readable callback for the current protocol."""
        return self._on_readable_into if self._buffered else self._on_readable

    def _on_readable_into(self) -> None:
        """Read into the buffer of an ``asyncio.BufferedProtocol``."""
        protocol = self._protocol
        try:
            buf = protocol.get_buffer(-1)
            if not len(buf):
                raise RuntimeError(f"get_buffer() of {protocol!r} returned an empty buffer")
        except Exception as exc:
            _log.exception("get_buffer of %r failed; aborting its connection", protocol)
            self._abort_with(exc)
            return
        try:
            n = self._sock.recv_into(buf)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc)
            return
        if n:
            try:
                protocol.buffer_updated(n)
            except Exception as exc:
                _log.exception("buffer_updated of %r failed; aborting its connection", protocol)
                self._abort_with(exc)
        else:
            self._on_eof()

    def _on_eof(self) -> None:
        self._eof_received = True
        self._stop_reading()
        try:
            keep_open = self._protocol.eof_received()
        except Exception as exc:
            _log.exception("eof_received of %r failed; aborting", self._protocol)
            self._abort_with(exc)
            return
        if not keep_open or self._eof_written:
            self.close()

    def _stop_reading(self) -> None:
        if self._reading:
            self._reading = False
            self._reactor.remove_reader(self._fd)

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until ``resume_reading``."""
        if self._closing or self._read_paused:
            return
        self._read_paused = True
        self._stop_reading()

    def resume_reading(self) -> None:
        """Resume calling ``data_received``."""
        if not self._read_paused:
            return
        self._read_paused = False
        if not self._closing and not self._eof_received and not self._reading:
            self._reading = True
            self._reactor.add_reader(self._fd, self._reader())

    def is_reading(self) -> bool:
        """True unless reading is paused or the transport is closing."""
        return not self._read_paused and not self._closing

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``, buffering what the socket does not take now.

        Dropped once the transport is closing or after ``write_eof``.

        Raises:
            TypeError: ``data`` is not bytes-like.
        """
        if type(data) is not bytes:
            _check_bytes(data)
            data = bytes(data)  # the caller may mutate a bytearray after we return
        if self._closing or self._eof_written:
            self._drop_write()
            return
        if not data:
            return
        if self._buffer_size:
            self._buffer.append(data)
            self._buffer_size += len(data)
            if self._buffer_size > self._high:
                self._pause_protocol()
            return
        try:
            n = self._send(data)
        except (BlockingIOError, InterruptedError):
            n = 0
        except OSError as exc:
            self._fatal_error(exc)
            return
        if n == len(data):
            return
        rest = memoryview(data)[n:]
        self._buffer.append(rest)
        self._buffer_size = len(rest)
        self._reactor.add_writer(self._fd, self._on_writable)
        if self._buffer_size > self._high:
            self._pause_protocol()

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Send several buffers, in one ``sendmsg`` call when nothing is buffered.

        Raises:
            TypeError: an item is not bytes-like.
        """
        chunks = []
        for data in list_of_data:
            if type(data) is not bytes:
                _check_bytes(data)
                data = bytes(data)
            if data:
                chunks.append(data)
        if self._closing or self._eof_written:
            self._drop_write()
            return
        if not chunks:
            return
        was_empty = not self._buffer_size
        self._buffer.extend(chunks)
        self._buffer_size += sum(map(len, chunks))
        if was_empty:
            self._flush()
            if self._lost:
                return
            if self._buffer_size:
                self._reactor.add_writer(self._fd, self._on_writable)
        if self._buffer_size > self._high:
            self._pause_protocol()

    def _drop_write(self) -> None:
        self._dropped_writes += 1
        if self._dropped_writes == 1:
            _log.debug("%r: write after close or write_eof dropped", self)

    def _flush(self) -> None:
        """Send as much of the buffer as the socket takes now."""
        buf = self._buffer
        try:
            if len(buf) == 1:
                n = self._send(buf[0])
            else:
                n = self._sock.sendmsg(list(islice(buf, _IOV_MAX)))
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc)
            return
        self._buffer_size -= n
        while n:
            chunk = buf[0]
            size = len(chunk)
            if size <= n:
                buf.popleft()
                n -= size
            else:
                buf[0] = memoryview(chunk)[n:]
                break

    def _on_writable(self) -> None:
        self._flush()
        if self._lost:
            return
        if self._buffer_size:
            if self._protocol_paused and self._buffer_size <= self._low:
                self._resume_protocol()
            return
        self._reactor.remove_writer(self._fd)
        if self._protocol_paused:
            self._resume_protocol()
        if self._closing:
            self._schedule_connection_lost(None)
        elif self._eof_written:
            self._shutdown_write()
        elif self._producer is not None and not self._streaming:
            self._reactor.call_soon(self._pull)

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks (asyncio's defaults: 64 KiB high, a quarter of it low).

        Raises:
            ValueError: not ``high >= low >= 0``.
        """
        high, low = write_buffer_limits(high, low)
        self._high, self._low = high, low
        if self._buffer_size > high:
            self._pause_protocol()
        elif self._protocol_paused and self._buffer_size <= low:
            self._resume_protocol()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """``(low, high)``, as asyncio returns them."""
        return (self._low, self._high)

    def get_write_buffer_size(self) -> int:
        """Bytes buffered and not yet sent."""
        return self._buffer_size

    def can_write_eof(self) -> bool:
        """True: stream sockets can half-close."""
        return True

    def write_eof(self) -> None:
        """Half-close: send EOF once the buffered bytes are out; reading goes on."""
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        if not self._buffer_size:
            self._shutdown_write()

    def _shutdown_write(self) -> None:
        try:
            self._sock.shutdown(socket.SHUT_WR)
        except OSError as exc:
            self._fatal_error(exc)
            return
        if self._eof_received:
            self.close()

    # ----------------------------------------------------------------- producers

    def _may_pull(self) -> bool:
        return not self._buffer_size

    def _pull(self) -> None:
        producer = self._producer
        if producer is None or self._streaming or self._closing or self._buffer_size:
            return
        try:
            producer.resume_producing()
        except Exception as exc:
            _log.exception("resume_producing of %r failed; aborting", producer)
            self._abort_with(exc)
            return
        if self._producer is producer and not self._buffer_size and not self._closing:
            self._reactor.call_soon(self._pull)  # all sent at once: ask for more

    # ------------------------------------------------------------------ closing

    def is_closing(self) -> bool:
        """True once ``close``/``abort`` was called or the connection was lost."""
        return self._closing

    def close(self) -> None:
        """Stop reading; close once the buffer is sent; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        self._stop_reading()
        if not self._buffer_size:
            self._schedule_connection_lost(None)

    def abort(self) -> None:
        """Close now, dropping the buffer; TCP peers get an RST."""
        self._abort_with(None)

    def _abort_with(self, exc: BaseException | None) -> None:
        """Close now with an RST for TCP peers; ``connection_lost(exc)`` follows.

        A protocol callback that raised ends its connection this way, so that the
        peer sees a reset, not a clean end of stream.
        """
        if self._lost:
            return
        if self._sock.family in _INET:
            try:
                self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            except OSError as err:
                _log.debug("SO_LINGER on %r: %s", self, err)
        self._force_close(exc)

    def _fatal_error(self, exc: OSError) -> None:
        _log.debug("%r: %s", self, exc)
        self._force_close(exc)

    def _force_close(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._closing = True
        self._stop_reading()
        if self._buffer_size:
            self._buffer.clear()
            self._buffer_size = 0
            self._reactor.remove_writer(self._fd)
        self._schedule_connection_lost(exc)

    def _schedule_connection_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._reactor.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        except Exception:
            _log.exception("connection_lost of %r failed", self._protocol)
        finally:
            self._reactor.remove_reader(self._fd)
            self._reactor.remove_writer(self._fd)
            self._sock.close()
            self._stop_producer()

    # -------------------------------------------------------------------- misc

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``peername``, ``sockname``, ``socket`` (and what the creator added)."""
        return self._extra.get(name, default)

    def get_protocol(self) -> Any:
        """The protocol this transport delivers to."""
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        """Deliver to ``protocol`` from now on."""
        was_buffered, self._buffered = self._buffered, _is_buffered(protocol)
        self._protocol = protocol
        self._data_received = _not_for_buffered if self._buffered else protocol.data_received
        if self._reading and was_buffered != self._buffered:
            self._reactor.add_reader(self._fd, self._reader())  # replaces the callback
