"""plait.protocols.http.client_protocol: the HTTP client's per-connection protocol.

One ``Connection(CLIENT)`` of the sans-IO core on a transport: the thin adapter
(not a ``_`` core: it holds a transport and Deferreds). ``Agent`` in
``plait.protocols.http.client`` is what applications use.

Theory of operation. An ``HTTPClientProtocol`` runs one ``Exchange`` (a request
and its response) at a time; the pool (``client_pool``) decides which exchange
runs on which connection. ``start`` writes the request head and body: a bytes
body goes out with the head in one write; an iterable or async iterable of chunks
is pumped, waiting while the transport is above its high-water mark
(``pause_writing``); a body producer (Twisted's ``IBodyProducer`` shape,
snake_cased) writes to a consumer and is paused and resumed with the transport.

Received bytes go through the sans-IO core. The final response head becomes a
``ClientResponse`` handed to ``exchange.on_response``; its body is fed into a
``ResponseBody``, which asks for ``pause_reading`` when the reader falls behind.
When the response has ended, the connection is reusable if both sides are
``DONE`` and the core keeps it alive (RFC 9112 section 9.3); then
``start_next_cycle`` runs and ``on_idle`` tells the pool. A response that ends
while our body is still being sent, ``Connection: close``, a close-delimited body,
a malformed response, a timeout or a cancellation ends the connection instead:
it is closed or aborted and never reused, and the pool learns through
``on_lost``. ``exchange.on_done(exc, head_delivered)`` is called exactly once per
exchange, with ``exc=None`` when the whole response arrived.

Content decoding. When ``exchange.decompress`` is set and the response has a body
whose ``Content-Encoding`` is gzip or deflate (``_content_coding``), received bytes
go into a ``ContentDecoder`` instead, and ``_decode`` moves decoded pieces of at
most 64 KiB into the ``ResponseBody`` until the reader falls behind (then reading
pauses, and the rest of the encoded input waits in the decoder, so a decompression
bomb inflates only as fast as it is read) or the decoder needs more input. The
``max_body_size`` limit counts decoded bytes, and no piece is inflated past it.
When the message ends, the decoder is drained first (as the reader reads) and must
end cleanly; only then does the connection go back to the pool and the body end. A
decoding error fails the body and aborts the connection, like a malformed response.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from zope.interface import implementer

from plait.cluster.defer import Deferred, maybe_deferred, succeed
from plait.cluster.failure import Failure
from plait.cluster.interfaces import IProtocol

from ._connection import Connection
from ._content_coding import (
    ContentDecoder,
    ContentDecodingError,
    TruncatedContent,
    codings_to_undo,
)
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    InformationalResponse,
    Request,
    Response,
)
from ._headers import Headers
from ._readers import Limits
from ._state import CLIENT, State
from .client_response import (
    ClientResponse,
    MalformedResponse,
    ResponseBody,
    ResponseFailed,
    ResponseNeverReceived,
    ResponseTooLarge,
)

__all__ = ["Exchange", "HTTPClientProtocol"]

_log = logging.getLogger(__name__)
_CLIENT_LIMITS = Limits(max_body=None)
_PIECE = 65536  # the most decoded bytes handed to the body at once
_NO_BODY_STATUSES = frozenset({204, 304})


@dataclass(slots=True, kw_only=True)
class Exchange:
    """One request to send on a connection and where its outcome goes.

    Attributes:
        method: The request method, as on the wire.
        target: The request target (``/path?query``).
        headers: Every request header, ``Host`` and framing included.
        body: ``None``, bytes, an iterable or async iterable of bytes, or a body
            producer (``start_producing(consumer)``).
        url: The full URL (for ``ClientResponse.url`` and messages).
        max_body_size: The largest response body accepted, or ``None``.
        decompress: Undo a gzip or deflate ``Content-Encoding`` of the response.
        on_response: Called with the ``ClientResponse`` when its head arrives.
        on_done: Called once with ``(None, True)`` when the response ended, or
            ``(exc, head_delivered)`` when the exchange failed.
    """

    method: bytes
    target: bytes
    headers: Headers
    body: Any
    url: str
    max_body_size: int | None
    decompress: bool = False
    on_response: Callable[[ClientResponse], None]
    on_done: Callable[[BaseException | None, bool], None]


class _BodyConsumer:
    """What a request body producer writes to."""

    __slots__ = ("_protocol",)

    def __init__(self, protocol: HTTPClientProtocol) -> None:
        self._protocol = protocol

    def write(self, data: bytes) -> None:
        """Send ``data`` as part of the request body.

        Raises:
            ConnectionError: the exchange is over (the connection closed or failed).
        """
        self._protocol.write_body(data)


@implementer(IProtocol)
class HTTPClientProtocol:
    """Runs HTTP/1.1 exchanges, one after another, on one connection.

    Attributes:
        transport: The connected transport.
        requests: How many exchanges were started on this connection.
        lost: True once the connection is gone.
        on_idle: Called with this protocol when an exchange ended and the
            connection may carry another (set by the pool).
        on_lost: Called with this protocol when the connection is lost.
    """

    def __init__(self) -> None:
        self.transport: Any = None
        self.requests = 0
        self.lost = False
        self.on_idle: Callable[[HTTPClientProtocol], None] | None = None
        self.on_lost: Callable[[HTTPClientProtocol], None] | None = None
        self._conn = Connection(CLIENT, _CLIENT_LIMITS)
        self._exchange: Exchange | None = None
        self._body: ResponseBody | None = None
        self._decoder: ContentDecoder | None = None
        self._message_ended = False  # the encoded body is all in; the decoder drains
        self._ended_by_eof = False
        self._producer: Any = None
        self._sending: Deferred[Any] | None = None
        self._write_paused = False
        self._writable: Deferred[None] | None = None
        self._read_paused = False
        self._eof = False

    @property
    def busy(self) -> bool:
        """Whether an exchange is running."""
        return self._exchange is not None

    # -- IProtocol ------------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if self._exchange is None:
            # Bytes nobody asked for: the connection cannot be trusted any more.
            _log.debug("unsolicited %d bytes on an idle HTTP connection; closing", len(data))
            self.transport.abort()
            return
        try:
            self._conn.receive_data(data)
        except LocalProtocolError as exc:  # data after EOF: the transport misbehaved
            self._fail(MalformedResponse(str(exc)))
            return
        self._drive()

    def eof_received(self) -> bool | None:
        self._eof = True
        if self._exchange is not None and not self._message_ended:
            self._conn.receive_data(b"")
            self._drive()
        return None  # close our side too

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost = True
        if self._exchange is not None and exc is None and not self._eof:
            # A clean close without eof_received (TLS close_notify, say) still ends
            # a close-delimited body.
            self._eof = True
            if not self._message_ended:
                self._conn.receive_data(b"")
                self._drive()
        if self._exchange is not None and not self._message_ended:
            self._fail(self._lost_error(exc))  # (else the decoder still drains: all is in)
        self._stop_sending()
        self._fire_writable(ConnectionError("the connection was lost"))
        on_lost = self.on_lost
        if on_lost is not None:
            on_lost(self)

    def pause_writing(self) -> None:
        self._write_paused = True
        if self._producer is not None:
            self._producer.pause_producing()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self._producer is not None:
            self._producer.resume_producing()
        self._fire_writable(None)

    # -- running an exchange --------------------------------------------------------------

    def start(self, exchange: Exchange) -> None:
        """Send ``exchange``'s request; its outcome goes to its callbacks.

        Raises:
            RuntimeError: an exchange is running already, or the connection is gone.
        """
        if self._exchange is not None or self.lost or self.transport is None:
            raise RuntimeError("this HTTP connection cannot start an exchange now")
        self._exchange = exchange
        self._body = None
        self._decoder = None
        self._message_ended = False
        self.requests += 1
        conn = self._conn
        body = exchange.body
        try:
            head = conn.send(
                Request(method=exchange.method, target=exchange.target, headers=exchange.headers)
            )
            if body is None or isinstance(body, bytes):
                if body:
                    head += conn.send(Data(data=body))
                self.transport.write(head + conn.send(EndOfMessage()))
                return
        except LocalProtocolError as exc:
            self._fail(exc)
            return
        self.transport.write(head)
        if hasattr(body, "start_producing"):
            self._producer = body
            sending = maybe_deferred(body.start_producing, _BodyConsumer(self))
            if self._write_paused and self._producer is not None:
                body.pause_producing()
        else:
            sending = Deferred.from_coroutine(self._pump(body))
        if self._exchange is exchange and self._sending is None and not sending.called:
            self._sending = sending
        sending.add_callbacks(
            self._body_sent, self._body_failed, callback_args=(exchange,), errback_args=(exchange,)
        )

    def abort_exchange(self, exc: BaseException) -> None:
        """Fail the running exchange with ``exc`` and abort the connection."""
        if self._exchange is not None:
            self._fail(exc)

    def write_body(self, data: bytes) -> None:
        """Send one piece of the request body (what a body producer's consumer does).

        Raises:
            ConnectionError: no request body is being sent on this connection.
            TypeError: ``data`` is not bytes.
        """
        if self._exchange is None or self.lost or self._conn.our_state is not State.SEND_BODY:
            raise ConnectionError("the request is over; its body cannot be written")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"a request body yielded {type(data).__name__}, not bytes")
        if data:
            self.transport.write(self._conn.send(Data(data=bytes(data))))

    async def _pump(self, chunks: AsyncIterable[bytes] | Iterable[bytes]) -> None:
        if isinstance(chunks, AsyncIterable):
            iterator = aiter(chunks)
            try:
                async for chunk in iterator:
                    self.write_body(chunk)
                    if self._write_paused:
                        await self._wait_writable()
            finally:
                aclose = getattr(iterator, "aclose", None)
                if aclose is not None:
                    await aclose()
        else:
            for chunk in chunks:
                self.write_body(chunk)
                if self._write_paused:
                    await self._wait_writable()

    def _wait_writable(self) -> Deferred[None]:
        if not self._write_paused:
            return succeed(None)
        if self._writable is None:
            self._writable = Deferred()
        return self._writable

    def _fire_writable(self, exc: BaseException | None) -> None:
        d, self._writable = self._writable, None
        if d is not None:
            if exc is None:
                d.callback(None)
            else:
                d.errback(exc)

    def _body_sent(self, _: object, exchange: Exchange) -> None:
        self._sending = None
        self._producer = None
        if self._exchange is not exchange or self._conn.our_state is not State.SEND_BODY:
            return
        try:
            self.transport.write(self._conn.send(EndOfMessage()))
        except LocalProtocolError as exc:  # fewer bytes than the Content-Length said
            self._fail(exc)

    def _body_failed(self, failure: Failure, exchange: Exchange) -> None:
        self._sending = None
        self._producer = None
        if self._exchange is exchange:
            self._fail(failure.value)
        else:
            _log.debug("a request body stopped after its exchange ended: %s", failure.value)

    def _stop_sending(self) -> None:
        producer, self._producer = self._producer, None
        sending, self._sending = self._sending, None
        if producer is not None:
            try:
                producer.stop_producing()
            except Exception:
                _log.exception("stop_producing of a request body producer failed")
        if sending is not None and not sending.called:
            sending.cancel()

    # -- receiving ------------------------------------------------------------------------

    def _drive(self) -> None:
        conn = self._conn
        exchange = self._exchange
        while exchange is not None and self._exchange is exchange:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                error: BaseException
                if self._eof and (self._body is not None or not conn.trailing_data[0]):
                    error = self._lost_error(exc)  # closed early, not garbage
                else:
                    error = MalformedResponse(f"malformed response to {exchange.url}: {exc.msg}")
                    error.__cause__ = exc
                self._fail(error)
                return
            event_type = type(event)
            if event_type is Data:
                assert isinstance(event, Data)
                self._received_data(exchange, event.data)
            elif event_type is Response:
                assert isinstance(event, Response)
                self._received_head(exchange, event)
            elif event_type is EndOfMessage:
                body = self._body
                assert body is not None
                if self._decoder is not None:
                    self._message_ended = True
                    self._ended_by_eof = self._eof  # a close-delimited body
                    if not self._read_paused:  # (paused: the reader drains it first)
                        self._finish_decoding(exchange)
                    return
                # The connection goes back to the pool before the reader hears of
                # the end, so a request the reader sends next can reuse it.
                self._response_ended()
                body.finish()
                return
            elif event_type is ConnectionClosed:
                self._fail(self._lost_error(None))
                return
            elif event is NEED_DATA or event is PAUSED:
                return
            else:
                assert event_type is InformationalResponse  # 100 Continue and the like

    def _received_head(self, exchange: Exchange, head: Response) -> None:
        limit = exchange.max_body_size
        decoder = _decoder_for(exchange, head)
        if limit is not None and decoder is None:  # (Content-Length counts encoded bytes)
            length = head.headers.get(b"content-length")
            if length is not None and length.isdigit() and int(length) > limit:
                self._fail(
                    ResponseTooLarge(
                        f"the response from {exchange.url} announces {int(length)} bytes,"
                        f" over the limit of {limit}"
                    )
                )
                return
        body = self._body = ResponseBody(on_drained=lambda: self._drained(body))
        self._decoder = decoder
        response = ClientResponse(
            status=head.status_code,
            reason=head.reason.decode("latin-1"),
            headers=head.headers,
            version=head.http_version.decode("ascii"),
            method=exchange.method.decode("ascii"),
            url=exchange.url,
            body=body,
            abort=lambda: self._abort_body(exchange, body),
            decoded=decoder is not None,
        )
        exchange.on_response(response)

    def _received_data(self, exchange: Exchange, data: bytes) -> None:
        body = self._body
        assert body is not None
        limit = exchange.max_body_size
        decoder = self._decoder
        if decoder is not None:
            if limit is not None and decoder.received + len(data) > _encoded_limit(limit):
                self._fail(
                    ResponseTooLarge(
                        f"the encoded response body from {exchange.url} exceeds"
                        f" {_encoded_limit(limit)} bytes (the limit is {limit} decoded bytes)"
                    )
                )
                return
            decoder.feed(data)
            if not self._read_paused:  # (paused: the body is full; the reader drains it)
                self._decode(exchange, decoder, body)
            return
        if limit is not None and body.received + len(data) > limit:
            self._fail(
                ResponseTooLarge(
                    f"the response body from {exchange.url} exceeds the limit of {limit} bytes"
                )
            )
            return
        if body.feed(data) and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    def _drained(self, body: ResponseBody) -> None:
        if body is not self._body:
            return  # the body of an exchange that is over
        exchange, decoder = self._exchange, self._decoder
        if exchange is not None and decoder is not None:
            if self._message_ended:
                self._finish_decoding(exchange)
                return
            if not self._decode(exchange, decoder, body):
                return  # paused again, or failed
        if self._read_paused and not self.lost:
            self._read_paused = False
            self.transport.resume_reading()

    def _decode(self, exchange: Exchange, decoder: ContentDecoder, body: ResponseBody) -> bool:
        """Move decoded bytes into ``body``; True when the decoder needs more input.

        False: the reader fell behind (reading is paused, the decoder keeps the
        rest) or the exchange failed.
        """
        limit = exchange.max_body_size
        while self._decoder is decoder:  # (a reader woken by feed may close the response)
            size = _PIECE if limit is None else min(_PIECE, limit - body.received + 1)
            try:
                piece = decoder.read(size)
            except ContentDecodingError as exc:
                error = MalformedResponse(f"the response body from {exchange.url}: {exc}")
                error.__cause__ = exc
                self._fail(error)
                return False
            if not piece:
                return True
            if limit is not None and body.received + len(piece) > limit:
                self._fail(
                    ResponseTooLarge(
                        f"the decoded response body from {exchange.url} exceeds the limit"
                        f" of {limit} bytes"
                    )
                )
                return False
            if body.feed(piece):
                if not self._read_paused and not self.lost:
                    self._read_paused = True
                    self.transport.pause_reading()
                return False
        return False

    def _finish_decoding(self, exchange: Exchange) -> None:
        """The encoded body is all in: decode the rest, check its end, end the body."""
        decoder, body = self._decoder, self._body
        assert decoder is not None and body is not None
        if not self._decode(exchange, decoder, body):
            return  # the reader drains it first (or it failed)
        try:
            decoder.finish()
        except TruncatedContent as exc:
            error: BaseException
            if self._ended_by_eof:  # a close-delimited body: the connection closed too soon
                error = ResponseFailed(f"the connection to {exchange.url} closed early: {exc}")
            else:
                error = MalformedResponse(f"the response body from {exchange.url}: {exc}")
            error.__cause__ = exc
            self._fail(error)
            return
        self._response_ended()
        body.finish()

    def _abort_body(self, exchange: Exchange, body: ResponseBody) -> None:
        if self._exchange is exchange and self._body is body:
            self._fail(ResponseFailed(f"the response from {exchange.url} was closed unread"))

    def _response_ended(self) -> None:
        exchange = self._exchange
        assert exchange is not None
        conn = self._conn
        reusable = conn.our_state is State.DONE and conn.their_state is State.DONE and not self.lost
        self._exchange = None
        self._body = None
        self._decoder = None
        self._message_ended = False
        if reusable:
            conn.start_next_cycle()
            if self._read_paused:
                self._read_paused = False
                self.transport.resume_reading()
        else:
            self._stop_sending()
            if not self.lost:
                self.transport.close()
        exchange.on_done(None, True)
        if reusable and self.on_idle is not None and self._exchange is None and not self.lost:
            self.on_idle(self)

    # -- failing --------------------------------------------------------------------------

    def _lost_error(self, exc: BaseException | None) -> BaseException:
        exchange = self._exchange
        url = exchange.url if exchange is not None else "?"
        error: BaseException
        if self._body is None:
            error = ResponseNeverReceived(
                f"the connection to {url} closed before any response arrived"
            )
        else:
            error = ResponseFailed(
                f"the connection to {url} closed after {self._body.received} bytes of the body"
            )
        error.__cause__ = exc
        return error

    def _fail(self, exc: BaseException) -> None:
        exchange = self._exchange
        if exchange is None:
            return
        self._exchange = None
        body, self._body = self._body, None
        self._decoder = None
        self._message_ended = False
        self._stop_sending()
        if body is not None:
            body.fail(exc)
        if not self.lost and self.transport is not None:
            self.transport.abort()
        exchange.on_done(exc, body is not None)

    def __repr__(self) -> str:
        state = "lost" if self.lost else "busy" if self._exchange is not None else "idle"
        return f"<HTTPClientProtocol {state} after {self.requests} requests>"


def _decoder_for(exchange: Exchange, head: Response) -> ContentDecoder | None:
    """A decoder for the body of ``head``, or None: nothing to decode, or not ours to."""
    if (
        not exchange.decompress
        or exchange.method == b"HEAD"
        or head.status_code in _NO_BODY_STATUSES
        or b"content-encoding" not in head.headers.lower_names()
    ):
        return None
    values = head.headers.get_list(b"content-encoding")
    if not values:
        return None
    codings = codings_to_undo(values)
    return ContentDecoder(codings) if codings else None  # None: unsupported, or identity


def _encoded_limit(limit: int) -> int:
    """The most encoded bytes accepted for ``limit`` decoded ones (coding overhead)."""
    return limit + limit // 64 + _PIECE
