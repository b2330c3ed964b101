"""plait.protocols.http.client_tunnel: ``CONNECT`` tunnels through an HTTP proxy.

The adapter side of the HTTP client's proxy support (it holds transports and
Deferreds, so it is not a ``_`` core; the proxy settings are in ``_proxy``).
``Agent`` (``plait.protocols.http.client``) opens tunnels for ``https://`` URLs when
a proxy is configured; applications do not call this module.

Theory of operation. ``open_tunnel`` connects to the proxy over TCP with a
``TunnelProtocol``, which writes ``CONNECT host:port HTTP/1.1`` (``Host`` and, when
the proxy URL has credentials, ``Proxy-Authorization``) and reads the answer with
the sans-IO core. A 2xx answer switches the connection to the tunnel: an
``HTTPClientProtocol`` is put on the transport (``set_protocol``) and the reactor's
``start_tls`` runs the handshake with the TLS options for the *origin* host (its
SNI and certificate check), over the proxy's TCP connection. When the handshake is
done the HTTP protocol gets the TLS transport through ``connection_made`` and goes
to the pool like any other connection. Any other answer (407, 502, ...), an
invalid one, bytes sent before the handshake, or a close is a ``ProxyError`` and
the connection is aborted: it never reaches the pool. Cancelling the Deferred
(the agent's connect timeout or request timeout) aborts whichever step runs.
"""

from __future__ import annotations

import logging
from typing import Any

from plait.cluster.defer import Deferred
from plait.cluster.failure import Failure
from plait.cluster.protocol import Protocol

from ._connection import Connection
from ._errors import RemoteProtocolError
from ._events import NEED_DATA, PAUSED, ConnectionClosed, Request, Response
from ._headers import Headers
from ._proxy import ProxyURL
from ._state import CLIENT
from .client_protocol import HTTPClientProtocol
from .client_response import ProxyError

__all__ = ["TunnelProtocol", "open_tunnel"]

_log = logging.getLogger(__name__)


class TunnelProtocol(Protocol):
    """Asks a proxy for a tunnel and reads its answer.

    Args:
        proxy: The proxy (for its credentials and for messages).
        authority: The tunnel's target, ``host:port``.
        user_agent: The ``User-Agent`` to send.

    Attributes:
        answered: Fires with the transport on a 2xx answer; errbacks with
            ``ProxyError`` otherwise (the connection is then aborted).
    """

    def __init__(self, proxy: ProxyURL, authority: bytes, user_agent: bytes) -> None:
        self.proxy = proxy
        self.authority = authority
        self.transport: Any = None
        self.answered: Deferred[Any] = Deferred()
        self._eof = False
        self._conn = Connection(CLIENT)
        headers = Headers([(b"Host", authority), (b"User-Agent", user_agent)])
        authorization = proxy.authorization
        if authorization is not None:
            headers.add(b"Proxy-Authorization", authorization)
        self._request = self._conn.send(
            Request(method=b"CONNECT", target=authority, headers=headers)
        )

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        if self.answered.called:
            return  # (after a refusal, while the abort takes effect)
        self._conn.receive_data(data)
        self._drive()

    def eof_received(self) -> bool | None:
        self._eof = True
        if not self.answered.called:
            self._conn.receive_data(b"")
            self._drive()
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        if not self.answered.called:
            error = ProxyError(
                f"the proxy {self.proxy} closed the connection before answering"
                f" CONNECT {self.authority.decode('ascii')}",
                proxy=str(self.proxy),
            )
            error.__cause__ = exc
            self.answered.errback(error)

    def _drive(self) -> None:
        what = f"CONNECT {self.authority.decode('ascii')}"
        while not self.answered.called:
            try:
                event = self._conn.next_event()
            except RemoteProtocolError as exc:
                if self._eof:  # closed before (or in) its answer
                    self.connection_lost(exc)
                    self.transport.abort()
                    return
                error = ProxyError(
                    f"the proxy {self.proxy} sent an invalid answer to {what}: {exc.msg}",
                    proxy=str(self.proxy),
                )
                error.__cause__ = exc
                self._refuse(error)
                return
            if event is NEED_DATA or event is PAUSED:
                return
            if isinstance(event, ConnectionClosed):
                self.connection_lost(None)
                self.transport.abort()
                return
            if isinstance(event, Response):
                self._answer(event, what)
                return
            # an informational (1xx) answer: the final one follows

    def _answer(self, head: Response, what: str) -> None:
        status = head.status_code
        reason = head.reason.decode("latin-1")
        if not 200 <= status < 300:
            self._refuse(
                ProxyError(
                    f"the proxy {self.proxy} answered {what} with {status} {reason}".rstrip(),
                    status=status,
                    proxy=str(self.proxy),
                )
            )
            return
        if self._conn.trailing_data[0]:
            self._refuse(
                ProxyError(
                    f"the proxy {self.proxy} sent bytes through the tunnel before the TLS"
                    f" handshake ({what})",
                    status=status,
                    proxy=str(self.proxy),
                )
            )
            return
        self.answered.callback(self.transport)

    def _refuse(self, error: ProxyError) -> None:
        self.answered.errback(error)
        self.transport.abort()


