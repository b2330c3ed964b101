"""plait.protocols.websocket.server: ``WebSocketResource``, WebSocket on the HTTP server.

Theory of operation. A ``WebSocketResource`` is both a ``Resource`` (a leaf of a
resource tree, answering GET) and a ``Router`` handler (``resource(request,
**params)``). It checks the opening handshake (RFC 6455 section 4.2.1) with
``_handshake.check_request``; a request that is not a valid WebSocket handshake
gets 400, or 426 naming what to upgrade to (section 4.4). A valid one gets a
``SwitchProtocols`` answer: the HTTP server sends the ``101`` with the
``Sec-WebSocket-Accept``, subprotocol and extension fields (section 4.2.2) and
hands the transport to a new ``WebSocketProtocol``, which starts the handler as
``handler(ws)``. When the handler returns, the connection is closed with 1000;
when it raises anything but ``ConnectionClosed``, the error is logged and the
connection is closed with 1011 (section 7.4.1). Nothing a peer does reaches the
reactor or stops the server from serving others.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from plait.cluster.defer import Deferred
from plait.cluster.failure import Failure
from plait.protocols.http import Request, Resource, Response, SwitchProtocols

from ._connection import SERVER, Connection
from ._handshake import HandshakeError, accept, check_request
from .protocol import ConnectionClosed, WebSocketProtocol

__all__ = ["Handler", "WebSocketResource"]

_log = logging.getLogger("plait.websocket")

Handler = Callable[[WebSocketProtocol], Coroutine[Any, Any, object] | Deferred[Any] | None]
"""``async def handler(ws)``: runs for the life of one WebSocket connection."""


class WebSocketResource(Resource):
    """Serve WebSocket connections at a path, each with ``handler(ws)``.

    Args:
        handler: ``async def handler(ws)``; ``ws`` is a ``WebSocketProtocol``
            (``receive``, ``send``, ``ping``, ``close``, ``async for``; and
            ``ws.request``, the HTTP request, and ``ws.params``, the route's
            placeholders).
        subprotocols: The subprotocols this server speaks; the first one the
            client offers that is listed here is chosen.
        compression: Accept permessage-deflate (RFC 7692) when offered.
        server_no_context_takeover: Compress each message on its own (less
            memory per connection, a worse ratio).
        max_message_size: The largest message accepted (1009 beyond it).
        ping_interval: Seconds between keepalive pings; None sends none.
        ping_timeout: Seconds a keepalive ping may wait for its pong (1011 after).
        close_timeout: Seconds to wait for the closing handshake.
        max_queue: Received messages held before reading pauses.
        clock: Schedules keepalive pings and timeouts; default: the request's
            reactor.

    Example:
        >>> from plait.protocols.http import Router, Site
        >>> async def echo(ws):
        ...     async for message in ws:
        ...         ws.send(message)
        >>> router = Router()
        >>> router.add_route("GET", "/echo", WebSocketResource(echo))
        >>> site = Site(router)

    .. versionadded:: 0.1.0
    """

    is_leaf = True

    def __init__(
        self,
        handler: Handler,
        *,
        subprotocols: Sequence[str] = (),
        compression: bool = True,
        server_no_context_takeover: bool = False,
        max_message_size: int = 1 << 20,
        ping_interval: float | None = None,
        ping_timeout: float = 20.0,
        close_timeout: float = 10.0,
        max_queue: int = 64,
        clock: Any = None,
    ) -> None:
        super().__init__()
        self.handler = handler
        self.subprotocols = tuple(subprotocols)
        self.compression = compression
        self.server_no_context_takeover = server_no_context_takeover
        self.max_message_size = max_message_size
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.close_timeout = close_timeout
        self.max_queue = max_queue
        self.clock = clock
        self.connections: set[WebSocketProtocol] = set()
        """The open WebSocket connections served by this resource."""

    def __call__(self, request: Request, **params: str) -> Response | SwitchProtocols:
        """Answer ``request`` as a ``Router`` handler (``params``: the placeholders)."""
        return self.upgrade(request, params)

    def render_GET(self, request: Request) -> Response | SwitchProtocols:  # noqa: N802
        """Answer ``request`` as a resource tree leaf."""
        return self.upgrade(request, {})

    def upgrade(self, request: Request, params: dict[str, str]) -> Response | SwitchProtocols:
        """Check the opening handshake; switch to WebSocket or answer the error.

        Returns:
            ``SwitchProtocols`` for a valid handshake, else a 400/426 ``Response``.
        """
        try:
            offer = check_request(request.raw_method, request.http_version, list(request.headers))
        except HandshakeError as exc:
            _log.debug("refused WebSocket handshake from %r: %s", request.client, exc.msg)
            return Response(
                exc.status,
                exc.msg.encode("utf-8") + b"\n",
                [*exc.headers, (b"Content-Type", b"text/plain")],
            )
        choice = accept(
            offer,
            subprotocols=self.subprotocols,
            compression=self.compression,
            server_no_context_takeover=self.server_no_context_takeover,
        )
        clock = self.clock
        if clock is None:
            clock = request.reactor
            if clock is None:
                from plait.cluster.reactor import get_reactor

                clock = get_reactor()
        core = Connection(SERVER, deflate=choice.deflate, max_message_size=self.max_message_size)
        ws = WebSocketProtocol(
            core,
            clock=clock,
            subprotocol=choice.subprotocol,
            on_open=self._run_handler,
            ping_interval=self.ping_interval,
            ping_timeout=self.ping_timeout,
            close_timeout=self.close_timeout,
            max_queue=self.max_queue,
        )
        ws.request = request
        ws.params = params
        return SwitchProtocols(ws, choice.headers)

    def _run_handler(self, ws: WebSocketProtocol) -> None:
        self.connections.add(ws)
        ws.wait_closed().add_callback(lambda _: self.connections.discard(ws))
        try:
            result = self.handler(ws)
        except Exception:
            self._handler_failed(Failure(), ws)
            return
        if isinstance(result, Coroutine):
            d: Deferred[Any] = Deferred.from_coroutine(result)
        elif isinstance(result, Deferred):
            d = result
        else:
            self._handler_done(None, ws)
            return
        d.add_callbacks(self._handler_done, self._handler_failed, (ws,), None, (ws,))

    def _handler_done(self, _: object, ws: WebSocketProtocol) -> None:
        if ws.open:
            ws.close(1000)

    def _handler_failed(self, failure: Failure, ws: WebSocketProtocol) -> None:
        if failure.check(ConnectionClosed):
            return  # the handler let the peer's close end it
        _log.error(
            "the WebSocket handler %r failed on %r:\n%s",
            self.handler, ws, failure.get_traceback(),
        )
        if ws.open:
            ws.close(1011, "internal error")
