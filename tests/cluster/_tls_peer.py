"""Hand-driven pyOpenSSL peers for the TLS tests over memory (trio's PyOpenSSLEchoStream idea).

A ``Peer`` is a raw pyOpenSSL ``Connection`` over memory BIOs, pumped by hand on a
``MemoryTransport``, so that what ``TLSTransport`` says is checked against an
independent TLS implementation's view of the same bytes.
"""

from __future__ import annotations

from typing import Any

import pytest
from OpenSSL import SSL

from plait.cluster.protocol import Protocol
from plait.cluster.task import Clock
from plait.cluster.testing import IOPump, connect_in_memory
from plait.cluster.tls import TLSOptions, TLSTransport
from tests.cluster._recorders import Recorder
from tests.tls_certs import Certs

__all__ = ["Peer", "client_of_peer", "good_client", "messages", "peer_context", "serve_peer"]


class Peer(Protocol):
    """One side of a TLS connection in raw pyOpenSSL, pumped by hand."""

    def __init__(self, context: SSL.Context, *, server_side: bool,
                 sni: bytes | None = None) -> None:
        self.conn = SSL.Connection(context, None)
        if server_side:
            self.conn.set_accept_state()
        else:
            if sni is not None:
                self.conn.set_tlsext_host_name(sni)
            self.conn.set_connect_state()
        self.server_side = server_side
        self.done = False
        self.received = bytearray()
        self.close_notify = False
        self.error: SSL.Error | None = None
        self.lost: list[BaseException | None] = []

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        if not self.server_side:
            self.pump()

    def data_received(self, data: bytes) -> None:
        self.conn.bio_write(data)
        self.pump()

    def eof_received(self) -> bool:
        return True

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)

    def pump(self) -> None:
        try:
            if not self.done:
                self.conn.do_handshake()
                self.done = True
            while True:
                self.received += self.conn.recv(65536)
        except SSL.WantReadError:
            pass
        except SSL.ZeroReturnError:
            self.close_notify = True
        except SSL.Error as exc:
            self.error = exc
        self.flush()

    def flush(self) -> None:
        while True:
            try:
                self.transport.write(self.conn.bio_read(65536))
            except SSL.WantReadError:
                return

    def send(self, data: bytes) -> None:
        self.conn.sendall(data)
        self.flush()


def peer_context(certs: Certs, *, server_side: bool, tls12: bool = False,
                 cert: tuple[str, str] | None = None, alpn: list[bytes] | None = None,
                 ca: str | None = None) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    if tls12:
        ctx.set_max_proto_version(SSL.TLS1_2_VERSION)
    if cert is not None:
        ctx.use_certificate_chain_file(cert[0])
        ctx.use_privatekey_file(cert[1])
    ctx.load_verify_locations(ca or certs.ca)
    if not server_side:
        ctx.set_verify(SSL.VERIFY_PEER, lambda *args: bool(args[-1]))
    if alpn and not server_side:
        ctx.set_alpn_protos(alpn)
    return ctx


def serve_peer(certs: Certs, options: TLSOptions, peer: Peer,
               app: Recorder | None = None) -> tuple[TLSTransport, Recorder, IOPump, Clock]:
    """Our TLS server (its app: a Recorder) against ``peer`` as the client."""
    clock = Clock()
    app = app if app is not None else Recorder()
    tls = TLSTransport(clock, options, app)
    tls.handshake.add_errback(lambda failure: None)  # the tests look at the log
    pump = connect_in_memory(tls, peer, clock=clock)
    return tls, app, pump, clock


def client_of_peer(certs: Certs, options: TLSOptions, peer: Peer,
                   app: Recorder | None = None
                   ) -> tuple[TLSTransport, Recorder, IOPump, list[Any]]:
    """Our TLS client against ``peer`` as the server; the handshake outcome is recorded."""
    clock = Clock()
    app = app if app is not None else Recorder()
    tls = TLSTransport(clock, options, app)
    outcome: list[Any] = []
    tls.handshake.add_callbacks(outcome.append, outcome.append)
    pump = connect_in_memory(peer, tls, clock=clock)
    return tls, app, pump, outcome


def good_client(certs: Certs, **kwargs: Any) -> Peer:
    return Peer(peer_context(certs, server_side=False, **kwargs), server_side=False,
                sni=b"localhost")


def messages(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == "plait.tls")
