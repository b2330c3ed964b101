"""plait.protocols.http.server: the HTTP/1.1 server adapter (``Site``, ``HTTPServerProtocol``).

Theory of operation. ``Site`` (in ``site.py``, re-exported here) is the protocol
factory and holds what connections share: the application, timeouts, limits, the
set of open connections (for ``drain``). Each connection is an
``HTTPServerProtocol`` that owns one sans-IO ``Connection`` (the core) and runs one
request at a time through the application. This module reads requests and runs the
request cycle; sending the application's answer (its result, the response framed
by the core, streaming bodies) is its base ``ResponseWriting``, in
``server_responses.py``.

Two paths, one behaviour:

- The *fast path* takes a read that is exactly one complete request head with no
  body (the keep-alive GET of every benchmark and most traffic) while nothing else
  is buffered. The head is parsed in full by the core's
  ``parse_plain_request_head`` (which declines any head ``parse_request_head``
  must judge), the application is called, and when it returns a plain
  ``Response`` the whole answer (status line, ``Server``/``Date``, the cached header
  block, ``Content-Length``, body) goes out in one ``transport.write``. The core's
  state machine is not touched: it stays between cycles, exactly where the next
  request needs it.
- Anything else goes through the core: pipelined requests, bodies, chunked,
  ``Expect: 100-continue``, errors, Deferreds and coroutines, streaming. When the
  fast path finds the application answered with something else than a plain
  ``Response``, it replays the head into the core first, so the core frames that
  answer.

Timeouts (header, body, idle) are one ``Deadline`` per connection
(``server_timeouts.py``): one float per request, one lazy timer.

``Expect: 100-continue``: the ``100 Continue`` goes out when the handler first
reads the body (``body()``/``stream()``); a handler that answers without reading it
gets ``Connection: close`` on its response, since the client may never send it.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from zope.interface import implementer

from plait.cluster.defer import Deferred
from plait.cluster.failure import Failure
from plait.cluster.interfaces import IProtocol

from ._access_log import access_enabled, access_logger, log_access
from ._connection import Connection
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import NEED_DATA, ConnectionClosed, Data, EndOfMessage, InformationalResponse
from ._events import Request as CoreRequest
from ._headers import Headers
from ._readers import parse_plain_request_head
from ._request import BodyError, Request
from ._response import Response, SwitchProtocols
from ._state import SERVER, State
from .server_responses import _NO_BODY, ResponseWriting, _internal_error
from .server_timeouts import BODY, HEADER, IDLE, Deadline
from .site import App, Site
from .streams import RequestBody, ResponseStreamer

__all__ = ["App", "HTTPServerProtocol", "Site", "SwitchProtocols"]

_log = logging.getLogger("plait.http")
_access_on = access_logger.isEnabledFor
_INFO = logging.INFO

_REASONS = {int(s): s.phrase.encode("ascii") for s in HTTPStatus}
_STATUS_LINES: dict[int, bytes] = {}


def _status_line(status: int, reason: str) -> bytes:
    if reason:
        return b"HTTP/1.1 %d %s\r\n" % (status, reason.encode("latin-1"))
    line = _STATUS_LINES.get(status)
    if line is None:
        line = _STATUS_LINES[status] = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b""))
    return line


def _reactor_of(transport: Any) -> Any:
    # The native stream transports keep the reactor that drives them; a site made
    # without one serves on that reactor (``plait run`` and the benchmarks make a
    # ``Reactor()`` that is not the process's ``get_reactor()``).
    return getattr(transport, "_reactor", None)


@implementer(IProtocol)
class HTTPServerProtocol(ResponseWriting):
    """One HTTP/1.1 server connection (made by ``Site``; see the module docstring).

    Args:
        site: The site whose application and settings this connection uses.
    """

    __slots__ = (
        "_advancing",
        "_again",
        "_app",
        "_body",
        "_clock",
        "_closing",
        "_conn",
        "_dates",
        "_deadline",
        "_discarding",
        "_fast_ok",
        "_limits",
        "_lost",
        "_must_close",
        "_peer",
        "_reactor",
        "_reading_paused",
        "_request",
        "_site",
        "_sock",
        "_unstarted",
        "transport",
    )

    def __init__(self, site: Site) -> None:
        self._site = site
        self._app = site.app
        self._limits = site.limits
        self._dates = site._dates
        self._conn = Connection(SERVER, site.limits)
        self.transport: Any = None
        self._clock: Any = None
        self._reactor: Any = None
        self._peer: Any = None
        self._sock: Any = None
        self._fast_ok = False  # the core is between cycles with nothing buffered
        self._closing = False
        self._lost = False
        self._request: Request | None = None  # the request being answered
        self._unstarted: Request | None = None  # received, the app not called yet
        self._discarding = False  # answered; the rest of the request body is dropped
        self._body: RequestBody | None = None  # the body being received (None: discard)
        self._head_sent = False
        self._must_close = False
        self._app_d: Deferred[Any] | None = None
        self._streamer: ResponseStreamer | None = None
        self._paused = False  # the transport asked us to stop writing
        self._reading_paused = False
        self._advancing = False
        self._again = False
        self._status = 0
        self._sent = 0
        self._deadline: Deadline = None  # type: ignore[assignment]  # connection_made

    # -- IProtocol -------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        site = self._site
        self.transport = transport
        reactor = site.reactor or _reactor_of(transport)
        if reactor is None and site.clock is None:
            from plait.cluster.reactor import get_reactor

            reactor = get_reactor()
        self._reactor = reactor
        self._clock = site.clock or reactor
        self._deadline = Deadline(self._clock, self._timed_out)
        self._peer = transport.get_extra_info("peername")
        self._sock = transport.get_extra_info("sockname")
        site.connections.add(self)
        if site.draining:
            self._close()
            return
        self._fast_ok = True
        self._deadline.set(HEADER, site.header_timeout)

    def data_received(self, data: bytes) -> None:
        if self._fast_ok:
            n = len(data)
            if (
                n <= self._site._fast_max
                and data.endswith(b"\r\n\r\n")
                and data.find(b"\r\n\r\n") == n - 4
                and self._fast(data)
            ):
                return
            self._fast_ok = False
        if self._closing:
            return
        if self._deadline.kind is IDLE:
            self._deadline.set(HEADER, self._site.header_timeout)
        self._conn.receive_data(data)
        self._advance()

    def eof_received(self) -> bool:
        # Keep our side open: a client may half-close after sending its request and
        # still read the response.
        if not self._closing:
            self._fast_ok = False
            self._conn.receive_data(b"")
            self._advance()
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = self._closing = True
        self._fast_ok = False
        if self._deadline is not None:
            self._deadline.stop()
        if self._body is not None:
            self._body.fail(BodyError("the client closed the connection"))
        if self._streamer is not None:
            self._streamer.stop(ConnectionError("the client went away"))
        if self._app_d is not None:
            self._app_d.cancel()
        self._site._forget(self)

    def pause_writing(self) -> None:
        self._paused = True
        if self._streamer is not None:
            self._streamer.pause()

    def resume_writing(self) -> None:
        self._paused = False
        if self._streamer is not None:
            self._streamer.resume()

    def drain(self) -> None:
        """Close now if idle; otherwise close after answering the request in flight."""
        if self._request is None and not self._closing:
            self._close()
        else:
            self._must_close = True

    # -- the fast path -----------------------------------------------------------------

    def _fast(self, data: bytes) -> bool:
        """Serve one bodiless request head; False leaves ``data`` to the core."""
        head = data[:-4]
        parsed = parse_plain_request_head(head, self._limits)
        if parsed is None:
            return False  # not plain: the core parses it (and answers what is wrong)
        method, target, version, close, keep_alive = parsed
        request = Request._plain(
            method, target, head, version, self._peer, self._sock, self._reactor
        )
        self._fast_ok = False
        self._deadline.kind = None
        self._request = request
        try:
            result = self._app(request)
            if type(result) is Response:
                fields = result.head_fields()
                status = result.status
                if fields is not None and status >= 200 and status not in _NO_BODY:
                    keep = not (close or self._must_close) and (
                        version == b"1.1" or keep_alive
                    )
                    self._fast_write(result, fields, keep, method == b"HEAD")
                    return True
        except Exception:
            self._log_app_error(Failure())
            result = _internal_error()
        # Something the core must frame: hand it the head, then answer through it.
        conn = self._conn
        conn.receive_data(data)
        conn.next_event()  # the Request
        conn.next_event()  # its EndOfMessage
        self._handle(result)
        return True

    def _fast_write(self, response: Response, fields: bytes, keep: bool, head: bool) -> None:
        """Write a whole plain response in one ``transport.write``."""
        status = response.status
        status_line = None if response.reason else _STATUS_LINES.get(status)
        if status_line is None:
            status_line = _status_line(status, response.reason)
        body = response.body
        size = len(body)
        if not keep:
            conn_line = b"Connection: close\r\n"
        elif self._request.http_version == b"1.1":  # type: ignore[union-attr]
            conn_line = b""
        else:
            conn_line = b"Connection: keep-alive\r\n"
        if head:
            body = b""
        self.transport.write(
            b"%s%s%sContent-Length: %d\r\n%s\r\n%s"
            % (status_line, self._dates.get(), fields, size, conn_line, body)
        )
        if head:
            size = 0
        site = self._site
        site.requests += 1
        if _access_on(_INFO):
            log_access(self._request, status, size, self._dates.date())  # type: ignore[arg-type]
        self._request = None
        if keep:
            self._fast_ok = True
            self._deadline.set(IDLE, site.idle_timeout)
        else:
            self._close()

    # -- the core path -------------------------------------------------------------------

    def _advance(self) -> None:
        """Process the core's events until it needs data or waits for a response."""
        if self._advancing:
            self._again = True
            return
        self._advancing = True
        try:
            self._again = True
            while self._again and not self._closing:
                self._again = False
                self._events()
        finally:
            self._advancing = False

    def _events(self) -> None:
        conn = self._conn
        while not self._closing:
            try:
                event = conn.next_event()
            except RemoteProtocolError as exc:
                self._peer_error(exc)
                return
            kind = type(event)
            if kind is Data:
                body = self._body
                if body is not None and body.feed(event.data):  # type: ignore[union-attr]
                    self._pause_reading()
            elif kind is EndOfMessage:
                self._end_of_body()
            elif kind is CoreRequest:
                self._start(event)  # type: ignore[arg-type]
            else:
                # The application runs once the body is complete or more must be
                # awaited, so a request whose body came along sees it complete.
                if self._unstarted is not None:
                    self._call_app()
                if kind is ConnectionClosed:
                    self._peer_closed()
                elif event is not NEED_DATA and self._request is not None:
                    self._pause_reading()  # PAUSED: a pipelined request waits its turn
                return

    def _start(self, event: CoreRequest) -> None:
        body = RequestBody(self._body_read, self._resume_reading)
        self._body = body
        self._deadline.set(BODY, self._site.body_timeout)
        self._head_sent = False
        self._request = self._unstarted = Request(
            event.method,
            event.target,
            event.headers,
            event.http_version,
            client=self._peer,
            server=self._sock,
            reactor=self._reactor,
            body=body,
        )

    def _call_app(self) -> None:
        request, self._unstarted = self._unstarted, None
        assert request is not None
        try:
            result = self._app(request)
        except Exception:
            self._log_app_error(Failure())
            result = _internal_error()
        self._handle(result)

    def _end_of_body(self) -> None:
        body = self._body
        self._body = None
        if body is not None:
            body.finish()
        if self._deadline.kind is BODY:
            self._deadline.kind = None
        if self._unstarted is not None:
            self._call_app()
        elif self._discarding:  # answered before the body ended: now it has
            self._discarding = False
            self._next_cycle()

    # -- protocol switches ----------------------------------------------------------------

    def _switch(self, switch: SwitchProtocols) -> None:
        """Send the 101 and hand the transport to ``switch.protocol``."""
        conn = self._conn
        try:
            data = conn.send(
                InformationalResponse(status_code=101, headers=Headers(switch.headers))
            )
        except LocalProtocolError as exc:
            _log.error("the application's protocol switch %r cannot be sent: %s", switch, exc)
            self._write_canned(500)
            return
        request = self._request
        transport = self.transport
        transport.write(data)
        self._status, self._sent = 101, 0
        self._response_done_switched(request)
        trailing, eof = conn.trailing_data
        protocol = switch.protocol
        transport.set_protocol(protocol)
        if self._reading_paused:
            self._reading_paused = False
            transport.resume_reading()
        protocol.connection_made(transport)
        if trailing:
            protocol.data_received(trailing)
        if eof and not protocol.eof_received():
            transport.close()

    def _response_done_switched(self, request: Request | None) -> None:
        # This connection is no longer ours: no timers, no drain, no more events.
        self._request = None
        self._closing = True
        self._fast_ok = False
        self._deadline.stop()
        self._site.requests += 1
        self._site._forget(self)
        if request is not None and access_enabled():
            log_access(request, 101, 0, self._dates.date())

    # -- the end of a response ---------------------------------------------------------

    def _response_done(self) -> None:
        request = self._request
        self._request = None
        self._head_sent = False
        self._site.requests += 1
        if request is not None and access_enabled():
            if request.raw_method == b"HEAD":
                self._sent = 0
            log_access(request, self._status, self._sent, self._dates.date())
        if self._closing:
            return
        conn = self._conn
        if conn.our_state is not State.DONE or self._must_close or self._site.draining:
            self._close()
        elif conn.their_state is State.DONE:
            self._next_cycle()
        else:
            # The client is still sending a body nobody reads: discard it, and
            # _end_of_body starts the next cycle.
            self._discarding = True
            self._body = None
            self._resume_reading()

    def _next_cycle(self) -> None:
        conn = self._conn
        conn.start_next_cycle()
        self._resume_reading()
        pending, eof = conn.trailing_data
        if pending or eof:
            self._deadline.set(HEADER, self._site.header_timeout)
            self._advance()
        else:
            self._fast_ok = True
            self._deadline.set(IDLE, self._site.idle_timeout)

    # -- errors, timeouts, closing ------------------------------------------------------

    def _peer_error(self, exc: RemoteProtocolError) -> None:
        _log.debug("bad request from %r: %s", self._peer, exc)
        if self._unstarted is not None:  # the application has not seen it: answer
            self._unstarted = self._body = None
            self._send_error(exc.status_hint)
            return
        body = self._body
        if self._request is not None and body is not None and not body.done:
            # The body broke while the application is answering: tell it, and close
            # once it has answered (or answer for it if it reads the body).
            self._must_close = True
            self._body = None
            body.fail(BodyError(exc.msg, exc.status_hint))
            return
        if self._request is None:
            self._send_error(exc.status_hint)
        else:
            self._must_close = True

    def _peer_closed(self) -> None:
        if self._request is None:
            self._close()
        else:
            self._must_close = True

    def _body_read(self) -> None:
        conn = self._conn
        if conn.they_are_waiting_for_100_continue and not self._head_sent and not self._closing:
            self.transport.write(conn.send(InformationalResponse(status_code=100)))

    def _send_error(self, status: int) -> None:
        """Answer ``status`` with ``Connection: close`` (or abort mid-response)."""
        if self._closing:
            return
        if self._head_sent and self._request is not None:
            self._abort()
            return
        if self._conn.our_state not in (State.IDLE, State.SEND_RESPONSE):
            self._close()  # answered already (a body being discarded): just close
            return
        self._must_close = True
        if self._request is None:
            self._request = Request(b"-", b"-", client=self._peer)
        reason = _REASONS.get(status, b"Error")
        self._send(Response(status, reason + b"\n", [(b"Content-Type", b"text/plain")]))
        if not self._closing:
            self._close()

    def _write_canned(self, status: int) -> None:
        # The core refused (our side is in ERROR): write a minimal answer by hand.
        reason = _REASONS.get(status, b"Error")
        self.transport.write(
            b"HTTP/1.1 %d %s\r\n%sContent-Type: text/plain\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n%s\n"
            % (status, reason, self._dates.get(), len(reason) + 1, reason)
        )
        self._status, self._sent = status, len(reason) + 1
        self._must_close = True
        self._response_done()
        self._close()

    def _timed_out(self, kind: str) -> None:
        if self._closing:
            return
        _log.debug("%s timeout on the connection from %r", kind, self._peer)
        if kind is IDLE:
            self._close()
        elif kind is HEADER:
            if self._request is None:
                self._send_error(408)
        else:
            body = self._body
            self._body = None
            if body is not None:
                body.fail(BodyError("request body timeout", 408))
            self._send_error(408)

    def _pause_reading(self) -> None:
        if not self._reading_paused and not self._closing:
            self._reading_paused = True
            self.transport.pause_reading()

    def _resume_reading(self) -> None:
        if self._reading_paused and not self._closing:
            self._reading_paused = False
            self.transport.resume_reading()

    def _close(self) -> None:
        self._closing = True
        self._fast_ok = False
        self.transport.close()

    def _abort(self) -> None:
        self._closing = True
        self._fast_ok = False
        self.transport.abort()


Site.protocol = HTTPServerProtocol
