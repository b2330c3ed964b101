"""TLS on real loopback sockets against real peers: stdlib ``ssl``, ``openssl s_client``, curl.

The native reactor runs in the test's thread; a stdlib peer runs in a thread of
its own with socket timeouts, and command-line peers run as child processes that
are always killed. Every wait is bounded. Each kind of bad input is followed by a
good client, which must still be served.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from OpenSSL import SSL
from zope.interface.verify import verifyObject

from plait.cluster.defer import CancelledError, Deferred
from plait.cluster.endpoints import client_from_string, server_from_string
from plait.cluster.interfaces import IReactorSSL
from plait.cluster.protocol import Protocol
from plait.cluster.reactor import Reactor
from plait.cluster.tls import (
    CertificateVerifyError,
    TLSError,
    TLSOptions,
    client_options,
    server_options,
)
from tests.tls_certs import Certs, make_certs

WAIT = 10.0
HTTP_ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("tls-integration")))


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    r = Reactor()
    yield r
    r.close()


@pytest.fixture
def tls_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger="plait.tls"):
        yield caplog


def logged(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "plait.tls")


def drive(reactor: Reactor, until: Callable[[], bool], timeout: float = WAIT) -> bool:
    """Run the reactor until ``until()`` holds or ``timeout`` seconds pass."""
    if until():
        return True
    deadline = time.monotonic() + timeout

    def check() -> None:
        if until() or time.monotonic() >= deadline:
            reactor.stop()
        else:
            reactor.call_later(0.002, check)

    reactor.call_soon(check)
    reactor.run(install_signal_handlers=False)
    return until()


def result_of(reactor: Reactor, d: Deferred[Any]) -> Any:
    got: list[Any] = []
    d.add_both(lambda r: got.append(getattr(r, "value", r) if hasattr(r, "trap") else r))
    assert drive(reactor, lambda: bool(got)), "the Deferred did not fire in time"
    return got[0]


class Thread:
    """Runs ``f`` in a thread; ``done``, ``value`` and ``error`` once it returns."""

    def __init__(self, f: Callable[[], Any]) -> None:
        self.value: Any = None
        self.error: BaseException | None = None
        self.done = False

        def run() -> None:
            try:
                self.value = f()
            except BaseException as exc:  # handed to the test's thread
                self.error = exc
            finally:
                self.done = True

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self, reactor: Reactor) -> Any:
        assert drive(reactor, lambda: self.done), "the peer thread did not finish in time"
        self.thread.join(WAIT)
        if self.error is not None:
            raise self.error
        return self.value


class Web(Protocol):
    """Answers an HTTP request with "hello" and closes; echoes anything else."""

    def data_received(self, data: bytes) -> None:
        if data.startswith(b"GET "):
            self.transport.write(HTTP_ANSWER)
            self.transport.close()
        else:
            self.transport.write(data)


def listen(reactor: Reactor, options: TLSOptions, factory: Callable[[], Any] = Web) -> int:
    port = reactor.listen_ssl(0, factory, options, interface="127.0.0.1")
    return int(port.get_host()[1])


def stdlib_context(certs: Certs, **kwargs: Any) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=certs.ca)
    if "cert" in kwargs:
        ctx.load_cert_chain(*kwargs["cert"])
    if kwargs.get("tls12"):
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    if "alpn" in kwargs:
        ctx.set_alpn_protocols(kwargs["alpn"])
    return ctx


def stdlib_get(port: int, ctx: ssl.SSLContext) -> tuple[bytes, str | None, str | None]:
    """One HTTP request over the stdlib; (answer, ALPN, TLS version)."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw, \
            ctx.wrap_socket(raw, server_hostname="localhost") as tls:
        tls.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
        answer = b""
        while True:
            chunk = tls.recv(65536)
            if not chunk:
                break
            answer += chunk
        return answer, tls.selected_alpn_protocol(), tls.version()


def assert_served(reactor: Reactor, port: int, certs: Certs) -> None:
    answer, _, _ = Thread(lambda: stdlib_get(port, stdlib_context(certs))).result(reactor)
    assert answer == HTTP_ANSWER


