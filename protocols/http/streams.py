"""plait.protocols.http.streams: bodies that flow while a request is being answered.

``RequestBody`` receives a request's body from the server, event by event, and
hands it to the application as Deferreds: ``read_all()`` (what ``request.body()``
returns) and ``next_chunk()`` (what ``request.stream()`` awaits). The first read of
a body still on its way calls ``on_read`` (the server sends ``100 Continue`` then);
when unread chunks pile up past ``high_water`` the server pauses reading, and
``on_drained`` resumes it once the application has caught up.

``ResponseStreamer`` sends the body of a ``StreamingResponse``: it iterates the
chunks (async or not) or runs the body producer, writing through the server, and
waits while the transport is paused (``pause``/``resume``): the async iteration
awaits, a producer gets ``pause_producing``. ``stop`` (the client left) closes the
iteration or stops the producer. ``BodyConsumer`` is what a producer writes to.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import AsyncIterable, Callable, Iterable
from typing import Any

from plait.cluster.defer import Deferred, fail, maybe_deferred, succeed

__all__ = ["BodyConsumer", "RequestBody", "ResponseStreamer"]

_log = logging.getLogger("plait.http")


class RequestBody:
    """The body of one served request, as it arrives.

    Args:
        on_read: Called once, on the first read while the body is incomplete.
        on_drained: Called when buffered, unread bytes fall to zero.
    """

    __slots__ = ("_chunks", "_done", "_error", "_on_drained", "_on_read", "_size", "_waiter")

    high_water = 65536
    """Unread bytes above which ``feed`` returns True (the server pauses reading)."""

    def __init__(
        self,
        on_read: Callable[[], None] | None = None,
        on_drained: Callable[[], None] | None = None,
    ) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: Deferred[bytes] | None = None
        self._on_read = on_read
        self._on_drained = on_drained

    @property
    def done(self) -> bool:
        """Whether the last byte arrived (or the body failed)."""
        return self._done

    def feed(self, data: bytes) -> bool:
        """Add received bytes; return True when unread bytes exceed ``high_water``."""
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.callback(data)
            return False
        self._chunks.append(data)
        self._size += len(data)
        return self._size > self.high_water

    def finish(self) -> None:
        """The body ended."""
        self._done = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.callback(b"")

    def fail(self, exc: BaseException) -> None:
        """The body will never end; readers get ``exc`` (a ``BodyError``)."""
        if self._done:
            return
        self._done = True
        self._error = exc
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.errback(exc)

    def next_chunk(self) -> Deferred[bytes]:
        """A Deferred of the next chunk; ``b""`` once the body has ended.

        Returns:
            A Deferred of bytes, which errbacks with the ``BodyError`` the body
            failed with.

        Raises:
            RuntimeError: another read is already waiting.
        """
        if self._chunks:
            chunk = self._chunks.popleft()
            self._size -= len(chunk)
            if not self._chunks and self._on_drained is not None:
                self._on_drained()
            return succeed(chunk)
        if self._error is not None:
            return fail(self._error)
        if self._done:
            return succeed(b"")
        if self._waiter is not None:
            raise RuntimeError("the request body is already being read")
        on_read, self._on_read = self._on_read, None
        if on_read is not None:
            on_read()
        self._waiter = Deferred()
        return self._waiter

    def read_all(self) -> Deferred[bytes]:
        """A Deferred of every remaining byte, once the body has ended.

        Returns:
            A Deferred of bytes, which errbacks with the ``BodyError`` the body
            failed with.
        """
        if self._done:
            if self._error is not None:
                return fail(self._error)
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            return succeed(data)
        return Deferred.from_coroutine(self._collect())

    async def _collect(self) -> bytes:
        parts: list[bytes] = []
        while True:
            chunk = await self.next_chunk()
            if not chunk:
                return b"".join(parts)
            parts.append(chunk)


class BodyConsumer:
    """What a body producer writes to (Twisted's ``IConsumer``, for one body).

    Args:
        write: Sends one piece of the body.
    """

    __slots__ = ("_write",)

    def __init__(self, write: Callable[[bytes], Any]) -> None:
        self._write = write

    def write(self, data: bytes) -> None:
        """Send ``data`` as part of the body.

        Raises:
            ConnectionError: the client went away.
        """
        self._write(data)


class ResponseStreamer:
    """Sends one streaming response body with back-pressure.

    Args:
        write: Sends one chunk (raises ``ConnectionError`` once the client left).
        paused: Whether the transport is paused already.
    """

    def __init__(self, write: Callable[[bytes | str], None], *, paused: bool = False) -> None:
        self._write = write
        self._paused = paused
        self._producer: Any = None
        self._writable: Deferred[None] | None = None
        self._done: Deferred[Any] | None = None

    def start(self, chunks: Any) -> Deferred[Any]:
        """Start sending ``chunks``: an (async) iterable, or a body producer.

        Returns:
            A Deferred that fires when the body has been written, or errbacks
            with what the iteration or the producer raised (``ConnectionError``
            when the client left).
        """
        if hasattr(chunks, "start_producing"):
            self._producer = chunks
            done = maybe_deferred(chunks.start_producing, BodyConsumer(self._write))
            if self._paused:
                chunks.pause_producing()
        else:
            done = Deferred.from_coroutine(self._pump(chunks))
        self._done = done
        return done

    def pause(self) -> None:
        """The transport's buffer is full: stop producing."""
        self._paused = True
        if self._producer is not None:
            self._producer.pause_producing()

    def resume(self) -> None:
        """The transport drained: produce again."""
        self._paused = False
        if self._producer is not None:
            self._producer.resume_producing()
        self._fire(None)

    def stop(self, exc: BaseException) -> None:
        """The client went away: stop the producer, or end the iteration."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.stop_producing()
            except Exception:
                _log.exception("stop_producing of a response body producer failed")
        if self._done is not None and not self._done.called:
            self._done.cancel()
        self._fire(exc)

    def _fire(self, exc: BaseException | None) -> None:
        d, self._writable = self._writable, None
        if d is not None:
            if exc is None:
                d.callback(None)
            else:
                d.errback(exc)

    def _wait_writable(self) -> Deferred[None]:
        if self._writable is None:
            self._writable = Deferred()
        return self._writable

    async def _pump(self, chunks: AsyncIterable[bytes | str] | Iterable[bytes | str]) -> None:
        if isinstance(chunks, AsyncIterable):
            iterator = aiter(chunks)
            collected = False
            try:
                async for chunk in iterator:
                    self._write(chunk)
                    if self._paused:
                        await self._wait_writable()
            except GeneratorExit:
                # This coroutine is being closed while the iterator is suspended in its
                # own __anext__: it cannot be awaited now, and closes itself when
                # collected.
                collected = True
                raise
            finally:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None and not collected:
                    await aclose()
        else:
            sync_iterator = iter(chunks)
            try:
                for chunk in sync_iterator:
                    self._write(chunk)
                    if self._paused:
                        await self._wait_writable()
            finally:
                close = getattr(sync_iterator, "close", None)
                if close is not None:
                    close()
