"""Running out of file descriptors on accept: the server backs off, logs, and recovers.

The server runs in a child process whose ``RLIMIT_NOFILE`` is set just above what it
has open, so it can hold only a few connections; the test opens many more and is
served one after the other as the server's earlier connections close.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import textwrap
import time

import pytest

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