class _Opening:
    """One tunnel being opened: TCP to the proxy, CONNECT, then TLS to the origin."""

    def __init__(
        self,
        reactor: Any,
        proxy: ProxyURL,
        authority: bytes,
        options: Any,
        timeout: float,
        user_agent: bytes,
    ) -> None:
        self._reactor = reactor
        self._options = options
        self._proxy = proxy
        self._authority = authority
        self._user_agent = user_agent
        self._transport: Any = None
        self.result: Deferred[HTTPClientProtocol] = Deferred(self._cancel)
        self._connecting: Deferred[Any] | None = reactor.connect_tcp(
            proxy.host, proxy.port, self._build, timeout=timeout
        )
        self._connecting.add_callbacks(self._connected, self._failed)

    def _build(self) -> TunnelProtocol:
        return TunnelProtocol(self._proxy, self._authority, self._user_agent)

    def _connected(self, tunnel: TunnelProtocol) -> None:
        self._connecting = None
        self._transport = tunnel.transport
        if self.result.called:  # cancelled meanwhile
            tunnel.answered.add_errback(lambda failure: None)  # nobody waits for it
            tunnel.transport.abort()
            return
        tunnel.answered.add_callbacks(self._established, self._failed)

    def _established(self, transport: Any) -> None:
        if self.result.called:
            transport.abort()
            return
        protocol = HTTPClientProtocol()
        transport.set_protocol(protocol)
        try:
            handshake = self._reactor.start_tls(transport, self._options)
        except Exception as exc:  # bad options, or the connection is closing
            transport.abort()
            self._failed(Failure(exc))
            return
        handshake.add_callbacks(self._secured, self._failed, callback_args=(protocol,))

    def _secured(self, tls_transport: Any, protocol: HTTPClientProtocol) -> None:
        if self.result.called:
            tls_transport.abort()
            return
        protocol.connection_made(tls_transport)
        self.result.callback(protocol)

    def _failed(self, failure: Failure) -> None:
        self._connecting = None
        if not self.result.called:
            self.result.errback(failure)
        else:
            _log.debug("a proxy tunnel failed after its request left: %s", failure.value)

    def _cancel(self, _: Deferred[Any]) -> None:
        connecting, self._connecting = self._connecting, None
        if connecting is not None:
            connecting.cancel()
        if self._transport is not None:
            self._transport.abort()


def open_tunnel(
    reactor: Any,
    proxy: ProxyURL,
    authority: bytes,
    options: Any,
    *,
    timeout: float,
    user_agent: bytes,
) -> Deferred[HTTPClientProtocol]:
    """Open a TLS connection to ``authority`` through a ``CONNECT`` tunnel.

    Args:
        reactor: Connects (``connect_tcp``) and upgrades (``start_tls``).
        proxy: The proxy to ask.
        authority: ``host:port`` of the origin.
        options: TLS client options for the origin host (SNI, certificate check).
        timeout: Seconds for the TCP connection to the proxy.
        user_agent: The ``User-Agent`` of the CONNECT request.

    Returns:
        A Deferred of the ``HTTPClientProtocol`` on the TLS transport. It errbacks
        with ``ProxyError`` (refused, invalid answer, closed), the TCP error, or the
        TLS error; cancelling it aborts the connection.
    """
    return _Opening(reactor, proxy, authority, options, timeout, user_agent).result
