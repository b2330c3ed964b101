"""A small threaded forward proxy for tests, written with the stdlib only.

``ForwardProxy()`` listens on 127.0.0.1 (an ephemeral port) and serves, on
kept-alive connections, absolute-form requests (``GET http://host:port/path``,
forwarded with ``http.client`` and answered with a ``Content-Length`` body) and
``CONNECT host:port`` tunnels (a 200 answer, then bytes relayed both ways). It
records every request head it saw in ``seen`` (method, target, headers), so a test
can check what reached the proxy. It does not depend on Plait, so ``curl -x``
proves it works on its own. Faults for tests: ``credentials`` (wrong or missing
``Proxy-Authorization`` gets 407), ``connect_status`` (answer CONNECT with this
status, 502 say), ``connect_fault="close"`` (hang up on CONNECT) and
``connect_fault="hang"`` (never answer CONNECT, until ``close()``). Request
bodies must have a ``Content-Length``. ``close()`` shuts everything and joins
the threads (bounded waits).
"""

from __future__ import annotations

import base64
import http.client
import socket
import threading
from dataclasses import dataclass, field
from typing import BinaryIO
from urllib.parse import urlsplit

__all__ = ["ForwardProxy", "Seen"]

_HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-authorization", "proxy-connection", "te", "trailer",
     "transfer-encoding", "upgrade", "content-length"}
)


@dataclass
class Seen:
    """One request head the proxy received."""

    method: str
    target: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (any case), or ``None``."""
        for key, value in self.headers:
            if key.lower() == name.lower():
                return value
        return None


class ForwardProxy:
    """A forward proxy on 127.0.0.1 for tests; see the module docstring."""

    def __init__(
        self,
        *,
        credentials: tuple[str, str] | None = None,
        connect_status: int | None = None,
        connect_fault: str | None = None,
    ) -> None:
        self.credentials = credentials
        self.connect_status = connect_status
        self.connect_fault = connect_fault
        self.seen: list[Seen] = []
        self.connections = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._threads: list[threading.Thread] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._spawn(self._accept)

    # -- bookkeeping ------------------------------------------------------------------------

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        with self._lock:
            self._threads.append(thread)
        thread.start()

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)

    def close(self) -> None:
        """Stop accepting, close every connection and join the threads."""
        self._stop.set()
        self._listener.close()
        with self._lock:
            sockets, threads = list(self._sockets), list(self._threads)
        for sock in sockets:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed
            sock.close()
        for thread in threads:
            thread.join(5)

    def __enter__(self) -> ForwardProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- serving ----------------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(10)
            self._track(conn)
            with self._lock:
                self.connections += 1
            self._spawn(self._serve, conn)

    def _serve(self, conn: socket.socket) -> None:
        rfile = conn.makefile("rb")
        try:
            while not self._stop.is_set():
                line = rfile.readline(65537)
                if not line.strip():
                    return
                method, target, _ = line.decode("latin-1").split(" ", 2)
                headers = _read_headers(rfile)
                seen = Seen(method, target, headers)
                with self._lock:
                    self.seen.append(seen)
                if not self._authorized(seen):
                    conn.sendall(
                        b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                        b'Proxy-Authenticate: Basic realm="test"\r\nContent-Length: 0\r\n\r\n'
                    )
                    continue
                if method == "CONNECT":
                    self._connect(conn, rfile, target)
                    return
                self._forward(conn, rfile, seen)
        except (OSError, ValueError, http.client.HTTPException):
            return  # a test hung up, or the proxy is closing
        finally:
            conn.close()

    def _authorized(self, seen: Seen) -> bool:
        if self.credentials is None:
            return True
        expected = base64.b64encode(":".join(self.credentials).encode()).decode()
        return seen.header("proxy-authorization") == f"Basic {expected}"

    def _forward(self, conn: socket.socket, rfile: BinaryIO, seen: Seen) -> None:
        parts = urlsplit(seen.target)
        if parts.scheme != "http" or not parts.hostname:
            conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
            return
        length = int(seen.header("content-length") or "0")
        body = rfile.read(length) if length else None
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        upstream = http.client.HTTPConnection(parts.hostname, parts.port or 80, timeout=10)
        try:
            headers = {k: v for k, v in seen.headers if k.lower() not in _HOP_BY_HOP}
            upstream.request(seen.method, path, body=body, headers=headers)
            response = upstream.getresponse()
            data = response.read()
        finally:
            upstream.close()
        head = [f"HTTP/1.1 {response.status} {response.reason}"]
        head += [f"{k}: {v}" for k, v in response.getheaders() if k.lower() not in _HOP_BY_HOP]
        if seen.method != "HEAD":
            head.append(f"Content-Length: {len(data)}")
        conn.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + data)

    def _connect(self, conn: socket.socket, rfile: BinaryIO, target: str) -> None:
        if self.connect_fault == "close":
            return
        if self.connect_fault == "hang":
            self._stop.wait(10)
            return
        if self.connect_status is not None:
            conn.sendall(
                f"HTTP/1.1 {self.connect_status} Refused\r\nContent-Length: 4\r\n\r\nnope".encode()
            )
            return
        host, _, port = target.rpartition(":")
        upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
        self._track(upstream)
        conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        self._spawn(_pipe_socket, upstream, conn)
        _pipe_file(rfile, upstream)


def _read_headers(rfile: BinaryIO) -> list[tuple[str, str]]:
    headers: list[tuple[str, str]] = []
    while True:
        line = rfile.readline(65537)
        if line in (b"\r\n", b"\n", b""):
            return headers
        name, _, value = line.decode("latin-1").partition(":")
        headers.append((name.strip(), value.strip()))


def _pipe_file(source: BinaryIO, sink: socket.socket) -> None:
    """Relay the client's bytes (some may be in ``source``'s buffer) to the origin."""
    read1 = source.read1  # type: ignore[attr-defined]
    try:
        while data := read1(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        return  # one side is gone: the other is closed by its own thread or close()


def _pipe_socket(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
        sink.shutdown(socket.SHUT_WR)
    except OSError:
        return  # one side is gone
    finally:
        source.close()
