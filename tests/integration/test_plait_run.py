"""``plait run`` as a user starts it: a real process serving the demo on a real socket."""

from __future__ import annotations

import ast
import os
import re
import select
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

PLAIT = os.path.join(os.path.dirname(sys.executable), "plait")


def _read_line_matching(proc: subprocess.Popen[bytes], pattern: str, limit: float) -> str:
    """Read the child's stdout (raw, so no line hides in a Python buffer) until a match."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    deadline = time.monotonic() + limit
    buffer = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buffer += chunk
        for line in buffer.decode(errors="replace").splitlines():
            if re.search(pattern, line):
                return line
    raise AssertionError(f"no line matching {pattern!r} within {limit}s; got {buffer!r}")


@pytest.fixture
def server() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    proc = subprocess.Popen(
        [PLAIT, "run", "--listen", "tcp:0:interface=127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        line = _read_line_matching(proc, r"serving .* -> ", limit=20)
        host, port = ast.literal_eval(line.rsplit("-> ", 1)[1].strip())
        assert host == "127.0.0.1"
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()


def test_plait_run_serves_the_demo_and_stops_cleanly_on_sigterm(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    proc, port = server
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello/plait", timeout=10) as reply:
        assert reply.status == 200
        assert reply.read() == b"Hello, plait!\n"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0


def test_plait_run_says_it_serves_one_process(
    server: tuple[subprocess.Popen[bytes], int],
) -> None:
    """Until the cluster lands, the command must not pretend to run workers."""
    proc, _ = server
    proc.send_signal(signal.SIGINT)
    assert proc.wait(10) == 0


def test_a_port_in_use_is_a_boot_error(server: tuple[subprocess.Popen[bytes], int]) -> None:
    _, port = server
    second = subprocess.run(
        [PLAIT, "run", "--listen", f"tcp:{port}:interface=127.0.0.1"],
        capture_output=True, text=True, timeout=20, check=False,
    )
    assert second.returncode == 3
    assert "cannot listen" in second.stderr


def test_a_bad_endpoint_string_is_a_usage_error() -> None:
    done = subprocess.run(
        [PLAIT, "run", "--listen", "carrier-pigeon:8080"],
        capture_output=True, text=True, timeout=20, check=False,
    )
    assert done.returncode == 2
    assert "carrier-pigeon" in done.stderr


APP_USING_GET_REACTOR = '''
from plait.cluster.protocol import Protocol
from plait.cluster.reactor import get_reactor


class LaterEcho(Protocol):
    def data_received(self, data):
        get_reactor().call_later(0.01, self.transport.write, data)
'''


def test_app_code_calling_get_reactor_gets_the_reactor_that_serves(tmp_path: Path) -> None:
    (tmp_path / "later_echo_app.py").write_text(APP_USING_GET_REACTOR)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.Popen(
        [PLAIT, "run", "later_echo_app:LaterEcho", "--listen", "tcp:0:interface=127.0.0.1"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
    )
    try:
        line = _read_line_matching(proc, r"serving .* -> ", limit=20)
        _, port = ast.literal_eval(line.rsplit("-> ", 1)[1].strip())
        with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
            conn.sendall(b"ping")
            assert conn.recv(4) == b"ping"
    finally:
        proc.kill()
        proc.wait(10)
        assert proc.stdout is not None
        proc.stdout.close()
