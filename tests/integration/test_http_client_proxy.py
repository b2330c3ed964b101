"""The HTTP client through a real forward proxy on 127.0.0.1 (``tests/forward_proxy.py``).

The origin is a Plait Site, plain or over TLS (``tests/tls_certs.py``), that
records the headers of every request it serves. The proxy runs in threads and is
closed by its fixture; the native reactor runs in the test's thread. ``curl -x``
checks the test proxy on its own, so a passing client test is not two bugs
agreeing.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.cluster.reactor import Reactor
from plait.cluster.tls import CertificateVerifyError, client_options, server_options
from plait.protocols.http import Headers, Request, Response, Router, Site
from plait.protocols.http.client import (
    Agent,
    ConnectTimeout,
    ProxyError,
    RequestTimeout,
)
from tests.forward_proxy import ForwardProxy
from tests.tls_certs import Certs, make_certs


class Origin:
    """A Plait Site on 127.0.0.1 that records the request headers it saw."""

    def __init__(self) -> None:
        self.seen: list[Headers] = []
        router = Router()

        @router.get("/hello")
        def hello(request: Request) -> Response:
            self.seen.append(request.headers)
            return Response(200, b"hello via " + (request.headers.get("host") or b"?"))

        @router.get("/redirect")
        def redirect(request: Request) -> Response:
            self.seen.append(request.headers)
            return Response(302, b"", headers={"Location": "/hello"})

        self.site = Site(router)

    def proxy_authorizations(self) -> list[bytes | None]:
        return [headers.get("proxy-authorization") for headers in self.seen]


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("http-client-proxy")))


@pytest.fixture
def http_origin(reactor: Reactor) -> Iterator[tuple[Origin, int]]:
    origin = Origin()
    port = reactor.listen_tcp(0, origin.site, interface="127.0.0.1")
    yield origin, port.get_host()[1]
    port.stop_listening()  # closes the socket at once; the reactor is closed next


def tls_origin(reactor: Reactor, cert: str, key: str) -> tuple[Origin, Any]:
    origin = Origin()
    port = reactor.listen_ssl(0, origin.site, server_options(cert, key), interface="127.0.0.1")
    return origin, port


@pytest.fixture
def https_origin(reactor: Reactor, certs: Certs) -> Iterator[tuple[Origin, int]]:
    origin, port = tls_origin(reactor, certs.server_cert, certs.server_key)
    yield origin, port.get_host()[1]
    port.stop_listening()


@pytest.fixture
def proxies() -> Iterator[list[ForwardProxy]]:
    made: list[ForwardProxy] = []
    yield made
    for proxy in made:
        proxy.close()


def start(made: list[ForwardProxy], **kw: Any) -> ForwardProxy:
    proxy = ForwardProxy(**kw)
    made.append(proxy)
    return proxy


def with_credentials(proxy: ForwardProxy, user: str = "user", password: str = "p@ss") -> str:
    return f"http://{user}:{password.replace('@', '%40')}@127.0.0.1:{proxy.port}"


def trusting(certs: Certs) -> Any:
    return lambda host: client_options(host, ca_file=certs.ca)


# -- the test proxy on its own ---------------------------------------------------------------


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
async def test_the_test_proxy_carries_curl_requests_plain_and_tunnelled(
    reactor: Reactor,
    proxies: list[ForwardProxy],
    http_origin: tuple[Origin, int],
    https_origin: tuple[Origin, int],
    certs: Certs,
) -> None:
    proxy = start(proxies, credentials=("user", "p@ss"))
    plain, tls = http_origin[1], https_origin[1]
    command = ["curl", "-sS", "--max-time", "10", "--noproxy", "", "-x", with_credentials(proxy)]
    done = await reactor.defer_to_thread(
        subprocess.run,
        [*command, f"http://127.0.0.1:{plain}/hello"],
        capture_output=True,
        timeout=15,
    )
    assert done.stdout == f"hello via 127.0.0.1:{plain}".encode(), done.stderr
    done = await reactor.defer_to_thread(
        subprocess.run,
        [*command, "--cacert", certs.ca, f"https://localhost:{tls}/hello"],
        capture_output=True,
        timeout=15,
    )
    assert done.stdout == f"hello via localhost:{tls}".encode(), done.stderr
    assert [(s.method, s.target) for s in proxy.seen] == [
        ("GET", f"http://127.0.0.1:{plain}/hello"),
        ("CONNECT", f"localhost:{tls}"),
    ]


# -- plain http through the proxy --------------------------------------------------------------


async def test_http_goes_to_the_proxy_in_absolute_form_pooled_per_proxy(
    reactor: Reactor, proxies: list[ForwardProxy], http_origin: tuple[Origin, int]
) -> None:
    proxy = start(proxies, credentials=("user", "p@ss"))
    origin, port = http_origin
    agent = Agent(reactor, proxy=with_credentials(proxy))
    try:
        for host in ("127.0.0.1", "localhost", "127.0.0.1"):
            response = await agent.request("GET", f"http://{host}:{port}/hello")
            assert await response.read() == f"hello via {host}:{port}".encode()
        assert proxy.connections == 1
        assert [s.target for s in proxy.seen] == [
            f"http://127.0.0.1:{port}/hello",
            f"http://localhost:{port}/hello",
            f"http://127.0.0.1:{port}/hello",
        ]
        assert [s.header("host") for s in proxy.seen] == [
            f"127.0.0.1:{port}",
            f"localhost:{port}",
            f"127.0.0.1:{port}",
        ]
        assert {s.header("proxy-authorization") for s in proxy.seen} == {"Basic dXNlcjpwQHNz"}
        assert origin.proxy_authorizations() == [None, None, None]
        assert agent.pool.statistics()[("http-proxy", "127.0.0.1", proxy.port)] == (1, 1, 0)
    finally:
        await agent.close()


async def test_redirects_are_followed_through_the_proxy(
    reactor: Reactor, proxies: list[ForwardProxy], http_origin: tuple[Origin, int]
) -> None:
    proxy = start(proxies)
    port = http_origin[1]
    agent = Agent(reactor, proxy=proxy.url, follow_redirects=True)
    try:
        response = await agent.request("GET", f"http://127.0.0.1:{port}/redirect")
        assert await response.read() == f"hello via 127.0.0.1:{port}".encode()
        assert [r.status for r in response.history] == [302]
        assert [s.target for s in proxy.seen] == [
            f"http://127.0.0.1:{port}/redirect",
            f"http://127.0.0.1:{port}/hello",
        ]
    finally:
        await agent.close()


async def test_trust_env_takes_the_proxy_and_no_proxy_from_the_environment(
    reactor: Reactor,
    proxies: list[ForwardProxy],
    http_origin: tuple[Origin, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    proxy = start(proxies)
    port = http_origin[1]
    for name in ("http_proxy", "HTTP_PROXY", "no_proxy", "NO_PROXY", "REQUEST_METHOD"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"127.0.0.1:{proxy.port}")
    monkeypatch.setenv("NO_PROXY", "localhost")
    trusting_agent, default_agent = Agent(reactor, trust_env=True), Agent(reactor)
    try:
        for agent, host in ((trusting_agent, "127.0.0.1"), (trusting_agent, "localhost")):
            await (await agent.request("GET", f"http://{host}:{port}/hello")).read()
        await (await default_agent.request("GET", f"http://127.0.0.1:{port}/hello")).read()
        assert [s.target for s in proxy.seen] == [f"http://127.0.0.1:{port}/hello"]
    finally:
        await trusting_agent.close()
        await default_agent.close()


# -- https through a CONNECT tunnel ------------------------------------------------------------


async def test_https_goes_through_a_connect_tunnel_pooled_per_proxy_and_origin(
    reactor: Reactor,
    proxies: list[ForwardProxy],
    https_origin: tuple[Origin, int],
    certs: Certs,
) -> None:
    proxy = start(proxies, credentials=("user", "p@ss"))
    origin, port = https_origin
    agent = Agent(reactor, proxy=with_credentials(proxy), tls_options=trusting(certs))
    leak = {"Proxy-Authorization": "Basic bGVhaw=="}
    try:
        for _ in range(2):
            response = await agent.request("GET", f"https://localhost:{port}/hello", leak)
            assert await response.read() == f"hello via localhost:{port}".encode()
        assert proxy.connections == 1
        assert [(s.method, s.target) for s in proxy.seen] == [("CONNECT", f"localhost:{port}")]
        assert proxy.seen[0].header("host") == f"localhost:{port}"
        assert proxy.seen[0].header("proxy-authorization") == "Basic dXNlcjpwQHNz"
        assert origin.proxy_authorizations() == [None, None]
        key = (f"https-via-user@127.0.0.1:{proxy.port}", "localhost", port)
        assert agent.pool.statistics()[key] == (1, 1, 0)
    finally:
        await agent.close()


@pytest.mark.parametrize("status", [407, 502])
async def test_a_refused_connect_fails_with_its_status_and_is_never_pooled(
    reactor: Reactor, proxies: list[ForwardProxy], certs: Certs, status: int
) -> None:
    proxy = start(proxies, credentials=("user", "right")) if status == 407 else start(
        proxies, connect_status=status
    )
    agent = Agent(reactor, proxy=with_credentials(proxy, password="wrong"))
    with pytest.raises(ProxyError, match=rf"answered CONNECT 127\.0\.0\.1:9 with {status}") as info:
        await agent.request("GET", "https://127.0.0.1:9/")
    assert info.value.status == status
    assert "wrong" not in str(info.value) and "user:***@" in str(info.value)
    key = (f"https-via-user@127.0.0.1:{proxy.port}", "127.0.0.1", 9)
    assert agent.pool.statistics()[key] == (0, 0, 0)


async def test_a_proxy_that_hangs_up_during_connect_fails_the_request(
    reactor: Reactor, proxies: list[ForwardProxy]
) -> None:
    proxy = start(proxies, connect_fault="close")
    with pytest.raises(ProxyError, match="closed the connection before answering") as info:
        await Agent(reactor, proxy=proxy.url).request("GET", "https://127.0.0.1:9/")
    assert info.value.status is None


async def test_a_tunnel_to_a_server_with_the_wrong_certificate_fails_the_handshake(
    reactor: Reactor, proxies: list[ForwardProxy], certs: Certs
) -> None:
    proxy = start(proxies)
    _, port = tls_origin(reactor, certs.other_cert, certs.other_key)  # for other.test
    agent = Agent(reactor, proxy=proxy.url, tls_options=trusting(certs))
    try:
        with pytest.raises(CertificateVerifyError):
            await agent.request("GET", f"https://127.0.0.1:{port.get_host()[1]}/hello")
        assert proxy.seen[0].method == "CONNECT"
    finally:
        await port.stop_listening()


async def test_connect_timeout_and_request_timeout_cover_the_connect_phase(
    reactor: Reactor, proxies: list[ForwardProxy]
) -> None:
    proxy = start(proxies, connect_fault="hang")
    with pytest.raises(ConnectTimeout, match=r"opening a tunnel to 127\.0\.0\.1 port 9 through"):
        await Agent(reactor, proxy=proxy.url, connect_timeout=0.2).request(
            "GET", "https://127.0.0.1:9/"
        )
    with pytest.raises(RequestTimeout, match=r"did not complete within 0\.2 seconds"):
        await Agent(reactor, proxy=proxy.url, timeout=0.2).request("GET", "https://127.0.0.1:9/")
    assert [s.method for s in proxy.seen] == ["CONNECT", "CONNECT"]
