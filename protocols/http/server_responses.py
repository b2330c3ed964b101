"""plait.protocols.http.server_responses: sending the application's answer.

``ResponseWriting`` is the half of ``HTTPServerProtocol`` (``server.py``) that turns
what the application returned into bytes on the transport; ``server.py`` reads
requests and runs the request cycle (the ``IProtocol`` callbacks, the fast path,
the core's events, timeouts, error answers, protocol switches, closing). It is a
base class rather than a separate object because the two halves are one
per-connection state machine: both read the request in flight, ``_closing`` and the
core ``Connection``, so a helper object would need a back-reference and an extra
hop on every response. It owns the slots of the response in flight and declares
the connection state and the ``server.py`` methods it uses.

Theory of operation.

- *The application's result* (``_handle``): a ``Response`` or ``StreamingResponse``
  is sent, a ``SwitchProtocols`` goes to ``_switch``, a Deferred or coroutine is
  awaited (kept in ``_app_d``, which ``connection_lost`` cancels), anything else
  is coerced (``bytes``/``str``) or, when it cannot be, logged and answered with a
  500. An exception is logged and answered with a 500; a ``BodyError`` the
  application let through is answered with its status. A result that arrives once
  the connection is closing is dropped.
- *Framing* (``_send``): the response goes through the core (``conn.send``), after
  ``_headers`` adds ``Server``, ``Date``, ``Content-Length`` (when the length is
  known) and ``Connection: close`` (the connection must close, the site is
  draining, or the client still waits for a ``100 Continue``). A response the core
  refuses is logged and replaced by a 500 written by hand (``_write_canned``). Once
  the last byte is out, ``_response_done`` (``server.py``) starts the next cycle or
  closes.
- *Streaming bodies*: the head goes out, then a ``ResponseStreamer`` writes the
  chunks through ``write_body``, waiting while the transport is paused; the core's
  ``EndOfMessage`` ends the body. A body that fails once the head is out can only be
  cut short: the connection is aborted.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from plait.cluster.defer import CancelledError, Deferred
from plait.cluster.failure import Failure

from ._connection import Connection
from ._errors import LocalProtocolError
from ._events import Data, EndOfMessage
from ._events import Response as CoreResponse
from ._headers import Headers
from ._request import BodyError, Request
from ._response import Response, StreamingResponse, SwitchProtocols, coerce_result
from .site import Site, _DateLine
from .streams import ResponseStreamer

__all__ = ["ResponseWriting"]

_log = logging.getLogger("plait.http")

_NO_BODY = (204, 304)


class ResponseWriting:
    """Sending the application's answer: a base of ``HTTPServerProtocol``.

    See the module docstring. ``HTTPServerProtocol.__init__`` sets the slots of
    this class along with its own.
    """

    __slots__ = ("_app_d", "_head_sent", "_paused", "_sent", "_status", "_streamer")

    # The response in flight (these slots).
    _app_d: Deferred[Any] | None  # the application's pending answer
    _head_sent: bool
    _paused: bool  # the transport asked us to stop writing
    _sent: int  # body bytes sent, for the access log
    _status: int  # for the access log
    _streamer: ResponseStreamer | None

    # The connection's state, kept by HTTPServerProtocol (server.py).
    transport: Any
    _conn: Connection
    _site: Site
    _dates: _DateLine
    _request: Request | None  # the request being answered
    _closing: bool
    _lost: bool
    _must_close: bool

    # The methods of HTTPServerProtocol (server.py) that this half calls.
    _response_done: Callable[[], None]
    _abort: Callable[[], None]
    _switch: Callable[[SwitchProtocols], None]
    _send_error: Callable[[int], None]
    _write_canned: Callable[[int], None]

    # -- the application's result -----------------------------------------------------

    def _handle(self, result: Any) -> None:
        kind = type(result)
        if kind is Response or kind is StreamingResponse:
            self._send(result)
        elif kind is SwitchProtocols:
            self._switch(result)
        elif isinstance(result, Deferred | Coroutine):
            d = result if isinstance(result, Deferred) else Deferred.from_coroutine(result)
            self._app_d = d
            d.add_callbacks(self._app_done, self._app_failed)
        else:
            self._app_done(result)

    def _app_done(self, result: Any) -> None:
        self._app_d = None
        if self._closing:
            return
        try:
            response = coerce_result(result)
        except TypeError:
            self._log_app_error(Failure())
            response = _internal_error()
        if isinstance(response, SwitchProtocols):
            self._switch(response)
        else:
            self._send(response)

    def _app_failed(self, failure: Failure) -> None:
        self._app_d = None
        if self._closing:
            if not failure.check(CancelledError, BodyError):
                _log.warning(
                    "the application failed after the client left: %s",
                    failure.get_error_message(),
                )
            return
        exc = failure.value
        if isinstance(exc, BodyError):
            self._send_error(exc.status)  # the app did not catch a broken body
            return
        self._log_app_error(failure)
        self._send(_internal_error())

    def _log_app_error(self, failure: Failure) -> None:
        request = self._request
        _log.error(
            "the application failed on %r:\n%s", request, failure.get_traceback()
        )

    # -- framing the response through the core ------------------------------------------

    def _headers(self, pairs: list[tuple[bytes, bytes]], length: int | None) -> Headers:
        headers = Headers(pairs)
        headers.add(b"Server", self._dates.server)
        headers.add(b"Date", self._dates.date())
        if length is not None and b"content-length" not in headers:
            headers.add(b"Content-Length", b"%d" % length)
        if (
            self._must_close
            or self._site.draining
            or self._conn.they_are_waiting_for_100_continue
        ):
            headers.set(b"Connection", b"close")
        return headers

    def _send(self, response: Response | StreamingResponse) -> None:
        if self._closing:
            return
        conn = self._conn
        status = response.status
        streaming = type(response) is StreamingResponse
        length = None
        if not streaming and status not in _NO_BODY:
            assert isinstance(response, Response)
            length = len(response.body)
        head = CoreResponse(
            status_code=status,
            headers=self._headers(response.headers, length),
            reason=response.reason.encode("latin-1"),
        )
        try:
            data = conn.send(head)
            if not streaming:
                assert isinstance(response, Response)
                if response.body:
                    data += conn.send(Data(data=response.body))
                data += conn.send(EndOfMessage())
        except LocalProtocolError as exc:
            _log.error("the application's response %r cannot be sent: %s", response, exc)
            self._write_canned(500)
            return
        self._head_sent = True
        self._status = status
        self.transport.write(data)
        if streaming:
            assert isinstance(response, StreamingResponse)
            self._sent = 0
            self._stream(response.chunks)
        else:
            assert isinstance(response, Response)
            self._sent = len(response.body)
            self._response_done()

    # -- streaming bodies -------------------------------------------------------------

    def _stream(self, chunks: Any) -> None:
        streamer = self._streamer = ResponseStreamer(self.write_body, paused=self._paused)
        streamer.start(chunks).add_callbacks(self._stream_done, self._stream_failed)

    def write_body(self, chunk: bytes | str) -> None:
        """Send one piece of a streaming body (what a body producer's consumer does).

        Raises:
            TypeError: ``chunk`` is not bytes or str.
        """
        if self._lost or self._closing:
            raise ConnectionError("the client went away")
        if isinstance(chunk, str):
            chunk = chunk.encode("utf-8")
        elif not isinstance(chunk, bytes | bytearray | memoryview):
            raise TypeError(f"a streaming body yielded {type(chunk).__name__}, not bytes")
        data = self._conn.send(Data(data=bytes(chunk)))
        if data:
            self._sent += len(chunk)
            self.transport.write(data)

    def _stream_done(self, _: object) -> None:
        self._streamer = None
        if self._closing:
            return
        try:
            self.transport.write(self._conn.send(EndOfMessage()))
        except LocalProtocolError as exc:
            _log.error("a streaming response ended badly: %s", exc)
            self._abort()
            return
        self._response_done()

    def _stream_failed(self, failure: Failure) -> None:
        self._streamer = None
        if self._closing:
            return
        _log.error("a streaming response body failed:\n%s", failure.get_traceback())
        self._abort()  # the head is out: all we can say is that the body is cut short


def _internal_error() -> Response:
    return Response(500, b"Internal Server Error\n", [(b"Content-Type", b"text/plain")])
