"""plait.protocols.websocket.protocol: the WebSocket adapter and the ``ws`` object.

Theory of operation. ``WebSocketProtocol`` owns one sans-IO ``Connection`` (the
core) and a transport. It is the ``ws`` object handlers and clients use: received
messages go to the oldest waiting ``receive()`` or, when nobody waits, into a
queue (reading pauses while ``max_queue`` messages wait). The adapter does the
protocol's chores for the application, as wsproto's docs ask an adapter to:

- a ping is answered with a pong at once (RFC 6455 section 5.5.2);
- a peer's close frame is echoed (section 5.5.1), then the server closes the TCP
  connection and a client waits for the server to do so (section 7.1.1), at
  most ``close_timeout`` seconds before aborting;
- ``close()`` sends our close frame and waits ``close_timeout`` for the peer's;
- with ``ping_interval`` set, a keepalive ping goes out on the injected clock
  every so often; no pong within ``ping_timeout`` fails the connection (1011);
- a peer that breaks the protocol gets the close frame the core chose (1002,
  1007, 1009) and the transport is closed: nothing propagates to the reactor.

Once closed, ``receive()`` and ``send()`` raise ``ConnectionClosed`` with the code
(1006 when the connection dropped without a closing handshake).
"""

from __future__ import annotations

import logging
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Callable
from typing import Any

from zope.interface import implementer

from plait.cluster.defer import Deferred, fail, succeed
from plait.cluster.interfaces import IProtocol

from ._connection import Connection, State
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

__all__ = ["ConnectionClosed", "WebSocketProtocol"]

_log = logging.getLogger("plait.websocket")
_NORMAL_CODES = frozenset({1000, 1001, 1005})


