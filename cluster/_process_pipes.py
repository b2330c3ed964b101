"""The pipe transports of a child process: one per piped child descriptor.

Theory of operation:

- Every pipe end we keep is non-blocking and watched with the reactor's
  ``add_reader``/``add_writer``; nothing here ever waits.
- ``ReadPipe`` carries what the child writes (child descriptor mode ``"w"``, e.g.
  stdout and stderr). Readable: read up to 256 KiB and hand it to the owner; an empty
  read is end of file and closes the pipe.
- ``WritePipe`` carries what we write to the child (mode ``"r"``, e.g. stdin).
  ``write`` tries the system call at once and buffers only what the pipe refused; the
  buffer drains from ``add_writer`` callbacks. It also watches its descriptor for
  *reading*, as asyncio does: the write end of a pipe becomes readable (POLLERR/HUP)
  when the child closes the other end or dies, so the pipe is closed then even if we
  never write again.
- Flow control mirrors asyncio's: above the high-water mark the owner's protocol gets
  ``pause_writing()`` (and a registered streaming producer ``pause_producing()``), at
  or below the low-water mark ``resume_writing()``. A pull producer is asked for a
  chunk (``resume_producing()``) every time the buffer is empty, as in Twisted.
- Closing is reported to the owner once, from ``reactor.call_soon``, never from
  inside the caller's own ``close()``: ``pipe_connection_lost`` cannot re-enter the
  code that closed the pipe.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Protocol

from zope.interface import implementer

from plait.cluster.interfaces import IConsumer, IPushProducer

__all__ = ["ReadPipe", "WritePipe"]

_log = logging.getLogger(__name__)

READ_SIZE = 256 * 1024
DEFAULT_HIGH_WATER = 64 * 1024


class _Owner(Protocol):
    """What a pipe needs from its process transport."""

    def _pipe_data(self, child_fd: int, data: bytes) -> None: ...

    def _pipe_lost(self, child_fd: int, exc: BaseException | None) -> None: ...

    def _flow(self, paused: bool) -> None: ...


class _Pipe:
    """What both directions share: the descriptor, closing and reporting."""

    def __init__(self, reactor: Any, owner: _Owner, child_fd: int, fd: int) -> None:
        self._reactor = reactor
        self._owner = owner
        self.child_fd = child_fd
        self._fd = fd
        self._closing = False
        self._closed = False

    def fileno(self) -> int:
        """Our end's descriptor (``-1`` once closed)."""
        return -1 if self._closed else self._fd

    def is_closing(self) -> bool:
        """True once ``close`` or ``abort`` was called or the pipe was lost."""
        return self._closing or self._closed

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``child_fd`` (the child's descriptor number) or ``fileno`` (ours)."""
        if name == "child_fd":
            return self.child_fd
        if name == "fileno":
            return self.fileno()
        return default

    def _close(self, exc: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = self._closing = True
        self._stop_watching()
        try:
            os.close(self._fd)
        except OSError:
            _log.exception("closing pipe for child fd %d", self.child_fd)
        self._reactor.call_soon(self._owner._pipe_lost, self.child_fd, exc)

    def _stop_watching(self) -> None:
        self._reactor.remove_reader(self._fd)

    def __repr__(self) -> str:
        state = "closed" if self._closed else "closing" if self._closing else "open"
        return f"<{type(self).__name__} child_fd={self.child_fd} fd={self._fd} {state}>"


@implementer(IPushProducer)
class ReadPipe(_Pipe):
    """A pipe the child writes into; its bytes go to ``pipe_data_received``.

    It is a push producer too: ``pause_producing``/``resume_producing`` are
    ``pause_reading``/``resume_reading`` and ``stop_producing`` is ``close``.
    """

    def __init__(self, reactor: Any, owner: _Owner, child_fd: int, fd: int) -> None:
        super().__init__(reactor, owner, child_fd, fd)
        self._paused = False

    def start(self) -> None:
        """Start watching the descriptor (unless ``connection_made`` paused or closed it)."""
        if not (self._closed or self._paused):
            self._reactor.add_reader(self._fd, self._read_ready)

    def _read_ready(self) -> None:
        if self._closed:
            return
        try:
            data = os.read(self._fd, READ_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._close(exc)
            return
        if data:
            self._owner._pipe_data(self.child_fd, data)
        else:
            self._close(None)

    def pause_reading(self) -> None:
        """Stop reading until ``resume_reading``; the child blocks once the pipe is full."""
        if self._closed or self._paused:
            return
        self._paused = True
        self._reactor.remove_reader(self._fd)

    def resume_reading(self) -> None:
        """Read again after ``pause_reading``."""
        if self._closed or not self._paused:
            return
        self._paused = False
        self._reactor.add_reader(self._fd, self._read_ready)

    def is_reading(self) -> bool:
        """True unless paused or closed."""
        return not (self._paused or self._closed)

    def close(self) -> None:
        """Stop reading and close our end; ``pipe_connection_lost(fd, None)`` follows."""
        self._close(None)

    def abort(self) -> None:
        """The same as ``close`` for a pipe we only read from."""
        self._close(None)

    pause_producing = pause_reading
    resume_producing = resume_reading
    stop_producing = close

    def _stop_watching(self) -> None:
        if not self._paused:
            self._reactor.remove_reader(self._fd)


@implementer(IConsumer)
class WritePipe(_Pipe):
    """A pipe the child reads from (its stdin, usually); asyncio's write-transport API."""

    def __init__(self, reactor: Any, owner: _Owner, child_fd: int, fd: int) -> None:
        super().__init__(reactor, owner, child_fd, fd)
        self._buffer = bytearray()
        self._writing = False  # add_writer is active
        self._paused = False  # the protocol was told pause_writing
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._producer: Any = None  # IPushProducer or IPullProducer
        self._streaming = False

    def start(self) -> None:
        """Watch for the child closing its end (see the module docstring).

        ``connection_made`` runs before this, and may have closed the pipe already.
        """
        if not self._closed:
            self._reactor.add_reader(self._fd, self._peer_closed)

    # ------------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data`` to the child without blocking; dropped once closing.

        Raises:
            TypeError: ``data`` is not bytes-like.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        if self._closing or self._closed:
            _log.debug("%r: write after close dropped (%d bytes)", self, len(data))
            return
        if not data:
            return
        if not self._buffer:
            try:
                sent = os.write(self._fd, data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError as exc:
                self._close(exc)
                return
            if sent == len(data):
                return
            data = memoryview(data)[sent:]
        self._buffer += data
        self._watch_writable()
        self._check_high_water()

    def writelines(self, list_of_data: Any) -> None:
        """Write each buffer of ``list_of_data`` in turn (joined into one write)."""
        self.write(b"".join(list_of_data))

    def _write_ready(self) -> None:
        if self._closed:
            return
        if self._buffer:
            try:
                sent = os.write(self._fd, self._buffer)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._close(exc)
                return
            del self._buffer[:sent]
            self._check_low_water()
        if self._buffer:
            return
        if self._closing:
            self._close(None)
        elif self._producer is not None and not self._streaming:
            self._producer.resume_producing()  # a pull producer: ask for the next chunk
            if not self._buffer and self._producer is None:
                self._unwatch_writable()
        else:
            self._unwatch_writable()

    def _peer_closed(self) -> None:
        if self._closed:
            return
        # The child closed its end: what is still buffered can never arrive.
        self._close(BrokenPipeError("the child closed the pipe") if self._buffer else None)

    def _watch_writable(self) -> None:
        if not self._writing and not self._closed:
            self._writing = True
            self._reactor.add_writer(self._fd, self._write_ready)

    def _unwatch_writable(self) -> None:
        if self._writing:
            self._writing = False
            self._reactor.remove_writer(self._fd)

    def _stop_watching(self) -> None:
        self._unwatch_writable()
        self._reactor.remove_reader(self._fd)
        self._buffer.clear()
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.stop_producing()
            except Exception:
                _log.exception("%r: stop_producing of %r raised", self, producer)

    # ----------------------------------------------------------------- closing

    def close(self) -> None:
        """Close once the buffer is sent; ``pipe_connection_lost(fd, None)`` follows."""
        if self._closing or self._closed:
            return
        self._closing = True
        if not self._buffer:
            self._close(None)

    def write_eof(self) -> None:
        """The same as ``close``: the child reads end of file once the buffer is sent."""
        self.close()

    def can_write_eof(self) -> bool:
        """Always True."""
        return True

    def abort(self) -> None:
        """Close at once, dropping what is buffered."""
        self._close(None)

    # ----------------------------------------------------------- flow control

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks (asyncio's defaults and rules: ``high >= low >= 0``).

        Raises:
            ValueError: the marks are negative or ``low > high``.
        """
        if high is None:
            high = DEFAULT_HIGH_WATER if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        self._check_high_water()
        self._check_low_water()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """The ``(low, high)`` water marks, as asyncio returns them."""
        return self._low, self._high

    def get_write_buffer_size(self) -> int:
        """Bytes buffered and not yet taken by the pipe."""
        return len(self._buffer)

    def _check_high_water(self) -> None:
        if not self._paused and len(self._buffer) > self._high:
            self._paused = True
            self._owner._flow(True)
            if self._producer is not None and self._streaming:
                self._producer.pause_producing()

    def _check_low_water(self) -> None:
        if self._paused and len(self._buffer) <= self._low:
            self._paused = False
            self._owner._flow(False)
            if self._producer is not None and self._streaming:
                self._producer.resume_producing()

    # -------------------------------------------------------------- producers

    def register_producer(self, producer: Any, streaming: bool) -> None:
        """Attach a push (``streaming=True``) or pull producer, as in Twisted.

        A pull producer's ``resume_producing`` is called whenever the buffer is
        empty. On a closed pipe the producer is told ``stop_producing`` at once.

        Raises:
            RuntimeError: a producer is registered already.
        """
        if self._producer is not None:
            raise RuntimeError(f"{self!r} already has producer {self._producer!r}")
        if self._closed:
            producer.stop_producing()
            return
        self._producer, self._streaming = producer, streaming
        if streaming:
            if self._paused:
                producer.pause_producing()
        else:
            self._watch_writable()

    def unregister_producer(self) -> None:
        """Detach the producer."""
        self._producer = None
        if not self._buffer:
            self._unwatch_writable()
