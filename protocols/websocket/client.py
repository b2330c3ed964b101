"""plait.protocols.websocket.client: ``connect(url)``, a WebSocket client.

Theory of operation. ``connect`` opens a TCP (``ws://``) or TLS (``wss://``)
connection with the reactor and runs ``_Handshake`` on it: the HTTP/1.1 client
core sends the opening handshake (RFC 6455 section 4.1) and parses the answer;
``_handshake.check_response`` validates it. On a valid ``101`` the transport is
handed to a ``WebSocketProtocol`` (``transport.set_protocol``) with any bytes that
followed the response, and the Deferred fires with that ``ws`` object. Anything
else (another status, a bad ``Sec-WebSocket-Accept``, an extension or
subprotocol we did not offer, a connection that closes, ``open_timeout``) aborts
the connection and errbacks with ``HandshakeError``, ``TimeoutError`` or the
connection error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

from zope.interface import implementer

from plait.cluster.defer import Deferred
from plait.cluster.failure import Failure
from plait.cluster.interfaces import IProtocol
from plait.protocols.http.core import CLIENT as HTTP_CLIENT
from plait.protocols.http.core import NEED_DATA, EndOfMessage, Headers, InformationalResponse
from plait.protocols.http.core import Connection as HTTPConnection
from plait.protocols.http.core import ConnectionClosed as HTTPClosed
from plait.protocols.http.core import RemoteProtocolError as HTTPError
from plait.protocols.http.core import Request as HTTPRequest
from plait.protocols.http.core import Response as HTTPResponse

from ._connection import CLIENT, Connection
from ._handshake import HandshakeError, check_response, new_key, request_headers
from .protocol import WebSocketProtocol

__all__ = ["HandshakeError", "connect"]

_log = logging.getLogger("plait.websocket")


def _parse_url(url: str) -> tuple[bool, str, int, bytes, bytes]:
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(f"a WebSocket URL starts with ws:// or wss://, not {url!r}")
    if parts.fragment:
        raise ValueError(f"a WebSocket URL has no fragment: {url!r}")  # RFC 6455 section 3
    secure = parts.scheme == "wss"
    host = parts.hostname
    if not host:
        raise ValueError(f"no host in {url!r}")
    port = parts.port or (443 if secure else 80)
    shown = f"[{host}]" if ":" in host else host
    if port != (443 if secure else 80):
        shown = f"{shown}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return secure, host, port, shown.encode("idna"), target.encode("ascii")


@implementer(IProtocol)
class _Handshake:
    """The HTTP/1.1 side of a client connection until the ``101``."""

    def __init__(
        self,
        request: HTTPRequest,
        key: bytes,
        subprotocols: Sequence[str],
        compression: bool,
        options: dict[str, Any],
        result: Deferred[WebSocketProtocol],
    ) -> None:
        self._request = request
        self._key = key
        self._subprotocols = subprotocols
        self._compression = compression
        self._options = options
        self._result = result
        self._http = HTTPConnection(HTTP_CLIENT)
        self.transport: Any = None
        self._timer: Any = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self._result.called:  # cancelled or timed out while connecting
            transport.abort()
            return
        http = self._http
        transport.write(http.send(self._request) + http.send(EndOfMessage()))

    def data_received(self, data: bytes) -> None:
        if self._result.called:
            return
        self._http.receive_data(data)
        self._advance()

    def eof_received(self) -> bool:
        if not self._result.called:
            self._http.receive_data(b"")
            self._advance()
        return False

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self._result.called:
            self._result.errback(
                exc or HandshakeError("the server closed the connection during the handshake")
            )

    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    def _advance(self) -> None:
        while not self._result.called:
            try:
                event = self._http.next_event()
            except HTTPError as exc:
                self._fail(HandshakeError(f"bad handshake response: {exc.msg}"))
                return
            if event is NEED_DATA:
                return
            if isinstance(event, InformationalResponse) and event.status_code == 101:
                self._switch(event)
                return
            if isinstance(event, HTTPResponse):
                self._fail(HandshakeError(f"the server answered {event.status_code}, not 101",
                                          event.status_code))
                return
            if isinstance(event, HTTPClosed):
                self._fail(HandshakeError("the server closed the connection during the handshake"))
                return
            # Other 1xx responses come before the final answer: keep reading.

    def _switch(self, event: InformationalResponse) -> None:
        try:
            choice = check_response(
                101, list(event.headers), self._key,
                subprotocols=self._subprotocols, compression=self._compression,
            )
        except HandshakeError as exc:
            self._fail(exc)
            return
        options = self._options
        core = Connection(
            CLIENT, deflate=choice.deflate, max_message_size=options["max_message_size"]
        )
        ws = WebSocketProtocol(
            core,
            clock=options["clock"],
            subprotocol=choice.subprotocol,
            ping_interval=options["ping_interval"],
            ping_timeout=options["ping_timeout"],
            close_timeout=options["close_timeout"],
            max_queue=options["max_queue"],
        )
        pending, eof = self._http.trailing_data
        transport = self.transport
        transport.set_protocol(ws)
        ws.connection_made(transport)
        if pending:
            ws.data_received(pending)
        self._result.callback(ws)
        if eof and not ws._lost:
            transport.close()

    def _fail(self, exc: Exception) -> None:
        _log.debug("WebSocket handshake failed: %s", exc)
        self.transport.abort()
        if not self._result.called:
            self._result.errback(exc)


def connect(
    url: str,
    reactor: Any = None,
    *,
    subprotocols: Sequence[str] = (),
    headers: Iterable[tuple[bytes | str, bytes | str]] | None = None,
    compression: bool = True,
    max_message_size: int = 1 << 20,
    ping_interval: float | None = None,
    ping_timeout: float = 20.0,
    close_timeout: float = 10.0,
    open_timeout: float = 10.0,
    max_queue: int = 64,
    tls_options: Any = None,
    clock: Any = None,
) -> Deferred[WebSocketProtocol]:
    """Open a WebSocket connection to ``url`` (``ws://`` or ``wss://``).

    Args:
        url: ``ws://host[:port]/path?query`` or ``wss://...``.
        reactor: The reactor; by default the process's.
        subprotocols: Offered subprotocols, most preferred first.
        headers: Extra request header fields (``Origin``, ``Authorization``...).
        compression: Offer permessage-deflate (RFC 7692).
        max_message_size: The largest message accepted (1009 beyond it).
        ping_interval: Seconds between keepalive pings; None sends none.
        ping_timeout: Seconds a keepalive ping may wait for its pong.
        close_timeout: Seconds to wait for the closing handshake.
        open_timeout: Seconds for the TCP (and TLS) connection and the handshake.
        max_queue: Received messages held before reading pauses.
        tls_options: For ``wss://``: ``plait.cluster.tls.client_options(...)``;
            by default ones that verify the server against the system CAs.
        clock: Schedules timeouts and keepalive pings; default: the reactor.

    Returns:
        A Deferred of the ``ws`` object (a ``WebSocketProtocol``). It errbacks with
        ``HandshakeError`` (the server refused or answered wrongly; ``.status`` is
        its HTTP status), ``TimeoutError`` after ``open_timeout``, or the
        connection's error (``ConnectionRefusedError``, ``OSError``, a TLS error).

    Raises:
        ValueError: ``url`` is not a ws:// or wss:// URL.

    Example:
        >>> async def hello(url):  # doctest: +SKIP
        ...     ws = await connect(url)
        ...     ws.send("hello")
        ...     print(await ws.receive())
        ...     await ws.close()

    .. versionadded:: 0.1.0
    """
    secure, host, port, host_header, target = _parse_url(url)
    if reactor is None:
        from plait.cluster.reactor import get_reactor

        reactor = get_reactor()
    clock = clock if clock is not None else reactor
    key = new_key()
    fields = Headers([(b"Host", host_header)])
    for name, value in request_headers(key, subprotocols=subprotocols, compression=compression):
        fields.add(name, value)
    for extra_name, extra_value in headers or ():
        fields.add(extra_name, extra_value)
    request = HTTPRequest(method=b"GET", target=target, headers=fields)
    connecting: list[Deferred[Any]] = []
    timer: list[Any] = []

    def cancel(d: Deferred[WebSocketProtocol]) -> None:
        for pending in connecting:
            pending.cancel()
        transport = handshake.transport
        if transport is not None:
            transport.abort()

    result: Deferred[WebSocketProtocol] = Deferred(cancel)
    options = {
        "clock": clock,
        "max_message_size": max_message_size,
        "ping_interval": ping_interval,
        "ping_timeout": ping_timeout,
        "close_timeout": close_timeout,
        "max_queue": max_queue,
    }
    handshake = _Handshake(request, key, subprotocols, compression, options, result)

    def timed_out() -> None:
        if not result.called:
            result.errback(TimeoutError(f"WebSocket handshake with {url} timed out"))
            for pending in connecting:
                pending.cancel()
            if handshake.transport is not None:
                handshake.transport.abort()

    def settled(value: Any) -> Any:
        if timer and timer[0].active():
            timer[0].cancel()
        return value

    def connect_failed(failure: Failure) -> None:
        if not result.called:
            result.errback(failure)

    timer.append(clock.call_later(open_timeout, timed_out))
    result.add_both(settled)
    if secure:
        if tls_options is None:
            from plait.cluster.tls import client_options

            tls_options = client_options(host)
        d = reactor.connect_ssl(host, port, lambda: handshake, tls_options, open_timeout)
    else:
        d = reactor.connect_tcp(host, port, lambda: handshake, open_timeout)
    connecting.append(d)
    d.add_callbacks(lambda _: connecting.clear(), connect_failed)
    return result