class ConnectionClosed(Exception):
    """The WebSocket connection is closed.

    Attributes:
        code: The close code (RFC 6455 section 7.4): the peer's, ours when we
            failed the connection, 1005 for a close frame without one, 1006 when
            the connection dropped without a closing handshake.
        reason: The close reason, if any.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(f"WebSocket closed with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason


@implementer(IProtocol)
class WebSocketProtocol:
    """One WebSocket connection, either side: the ``ws`` object.

    Args:
        core: The sans-IO connection (handshake already done).
        clock: Schedules keepalive pings and close timeouts.
        subprotocol: The negotiated subprotocol, if any.
        on_open: Called with this object once the transport is attached (the
            server starts the handler there).
        ping_interval: Seconds between keepalive pings; None sends none.
        ping_timeout: Seconds a keepalive ping may wait for its pong.
        close_timeout: Seconds to wait for the closing handshake to finish.
        max_queue: Received messages held before reading pauses.

    Example:
        >>> async def echo(ws):
        ...     async for message in ws:
        ...         ws.send(message)

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        core: Connection,
        *,
        clock: Any,
        subprotocol: str | None = None,
        on_open: Callable[[WebSocketProtocol], object] | None = None,
        ping_interval: float | None = None,
        ping_timeout: float = 20.0,
        close_timeout: float = 10.0,
        max_queue: int = 64,
    ) -> None:
        self._core = core
        self._clock = clock
        self.subprotocol = subprotocol
        """The subprotocol the handshake chose, or None."""
        self.request: Any = None
        """(server side) The HTTP request that opened this connection."""
        self.params: dict[str, str] = {}
        """(server side) The route's placeholders, when mounted on a ``Router``."""
        self.transport: Any = None
        self._on_open = on_open
        self._ping_interval = ping_interval
        self._ping_timeout = ping_timeout
        self._close_timeout = close_timeout
        self._max_queue = max_queue
        self._server = core.role.value == "server"
        self._messages: deque[str | bytes] = deque()
        self._waiters: deque[Deferred[str | bytes]] = deque()
        self._pings: OrderedDict[bytes, tuple[Deferred[float], float]] = OrderedDict()
        self._ping_count = 0
        self._closed: ConnectionClosed | None = None
        self._lost = False
        self._closed_ds: list[Deferred[None]] = []
        self._close_timer: Any = None
        self._keepalive_timer: Any = None
        self._reading_paused = False
        self._writing_paused = False
        self._drain_ds: list[Deferred[None]] = []

    # -- IProtocol -----------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if self._ping_interval is not None:
            self._keepalive_timer = self._clock.call_later(self._ping_interval, self._keepalive)
        if self._on_open is not None:
            self._on_open(self)

    def data_received(self, data: bytes) -> None:
        if self._lost or self._core.state is State.ERROR:
            return
        try:
            events = self._core.receive_data(data)
        except RemoteProtocolError as exc:
            _log.debug("WebSocket peer %r broke the protocol: %s", self._peer(), exc.msg)
            if exc.data_to_send:
                self.transport.write(exc.data_to_send)
            self._set_closed(exc.code, exc.msg)
            self.transport.close()
            return
        for event in events:
            kind = type(event)
            if kind is TextMessage or kind is BytesMessage:
                self._deliver(event.data)  # type: ignore[union-attr]
            elif kind is Ping:
                if self._core.state in (State.OPEN, State.REMOTE_CLOSING):
                    self.transport.write(self._core.send(event.response()))  # type: ignore[union-attr]
            elif kind is Pong:
                self._pong(event.payload)  # type: ignore[union-attr]
            elif kind is CloseConnection:
                assert isinstance(event, CloseConnection)
                self._peer_closed(event)

    def eof_received(self) -> bool:
        return False  # a half-closed WebSocket is a closed one: let the transport close

    def connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        for timer in (self._close_timer, self._keepalive_timer):
            if timer is not None and timer.active():
                timer.cancel()
        self._close_timer = self._keepalive_timer = None
        if self._closed is None:
            self._set_closed(1006, "the connection dropped without a closing handshake")
        pings, self._pings = self._pings, OrderedDict()
        for d, _ in pings.values():
            d.errback(ConnectionClosed(self.close_code or 1006, self.close_reason))
        drains, self._drain_ds = self._drain_ds, []
        for drained in drains:
            drained.callback(None)
        waiting, self._closed_ds = self._closed_ds, []
        for closed in waiting:
            closed.callback(None)

    def pause_writing(self) -> None:
        self._writing_paused = True

    def resume_writing(self) -> None:
        self._writing_paused = False
        waiting, self._drain_ds = self._drain_ds, []
        for d in waiting:
            d.callback(None)

    # -- the ws API ----------------------------------------------------------------------

    @property
    def close_code(self) -> int | None:
        """The close code once closed (see ``ConnectionClosed.code``), else None."""
        return self._closed.code if self._closed is not None else None

    @property
    def close_reason(self) -> str:
        """The close reason once closed, else ``""``."""
        return self._closed.reason if self._closed is not None else ""

    @property
    def open(self) -> bool:
        """Messages can still be sent."""
        return self._closed is None and not self._lost and self._core.state is State.OPEN

    def receive(self) -> Deferred[str | bytes]:
        """The next message: ``str`` for text, ``bytes`` for binary.

        Returns:
            A Deferred of the message. It errbacks with ``ConnectionClosed`` (with
            ``.code``) once the connection is closed and no message is left.
        """
        messages = self._messages
        if messages:
            message = messages.popleft()
            if self._reading_paused and len(messages) < self._max_queue // 2 + 1:
                self._reading_paused = False
                if not self._lost:
                    self.transport.resume_reading()
            return succeed(message)
        if self._closed is not None:
            return fail(ConnectionClosed(self._closed.code, self._closed.reason))
        d: Deferred[str | bytes] = Deferred(self._waiters.remove)
        self._waiters.append(d)
        return d

    def send(self, message: str | bytes | bytearray | memoryview) -> None:
        """Send a text (``str``) or binary message.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            TypeError: ``message`` is neither text nor bytes.
        """
        if self._closed is None and not self._lost and self._core.state is State.OPEN:
            self.transport.write(self._core.send_data(message))
            return
        if not isinstance(message, str | bytes | bytearray | memoryview):
            raise TypeError(f"a WebSocket message is str or bytes, not {type(message).__name__}")
        raise self._closed_error()

    def drain(self) -> Deferred[None]:
        """A Deferred that fires once the transport's write buffer is below its
        high-water mark (at once when it is); ``await ws.drain()`` after ``send``
        gives a fast producer back-pressure."""
        if not self._writing_paused or self._lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._drain_ds.append(d)
        return d

    def ping(self, payload: bytes | None = None) -> Deferred[float]:
        """Send a ping; fire with the round-trip time (clock seconds) when its pong arrives.

        A pong also answers every ping sent before the one it echoes (section 5.5.3
        lets a peer answer only the latest).

        Returns:
            A Deferred of the round trip in seconds. It errbacks with
            ``ConnectionClosed`` if the connection closes first.

        Raises:
            ConnectionClosed: the connection is closing or closed.
            ValueError: ``payload`` is longer than 125 bytes or already in flight.
        """
        if not self.open:
            raise self._closed_error()
        if payload is None:
            self._ping_count += 1
            payload = b"plait %d" % self._ping_count
        if len(payload) > 125:
            raise ValueError("a ping payload is at most 125 bytes")
        if payload in self._pings:
            raise ValueError(f"a ping with payload {payload!r} is already waiting")
        key = bytes(payload)

        def forget(_: Deferred[float]) -> None:
            self._pings.pop(key, None)

        d: Deferred[float] = Deferred(forget)
        self._pings[key] = (d, self._clock.seconds())
        self.transport.write(self._core.send(Ping(payload=key)))
        return d

    def close(self, code: int = 1000, reason: str = "") -> Deferred[None]:
        """Start (or join) the closing handshake (RFC 6455 section 7.1.2).

        Returns:
            A Deferred that fires once the connection is closed (after the
            handshake, or ``close_timeout`` seconds later by aborting).

        Raises:
            ValueError: ``code`` may not be sent or ``reason`` is too long.
        """
        if not self._lost and self._core.state is State.OPEN:
            try:
                data = self._core.send(CloseConnection(code=code, reason=reason))
            except LocalProtocolError as exc:
                raise ValueError(exc.msg) from exc
            self.transport.write(data)
            self._arm_close_timer()
        return self.wait_closed()

    def wait_closed(self) -> Deferred[None]:
        """A Deferred that fires once the connection is closed."""
        if self._lost:
            return succeed(None)
        d: Deferred[None] = Deferred()
        self._closed_ds.append(d)
        return d

    def __aiter__(self) -> AsyncIterator[str | bytes]:
        return self

    async def __anext__(self) -> str | bytes:
        """The next message; the iteration ends on a normal close (1000, 1001, 1005).

        Raises:
            ConnectionClosed: the connection closed with another code.
        """
        try:
            return await self.receive()
        except ConnectionClosed as exc:
            if exc.code in _NORMAL_CODES:
                raise StopAsyncIteration from exc
            raise

    def __repr__(self) -> str:
        side = "server" if self._server else "client"
        return f"<WebSocketProtocol {side} {self._core.state.name} peer={self._peer()!r}>"

    # -- internals -----------------------------------------------------------------------

    def _peer(self) -> Any:
        return self.transport.get_extra_info("peername") if self.transport is not None else None

    def _closed_error(self) -> ConnectionClosed:
        if self._closed is not None:
            return ConnectionClosed(self._closed.code, self._closed.reason)
        return ConnectionClosed(1000, "the connection is closing")

    def _deliver(self, message: str | bytes) -> None:
        waiters = self._waiters
        if waiters:
            waiters.popleft().callback(message)
            return
        self._messages.append(message)
        if len(self._messages) >= self._max_queue and not self._reading_paused:
            self._reading_paused = True
            self.transport.pause_reading()

    def _pong(self, payload: bytes) -> None:
        if payload not in self._pings:
            return  # an unsolicited pong (section 5.5.3): no answer expected
        now = self._clock.seconds()
        while self._pings:
            key, (d, sent) = self._pings.popitem(last=False)
            d.callback(now - sent)
            if key == payload:
                break

    def _peer_closed(self, event: CloseConnection) -> None:
        core = self._core
        if core.state is State.REMOTE_CLOSING:
            # They started the handshake: echo their code (section 5.5.1).
            self.transport.write(core.send(event.response()))
        self._set_closed(event.code, event.reason)
        if self._server:
            self.transport.close()  # section 7.1.1: the server closes TCP first
        else:
            self._arm_close_timer()

    def _set_closed(self, code: int, reason: str) -> None:
        if self._closed is not None:
            return
        self._closed = ConnectionClosed(code, reason)
        waiting, self._waiters = self._waiters, deque()
        for d in waiting:
            d.errback(ConnectionClosed(code, reason))
        if self._reading_paused and not self._lost:
            self._reading_paused = False
            self.transport.resume_reading()  # read the peer's close to the end

    def _arm_close_timer(self) -> None:
        if self._close_timer is None and not self._lost:
            self._close_timer = self._clock.call_later(self._close_timeout, self._close_timed_out)

    def _close_timed_out(self) -> None:
        self._close_timer = None
        if not self._lost:
            _log.debug("closing handshake with %r timed out; aborting", self._peer())
            self._set_closed(1006, "the closing handshake timed out")
            self.transport.abort()

    def _keepalive(self) -> None:
        self._keepalive_timer = None
        if not self.open:
            return
        d = self.ping()
        timeout = self._clock.call_later(self._ping_timeout, self._keepalive_timed_out)

        def answered(_: object) -> None:
            if timeout.active():
                timeout.cancel()
            if self.open and self._ping_interval is not None:
                self._keepalive_timer = self._clock.call_later(
                    self._ping_interval, self._keepalive
                )

        def closed(failure: Any) -> None:
            if timeout.active():
                timeout.cancel()
            failure.trap(ConnectionClosed)

        d.add_callbacks(answered, closed)

    def _keepalive_timed_out(self) -> None:
        if self._lost:
            return
        _log.debug("no pong from %r within %ss; failing the connection", self._peer(),
                   self._ping_timeout)
        if self._core.state is State.OPEN:
            self.transport.write(
                self._core.send(CloseConnection(code=1011, reason="keepalive ping timeout"))
            )
        self._set_closed(1011, "keepalive ping timeout")
        self.transport.close()  # flushes the close frame; abort if it cannot drain
        self._arm_close_timer()