def client_hello() -> bytes:
    """The first flight of a real TLS client (pyOpenSSL), to cut short."""
    conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    conn.set_connect_state()
    conn.set_tlsext_host_name(b"localhost")
    try:
        conn.do_handshake()
    except SSL.WantReadError:
        pass
    return conn.bio_read(65536)


class Child:
    """A command-line peer; always killed at the end.

    ``keep_stdin_open``: write ``stdin`` but do not end it, so that the peer can
    only finish because the other side closed the connection.
    """

    def __init__(self, argv: list[str], stdin: bytes = b"", *,
                 keep_stdin_open: bool = False) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT)
        self.stdin = stdin
        self.keep_stdin_open = keep_stdin_open
        self.output = b""
        self._reader = Thread(self._communicate)

    def _communicate(self) -> None:
        if not self.keep_stdin_open:
            self.output, _ = self.proc.communicate(self.stdin, timeout=WAIT)
            return
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(self.stdin)
        self.proc.stdin.flush()
        self.output = self.proc.stdout.read()  # until the peer exits (or is killed)
        self.proc.stdin.close()
        self.proc.wait(WAIT)

    def finish(self, reactor: Reactor) -> tuple[int, str]:
        try:
            self._reader.result(reactor)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait(WAIT)
        return self.proc.returncode, self.output.decode("utf-8", "replace")


needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl CLI")
needs_curl = pytest.mark.skipif(shutil.which("curl") is None, reason="no curl")


# --------------------------------------------------------------- good peers


def test_the_native_reactor_provides_ireactorssl(reactor: Reactor) -> None:
    assert verifyObject(IReactorSSL, reactor)


def test_a_stdlib_client_is_served_with_alpn_over_tls_1_3(
    reactor: Reactor, certs: Certs
) -> None:
    port = listen(reactor, server_options(certs.server_cert, certs.server_key,
                                          alpn=["h2", "http/1.1"]))
    ctx = stdlib_context(certs, alpn=["http/1.1"])
    answer, alpn, version = Thread(lambda: stdlib_get(port, ctx)).result(reactor)
    assert answer == HTTP_ANSWER
    assert alpn == "http/1.1"
    assert version == "TLSv1.3"


def test_a_stdlib_tls_1_2_client_gets_an_ecdhe_aead_suite(
    reactor: Reactor, certs: Certs
) -> None:
    port = listen(reactor, server_options(certs.server_cert, certs.server_key))
    ctx = stdlib_context(certs, tls12=True)

    def get_cipher() -> tuple[str, str | None]:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw, \
                ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            cipher = tls.cipher()
            assert cipher is not None
            return cipher[0], tls.version()

    name, version = Thread(get_cipher).result(reactor)
    assert version == "TLSv1.2"
    assert name.startswith("ECDHE-") and ("GCM" in name or "CHACHA20" in name)


