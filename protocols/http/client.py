"""plait.protocols.http.client: an HTTP/1.1 client with a connection pool.

``Agent(reactor).request(method, url, headers=None, body=None)`` returns a
Deferred of a ``ClientResponse`` (fired when the response head arrives; await
``response.read()`` for the body). Module-level ``get`` and ``request`` use a
default agent on ``get_reactor()``. See docs/http-client.md.

Theory of operation. ``Agent.request`` checks the URL, method, headers and body at
once (``ValueError``/``TypeError`` raised, not errbacked), builds the request head
(``Host``, ``User-Agent``, framing: ``Content-Length`` for bytes and sized
producers, chunked otherwise; all in the sans-IO ``_client_request``) and starts
a ``_Call``. The call asks the pool for a connection to ``(scheme, host, port)``,
runs one ``Exchange`` on it and fires the Deferred with the response head. One
timer (``timeout``) covers the whole call, body included; cancelling the Deferred
before the head arrives aborts the connection (it is never reused). If a *reused*
connection closes before any response byte arrives, an idempotent request with a
replayable body (``None`` or bytes) is sent once more on a fresh connection, as
Twisted's pool does: the server may have closed the idle connection just as the
request left.

With ``decompress=True`` (the default, as in requests and aiohttp) a request
without ``Accept-Encoding`` asks for ``gzip, deflate``, and a gzip or deflate
``Content-Encoding`` of the response is undone as the body arrives
(``client_protocol``, ``_content_coding``).

Redirects are not followed unless ``follow_redirects=True`` (RFC 9110 section
15.4): 301/302/303 turn a POST into a GET without a body (303: any method but
HEAD), 307/308 keep method and body when the body can be sent again, and
``Authorization``/``Cookie`` are dropped on a change of origin
(``_client_request.redirected``).

Proxies (``proxy=``, or ``trust_env=True`` for ``HTTP_PROXY``/``HTTPS_PROXY``/
``NO_PROXY``; settings in ``_proxy``). Each ``_Call`` asks the agent for its
``_Route``: the pool key, the connector, the request target and the headers. An
``http://`` URL through a proxy is sent in absolute form (``GET http://host/path``)
on connections to the proxy, pooled under ``("http-proxy", proxy host, port)`` for
every origin, with the proxy's ``Proxy-Authorization``. An ``https://`` URL goes
through a ``CONNECT`` tunnel (``client_tunnel``) pooled under
``("https-via-[user@]proxy:port", host, port)``; a ``Proxy-Authorization`` header
of the request is never sent inside a tunnel, where only the origin would see it.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from typing import Any

from plait.cluster.defer import CancelledError, Deferred
from plait.cluster.failure import Failure
from plait.cluster.interfaces import IDelayedCall

from ._client_request import IDEMPOTENT as _IDEMPOTENT
from ._client_request import REDIRECTS as _REDIRECTS
from ._client_request import USER_AGENT as _USER_AGENT
from ._client_request import HeaderInput
from ._client_request import Prepared as _Prepared
from ._client_request import check_timeout as _check_timeout
from ._client_request import prepare as _prepare
from ._client_request import redirected as _redirected
from ._content_coding import ACCEPT_ENCODING
from ._headers import Headers
from ._proxy import EnvProxies, ProxyURL, parse_proxy_url
from .client_pool import HTTPConnectionPool, PoolKey
from .client_protocol import Exchange, HTTPClientProtocol
from .client_response import (
    ClientResponse,
    ConnectTimeout,
    HTTPClientError,
    MalformedResponse,
    ProxyError,
    RequestTimeout,
    ResponseFailed,
    ResponseNeverReceived,
    ResponseTooLarge,
    TooManyRedirects,
)

__all__ = [
    "Agent",
    "ClientResponse",
    "ConnectTimeout",
    "HTTPClientError",
    "HTTPConnectionPool",
    "MalformedResponse",
    "ProxyError",
    "RequestTimeout",
    "ResponseFailed",
    "ResponseNeverReceived",
    "ResponseTooLarge",
    "TooManyRedirects",
    "get",
    "request",
]


class _Unset(enum.Enum):
    """Marks "no timeout given" (``None`` means "no timeout")."""

    UNSET = "unset"


class Agent:
    """Makes HTTP requests over pooled, kept-alive connections.

    Args:
        reactor: Connects (``connect_tcp``, ``connect_ssl``) and keeps time.
        pool: The connection pool; default: a new ``HTTPConnectionPool``.
        connect_timeout: Seconds to wait for a connection (TLS handshake included).
        timeout: Default seconds for a whole request, body included; ``None``: none.
        max_body_size: Largest response body accepted; ``None``: no limit.
        follow_redirects: Follow 3xx redirects (off by default).
        max_redirects: Most redirects followed for one request.
        tls_options: ``tls_options(host)`` returns the TLS client options for an
            ``https`` URL; default: ``plait.cluster.tls.client_options(host)``.
        decompress: Decode gzip and deflate response bodies (``Content-Encoding``)
            and send ``Accept-Encoding: gzip, deflate`` unless the request has an
            ``Accept-Encoding`` of its own. ``max_body_size`` then counts decoded
            bytes.
        proxy: ``http://[user:pass@]host:port`` of a forward proxy for every
            request: ``http://`` URLs are sent to it in absolute form, ``https://``
            ones through a ``CONNECT`` tunnel. ``None``: no proxy (unless
            ``trust_env``).
        trust_env: With no ``proxy``, take proxies from ``http_proxy``,
            ``https_proxy`` and ``no_proxy`` (either case; lower case wins), read
            once, here. Off by default: the environment does not redirect traffic
            unless asked to.

    Raises:
        ValueError: a bad setting, or a proxy URL (given or from the environment)
            with a scheme other than ``http`` (``socks5://``, say) or no host.

    Example:
        >>> from plait.cluster.testing import MemoryReactor
        >>> agent = Agent(MemoryReactor())
        >>> d = agent.request("GET", "http://example.com/")
        >>> agent.request("GET", "ftp://example.com/")
        Traceback (most recent call last):
        ...
        ValueError: unsupported URL scheme 'ftp' in 'ftp://example.com/' (use http or https)

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        reactor: Any,
        *,
        pool: HTTPConnectionPool | None = None,
        connect_timeout: float = 30.0,
        timeout: float | None = None,
        max_body_size: int | None = None,
        follow_redirects: bool = False,
        max_redirects: int = 10,
        tls_options: Any = None,
        decompress: bool = True,
        proxy: str | None = None,
        trust_env: bool = False,
    ) -> None:
        if not connect_timeout > 0:
            raise ValueError(f"connect_timeout must be > 0, not {connect_timeout!r}")
        _check_timeout(timeout)
        if max_body_size is not None and max_body_size < 0:
            raise ValueError(f"max_body_size must be >= 0, not {max_body_size!r}")
        self.reactor = reactor
        self.pool = pool if pool is not None else HTTPConnectionPool(reactor)
        self.connect_timeout = connect_timeout
        self.timeout = timeout
        self.max_body_size = max_body_size
        self.follow_redirects = follow_redirects
        self.max_redirects = max_redirects
        self._tls_options = tls_options
        self.decompress = decompress
        self.proxy: ProxyURL | None = parse_proxy_url(proxy) if proxy is not None else None
        self.trust_env = trust_env
        self._env = (
            EnvProxies.from_environ(os.environ) if trust_env and proxy is None else EnvProxies()
        )
        self._env_empty = self._env.http is None and self._env.https is None

    def request(
        self,
        method: str | bytes,
        url: str,
        headers: HeaderInput = None,
        body: Any = None,
        *,
        timeout: float | _Unset | None = _Unset.UNSET,
    ) -> Deferred[ClientResponse]:
        """Send a request; a Deferred of the response, fired when its head arrives.

        Args:
            method: ``"GET"``, ``"POST"``, ...
            url: An ``http://`` or ``https://`` URL.
            headers: Extra request headers (``Headers``, a mapping or pairs).
            body: ``None``; bytes; an iterable or async iterable of bytes chunks
                (sent chunked unless ``headers`` give a ``Content-Length``); or a
                body producer with ``start_producing(consumer)`` and ``length``.
            timeout: Seconds for this whole request, body included (default: the
                agent's ``timeout``).

        Returns:
            A Deferred of the ``ClientResponse``. It errbacks with
            ``ConnectionRefusedError`` (or another ``OSError``), ``ConnectTimeout``,
            ``RequestTimeout``, ``ResponseNeverReceived``, ``MalformedResponse``,
            ``ResponseTooLarge``, ``TooManyRedirects``, a TLS error, or
            ``CancelledError`` when cancelled.

        Raises:
            ValueError: an invalid URL, unsupported scheme, bad method or header.
            TypeError: a body of an unsupported type.
        """
        limit = self.timeout if isinstance(timeout, _Unset) else timeout
        _check_timeout(limit)
        prepared = _prepare(method, url, headers, body)
        if self.decompress and b"accept-encoding" not in prepared.headers.lower_names():
            prepared.headers.add(b"Accept-Encoding", ACCEPT_ENCODING)
        if prepared.key[0] == "https":
            needed = "start_tls" if self._proxy_for(prepared.key) is not None else "connect_ssl"
            if not hasattr(self.reactor, needed):
                raise ValueError(f"{url!r}: this reactor cannot make TLS connections (no {needed})")
        if self.follow_redirects:
            return Deferred.from_coroutine(self._follow(prepared, limit))
        return _Call(self, prepared, limit).deferred

    async def _follow(self, prepared: _Prepared, limit: float | None) -> ClientResponse:
        history: list[ClientResponse] = []
        while True:
            response = await _Call(self, prepared, limit).deferred
            location = response.headers.get(b"location")
            if response.status not in _REDIRECTS or location is None:
                response.history = history
                return response
            if len(history) >= self.max_redirects:
                response.close()
                raise TooManyRedirects(
                    f"more than {self.max_redirects} redirects from {prepared.url}"
                )
            await response.read()  # the connection goes back to the pool
            history.append(response)
            follow = _redirected(prepared, response.status, location.decode("latin-1"))
            if follow is None:
                response.history = history[:-1]
                return response
            prepared = follow

    def close(self) -> Deferred[None]:
        """Close the pool's idle connections.

        Returns:
            A Deferred that fires once they are closed.
        """
        return self.pool.close_idle()

    def _proxy_for(self, key: PoolKey) -> ProxyURL | None:
        if self.proxy is not None:
            return self.proxy
        if self._env_empty:
            return None
        return self._env.for_url(*key)

    def _route(self, prepared: _Prepared) -> _Route:
        """Where ``prepared`` goes: direct, to a proxy, or through a tunnel."""
        key = prepared.key
        proxy = self._proxy_for(key)
        if proxy is None:
            return _Route(key, self._connect, key, prepared.target, prepared.headers)
        scheme, host, port = key
        headers = prepared.headers.copy()
        authorization = proxy.authorization
        if scheme == "http":
            if authorization is not None:
                headers.set(b"Proxy-Authorization", authorization)
            return _Route(
                ("http-proxy", proxy.host, proxy.port),
                self._connect,
                ("http", proxy.host, proxy.port),
                b"http://" + prepared.authority + prepared.target,
                headers,
            )
        headers.remove(b"proxy-authorization")  # the origin would see it
        return _Route(
            (f"https-via-{proxy.label}", host, port),
            self._tunnel,
            (proxy, host, port),
            prepared.target,
            headers,
        )

    def _connect(self, scheme: str, host: str, port: int) -> Deferred[HTTPClientProtocol]:
        seconds = self.connect_timeout
        if scheme == "https":
            options = self._options_for(host)
            d = self.reactor.connect_ssl(host, port, HTTPClientProtocol, options, timeout=seconds)
        else:
            d = self.reactor.connect_tcp(host, port, HTTPClientProtocol, timeout=seconds)
        return self._timed(d, f"connecting to {host} port {port}")

    def _tunnel(self, proxy: ProxyURL, host: str, port: int) -> Deferred[HTTPClientProtocol]:
        from .client_tunnel import open_tunnel

        shown = f"[{host}]" if ":" in host else host
        authority = f"{shown}:{port}".encode("ascii")
        d = open_tunnel(
            self.reactor,
            proxy,
            authority,
            self._options_for(host),
            timeout=self.connect_timeout,
            user_agent=_USER_AGENT,
        )
        return self._timed(d, f"opening a tunnel to {shown} port {port} through {proxy}")

    def _timed(self, d: Deferred[HTTPClientProtocol], what: str) -> Deferred[HTTPClientProtocol]:
        """Bound ``d`` by ``connect_timeout``; a timeout becomes ``ConnectTimeout``."""
        seconds = self.connect_timeout
        d.add_timeout(seconds, self.reactor)

        def timed_out(failure: Failure) -> Failure:
            if failure.check(TimeoutError) and not failure.check(ConnectTimeout):
                error = ConnectTimeout(f"{what} timed out after {seconds} seconds")
                error.__cause__ = failure.value
                return Failure(error)
            return failure

        d.add_errback(timed_out)
        return d

    def _options_for(self, host: str) -> Any:
        if self._tls_options is not None:
            return self._tls_options(host)
        from plait.cluster.tls import client_options

        return client_options(host)


