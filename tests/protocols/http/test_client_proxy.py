"""The HTTP client's proxy support: settings, environment, and the wire over memory transports.

Requests go to a ``MemoryReactor``; the test plays the proxy (``RawServer``) and
writes its answers by hand. ``TunnelReactor.start_tls`` stands for the TLS
handshake: the test fires (or fails) it, and the HTTP protocol then speaks on the
same memory transport, so what the origin would receive inside the tunnel is what
the raw server records after the handshake.
"""

from __future__ import annotations

from typing import Any

import pytest
from zope.interface.verify import verifyObject

from plait.cluster.defer import CancelledError, Deferred
from plait.cluster.interfaces import IProtocol
from plait.cluster.testing import IOPump, MemoryReactor
from plait.protocols.http._proxy import EnvProxies, ProxyURL, bypasses, parse_proxy_url
from plait.protocols.http.client import Agent, ConnectTimeout, ProxyError, RequestTimeout
from plait.protocols.http.client_tunnel import TunnelProtocol

from .test_client import OK_HELLO, Outcome, RawServer, answer, raw

CREDENTIALS = b"Basic dXNlcjpwQHNz"  # user:p@ss


class TunnelReactor(MemoryReactor):
    """A MemoryReactor whose start_tls records the call; the test ends the handshake."""

    def __init__(self) -> None:
        super().__init__()
        self.upgrades: list[tuple[Any, Any, Deferred[Any]]] = []

    def start_tls(self, transport: Any, options: Any, server_side: bool = False) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self.upgrades.append((transport, options, d))
        return d


def tunnel_agent(reactor: MemoryReactor, **kw: Any) -> Agent:
    return Agent(
        reactor,
        proxy="http://user:p%40ss@proxy.test:3128",
        tls_options=lambda host: ("options for", host),
        **kw,
    )


def established(reactor: TunnelReactor) -> tuple[RawServer, IOPump]:
    """Answer the pending CONNECT with 200 and finish the handshake."""
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 200 Connection established\r\n\r\n")
    transport, _, handshake = reactor.upgrades[-1]
    server.received.clear()
    handshake.callback(transport)
    pump.flush()
    return server, pump


# -- proxy URLs -------------------------------------------------------------------------------


def test_a_proxy_url_gives_host_port_and_percent_decoded_credentials() -> None:
    proxy = parse_proxy_url("http://user:p%40ss@Proxy.Test:3128")
    assert proxy == ProxyURL("proxy.test", 3128, "user", "p@ss")
    assert proxy.authorization == CREDENTIALS
    assert str(proxy) == "http://user:***@proxy.test:3128"
    assert proxy.label == "user@proxy.test:3128"


