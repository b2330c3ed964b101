"""plait.protocols.http.client_response: ``ClientResponse``, its body, the errors.

Re-exported by ``plait.protocols.http.client``, which is where applications import
them from (not a ``_`` core: bodies hand out Deferreds).

Theory of operation. The connection adapter (``client_protocol``) builds one
``ClientResponse`` per final response head and feeds the body into its
``ResponseBody`` as ``Data`` events arrive. The body is a queue of chunks with at
most one waiting reader: ``read()`` collects every chunk, ``stream()`` hands them
out one by one. When unread bytes pile up past ``high_water`` the adapter pauses
the transport (``feed`` returns True) and resumes it when the reader has drained
the queue (``on_drained``), so a slow consumer slows the server down instead of
filling memory. A body fails with ``ResponseFailed`` (cut short),
``ResponseTooLarge``, ``MalformedResponse`` or ``RequestTimeout``.
"""

from __future__ import annotations

import json
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from plait.cluster.defer import Deferred, fail, succeed
from plait.cluster.defer import TimeoutError as DeferredTimeoutError

from ._errors import RemoteProtocolError
from ._headers import Headers

__all__ = [
    "ClientResponse",
    "ConnectTimeout",
    "HTTPClientError",
    "MalformedResponse",
    "ProxyError",
    "RequestTimeout",
    "ResponseBody",
    "ResponseFailed",
    "ResponseNeverReceived",
    "ResponseTooLarge",
    "TooManyRedirects",
]


class HTTPClientError(Exception):
    """Base class of the errors the HTTP client's Deferreds errback with."""


class ResponseNeverReceived(HTTPClientError, ConnectionError):
    """The connection closed (or broke) before any response head arrived."""


class ResponseFailed(HTTPClientError, ConnectionError):
    """The connection closed (or broke) in the middle of a response body."""


class MalformedResponse(HTTPClientError, RemoteProtocolError):
    """The server sent bytes that are not valid HTTP/1.1 (the core's error is the cause)."""


class ResponseTooLarge(HTTPClientError):
    """The response body is larger than the agent's ``max_body_size``."""


class RequestTimeout(HTTPClientError, DeferredTimeoutError):
    """The request did not complete within its ``timeout`` (a builtin ``TimeoutError``)."""


class ConnectTimeout(RequestTimeout):
    """No connection to the server was made within ``connect_timeout``."""


