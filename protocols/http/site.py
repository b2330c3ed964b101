"""plait.protocols.http.site: ``Site``, the HTTP server's protocol factory.

A ``Site`` holds what the connections of one server share: the application (a
``Router``, a ``Resource`` tree or a callable), the timeouts, the limits, the
``Server``/``Date`` header cache, and the set of open connections, which
``drain()`` waits for. Each connection is a ``Site.protocol`` (by default
``HTTPServerProtocol``, from ``server.py``, Twisted's ``Factory.protocol``
convention).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import formatdate
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from plait.cluster.defer import Deferred
from plait.cluster.interfaces import IProtocolFactory

from ._readers import Limits
from ._request import Request
from ._resource import Resource, resource_app

if TYPE_CHECKING:
    from .server import HTTPServerProtocol

__all__ = ["App", "Site"]

App = Callable[[Request], Any]
"""An application: ``app(request)`` returns a response, bytes/str, or a Deferred or
coroutine of one."""


class _DateLine:
    """``Server`` and ``Date`` header lines, the date refreshed once a second."""

    __slots__ = ("_line", "_second", "server")

    def __init__(self, server: bytes) -> None:
        self.server = server
        self._second = -1
        self._line = b""

    def get(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            date = formatdate(now, usegmt=True).encode("ascii")
            self._line = b"Server: %s\r\nDate: %s\r\n" % (self.server, date)
        return self._line

    def date(self) -> bytes:
        self.get()
        return self._line.split(b"Date: ", 1)[1][:-2]


def _as_app(app: object) -> App:
    if isinstance(app, Resource):
        return resource_app(app)
    if not callable(app):
        raise TypeError(f"Site needs a Router, a Resource or a callable, not {app!r}")
    return app


@implementer(IProtocolFactory)
class Site:
    # Set by server.py (always imported with the package) to HTTPServerProtocol.
    protocol: Callable[[Site], HTTPServerProtocol]

    """An HTTP/1.1 server: a protocol factory for ``listen_tcp`` and endpoints.

    Args:
        app: A ``Router``, a ``Resource`` tree, or ``app(request)`` returning a
            ``Response``, ``StreamingResponse``, ``bytes``/``str``, or a Deferred or
            coroutine of one of those.
        reactor: The reactor (threads for ``WSGIApp``, timers); by default the one
            driving each connection's transport, else the process's reactor.
        clock: What schedules timeouts (a ``Clock`` in tests); default: the reactor.
        header_timeout: Seconds to receive a request head.
        body_timeout: Seconds to receive a request body once its head arrived.
        idle_timeout: Seconds a kept-alive connection may wait for its next request.
        limits: Size limits on requests (``Limits()``: 8 KiB request line, 64 KiB
            of headers, 1 MiB body).
        server_name: The ``Server`` header's value.

    Example:
        >>> site = Site(lambda request: "hello")
        >>> protocol = site()  # a zero-argument protocol factory
    """

    def __init__(
        self,
        app: object,
        *,
        reactor: Any = None,
        clock: Any = None,
        header_timeout: float = 10.0,
        body_timeout: float = 30.0,
        idle_timeout: float = 60.0,
        limits: Limits | None = None,
        server_name: str = "plait",
    ) -> None:
        self.app = _as_app(app)
        self.reactor = reactor
        self.clock = clock
        self.header_timeout = header_timeout
        self.body_timeout = body_timeout
        self.idle_timeout = idle_timeout
        self.limits = limits if limits is not None else Limits()
        self._dates = _DateLine(server_name.encode("latin-1"))
        # A read no longer than both limits cannot break either: fast-path candidates.
        self._fast_max = min(self.limits.max_request_line, self.limits.max_header_bytes)
        self.connections: set[HTTPServerProtocol] = set()
        self.draining = False
        self._drained: list[Deferred[None]] = []
        self.requests = 0
        """Requests answered so far."""

    def __call__(self) -> HTTPServerProtocol:
        return self.protocol(self)

    def build_protocol(self, addr: object) -> HTTPServerProtocol:
        """Twisted's factory method: a new protocol (``addr`` is ignored)."""
        return self.protocol(self)

    def start_factory(self) -> None:
        """Twisted's hook before the first connection (nothing to do)."""

    def stop_factory(self) -> None:
        """Twisted's hook after the last listener stopped (nothing to do)."""

    def drain(self) -> Deferred[None]:
        """Stop taking requests; fire when the requests in flight have been answered.

        Idle keep-alive connections (and ones still receiving a head) close now;
        a connection with a request in flight answers it with ``Connection: close``
        and then closes; a connection made from now on is closed at once.

        Returns:
            A Deferred that fires with None once every connection has closed.
        """
        self.draining = True
        for protocol in list(self.connections):
            protocol.drain()
        d: Deferred[None] = Deferred()
        if self.connections:
            self._drained.append(d)
        else:
            d.callback(None)
        return d

    def _forget(self, protocol: HTTPServerProtocol) -> None:
        self.connections.discard(protocol)
        if not self.connections and self._drained:
            waiting, self._drained = self._drained, []
            for d in waiting:
                d.callback(None)