def test_a_proxy_url_without_port_or_credentials_uses_port_80_and_no_authorization() -> None:
    proxy = parse_proxy_url("http://[::1]")
    assert (proxy.host, proxy.port, proxy.authorization) == ("::1", 80, None)
    assert str(proxy) == "http://[::1]:80"


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("socks5://user:secret@127.0.0.1:1080", "unsupported proxy scheme 'socks5'"),
        ("https://proxy.test:443", "unsupported proxy scheme 'https'"),
        ("proxy.test:3128", "has no scheme"),
        ("http://", "has no host"),
        ("http://user:secret@proxy.test:99999", "invalid port"),
        ("http://proxy.test:0", "invalid port"),
        (42, "must be a str"),
    ],
)
def test_a_bad_proxy_url_raises_valueerror_at_agent_construction(url: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        Agent(MemoryReactor(), proxy=url)
    assert "secret" not in str(info.value)


# -- the environment ------------------------------------------------------------------------


def test_lower_case_proxy_variables_win_over_upper_case() -> None:
    env = {
        "HTTP_PROXY": "http://upper:1",
        "http_proxy": "http://lower:2",
        "HTTPS_PROXY": "http://upper:3",
        "NO_PROXY": "upper.test",
        "no_proxy": "lower.test",
    }
    proxies = EnvProxies.from_environ(env)
    assert proxies == EnvProxies(ProxyURL("lower", 2), ProxyURL("upper", 3), "lower.test")


def test_a_proxy_variable_without_scheme_means_http_and_empty_ones_are_unset() -> None:
    proxies = EnvProxies.from_environ({"https_proxy": "proxy.test:3128", "http_proxy": ""})
    assert proxies == EnvProxies(None, ProxyURL("proxy.test", 3128))


def test_upper_case_http_proxy_is_ignored_in_a_cgi_script() -> None:
    env = {"HTTP_PROXY": "http://from-a-header:1", "REQUEST_METHOD": "GET"}
    assert EnvProxies.from_environ(env).http is None
    env["http_proxy"] = "http://set-by-us:2"
    assert EnvProxies.from_environ(env).http == ProxyURL("set-by-us", 2)


def test_an_unsupported_proxy_in_the_environment_names_its_variable() -> None:
    with pytest.raises(ValueError, match=r"^HTTPS_PROXY: unsupported proxy scheme 'socks5'"):
        EnvProxies.from_environ({"HTTPS_PROXY": "socks5://127.0.0.1:1080"})


@pytest.mark.parametrize(
    ("host", "port", "no_proxy", "expected"),
    [
        ("example.com", 80, "", False),
        ("example.com", 80, "*", True),
        ("example.com", 80, "example.com", True),
        ("api.example.com", 80, ".example.com", True),
        ("api.example.com", 80, "example.com", True),
        ("badexample.com", 80, "example.com", False),
        ("EXAMPLE.com.", 80, " other.test , example.COM ", True),
        ("example.com", 8080, "example.com:80", False),
        ("example.com", 80, "example.com:80", True),
        ("10.1.2.3", 80, "10.0.0.0/8", True),
        ("11.1.2.3", 80, "10.0.0.0/8", False),
        ("127.0.0.1", 80, "127.0.0.1", True),
        ("::1", 443, "[::1]:443", True),
        ("::1", 443, "::1", True),
        ("::1", 80, "[::1]:443", False),
        ("127.0.0.1", 80, "localhost", False),
    ],
)
def test_no_proxy_matches_names_subdomains_addresses_networks_and_ports(
    host: str, port: int, no_proxy: str, expected: bool
) -> None:
    assert bypasses(host, port, no_proxy) is expected


def test_env_proxies_pick_by_scheme_and_bypass_no_proxy_hosts() -> None:
    proxies = EnvProxies(ProxyURL("plain", 1), ProxyURL("secure", 2), "internal.test")
    assert proxies.for_url("http", "example.com", 80) == ProxyURL("plain", 1)
    assert proxies.for_url("https", "example.com", 443) == ProxyURL("secure", 2)
    assert proxies.for_url("https", "db.internal.test", 443) is None


def set_env(monkeypatch: pytest.MonkeyPatch, **values: str) -> None:
    for name in ("http_proxy", "https_proxy", "no_proxy", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    for name, value in values.items():
        monkeypatch.setenv(name, value)


def test_agent_ignores_proxy_variables_unless_trust_env(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, http_proxy="http://proxy.test:3128")
    reactor = MemoryReactor()
    Agent(reactor).request("GET", "http://example.com/")
    Agent(reactor, trust_env=True).request("GET", "http://example.com/")
    assert [c.address for c in reactor.tcp_clients] == [("example.com", 80), ("proxy.test", 3128)]


def test_an_explicit_proxy_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, http_proxy="socks5://ignored:1", no_proxy="*")
    reactor = MemoryReactor()
    Agent(reactor, proxy="http://mine.test:8080", trust_env=True).request("GET", "http://a.test/")
    assert reactor.tcp_clients[0].address == ("mine.test", 8080)


def test_trust_env_with_a_bad_variable_raises_valueerror(monkeypatch: pytest.MonkeyPatch) -> None:
    set_env(monkeypatch, HTTPS_PROXY="socks5://127.0.0.1:1080")
    with pytest.raises(ValueError, match="HTTPS_PROXY"):
        Agent(MemoryReactor(), trust_env=True)


# -- plain http through a proxy ----------------------------------------------------------------


def test_http_request_goes_to_the_proxy_in_absolute_form_with_proxy_authorization() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, proxy="http://user:p%40ss@proxy.test:3128", decompress=False)
    d = agent.request("GET", "http://example.com:8080/a%20b?q=1")
    assert reactor.tcp_clients[0].address == ("proxy.test", 3128)
    server, pump = raw(reactor)
    assert bytes(server.received) == (
        b"GET http://example.com:8080/a%20b?q=1 HTTP/1.1\r\nHost: example.com:8080\r\n"
        b"User-Agent: plait/0.1\r\nProxy-Authorization: " + CREDENTIALS + b"\r\n\r\n"
    )
    answer(server, pump, OK_HELLO)
    assert Outcome(d).result.status == 200


def test_http_requests_to_every_origin_share_the_proxy_connections() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, proxy="http://proxy.test:3128")
    first = Outcome(agent.request("GET", "http://a.test/"))
    server, pump = raw(reactor)
    answer(server, pump, OK_HELLO)
    assert Outcome(first.result.read()).result == b"hello"
    second = Outcome(agent.request("GET", "http://b.test/x"))
    pump.flush()
    assert len(reactor.tcp_clients) == 1
    assert b"GET http://b.test/x HTTP/1.1\r\nHost: b.test\r\n" in server.received
    assert b"Proxy-Authorization" not in server.received  # no credentials, none sent
    answer(server, pump, OK_HELLO)
    assert second.result.status == 200
    assert agent.pool.statistics() == {("http-proxy", "proxy.test", 3128): (1, 1, 0)}


