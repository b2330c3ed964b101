"""TLS over memory: Plait's TLSTransport against hand-driven pyOpenSSL peers.

Every test runs over ``connect_in_memory`` with a ``Clock``: no socket, no sleep.
The peer is a raw pyOpenSSL ``Connection`` over memory BIOs driven by ``Peer``
(``tests/cluster/_tls_peer.py``). Options, verification, mutual TLS and endpoint
strings are in ``test_tls_options.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from zope.interface.verify import verifyObject

from plait.cluster._tls_reactor import start_tls
from plait.cluster.defer import TimeoutError
from plait.cluster.failure import Failure
from plait.cluster.interfaces import (
    IProtocol,
    ITransport,
)
from plait.cluster.task import Clock
from plait.cluster.testing import connect_in_memory
from plait.cluster.tls import (
    CertificateVerifyError,
    TLSError,
    TLSOptions,
    TLSTransport,
    client_options,
    server_options,
)
from tests.cluster._recorders import PushProducer, Recorder
from tests.cluster._tls_peer import Peer, good_client, messages, peer_context, serve_peer
from tests.tls_certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("tls-memory")))


@pytest.fixture
def server(certs: Certs) -> TLSOptions:
    return server_options(certs.server_cert, certs.server_key)


@pytest.fixture
def tls_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger="plait.tls"):
        yield caplog


# -------------------------------------------------------------------- basics


def test_tls_transport_provides_itransport_and_iprotocol(server: TLSOptions) -> None:
    tls = TLSTransport(Clock(), server, Recorder())
    assert verifyObject(ITransport, tls)
    assert verifyObject(IProtocol, tls)


def test_the_application_is_connected_only_after_the_handshake(
    certs: Certs, server: TLSOptions
) -> None:
    peer = good_client(certs)
    clock = Clock()
    app = Recorder()
    tls = TLSTransport(clock, server, app)
    pump = connect_in_memory(tls, peer, clock=clock, greet=False)
    assert app.events == []
    pump.flush()
    assert peer.done and peer.error is None
    assert app.events == ["made"]
    assert app.transport is tls


def test_writes_before_the_handshake_ends_wait_for_it(certs: Certs, server: TLSOptions) -> None:
    peer = good_client(certs)
    clock = Clock()
    app = Recorder()
    tls = TLSTransport(clock, server, app)
    pump = connect_in_memory(tls, peer, clock=clock, greet=False)
    tls.write(b"early")
    assert tls.get_write_buffer_size() == 5
    pump.flush()
    assert bytes(peer.received) == b"early"
    assert app.lost == []


def test_bytes_flow_both_ways(certs: Certs, server: TLSOptions) -> None:
    peer = good_client(certs)
    _, app, pump, _ = serve_peer(certs, server, peer, Recorder(echo=True))
    peer.send(b"ping")
    pump.flush()
    assert bytes(app.data) == b"ping"
    assert bytes(peer.received) == b"ping"


@pytest.mark.parametrize("step", [1, 7, 100, 1 << 20])
def test_ciphertext_in_pieces_of_any_size_gives_the_same_plaintext(
    certs: Certs, server: TLSOptions, step: int
) -> None:
    peer = good_client(certs)
    app = Recorder()
    tls = TLSTransport(Clock(), server, app)
    pump = connect_in_memory(tls, peer, clock=Clock())
    pump.flush()
    assert app.events == ["made"]
    payload = bytes(range(256)) * 300
    peer.conn.sendall(payload[:40000])
    peer.conn.sendall(payload[40000:])
    wire = b""
    while True:
        try:
            wire += peer.conn.bio_read(1 << 20)
        except SSL.WantReadError:
            break
    for i in range(0, len(wire), step):
        tls.data_received(wire[i : i + step])
    assert bytes(app.data) == payload


@pytest.mark.parametrize("tls12", [False, True])
def test_the_record_overhead_assumed_is_the_one_on_the_wire(
    certs: Certs, server: TLSOptions, tls12: bool
) -> None:
    peer = good_client(certs, tls12=tls12)
    tls, app, _pump, _ = serve_peer(certs, server, peer)
    peer.conn.sendall(b"m" * 100)
    record = peer.conn.bio_read(65536)
    assert tls._overhead == len(record) - 100
    tls.data_received(record)
    assert bytes(app.data) == b"m" * 100


def test_single_records_and_batches_of_records_are_all_delivered(
    certs: Certs, server: TLSOptions
) -> None:
    peer = good_client(certs)
    tls, app, _pump, _ = serve_peer(certs, server, peer)

    def records(*messages: bytes) -> bytes:
        for message in messages:
            peer.conn.sendall(message)
        return peer.conn.bio_read(1 << 20)

    tls.data_received(records(b"one;"))
    tls.data_received(records(b"two;", b"three;"))
    split = records(b"four;")
    tls.data_received(split[:10])
    tls.data_received(split[10:] + records(b"five;"))
    tls.data_received(records(b"six;"))
    assert bytes(app.data) == b"one;two;three;four;five;six;"


def test_writes_made_while_receiving_leave_as_one_lower_write(
    certs: Certs, server: TLSOptions
) -> None:
    class Chatty(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            for word in (b"one ", b"two ", b"three"):
                self.transport.write(word)

    peer = good_client(certs)
    _tls, _, pump, _ = serve_peer(certs, server, peer, Chatty())
    lower = pump.server_transport
    writes: list[bytes] = []
    original = lower.write

    def counting(data: bytes | bytearray | memoryview) -> None:
        writes.append(bytes(data))
        original(data)

    lower.write = counting  # type: ignore[method-assign]
    peer.send(b"go")
    pump.flush()
    assert bytes(peer.received) == b"one two three"
    assert len(writes) == 1


def test_extra_info_describes_the_session(certs: Certs) -> None:
    options = server_options(certs.server_cert, certs.server_key, alpn=["h2", "http/1.1"])
    peer = good_client(certs, alpn=[b"http/1.1", b"h2"])
    tls, _, _pump, _ = serve_peer(certs, options, peer)
    assert tls.get_extra_info("alpn_protocol") == "h2"  # the server's preference
    assert tls.get_extra_info("tls_version") == "TLSv1.3"
    name, version, bits = tls.get_extra_info("cipher")
    assert (version == "TLSv1.3" and bits >= 128 and "GCM" in name) or "CHACHA" in name
    assert tls.get_extra_info("ssl_object") is not None
    assert tls.get_extra_info("peercert") is None  # no client certificate
    assert tls.get_extra_info("server_hostname") == "localhost"
    assert tls.get_extra_info("peername") == ("127.0.0.1", 54321)
    assert tls.get_extra_info("nothing", "dflt") == "dflt"


def test_no_common_alpn_protocol_means_none(certs: Certs) -> None:
    options = server_options(certs.server_cert, certs.server_key, alpn=["h2"])
    peer = good_client(certs, alpn=[b"spdy/3"])
    tls, _, _, _ = serve_peer(certs, options, peer)
    assert peer.done
    assert tls.get_extra_info("alpn_protocol") is None


def test_sni_picks_the_certificate_of_the_name_asked_for(certs: Certs) -> None:
    options = server_options(certs.server_cert, certs.server_key,
                             sni={"other.test": (certs.other_cert, certs.other_key)})
    for name, expected in ((b"other.test", "other.test"), (b"localhost", "localhost")):
        peer = Peer(peer_context(certs, server_side=False), server_side=False, sni=name)
        serve_peer(certs, options, peer)
        assert peer.done and peer.error is None
        cert = peer.conn.get_peer_certificate()
        assert cert is not None
        cn = cert.to_cryptography().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        assert cn[0].value == expected


# ------------------------------------------------------------------ closing


def test_close_sends_close_notify_and_closes_after_the_peer_answers(
    certs: Certs, server: TLSOptions
) -> None:
    peer = good_client(certs)
    tls, app, pump, _ = serve_peer(certs, server, peer)
    tls.write(b"last words")
    tls.close()
    assert tls.is_closing()
    pump.flush()
    assert bytes(peer.received) == b"last words"
    assert peer.close_notify
    assert not app.lost  # waiting for the peer's close_notify
    peer.conn.shutdown()
    peer.flush()
    pump.flush()
    assert app.lost == [None]


def test_a_protocol_that_closes_in_connection_made_gets_no_data(
    certs: Certs, server: TLSOptions
) -> None:
    class Quick(Recorder):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            transport.write(b"bye")
            transport.close()

    clock = Clock()
    app = Quick()
    tls = TLSTransport(clock, server, app)
    pump = connect_in_memory(tls, Recorder(), clock=clock, greet=False)
    client = good_client(certs).conn
    with pytest.raises(SSL.WantReadError):
        client.do_handshake()
    tls.data_received(client.bio_read(65536))
    client.bio_write(pump.server_transport.value())
    pump.server_transport.clear()
    client.do_handshake()
    client.sendall(b"too late")
    tls.data_received(client.bio_read(65536))  # Finished and data in one piece
    assert app.events == ["made"]
    client.bio_write(pump.server_transport.value())
    assert client.recv(100) == b"bye"
    with pytest.raises(SSL.ZeroReturnError):
        client.recv(100)


def test_close_notify_from_the_peer_is_eof_received(certs: Certs, server: TLSOptions) -> None:
    peer = good_client(certs)
    _, app, pump, _ = serve_peer(certs, server, peer)
    peer.send(b"bye")
    peer.conn.shutdown()
    peer.flush()
    pump.flush()
    assert app.events == ["made", ("data", b"bye"), "eof", "lost"]
    assert app.lost == [None]
    assert peer.close_notify  # our close_notify answered


def test_write_eof_sends_close_notify_and_the_peer_may_still_answer(
    certs: Certs, server: TLSOptions
) -> None:
    peer = good_client(certs)
    tls, app, pump, _ = serve_peer(certs, server, peer, Recorder(keep_open=True))
    assert tls.can_write_eof()
    tls.write(b"question")
    tls.write_eof()
    tls.write(b"dropped")
    pump.flush()
    assert peer.close_notify and bytes(peer.received) == b"question"
    peer.send(b"answer")
    pump.flush()
    assert bytes(app.data) == b"answer"
    assert not app.lost


def test_abort_aborts_the_lower_transport(certs: Certs, server: TLSOptions) -> None:
    peer = good_client(certs)
    tls, app, pump, _ = serve_peer(certs, server, peer)
    tls.write(b"never sent")
    tls.abort()
    pump.flush()
    assert pump.server_transport.aborted
    assert app.lost == [None]
    assert peer.received == b""


def test_eof_without_close_notify_is_still_eof_received(
    certs: Certs, server: TLSOptions
) -> None:
    peer = good_client(certs)
    _, app, pump, _ = serve_peer(certs, server, peer)
    pump.client_transport.write_eof()
    pump.flush()
    assert app.events[-2:] == ["eof", "lost"]


# ------------------------------------------------------------- flow control


def test_pause_reading_keeps_records_until_resume_reading(
    certs: Certs, server: TLSOptions
) -> None:
    peer = good_client(certs)
    tls, app, pump, clock = serve_peer(certs, server, peer)

    class PauseAfterFirst(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            tls.pause_reading()

    pauser = PauseAfterFirst()
    tls.set_protocol(pauser)
    peer.conn.sendall(b"first")
    peer.conn.sendall(b"second")
    peer.flush()
    pump.flush()
    assert bytes(pauser.data) == b"first"
    assert not tls.is_reading()
    tls.resume_reading()
    assert tls.is_reading()
    clock.advance(0)
    assert bytes(pauser.data) == b"firstsecond"
    assert app.data == b""


def test_lower_water_marks_pause_and_resume_the_application(
    certs: Certs, server: TLSOptions
) -> None:
    peer = good_client(certs)
    tls, app, pump, _ = serve_peer(certs, server, peer)
    producer = PushProducer()
    tls.register_producer(producer, True)
    tls.set_write_buffer_limits(high=4096, low=1024)
    tls.write(b"x" * 10000)
    assert tls.get_write_buffer_size() > 4096
    assert "pause_writing" in app.events
    assert producer.calls == ["pause"]
    pump.flush()
    assert app.events[-1] == "resume_writing"
    assert producer.calls == ["pause", "resume"]
    assert len(peer.received) == 10000
    with pytest.raises(RuntimeError):
        tls.register_producer(PushProducer(), True)
    tls.unregister_producer()


def test_sixteen_mebibytes_cross_between_two_tls_transports(
    certs: Certs, server: TLSOptions
) -> None:
    clock = Clock()
    server_app, client_app = Recorder(), Recorder()
    ours_server = TLSTransport(clock, server, server_app)
    ours_client = TLSTransport(clock, client_options("localhost", ca_file=certs.ca), client_app)
    pump = connect_in_memory(ours_server, ours_client, clock=clock)
    payload = bytes(range(251)) * (16 * (1 << 20) // 251 + 1)
    payload = payload[: 16 << 20]
    client_app.transport.write(payload)
    pump.flush()
    assert len(server_app.data) == len(payload)
    assert bytes(server_app.data) == payload


# --------------------------------------------------------------- bad input


def test_plaintext_is_refused_and_logged(
    certs: Certs, server: TLSOptions, tls_logs: pytest.LogCaptureFixture
) -> None:
    clock = Clock()
    app = Recorder()
    tls = TLSTransport(clock, server, app)
    failures: list[Failure] = []
    tls.handshake.add_errback(failures.append)
    raw = Recorder()
    pump = connect_in_memory(tls, raw, clock=clock)
    raw.transport.write(b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")
    pump.flush()
    assert app.events == []
    assert "http request" in messages(tls_logs)
    assert isinstance(failures[0].value, TLSError)
    assert raw.lost == [None]  # closed, after the alert


def test_a_handshake_that_stalls_times_out(
    certs: Certs, tls_logs: pytest.LogCaptureFixture
) -> None:
    options = server_options(certs.server_cert, certs.server_key, handshake_timeout=5)
    clock = Clock()
    app = Recorder()
    tls = TLSTransport(clock, options, app)
    silent = Recorder()
    pump = connect_in_memory(tls, silent, clock=clock)
    failures: list[Failure] = []
    tls.handshake.add_errback(failures.append)
    clock.advance(4.9)
    pump.flush()
    assert not failures
    clock.advance(0.2)
    pump.flush()
    (failure,) = failures
    assert isinstance(failure.value, TimeoutError)
    assert pump.server_transport.aborted
    assert "did not finish within 5.0 s" in messages(tls_logs)
    assert app.events == []


def test_a_peer_that_leaves_mid_handshake_is_logged(
    certs: Certs, server: TLSOptions, tls_logs: pytest.LogCaptureFixture
) -> None:
    peer = good_client(certs)
    clock = Clock()
    tls = TLSTransport(clock, server, Recorder())
    failures: list[Failure] = []
    tls.handshake.add_errback(failures.append)
    pump = connect_in_memory(tls, peer, clock=clock, greet=False)
    pump.client_transport.close()
    pump.flush()
    assert isinstance(failures[0].value, TLSError)
    assert "closed the connection during the handshake" in messages(tls_logs)


def test_a_renegotiation_is_refused_and_closes_the_connection(
    certs: Certs, server: TLSOptions, tls_logs: pytest.LogCaptureFixture
) -> None:
    peer = good_client(certs, tls12=True)
    tls, app, pump, _ = serve_peer(certs, server, peer)
    assert tls.get_extra_info("tls_version") == "TLSv1.2"
    assert peer.conn.renegotiate()
    try:
        peer.conn.do_handshake()
    except SSL.WantReadError:
        pass
    peer.flush()
    pump.flush()
    (exc,) = app.lost
    assert isinstance(exc, TLSError)
    assert "renegotiat" in str(exc)
    assert "renegotiat" in messages(tls_logs)


def test_a_corrupt_record_closes_with_a_tls_error(
    certs: Certs, server: TLSOptions, tls_logs: pytest.LogCaptureFixture
) -> None:
    peer = good_client(certs)
    _tls, app, pump, _ = serve_peer(certs, server, peer)
    peer.conn.sendall(b"secret")
    record = bytearray(peer.conn.bio_read(65536))
    record[-1] ^= 0xFF  # break the AEAD tag
    pump.client_transport.write(bytes(record))
    pump.flush()
    (exc,) = app.lost
    assert isinstance(exc, TLSError)
    assert app.data == b""
    assert "TLS connection with" in messages(tls_logs)


def test_an_exception_in_data_received_aborts_with_it(
    certs: Certs, server: TLSOptions
) -> None:
    peer = good_client(certs)
    _, app, pump, _ = serve_peer(certs, server, peer)
    boom = RuntimeError("boom")
    app.fail = boom
    peer.send(b"x")
    pump.flush()
    assert app.lost == [boom]


# ---------------------------------------------------------------- start_tls


class Plain(Recorder):
    """Speaks plain text first: the upgrade waits until it has been told to."""


def test_start_tls_upgrades_both_sides_without_a_second_connection_made(
    certs: Certs, server: TLSOptions
) -> None:
    clock = Clock()
    left, right = Plain(), Plain()
    pump = connect_in_memory(left, right, clock=clock)
    right.transport.write(b"STARTTLS\r\n")
    pump.flush()
    assert bytes(left.data) == b"STARTTLS\r\n"
    upgraded: list[Any] = []
    start_tls(clock, left.transport, server, server_side=True).add_both(upgraded.append)
    start_tls(clock, right.transport, client_options("localhost", ca_file=certs.ca)
              ).add_both(upgraded.append)
    pump.flush()
    server_tls, client_tls = upgraded[1], upgraded[0]
    assert isinstance(server_tls, TLSTransport) and isinstance(client_tls, TLSTransport)
    assert left.events.count("made") == 1 and right.events.count("made") == 1
    client_tls.write(b"secret")
    pump.flush()
    assert bytes(left.data) == b"STARTTLS\r\nsecret"
    assert b"secret" not in pump.server_transport.value()
    client_tls.close()
    pump.flush()
    assert left.lost == [None] and right.lost == [None]


def test_a_failed_start_tls_errbacks_and_ends_the_connection(certs: Certs) -> None:
    clock = Clock()
    left, right = Plain(), Plain()
    pump = connect_in_memory(left, right, clock=clock)
    server = server_options(certs.server_cert, certs.server_key)
    start_tls(clock, left.transport, server, server_side=True).add_errback(lambda f: None)
    outcome: list[Any] = []
    start_tls(clock, right.transport, client_options("localhost", ca_file=certs.evil_ca)
              ).add_both(outcome.append)
    pump.flush()
    assert isinstance(outcome[0].value, CertificateVerifyError)
    assert len(right.lost) == 1  # the protocol was connected: it hears of the end


def test_start_tls_checks_its_arguments(certs: Certs, server: TLSOptions) -> None:
    clock = Clock()
    left, right = Plain(), Plain()
    connect_in_memory(left, right, clock=clock)
    with pytest.raises(ValueError, match="server_options"):
        start_tls(clock, left.transport, client_options("localhost"), server_side=True)
    with pytest.raises(ValueError, match="client_options"):
        start_tls(clock, left.transport, server, server_side=False)
    with pytest.raises(TypeError):
        start_tls(clock, left.transport, object())  # type: ignore[arg-type]
    left.transport.close()
    with pytest.raises(ConnectionError):
        start_tls(clock, left.transport, server, server_side=True)