@needs_curl
def test_curl_gets_an_answer(reactor: Reactor, certs: Certs) -> None:
    port = listen(reactor, server_options(certs.server_cert, certs.server_key))
    child = Child(["curl", "-sS", "--noproxy", "*", "--max-time", "10", "--cacert", certs.ca,
                   "--resolve", f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/"])
    code, output = child.finish(reactor)
    assert code == 0, output
    assert output == "hello"


@needs_openssl
def test_openssl_s_client_verifies_and_is_answered(reactor: Reactor, certs: Certs) -> None:
    port = listen(reactor, server_options(certs.server_cert, certs.server_key, alpn=["h2"]))
    child = Child(["openssl", "s_client", "-ign_eof", "-connect", f"127.0.0.1:{port}",
                   "-servername",
                   "localhost", "-CAfile", certs.ca, "-verify_return_error", "-alpn", "h2"],
                  stdin=b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    code, output = child.finish(reactor)
    assert code == 0, output
    assert "Verify return code: 0 (ok)" in output
    assert "ALPN protocol: h2" in output
    assert "hello" in output


def test_connect_ssl_talks_to_a_stdlib_server(reactor: Reactor, certs: Certs) -> None:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(certs.server_cert, certs.server_key)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(WAIT)
    port = listener.getsockname()[1]

    def serve_once() -> bytes:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            data = tls.recv(100)
            tls.sendall(data.upper())
            tls.unwrap()  # close_notify both ways
            return data

    class Client(Protocol):
        def __init__(self) -> None:
            self.data = b""
            self.lost: list[BaseException | None] = []

        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            transport.write(b"hello stdlib")

        def data_received(self, data: bytes) -> None:
            self.data += data

        def eof_received(self) -> bool:
            return False

        def connection_lost(self, exc: BaseException | None) -> None:
            self.lost.append(exc)

    try:
        server = Thread(serve_once)
        protocol = result_of(reactor, reactor.connect_ssl(
            "127.0.0.1", port, Client, client_options("localhost", ca_file=certs.ca)))
        assert isinstance(protocol, Client)
        assert drive(reactor, lambda: bool(protocol.lost))
        assert protocol.data == b"HELLO STDLIB"
        assert protocol.lost == [None]
        assert server.result(reactor) == b"hello stdlib"
    finally:
        listener.close()


def test_connect_ssl_errbacks_on_a_wrong_host_name(reactor: Reactor, certs: Certs) -> None:
    port = listen(reactor, server_options(certs.server_cert, certs.server_key))
    made: list[Any] = []

    class Client(Protocol):
        def connection_made(self, transport: Any) -> None:
            made.append(transport)

    exc = result_of(reactor, reactor.connect_ssl(
        "127.0.0.1", port, Client, client_options("evil.test", ca_file=certs.ca)))
    assert isinstance(exc, CertificateVerifyError)
    assert "host name mismatch" in str(exc)
    assert made == []


def test_connect_ssl_to_a_server_that_never_answers_times_out(
    reactor: Reactor, certs: Certs
) -> None:
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        options = client_options("localhost", ca_file=certs.ca, handshake_timeout=0.2)
        exc = result_of(reactor, reactor.connect_ssl(
            "127.0.0.1", silent.getsockname()[1], Protocol, options))
        assert isinstance(exc, TimeoutError)
    finally:
        silent.close()


def test_cancelling_connect_ssl_mid_handshake_closes_the_connection(
    reactor: Reactor, certs: Certs
) -> None:
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        made: list[Any] = []

        class Client(Protocol):
            def connection_made(self, transport: Any) -> None:
                made.append(transport)

        d = reactor.connect_ssl("127.0.0.1", silent.getsockname()[1], Client,
                                client_options("localhost", ca_file=certs.ca))
        accepted, _ = silent.accept()  # the TCP connection is up; TLS is waiting
        with accepted:
            reactor.call_later(0.05, d.cancel)
            assert isinstance(result_of(reactor, d), CancelledError)
            accepted.settimeout(WAIT)
            drive(reactor, lambda: False, 0.05)
            with pytest.raises(ConnectionResetError):  # aborted: an RST after the hello
                while accepted.recv(65536):
                    pass
        assert made == []
    finally:
        silent.close()


def test_a_failing_connection_made_errbacks_connect_ssl(
    reactor: Reactor, certs: Certs
) -> None:
    port = listen(reactor, server_options(certs.server_cert, certs.server_key))
    boom = RuntimeError("connection_made failed")
    lost: list[BaseException | None] = []

    class Broken(Protocol):
        def connection_made(self, transport: Any) -> None:
            raise boom

        def connection_lost(self, exc: BaseException | None) -> None:
            lost.append(exc)

    assert result_of(reactor, reactor.connect_ssl(
        "127.0.0.1", port, Broken, client_options("localhost", ca_file=certs.ca))) is boom
    assert drive(reactor, lambda: bool(lost))
    assert lost == [boom]


def test_sixteen_mebibytes_cross_a_real_connection(reactor: Reactor, certs: Certs) -> None:
    payload = bytes(range(256)) * (1 << 16)  # 16 MiB
    received = hashlib.sha256()
    count = [0]

    class Sink(Protocol):
        def data_received(self, data: bytes) -> None:
            received.update(data)
            count[0] += len(data)

    port = listen(reactor, server_options(certs.server_cert, certs.server_key), Sink)
    protocol = result_of(reactor, reactor.connect_ssl(
        "127.0.0.1", port, Protocol, client_options("localhost", ca_file=certs.ca)))
    protocol.transport.write(payload)
    assert drive(reactor, lambda: count[0] >= len(payload), 60.0)
    assert received.digest() == hashlib.sha256(payload).digest()


def test_endpoint_strings_listen_and_connect(reactor: Reactor, certs: Certs) -> None:
    endpoint = server_from_string(
        reactor, f"ssl:0:private_key={certs.server_key}:cert_key={certs.server_cert}"
        ":interface=127.0.0.1")
    port = result_of(reactor, endpoint.listen(Web))
    number = port.get_host()[1]
    got: list[bytes] = []

    class Client(Protocol):
        def connection_made(self, transport: Any) -> None:
            transport.write(b"GET / HTTP/1.1\r\n\r\n")

        def data_received(self, data: bytes) -> None:
            got.append(data)

    client = client_from_string(reactor, f"tls:host=localhost:port={number}:ca_file={certs.ca}")
    result_of(reactor, client.connect(Client))
    assert drive(reactor, lambda: b"".join(got) == HTTP_ANSWER)


# ---------------------------------------------------------------- start_tls


def test_start_tls_on_tcp_upgrades_for_a_stdlib_client(reactor: Reactor, certs: Certs) -> None:
    options = server_options(certs.server_cert, certs.server_key)
    upgraded: list[Any] = []

    class StartTLS(Protocol):
        def data_received(self, data: bytes) -> None:
            if data == b"STARTTLS\r\n" and not upgraded:
                self.transport.write(b"OK\r\n")
                d = reactor.start_tls(self.transport, options, server_side=True)
                d.add_callback(upgraded.append)
            else:
                upgraded[0].write(b"secure: " + data)

    port = reactor.listen_tcp(0, StartTLS, interface="127.0.0.1").get_host()[1]

    def client() -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
            raw.sendall(b"STARTTLS\r\n")
            assert raw.recv(4) == b"OK\r\n"
            with stdlib_context(certs).wrap_socket(raw, server_hostname="localhost") as tls:
                tls.sendall(b"ping")
                return tls.recv(100)

    assert Thread(client).result(reactor) == b"secure: ping"
    assert upgraded and upgraded[0].get_extra_info("tls_version") == "TLSv1.3"


def test_start_tls_on_unix_sockets_upgrades_both_sides(reactor: Reactor, certs: Certs) -> None:
    directory = tempfile.mkdtemp(prefix="plait-tls-")
    path = str(Path(directory) / "s.sock")
    try:
        server_side: list[Any] = []
        received: list[bytes] = []

        class Server(Protocol):
            def connection_made(self, transport: Any) -> None:
                self.transport = transport
                server_side.append(reactor.start_tls(
                    transport, server_options(certs.server_cert, certs.server_key),
                    server_side=True))

            def data_received(self, data: bytes) -> None:
                received.append(data)

        reactor.listen_unix(path, Server)
        plain = result_of(reactor, reactor.connect_unix(path, Protocol))
        tls = result_of(reactor, reactor.start_tls(
            plain.transport, client_options("localhost", ca_file=certs.ca)))
        tls.write(b"over unix")
        assert drive(reactor, lambda: b"".join(received) == b"over unix")
        assert server_side[0].called
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# ---------------------------------------------------------------- bad input


def raw_exchange(port: int, data: bytes, *, close: bool = True, wait: bool = False) -> bytes:
    """Send ``data`` on a plain socket; what the server sends back before closing."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw:
        raw.sendall(data)
        if close:
            raw.shutdown(socket.SHUT_WR)
        answer = b""
        try:
            while True:
                chunk = raw.recv(65536)
                if not chunk:
                    break
                answer += chunk
        except ConnectionResetError:
            pass
        return answer


def test_plaintext_http_to_a_tls_port_is_refused_and_logged(
    reactor: Reactor, certs: Certs, tls_logs: pytest.LogCaptureFixture
) -> None:
    port = listen(reactor, server_options(certs.server_cert, certs.server_key))
    answer = Thread(lambda: raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
                                         close=False)).result(reactor)
    assert b"HTTP/1.1 200" not in answer
    assert "http request" in logged(tls_logs)
    assert_served(reactor, port, certs)


@needs_curl
def test_curl_speaking_plain_http_to_a_tls_port_is_refused(
    reactor: Reactor, certs: Certs, tls_logs: pytest.LogCaptureFixture
) -> None:
    port = listen(reactor, server_options(certs.server_cert, certs.server_key))
    child = Child(["curl", "-sS", "--noproxy", "*", "--max-time", "10",
                   f"http://127.0.0.1:{port}/"])
    code, output = child.finish(reactor)
    assert code != 0, output
    assert "hello" not in output
    assert drive(reactor, lambda: "http request" in logged(tls_logs))
    assert_served(reactor, port, certs)


def test_a_truncated_handshake_is_logged(
    reactor: Reactor, certs: Certs, tls_logs: pytest.LogCaptureFixture
) -> None:
    port = listen(reactor, server_options(certs.server_cert, certs.server_key))
    hello = client_hello()
    Thread(lambda: raw_exchange(port, hello[:60])).result(reactor)
    assert drive(reactor, lambda: "during the handshake" in logged(tls_logs))
    assert_served(reactor, port, certs)


def test_a_stalled_handshake_times_out(
    reactor: Reactor, certs: Certs, tls_logs: pytest.LogCaptureFixture
) -> None:
    port = listen(reactor, server_options(certs.server_cert, certs.server_key,
                                          handshake_timeout=0.3))
    hello = client_hello()
    started = time.monotonic()
    Thread(lambda: raw_exchange(port, hello[:60], close=False)).result(reactor)
    assert time.monotonic() - started < WAIT
    assert "did not finish within 0.3 s" in logged(tls_logs)
    assert_served(reactor, port, certs)


def test_a_client_certificate_from_the_wrong_ca_is_refused(
    reactor: Reactor, certs: Certs, tls_logs: pytest.LogCaptureFixture
) -> None:
    options = server_options(certs.server_cert, certs.server_key, ca_file=certs.ca,
                             verify_client=True)
    port = listen(reactor, options)
    evil = stdlib_context(certs, cert=(certs.evil_client_cert, certs.evil_client_key))
    with pytest.raises((ssl.SSLError, ConnectionError)):
        Thread(lambda: stdlib_get(port, evil)).result(reactor)
    assert "client certificate was refused" in logged(tls_logs)
    good = stdlib_context(certs, cert=(certs.client_cert, certs.client_key))
    answer, _, _ = Thread(lambda: stdlib_get(port, good)).result(reactor)
    assert answer == HTTP_ANSWER


@needs_openssl
def test_a_renegotiation_from_openssl_s_client_is_refused(
    reactor: Reactor, certs: Certs, tls_logs: pytest.LogCaptureFixture
) -> None:
    lost: list[BaseException | None] = []

    class Watched(Web):
        def connection_lost(self, exc: BaseException | None) -> None:
            lost.append(exc)

    port = listen(reactor, server_options(certs.server_cert, certs.server_key), Watched)
    # "R" makes s_client renegotiate; its input stays open, so it only exits
    # (within the Child's bounded wait) because the server closed the connection.
    child = Child(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_2",
                   "-legacy_renegotiation", "-CAfile", certs.ca, "-servername", "localhost"],
                  stdin=b"R\n", keep_stdin_open=True)
    code, output = child.finish(reactor)
    assert code != 0 and "RENEGOTIATING" in output, output
    assert drive(reactor, lambda: bool(lost))
    (exc,) = lost
    assert isinstance(exc, TLSError) and "renegotiat" in str(exc)
    assert "renegotiat" in logged(tls_logs)
    assert_served(reactor, port, certs)


@needs_openssl
def test_openssl_s_client_with_tls_1_1_is_refused(
    reactor: Reactor, certs: Certs, tls_logs: pytest.LogCaptureFixture
) -> None:
    port = listen(reactor, server_options(certs.server_cert, certs.server_key))
    child = Child(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-tls1_1",
                   "-cipher", "DEFAULT@SECLEVEL=0", "-servername", "localhost"])
    code, output = child.finish(reactor)
    assert code != 0, output
    assert drive(reactor, lambda: "TLS handshake with" in logged(tls_logs))
    assert "unsupported protocol" in logged(tls_logs)
    assert_served(reactor, port, certs)


@needs_openssl
def test_openssl_s_client_with_a_client_certificate_from_the_wrong_ca_is_refused(
    reactor: Reactor, certs: Certs, tls_logs: pytest.LogCaptureFixture
) -> None:
    options = server_options(certs.server_cert, certs.server_key, ca_file=certs.ca,
                             verify_client=True)
    port = listen(reactor, options)
    child = Child(["openssl", "s_client", "-ign_eof", "-connect", f"127.0.0.1:{port}",
                   "-servername", "localhost", "-CAfile", certs.ca,
                   "-cert", certs.evil_client_cert, "-key", certs.evil_client_key],
                  stdin=b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    _, output = child.finish(reactor)  # s_client exits once the server has closed
    assert "hello" not in output
    assert drive(reactor, lambda: "client certificate was refused" in logged(tls_logs))
    assert "unknown ca" in output.lower() or "alert" in output.lower(), output
    good = stdlib_context(certs, cert=(certs.client_cert, certs.client_key))
    answer, _, _ = Thread(lambda: stdlib_get(port, good)).result(reactor)
    assert answer == HTTP_ANSWER


# ------------------------------------------------- options on real sockets


def test_sni_serves_each_stdlib_client_the_certificate_of_its_host_name(
    reactor: Reactor, certs: Certs
) -> None:
    port = listen(reactor, server_options(
        certs.server_cert, certs.server_key,
        sni={"other.test": (certs.other_cert, certs.other_key)}))
    ctx = stdlib_context(certs)  # verifies the host name against the certificate

    def subject_of(name: str) -> str:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw, \
                ctx.wrap_socket(raw, server_hostname=name) as tls:
            der = tls.getpeercert(binary_form=True)
            assert der is not None
            return x509.load_der_x509_certificate(der).subject.rfc4514_string()

    assert Thread(lambda: subject_of("other.test")).result(reactor) == "CN=other.test"
    assert Thread(lambda: subject_of("localhost")).result(reactor) == "CN=localhost"


def test_connect_ssl_errbacks_on_an_unknown_ca(
    reactor: Reactor, certs: Certs, tls_logs: pytest.LogCaptureFixture
) -> None:
    port = listen(reactor, server_options(certs.server_cert, certs.server_key))
    made: list[Any] = []

    class Client(Protocol):
        def connection_made(self, transport: Any) -> None:
            made.append(transport)

    exc = result_of(reactor, reactor.connect_ssl(
        "127.0.0.1", port, Client, client_options("localhost", ca_file=certs.evil_ca)))
    assert isinstance(exc, CertificateVerifyError)
    assert exc.code in (19, 20)  # self-signed in chain / unable to get the issuer
    assert made == []
    assert "server certificate was refused" in logged(tls_logs)
    assert_served(reactor, port, certs)


@needs_curl
def test_mutual_tls_with_curl_shows_the_client_certificate(
    reactor: Reactor, certs: Certs
) -> None:
    subjects: list[str] = []

    class WhoAmI(Web):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            cert = transport.get_extra_info("peercert")
            subjects.append(cert.subject.rfc4514_string())

    options = server_options(certs.server_cert, certs.server_key, ca_file=certs.ca,
                             verify_client=True)
    port = listen(reactor, options, WhoAmI)
    child = Child(["curl", "-sS", "--noproxy", "*", "--max-time", "10", "--cacert", certs.ca,
                   "--cert", certs.client_cert, "--key", certs.client_key,
                   "--resolve", f"localhost:{port}:127.0.0.1", f"https://localhost:{port}/"])
    code, output = child.finish(reactor)
    assert code == 0, output
    assert output == "hello"
    assert subjects == ["CN=client"]


def test_a_tls_1_2_client_offering_only_cbc_suites_is_refused(
    reactor: Reactor, certs: Certs, tls_logs: pytest.LogCaptureFixture
) -> None:
    port = listen(reactor, server_options(certs.server_cert, certs.server_key))
    ctx = stdlib_context(certs, tls12=True)
    ctx.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA")  # CBC, SHA-1 MAC
    with pytest.raises((ssl.SSLError, ConnectionError)):
        Thread(lambda: stdlib_get(port, ctx)).result(reactor)
    assert drive(reactor, lambda: "no shared cipher" in logged(tls_logs))
    assert_served(reactor, port, certs)