def test_a_redirect_to_another_origin_is_followed_through_the_same_proxy() -> None:
    reactor = MemoryReactor()
    agent = Agent(reactor, proxy="http://proxy.test:3128", follow_redirects=True)
    d = Outcome(agent.request("GET", "http://a.test/", {"Authorization": "Basic c2VjcmV0"}))
    server, pump = raw(reactor)
    redirect = b"HTTP/1.1 302 Found\r\nLocation: http://b.test/next\r\nContent-Length: 0\r\n\r\n"
    answer(server, pump, redirect)
    pump.flush()
    head = bytes(server.received).split(b"\r\n\r\n")[1]
    assert head.startswith(b"GET http://b.test/next HTTP/1.1\r\n") and b"\r\nHost: b.test" in head
    assert b"Authorization" not in head
    answer(server, pump, OK_HELLO)
    assert d.result.status == 200 and len(reactor.tcp_clients) == 1


# -- https through a CONNECT tunnel ------------------------------------------------------------


def test_https_opens_a_connect_tunnel_then_tls_with_the_origin_options() -> None:
    reactor = TunnelReactor()
    agent = tunnel_agent(reactor, decompress=False)
    d = agent.request("GET", "https://example.com/path", {"Proxy-Authorization": "Basic bGVhaw=="})
    assert reactor.tcp_clients[0].address == ("proxy.test", 3128)
    server, pump = raw(reactor)
    assert bytes(server.received) == (
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n"
        b"User-Agent: plait/0.1\r\nProxy-Authorization: " + CREDENTIALS + b"\r\n\r\n"
    )
    answer(server, pump, b"HTTP/1.1 100 Wait\r\n\r\nHTTP/1.1 200 OK\r\n\r\n")
    transport, options, handshake = reactor.upgrades[0]
    assert options == ("options for", "example.com")
    server.received.clear()
    handshake.callback(transport)
    pump.flush()
    assert bytes(server.received) == (
        b"GET /path HTTP/1.1\r\nHost: example.com\r\nUser-Agent: plait/0.1\r\n\r\n"
    )
    answer(server, pump, OK_HELLO)
    response = Outcome(d).result
    assert Outcome(response.read()).result == b"hello"
    key = ("https-via-user@proxy.test:3128", "example.com", 443)
    assert agent.pool.statistics() == {key: (1, 1, 0)}


def test_a_tunnel_to_an_ipv6_origin_names_it_in_brackets() -> None:
    reactor = TunnelReactor()
    tunnel_agent(reactor).request("GET", "https://[::1]:8443/")
    server, _ = raw(reactor)
    assert server.received.startswith(b"CONNECT [::1]:8443 HTTP/1.1\r\nHost: [::1]:8443\r\n")


@pytest.mark.parametrize(
    ("wire", "status", "message"),
    [
        (b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 2\r\n\r\nno", 407,
         "answered CONNECT example.com:443 with 407 Proxy Authentication Required"),
        (b"HTTP/1.1 502 Bad Gateway\r\n\r\n", 502, "with 502 Bad Gateway"),
        (b"HTTP/1.1 200 OK\r\n\r\n\x16\x03", 200, "sent bytes through the tunnel before"),
        (b"SSH-2.0-OpenSSH\r\n\r\n", None, "sent an invalid answer to CONNECT example.com:443"),
    ],
)
def test_a_refused_or_invalid_connect_answer_fails_and_drops_the_connection(
    wire: bytes, status: int | None, message: str
) -> None:
    reactor = TunnelReactor()
    agent = tunnel_agent(reactor)
    outcome = Outcome(agent.request("GET", "https://example.com/"))
    server, pump = raw(reactor)
    answer(server, pump, wire)
    error = outcome.error()
    assert isinstance(error, ProxyError) and isinstance(error, ConnectionError)
    assert error.status == status and message in str(error)
    assert error.proxy == "http://user:***@proxy.test:3128"
    assert server.transport.is_closing() and not reactor.upgrades
    key = ("https-via-user@proxy.test:3128", "example.com", 443)
    assert agent.pool.statistics()[key] == (0, 0, 0)