class _Route:
    """How one request travels: pool key, connector, request target and headers."""

    __slots__ = ("_args", "_connector", "headers", "key", "target")

    def __init__(
        self,
        key: PoolKey,
        connector: Callable[..., Deferred[HTTPClientProtocol]],
        args: tuple[Any, ...],
        target: bytes,
        headers: Headers,
    ) -> None:
        self.key = key
        self._connector = connector
        self._args = args
        self.target = target
        self.headers = headers

    def connect(self) -> Deferred[HTTPClientProtocol]:
        """A new connection for this route (the pool calls this when it has none)."""
        return self._connector(*self._args)


class _Call:
    """One request through the pool, with its timer, cancellation and one retry."""

    __slots__ = (
        "_agent",
        "_delayed",
        "_pending",
        "_prepared",
        "_protocol",
        "_retried",
        "_route",
        "_timeout",
        "deferred",
    )

    def __init__(self, agent: Agent, prepared: _Prepared, timeout: float | None) -> None:
        self._agent = agent
        self._prepared = prepared
        self._route = agent._route(prepared)
        self._timeout = timeout
        self._retried = False
        self._protocol: HTTPClientProtocol | None = None
        self._pending: Deferred[Any] | None = None
        self._delayed: IDelayedCall | None = None
        self.deferred: Deferred[ClientResponse] = Deferred(self._cancel)
        if timeout is not None:
            self._delayed = agent.reactor.call_later(timeout, self._time_out)
        self._acquire(fresh=False)

    def _acquire(self, fresh: bool) -> None:
        route = self._route
        pending = self._agent.pool.acquire(route.key, route.connect, fresh=fresh)
        if not pending.called:
            self._pending = pending
        pending.add_callbacks(self._connected, self._not_connected)

    def _connected(self, result: tuple[HTTPClientProtocol, bool]) -> None:
        self._pending = None
        protocol, reused = result
        if self.deferred.called:  # cancelled or timed out meanwhile
            protocol.transport.abort()
            return
        if protocol.lost or protocol.busy:  # lost between connecting and now
            self._on_done(ResponseNeverReceived("the connection closed at once"), False, reused)
            return
        self._protocol = protocol
        prepared = self._prepared
        exchange = Exchange(
            method=prepared.method,
            target=self._route.target,
            headers=self._route.headers,
            body=prepared.body,
            url=prepared.url,
            max_body_size=self._agent.max_body_size,
            decompress=self._agent.decompress,
            on_response=self._on_response,
            on_done=lambda exc, head: self._on_done(exc, head, reused),
        )
        protocol.start(exchange)

    def _not_connected(self, failure: Failure) -> None:
        self._pending = None
        if not self.deferred.called:
            self._finish()
            self.deferred.errback(failure)

    def _on_response(self, response: ClientResponse) -> None:
        if not self.deferred.called:
            self.deferred.callback(response)

    def _on_done(self, exc: BaseException | None, head_delivered: bool, reused: bool) -> None:
        self._protocol = None
        if exc is None or head_delivered or self.deferred.called:
            self._finish()
            return
        prepared = self._prepared
        if (
            isinstance(exc, ResponseNeverReceived)
            and reused
            and not self._retried
            and prepared.replayable
            and prepared.method in _IDEMPOTENT
        ):
            self._retried = True
            self._acquire(fresh=True)
            return
        self._finish()
        self.deferred.errback(exc)

    def _time_out(self) -> None:
        self._delayed = None
        error = RequestTimeout(
            f"{self._prepared.method.decode()} {self._prepared.url} did not complete"
            f" within {self._timeout} seconds"
        )
        self._abort(error)

    def _cancel(self, _: Deferred[Any]) -> None:
        self._abort(
            CancelledError(f"{self._prepared.method.decode()} {self._prepared.url} was cancelled")
        )

    def _abort(self, error: BaseException) -> None:
        pending, self._pending = self._pending, None
        protocol = self._protocol
        if not self.deferred.called:  # first: the cancelled attempt's error is not ours
            self._finish()
            self.deferred.errback(error)
        if pending is not None:
            pending.cancel()
        if protocol is not None:
            protocol.abort_exchange(error)  # fails the body too; calls _on_done

    def _finish(self) -> None:
        delayed, self._delayed = self._delayed, None
        if delayed is not None and delayed.active():
            delayed.cancel()


# -- the default agent ----------------------------------------------------------------------

_default_agent: Agent | None = None


def _default() -> Agent:
    global _default_agent
    if _default_agent is None:
        from plait.cluster.reactor import get_reactor

        _default_agent = Agent(get_reactor())
    return _default_agent


def request(
    method: str | bytes, url: str, headers: HeaderInput = None, body: Any = None
) -> Deferred[ClientResponse]:
    """``Agent.request`` on the default agent (made on first use, on ``get_reactor()``).

    Returns:
        A Deferred of the ``ClientResponse``; it errbacks as ``Agent.request``'s does.

    Raises:
        ValueError, TypeError: as ``Agent.request`` does.
    """
    return _default().request(method, url, headers, body)


def get(url: str, headers: HeaderInput = None) -> Deferred[ClientResponse]:
    """``GET url`` on the default agent.

    Returns:
        A Deferred of the ``ClientResponse``; it errbacks as ``Agent.request``'s does.

    Raises:
        ValueError: an invalid URL or header.
    """
    return _default().request("GET", url, headers)
