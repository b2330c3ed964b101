"""AsyncioReactor beyond the stream conformance suite: UDP, child processes, TLS.

Each test runs on asyncio's default loop and on uvloop. These are the native
transports and the native process code, driven by the loop's ``add_reader`` (and,
for the SIGCHLD fallback, its ``add_signal_handler``, which uvloop refuses for
SIGCHLD: there, children need pidfd); ``start_tls`` on uvloop upgrades the adapter
over uvloop's own TCP transport, in the turn the connection was made; bad TLS
peers (plaintext, a stalled handshake) are closed and logged on either loop, and a
good client is served after them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from plait.cluster import _process
from plait.cluster.defer import Deferred, ensure_deferred
from plait.cluster.protocol import DatagramProtocol, ProcessProtocol, Protocol
from plait.cluster.reactor import AsyncioReactor
from plait.cluster.task import defer_later
from plait.cluster.tls import client_options, server_options
from tests.reactor_support import run_deferred
from tests.tls_certs import Certs, make_certs

_LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(_LOOPS))
def reactor(request: pytest.FixtureRequest) -> Iterator[AsyncioReactor]:
    loop = _LOOPS[request.param]()
    r = AsyncioReactor(loop)
    yield r
    r.close()
    loop.close()


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("tls-asyncio-io")))


def run_main(reactor: AsyncioReactor, main: Callable[[], Any], limit: float = 10.0) -> Any:
    """Run the coroutine ``main()`` on the reactor; its result (or raise its error)."""
    return run_deferred(reactor, lambda: ensure_deferred(main()), limit)


# ----------------------------------------------------------------------- UDP


class UDPEcho(DatagramProtocol):
    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.transport.sendto(data.upper(), addr)


class UDPAsker(DatagramProtocol):
    def __init__(self) -> None:
        self.answer: Deferred[bytes] = Deferred()

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.answer.callback(data)


def test_udp_datagrams_go_both_ways(reactor: AsyncioReactor) -> None:
    async def main() -> bytes:
        server = reactor.listen_udp(0, UDPEcho(), interface="127.0.0.1")
        asker = UDPAsker()
        client = reactor.listen_udp(0, asker, interface="127.0.0.1")
        try:
            client.sendto(b"datagram", ("127.0.0.1", server.get_extra_info("sockname")[1]))
            return await asker.answer
        finally:
            client.close()
            server.close()

    assert run_main(reactor, main) == b"DATAGRAM"


# ----------------------------------------------------------------- processes


class Child(ProcessProtocol):
    def __init__(self) -> None:
        self.out = b""
        self.exited: Deferred[None] = Deferred()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        self.out += data

    def process_exited(self) -> None:
        self.exited.callback(None)


@pytest.mark.parametrize("reaping", ["pidfd", "sigchld"])
def test_a_child_process_round_trips_stdin_to_stdout(
        reactor: AsyncioReactor, reaping: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if reaping == "pidfd" and not hasattr(os, "pidfd_open"):
        pytest.skip("no pidfd_open here")
    monkeypatch.setattr(_process, "_use_pidfd", reaping == "pidfd")
    previous = signal.getsignal(signal.SIGCHLD)
    child = Child()
    code = "import sys; sys.stdout.buffer.write(sys.stdin.buffer.read().upper()); sys.exit(3)"
    if reaping == "sigchld" and isinstance(reactor.loop, uvloop.Loop):
        # uvloop keeps SIGCHLD for itself: without pidfd (Linux < 5.3) a child cannot
        # be watched, so spawn_process ends it at once and says why.
        with pytest.raises(ValueError, match="SIGCHLD"):
            reactor.spawn_process(child, [sys.executable, "-c", code])
        assert not child.out
        return
    transport = reactor.spawn_process(child, [sys.executable, "-c", code])
    try:
        async def main() -> tuple[bytes, int | None]:
            stdin = transport.get_pipe_transport(0)
            stdin.write(b"through a pipe")
            stdin.close()
            await child.exited
            return child.out, transport.get_returncode()

        assert run_main(reactor, main) == (b"THROUGH A PIPE", 3)
    finally:
        if transport.get_returncode() is None:
            transport.kill()
        reactor.remove_signal_handler(signal.SIGCHLD)
    assert signal.getsignal(signal.SIGCHLD) == previous


# ------------------------------------------------------------------ start_tls


class Upgrader(Protocol):
    """Says "starttls", then upgrades its side and says hello over TLS."""

    def __init__(self) -> None:
        self.data = b""
        self.got: Deferred[bytes] = Deferred()

    def data_received(self, data: bytes) -> None:
        self.data += data
        if self.data.endswith(b"tls hello") and not self.got.called:
            self.got.callback(self.data)


def test_start_tls_upgrades_a_connection_on_both_sides(reactor: AsyncioReactor,
                                                       certs: Certs) -> None:
    servers: list[Upgrader] = []

    def make_server() -> Upgrader:
        servers.append(Upgrader())
        return servers[-1]

    async def main() -> tuple[bytes, bytes]:
        port = reactor.listen_tcp(0, make_server, interface="127.0.0.1")
        client = Upgrader()
        try:
            await reactor.connect_tcp("127.0.0.1", port.get_host()[1], lambda: client,
                                      timeout=5)
            server = servers[0]
            upgrades = [
                reactor.start_tls(server.transport,
                                  server_options(certs.server_cert, certs.server_key),
                                  server_side=True),
                reactor.start_tls(client.transport,
                                  client_options("localhost", ca_file=certs.ca)),
            ]
            server_tls, client_tls = [await d for d in upgrades]
            server.transport, client.transport = server_tls, client_tls
            client_tls.write(b"tls hello")
            server_tls.write(b"tls hello")
            got = (await server.got, await client.got)
            client_tls.close()
            server_tls.close()
            return got
        finally:
            await port.stop_listening()

    assert run_main(reactor, main) == (b"tls hello", b"tls hello")


# ---------------------------------------------------------- TLS bad input


class Watcher(Protocol):
    """Writes ``first`` once connected; ``lost`` fires when the connection ends."""

    def __init__(self, first: bytes = b"") -> None:
        self.first = first
        self.data = b""
        self.lost: Deferred[None] = Deferred()

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        if self.first:
            transport.write(self.first)

    def data_received(self, data: bytes) -> None:
        self.data += data

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.callback(None)


class TLSEcho(Protocol):
    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


def test_bad_tls_peers_are_closed_and_logged_and_a_good_client_is_served(
    reactor: AsyncioReactor, certs: Certs, caplog: pytest.LogCaptureFixture
) -> None:
    options = server_options(certs.server_cert, certs.server_key, handshake_timeout=0.2)

    async def main() -> bytes:
        port = reactor.listen_ssl(0, TLSEcho, options, interface="127.0.0.1")
        number = port.get_host()[1]
        try:
            plaintext = Watcher(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
            await reactor.connect_tcp("127.0.0.1", number, lambda: plaintext, timeout=5)
            await plaintext.lost  # refused by the server
            silent = Watcher()
            await reactor.connect_tcp("127.0.0.1", number, lambda: silent, timeout=5)
            await silent.lost  # aborted by the handshake timeout
            good = await reactor.connect_ssl("127.0.0.1", number, Watcher,
                                             client_options("localhost", ca_file=certs.ca))
            good.transport.write(b"still served")
            while good.data != b"still served":
                await defer_later(reactor, 0.01)
            good.transport.close()
            await good.lost
            return bytes(plaintext.data + silent.data)
        finally:
            await port.stop_listening()

    with caplog.at_level("INFO", logger="plait.tls"):
        assert b"HTTP" not in run_main(reactor, main)
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name == "plait.tls")
    assert "http request" in logged
    assert "did not finish within 0.2 s" in logged
