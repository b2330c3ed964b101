"""Endpoints and ClientService over real loopback and Unix sockets."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plait.cluster._unix import UnixStreamTransport
from plait.cluster.defer import Deferred
from plait.cluster.endpoints import ClientService, client_from_string, server_from_string
from plait.cluster.protocol import Protocol
from plait.cluster.reactor import Reactor


class Echo(Protocol):
    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class Client(Protocol):
    def __init__(self) -> None:
        self.received = bytearray()
        self.got: Deferred[bytes] = Deferred()
        self.lost: Deferred[None] = Deferred()

    def data_received(self, data: bytes) -> None:
        self.received += data
        if not self.got.called:
            self.got.callback(bytes(self.received))

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.callback(None)


def _has_ipv6() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.fixture
def short_dir() -> Iterator[Path]:
    path = Path("/tmp") / f"plait-{uuid.uuid4().hex[:12]}"
    path.mkdir(mode=0o700)
    try:
        yield path
    finally:
        for child in path.iterdir():
            child.unlink()
        path.rmdir()


async def test_tcp_server_and_client_strings_connect(reactor: Reactor) -> None:
    port = await server_from_string(reactor, "tcp:0:interface=127.0.0.1").listen(Echo)
    client = await client_from_string(reactor, f"tcp:host=127.0.0.1:port={port.port}").connect(
        Client
    )
    client.transport.write(b"hello")
    assert await client.got == b"hello"
    client.transport.close()
    await client.lost
    await port.stop_listening()


@pytest.mark.skipif(not _has_ipv6(), reason="this host cannot bind ::1")
async def test_tcp6_strings_connect_over_ipv6(reactor: Reactor) -> None:
    port = await server_from_string(reactor, r"tcp6:0:interface=\:\:1").listen(Echo)
    assert port.get_host()[0] == "::1"
    client = await client_from_string(reactor, rf"tcp:\:\:1:{port.port}").connect(Client)
    client.transport.write(b"six")
    assert await client.got == b"six"
    client.transport.close()
    await port.stop_listening()


async def test_unix_server_and_client_strings_connect(reactor: Reactor, short_dir: Path) -> None:
    path = str(short_dir / "app.sock")
    port = await server_from_string(reactor, f"unix:{path}:mode=600").listen(Echo)
    assert os.stat(path).st_mode & 0o777 == 0o600
    client = await client_from_string(reactor, f"unix:path={path}:timeout=2").connect(Client)
    assert isinstance(client.transport, UnixStreamTransport)
    client.transport.write(b"local")
    assert await client.got == b"local"
    client.transport.close()
    await port.stop_listening()


async def test_a_bind_failure_is_an_errback(reactor: Reactor) -> None:
    port = await server_from_string(reactor, "tcp:0:interface=127.0.0.1").listen(Echo)
    with pytest.raises(OSError):
        await server_from_string(reactor, f"tcp:{port.port}:interface=127.0.0.1").listen(Echo)
    await port.stop_listening()


@pytest.mark.parametrize("description", ["fd:{fd}", "fd:fileno={fd}:domain=INET"])
async def test_fd_endpoint_adopts_an_inherited_tcp_listener(
    reactor: Reactor, description: str
) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        endpoint = server_from_string(reactor, description.format(fd=listener.fileno()))
        port = await endpoint.listen(Echo)
    finally:
        listener.close()  # the reactor holds its own duplicate
    client = await client_from_string(reactor, f"tcp:127.0.0.1:{port.port}").connect(Client)
    client.transport.write(b"adopted")
    assert await client.got == b"adopted"
    client.transport.close()
    await port.stop_listening()


async def test_fd_endpoint_detects_a_unix_listener(reactor: Reactor, short_dir: Path) -> None:
    path = str(short_dir / "inherited.sock")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(8)
    try:
        port = await server_from_string(reactor, f"fd:{listener.fileno()}").listen(Echo)
    finally:
        listener.close()
    client = await client_from_string(reactor, f"unix:{path}").connect(Client)
    client.transport.write(b"unix")
    assert await client.got == b"unix"
    client.transport.close()
    await port.stop_listening()


async def test_fd_endpoint_refuses_what_is_not_a_listening_stream_socket(
    reactor: Reactor,
) -> None:
    idle = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    dgram = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with idle, pytest.raises(OSError, match="not a listening socket"):
        await server_from_string(reactor, f"fd:{idle.fileno()}").listen(Echo)
    with dgram, pytest.raises(OSError, match="not a stream socket"):
        await server_from_string(reactor, f"fd:{dgram.fileno()}").listen(Echo)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        with pytest.raises(ValueError, match="AF_INET, not AF_UNIX"):
            await server_from_string(
                reactor, f"fd:fileno={listener.fileno()}:domain=UNIX"
            ).listen(Echo)
    read_end, write_end = os.pipe()
    os.close(read_end)
    os.close(write_end)
    with pytest.raises(OSError):
        await server_from_string(reactor, f"fd:{read_end}").listen(Echo)


async def test_client_service_reconnects_over_tcp(reactor: Reactor) -> None:
    servers: list[Echo] = []

    def make_server() -> Echo:
        servers.append(Echo())
        return servers[-1]

    port = await server_from_string(reactor, "tcp:0:interface=127.0.0.1").listen(make_server)
    endpoint = client_from_string(reactor, f"tcp:127.0.0.1:{port.port}:timeout=2")
    service = ClientService(endpoint, Client, retry=lambda attempt: 0.01, clock=reactor)
    service.start_service()
    first: Any = await service.when_connected()
    first.transport.write(b"one")
    assert await first.got == b"one"
    servers[0].transport.abort()  # the server drops us: the service must reconnect
    await first.lost
    second: Any = await service.when_connected()
    assert second is not first
    second.transport.write(b"two")
    assert await second.got == b"two"
    await service.stop_service()
    assert second.lost.called
    await port.stop_listening()