@pytest.mark.parametrize("partial", [b"", b"HTTP/1.1 20"])
def test_a_proxy_closing_during_connect_fails_with_proxyerror(partial: bytes) -> None:
    reactor = TunnelReactor()
    outcome = Outcome(tunnel_agent(reactor).request("GET", "https://example.com/"))
    server, pump = raw(reactor)
    answer(server, pump, partial)
    server.transport.close()
    pump.flush()
    error = outcome.error()
    assert isinstance(error, ProxyError) and error.status is None
    assert "closed the connection before answering CONNECT example.com:443" in str(error)


def test_a_failed_tls_handshake_in_the_tunnel_fails_the_request_and_frees_the_slot() -> None:
    reactor = TunnelReactor()
    agent = tunnel_agent(reactor)
    outcome = Outcome(agent.request("GET", "https://example.com/"))
    server, pump = raw(reactor)
    answer(server, pump, b"HTTP/1.1 200 OK\r\n\r\n")
    reactor.upgrades[0][2].errback(ValueError("certificate for the wrong host"))
    assert "wrong host" in str(outcome.error())
    key = ("https-via-user@proxy.test:3128", "example.com", 443)
    assert agent.pool.statistics()[key] == (0, 0, 0)


def test_connect_timeout_covers_the_connect_answer_and_the_handshake() -> None:
    for answered in (False, True):
        reactor = TunnelReactor()
        outcome = Outcome(tunnel_agent(reactor, connect_timeout=5).request("GET", "https://a.test/"))
        server, pump = raw(reactor)
        if answered:
            answer(server, pump, b"HTTP/1.1 200 OK\r\n\r\n")
            assert reactor.upgrades  # the handshake runs, and never ends
        reactor.advance(4.9)
        assert not outcome.fired
        reactor.advance(0.2)
        error = outcome.error()
        assert isinstance(error, ConnectTimeout)
        assert "opening a tunnel to a.test port 443 through http://user:***@proxy.test:3128" in str(
            error
        )
        pump.flush()
        assert server.transport.is_closing()


def test_cancelling_during_connect_aborts_the_tunnel() -> None:
    reactor = TunnelReactor()
    d = tunnel_agent(reactor).request("GET", "https://example.com/")
    outcome = Outcome(d)
    server, pump = raw(reactor)
    d.cancel()
    assert isinstance(outcome.error(), CancelledError)
    pump.flush()
    assert server.transport.is_closing()
    answer(server, pump, b"HTTP/1.1 200 OK\r\n\r\n")  # too late: nobody listens
    assert not reactor.upgrades


def test_a_tunnel_is_reused_for_the_next_request_to_the_same_origin() -> None:
    reactor = TunnelReactor()
    agent = tunnel_agent(reactor)
    first = Outcome(agent.request("GET", "https://example.com/1"))
    server, pump = established(reactor)
    answer(server, pump, OK_HELLO)
    assert Outcome(first.result.read()).result == b"hello"
    second = Outcome(agent.request("GET", "https://example.com/2"))
    pump.flush()
    assert server.received.count(b"GET /2 HTTP/1.1") == 1
    answer(server, pump, OK_HELLO)
    assert second.result.status == 200 and len(reactor.tcp_clients) == 1
    other = agent.request("GET", "https://other.test/")
    assert len(reactor.tcp_clients) == 2 and not other.called


def test_https_through_a_proxy_needs_a_reactor_with_start_tls() -> None:
    with pytest.raises(ValueError, match="no start_tls"):
        Agent(MemoryReactor(), proxy="http://proxy.test:3128").request("GET", "https://a.test/")


def test_tunnel_protocol_provides_iprotocol() -> None:
    proxy = ProxyURL("proxy.test", 3128)
    assert verifyObject(IProtocol, TunnelProtocol(proxy, b"a.test:443", b"plait/0.1"))


def test_request_timeout_during_connect_errbacks_and_aborts_the_tunnel() -> None:
    reactor = TunnelReactor()
    agent = tunnel_agent(reactor, timeout=3)
    outcome = Outcome(agent.request("GET", "https://example.com/"))
    server, pump = raw(reactor)
    reactor.advance(3)
    error = outcome.error()
    assert isinstance(error, RequestTimeout) and not isinstance(error, ConnectTimeout)
    assert "GET https://example.com/ did not complete within 3 seconds" in str(error)
    pump.flush()
    assert server.transport.is_closing()
    key = ("https-via-user@proxy.test:3128", "example.com", 443)
    assert agent.pool.statistics()[key] == (0, 0, 0)


def test_request_timeout_while_connecting_directly_is_a_requesttimeout() -> None:
    reactor = MemoryReactor()
    outcome = Outcome(Agent(reactor, timeout=2).request("GET", "http://example.com/"))
    reactor.advance(2)
    assert isinstance(outcome.error(), RequestTimeout)
    assert not reactor.tcp_clients[0].pending