class ProxyError(HTTPClientError, ConnectionError):
    """The proxy refused or broke a ``CONNECT`` tunnel.

    Attributes:
        status: The proxy's status code (407, 502, ...), or ``None`` when it closed
            the connection or sent no valid answer.
        proxy: The proxy, password masked (``http://user:***@host:port``).
    """

    def __init__(self, message: str, *, status: int | None = None, proxy: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.proxy = proxy


class TooManyRedirects(HTTPClientError):
    """More redirects than ``max_redirects`` were followed."""


class ResponseBody:
    """The body of one response, as it arrives.

    Args:
        on_drained: Called when buffered, unread bytes fall to zero after
            ``feed`` asked for a pause.
    """

    __slots__ = (
        "_all",
        "_chunks",
        "_done",
        "_error",
        "_on_drained",
        "_size",
        "_waiter",
        "received",
    )

    high_water = 65536
    """Unread bytes above which ``feed`` returns True (the adapter pauses reading)."""

    def __init__(self, on_drained: Callable[[], None] | None = None) -> None:
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self._done = False
        self._error: BaseException | None = None
        self._waiter: Deferred[bytes] | None = None
        self._all: Deferred[bytes] | None = None  # read_all() waits for the end
        self._on_drained = on_drained
        self.received = 0
        """Body bytes received so far."""

    @property
    def done(self) -> bool:
        """Whether the body ended (completely or with an error)."""
        return self._done

    def feed(self, data: bytes) -> bool:
        """Add received bytes; return True when unread bytes exceed ``high_water``."""
        self.received += len(data)
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.callback(data)
            return False
        self._chunks.append(data)
        if self._all is not None:
            return False  # the reader wants it all: no point in pausing
        self._size += len(data)
        return self._size > self.high_water

    def finish(self) -> None:
        """The body ended."""
        if self._done:
            return
        self._done = True
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            waiter.callback(b"")
        collector = self._all
        if collector is not None:
            self._all = None
            data = b"".join(self._chunks)
            self._chunks.clear()
            collector.callback(data)

    def fail(self, exc: BaseException) -> None:
        """The body will never end; readers get ``exc`` (unread chunks are dropped)."""
        if self._done:
            return
        self._done = True
        self._error = exc
        self._chunks.clear()
        self._size = 0
        waiter = self._waiter or self._all
        self._waiter = self._all = None
        if waiter is not None:
            waiter.errback(exc)

    def next_chunk(self) -> Deferred[bytes]:
        """A Deferred of the next chunk; ``b""`` once the body has ended.

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
        if self._waiter is not None or self._all is not None:
            raise RuntimeError("the response body is already being read")
        self._waiter = Deferred()
        return self._waiter

    def read_all(self) -> Deferred[bytes]:
        """A Deferred of every remaining byte, once the body has ended.

        Raises:
            RuntimeError: another read is already waiting.
        """
        if self._waiter is not None or self._all is not None:
            raise RuntimeError("the response body is already being read")
        if self._done:
            if self._error is not None:
                return fail(self._error)
            data = b"".join(self._chunks)
            self._chunks.clear()
            self._size = 0
            return succeed(data)
        collector = self._all = Deferred()
        unread, self._size = self._size, 0
        if unread and self._on_drained is not None:
            # Reading may be paused; collecting everything needs no pause. (This may
            # end the body, or fail it, at once: ``collector`` has fired then.)
            self._on_drained()
        return collector


def _parse_json(data: bytes) -> Any:
    return json.loads(data)


class ClientResponse:
    """A response received by ``Agent.request``: its head now, its body as it comes.

    The Deferred of ``Agent.request`` fires with this object as soon as the head
    has arrived; the body follows. Read it with ``await response.read()`` (or
    ``text()``, ``json()``), or chunk by chunk with ``async for chunk in
    response.stream()``. The connection goes back to the pool once the whole body
    has arrived; ``close()`` gives up on a body you do not want.

    When the agent decodes a gzip or deflate ``Content-Encoding`` (``decoded`` is
    True), the body is handed out decoded, ``headers`` stay as the server sent them
    (``Content-Encoding`` and ``Content-Length`` describe the encoded body) and
    ``length`` is ``None``: the decoded size is not known in advance.

    Attributes:
        status: The status code, e.g. ``200``.
        reason: The reason phrase, e.g. ``"OK"``.
        headers: The response ``Headers`` (case-insensitive, multi-valued).
        version: The server's HTTP version, ``"1.1"`` or ``"1.0"``.
        method: The request method, e.g. ``"GET"``.
        url: The URL this response answers (after any redirects).
        history: The redirect responses followed to get here, oldest first.
        decoded: Whether the body is decoded from its ``Content-Encoding``.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        *,
        status: int,
        reason: str,
        headers: Headers,
        version: str,
        method: str,
        url: str,
        body: ResponseBody,
        abort: Callable[[], None],
        decoded: bool = False,
    ) -> None:
        self.status = status
        self.reason = reason
        self.headers = headers
        self.version = version
        self.method = method
        self.url = url
        self.history: list[ClientResponse] = []
        self.decoded = decoded
        self._body = body
        self._abort = abort

    @property
    def length(self) -> int | None:
        """The announced ``Content-Length``, or ``None`` when the body is not sized.

        ``None`` too for a decoded body (``decoded``): the announced length counts
        the encoded bytes, and the decoded size is not known until the end.
        """
        if self.decoded:
            return None
        value = self.headers.get(b"content-length")
        if value is None or not value.isdigit():
            return None
        return int(value)

    @property
    def complete(self) -> bool:
        """Whether the whole body has arrived (or failed)."""
        return self._body.done

    def read(self) -> Deferred[bytes]:
        """Collect the rest of the body.

        Returns:
            A Deferred of the body bytes. It errbacks with ``ResponseFailed`` (the
            connection broke mid-body), ``ResponseTooLarge``, ``MalformedResponse``
            or ``RequestTimeout``.
        """
        return self._body.read_all()

    def text(self, encoding: str | None = None) -> Deferred[str]:
        """Collect the body and decode it.

        Args:
            encoding: The codec; default: the ``charset`` of ``Content-Type``, else
                UTF-8. Undecodable bytes are replaced.

        Returns:
            A Deferred of the text, failing as ``read()`` does.
        """
        codec = encoding or self._charset() or "utf-8"
        return self.read().add_callback(lambda data: data.decode(codec, errors="replace"))

    def json(self) -> Deferred[Any]:
        """Collect the body and parse it as JSON.

        Returns:
            A Deferred of the parsed value, failing as ``read()`` does, or with
            ``json.JSONDecodeError`` (a ``ValueError``) for a body that is not JSON.
        """
        return self.read().add_callback(_parse_json)

    async def stream(self) -> AsyncIterator[bytes]:
        """Yield the body chunk by chunk as it arrives.

        While the consumer is slower than the server, unread chunks past 64 KiB
        pause reading from the connection (back-pressure).

        Raises:
            ResponseFailed, ResponseTooLarge, MalformedResponse, RequestTimeout: as
                for ``read()``.
        """
        while True:
            chunk = await self._body.next_chunk()
            if not chunk:
                return
            yield chunk

    def close(self) -> None:
        """Give up on the rest of the body: the connection is aborted, not reused.

        Does nothing once the body has arrived in full.
        """
        if not self._body.done:
            self._abort()

    def _charset(self) -> str | None:
        content_type = self.headers.get(b"content-type")
        if content_type is None:
            return None
        for param in content_type.split(b";")[1:]:
            name, _, value = param.strip().partition(b"=")
            if name.lower() == b"charset" and value:
                return value.strip(b"\"'").decode("latin-1")
        return None

    def __repr__(self) -> str:
        return f"<ClientResponse {self.status} {self.reason!r} for {self.method} {self.url}>"
