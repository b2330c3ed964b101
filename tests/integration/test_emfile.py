"""Running out of file descriptors on accept: the server backs off, logs, and recovers.

The server runs in a child process whose ``RLIMIT_NOFILE`` is set just above what it
has open, so it can hold only a few connections; the test opens many more and is
served one after the other as the server's earlier connections close.
"""

from __future__ import annotations

import errno
import logging
import socket
import subprocess
import sys
import textwrap
import time
from typing import Any

import pytest

from plait.cluster.reactor import Reactor
from tests.reactor_support import Echo, run_until

resource = pytest.importorskip("resource")

_SERVER = textwrap.dedent(
    """
    import logging, os, resource, sys
    from plait.cluster.protocol import Protocol
    from plait.cluster.reactor import Reactor

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    class Echo(Protocol):
        def data_received(self, data):
            self.transport.write(data)

    reactor = Reactor()
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1", backlog=64)
    open_fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 32
    limit = open_fds + 4
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
    print(port.port, flush=True)
    reactor.run()
    """
)

CLIENTS = 16


def test_the_server_recovers_after_running_out_of_descriptors() -> None:
    proc = subprocess.Popen([sys.executable, "-c", _SERVER], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    clients: list[socket.socket] = []
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        # More connections than the server can hold: the kernel queues the rest.
        clients = [socket.create_connection(("127.0.0.1", port), timeout=10)
                   for _ in range(CLIENTS)]
        deadline = time.monotonic() + 20
        for i, c in enumerate(clients):
            message = b"client %d" % i
            c.sendall(message)
            got = b""
            while len(got) < len(message) and time.monotonic() < deadline:
                chunk = c.recv(100)
                if not chunk:
                    break
                got += chunk
            assert got == message, f"client {i} was not served"
            c.close()  # frees a descriptor in the server
        assert proc.poll() is None, "the server died"
    finally:
        for c in clients:
            c.close()
        proc.terminate()
        try:
            _, err = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
    assert "cannot accept" in err and "Too many open files" in err
    assert proc.returncode == 0



def test_emfile_stops_watching_the_listener_until_the_back_off_ends(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    reactor = Reactor()
    peer: socket.socket | None = None
    try:
        port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
        real_accept = socket.socket.accept
        failures = [1]

        def accept(sock: socket.socket) -> Any:
            if failures[0]:
                failures[0] -= 1
                raise OSError(errno.EMFILE, "Too many open files")
            return real_accept(sock)

        monkeypatch.setattr(socket.socket, "accept", accept)
        peer = socket.create_connection(("127.0.0.1", port.port), timeout=5)
        peer.sendall(b"served after the pause")
        peer.setblocking(False)
        seen: list[Any] = []
        got = bytearray()

        def while_paused() -> None:  # the back-off starts at 0.1 s
            seen.append((failures[0], port._fd in reactor.get_readers()))

        def on_echo() -> None:
            assert peer is not None
            got.extend(peer.recv(100))
            if got == b"served after the pause":
                reactor.remove_reader(peer)
                reactor.stop()

        reactor.call_later(0.03, while_paused)
        reactor.add_reader(peer, on_echo)
        with caplog.at_level(logging.WARNING, logger="plait.reactor"):
            run_until(reactor)
        assert seen == [(0, False)]  # accept failed once and the listener is not watched
        assert got == b"served after the pause"
        assert port._fd in reactor.get_readers()  # watched again after the back-off
        assert "cannot accept" in caplog.text and "Too many open files" in caplog.text
    finally:
        if peer is not None:
            peer.close()
        reactor.close()
