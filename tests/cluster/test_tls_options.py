"""TLS options, verification, mutual TLS, the server factory and endpoint strings.

The handshakes run over memory against hand-driven pyOpenSSL peers
(``tests/cluster/_tls_peer.py``); the transport itself is tested in ``test_tls.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from zope.interface.verify import verifyObject

from plait.cluster._tls_options import hostname_matches
from plait.cluster._tls_reactor import TLSServerFactory
from plait.cluster.endpoints import client_from_string, server_from_string
from plait.cluster.failure import Failure
from plait.cluster.interfaces import IStreamClientEndpoint, IStreamServerEndpoint
from plait.cluster.task import Clock
from plait.cluster.testing import MemoryReactor
from plait.cluster.tls import (
    CertificateVerifyError,
    TLSError,
    TLSOptions,
    client_options,
    server_options,
)
from tests.cluster._recorders import Recorder
from tests.cluster._tls_peer import (
    Peer,
    client_of_peer,
    good_client,
    messages,
    peer_context,
    serve_peer,
)
from tests.tls_certs import Certs, make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("tls-options")))


@pytest.fixture
def server(certs: Certs) -> TLSOptions:
    return server_options(certs.server_cert, certs.server_key)


@pytest.fixture
def tls_logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    with caplog.at_level(logging.INFO, logger="plait.tls"):
        yield caplog


# ---------------------------------------------------------- client checks


def test_a_wrong_host_name_errbacks_the_handshake(certs: Certs) -> None:
    peer = Peer(peer_context(certs, server_side=True, cert=(certs.server_cert, certs.server_key)),
                server_side=True)
    _tls, app, _, outcome = client_of_peer(certs, client_options("wrong.test", ca_file=certs.ca),
                                          peer)
    (failure,) = outcome
    assert isinstance(failure, Failure)
    assert isinstance(failure.value, CertificateVerifyError)
    assert failure.value.code == 62
    assert "host name mismatch" in str(failure.value) and "wrong.test" in str(failure.value)
    assert app.events == []
    assert peer.error is not None  # told by an alert


def test_an_unknown_ca_errbacks_the_handshake(certs: Certs) -> None:
    peer = Peer(peer_context(certs, server_side=True, cert=(certs.server_cert, certs.server_key)),
                server_side=True)
    _, app, _, outcome = client_of_peer(certs, client_options("localhost", ca_file=certs.evil_ca),
                                        peer)
    (failure,) = outcome
    assert isinstance(failure.value, CertificateVerifyError)
    assert failure.value.code in (19, 20)  # the peer may send its CA along
    assert app.events == []


def test_verify_false_accepts_any_certificate(certs: Certs) -> None:
    peer = Peer(peer_context(certs, server_side=True, cert=(certs.server_cert, certs.server_key)),
                server_side=True)
    tls, app, _, outcome = client_of_peer(
        certs, client_options("wrong.test", ca_file=certs.evil_ca, verify=False), peer)
    assert outcome == [tls]
    assert app.events == ["made"]
    assert isinstance(tls.get_extra_info("peercert"), x509.Certificate)


def test_an_ip_address_is_checked_against_ip_entries(certs: Certs) -> None:
    peer = Peer(peer_context(certs, server_side=True, cert=(certs.server_cert, certs.server_key)),
                server_side=True)
    tls, _, _, outcome = client_of_peer(certs, client_options("127.0.0.1", ca_file=certs.ca),
                                        peer)
    assert outcome == [tls]
    assert peer.conn.get_servername() is None  # no SNI for an address


def test_host_names_match_as_rfc_6125_says(certs: Certs) -> None:
    from datetime import UTC, datetime, timedelta

    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ignored.test")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([
            x509.DNSName("*.example.test"), x509.DNSName("exact.test"), x509.DNSName("*.test"),
        ]), critical=False)
        .sign(key, hashes.SHA256())
    )
    assert hostname_matches(cert, "a.example.test")
    assert hostname_matches(cert, "A.Example.Test.")
    assert hostname_matches(cert, "exact.test")
    assert not hostname_matches(cert, "example.test")
    assert not hostname_matches(cert, "a.b.example.test")
    assert not hostname_matches(cert, "other.test")  # "*.test" is too broad
    assert not hostname_matches(cert, "ignored.test")  # the CN does not count
    assert not hostname_matches(cert, "127.0.0.1")


# ------------------------------------------------------------ mutual TLS


def mutual(certs: Certs) -> TLSOptions:
    return server_options(certs.server_cert, certs.server_key, ca_file=certs.ca,
                          verify_client=True)


def test_mutual_tls_shows_the_client_certificate(certs: Certs) -> None:
    peer = good_client(certs, cert=(certs.client_cert, certs.client_key))
    tls, app, _, _ = serve_peer(certs, mutual(certs), peer)
    assert app.events == ["made"]
    cert = tls.get_extra_info("peercert")
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "client"


def test_a_client_certificate_from_another_ca_is_refused_and_logged(
    certs: Certs, tls_logs: pytest.LogCaptureFixture
) -> None:
    peer = good_client(certs, cert=(certs.evil_client_cert, certs.evil_client_key))
    tls, app, pump, _ = serve_peer(certs, mutual(certs), peer)
    assert app.events == []
    assert "client certificate was refused" in messages(tls_logs)
    assert tls.handshake.called
    assert pump.server_transport.disconnected


def test_no_client_certificate_is_refused_when_one_is_required(
    certs: Certs, tls_logs: pytest.LogCaptureFixture
) -> None:
    peer = good_client(certs)
    _, app, _, _ = serve_peer(certs, mutual(certs), peer)
    assert app.events == []
    assert "TLS handshake" in messages(tls_logs)


# ------------------------------------------------------------------ options


def test_options_refuse_missing_and_mismatched_files(certs: Certs, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        server_options(tmp_path / "nope.pem", certs.server_key)
    with pytest.raises(FileNotFoundError):
        client_options("localhost", ca_file=tmp_path / "nope.pem")
    with pytest.raises(ValueError, match="private key"):
        server_options(certs.server_cert, certs.client_key)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate")
    with pytest.raises(ValueError, match="certificate"):
        server_options(garbage, certs.server_key)
    with pytest.raises(ValueError, match="CA file"):
        client_options("localhost", ca_file=garbage)
    with pytest.raises(ValueError, match="chain"):
        server_options(certs.server_cert, certs.server_key, chain_file=garbage)


def test_options_refuse_bad_values(certs: Certs) -> None:
    with pytest.raises(ValueError, match="ca_file"):
        server_options(certs.server_cert, certs.server_key, verify_client=True)
    with pytest.raises(TypeError, match="alpn"):
        client_options("localhost", alpn="h2")
    with pytest.raises(ValueError):
        client_options("localhost", alpn=[""])
    with pytest.raises(ValueError):
        client_options("")
    with pytest.raises(ValueError):
        client_options("localhost", handshake_timeout=0)
    with pytest.raises(TypeError):
        client_options("localhost", handshake_timeout="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="together"):
        client_options("localhost", cert_file=certs.client_cert)


def test_a_chain_file_is_sent_after_the_certificate(certs: Certs) -> None:
    options = server_options(certs.server_cert, certs.server_key, chain_file=certs.ca)
    peer = good_client(certs)
    serve_peer(certs, options, peer)
    chain = peer.conn.get_peer_cert_chain()
    assert chain is not None and len(chain) == 2


def test_the_client_trusts_the_system_store_or_ssl_cert_file(
    certs: Certs, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", certs.ca)
    peer = Peer(peer_context(certs, server_side=True, cert=(certs.server_cert, certs.server_key)),
                server_side=True)
    tls, _, _, outcome = client_of_peer(certs, client_options("localhost"), peer)
    assert outcome == [tls]


# ------------------------------------------------- factory and endpoints


def test_the_server_factory_refuses_when_the_application_factory_does(
    server: TLSOptions
) -> None:
    assert TLSServerFactory(Clock(), lambda: None, server).build_protocol(None) is None
    with pytest.raises(ValueError):
        TLSServerFactory(Clock(), Recorder, client_options("localhost"))


def test_endpoint_strings_build_tls_endpoints(certs: Certs) -> None:
    reactor = MemoryReactor()
    endpoint = server_from_string(
        reactor, f"ssl:8443:private_key={certs.server_key}:cert_key={certs.server_cert}"
        f":ca_file={certs.ca}:verify_client=yes:alpn=h2,http/1.1:interface=127.0.0.1")
    assert verifyObject(IStreamServerEndpoint, endpoint)
    assert "127.0.0.1:8443" in repr(endpoint)
    client = client_from_string(reactor, f"tls:localhost:443:ca_file={certs.ca}:alpn=h2")
    assert verifyObject(IStreamClientEndpoint, client)
    assert "localhost:443" in repr(client)


@pytest.mark.parametrize("description", [
    "ssl:8443",  # no private_key
    "ssl:8443:privateKey=k.pem:certKey=c.pem",  # Twisted's camelCase is not accepted
    "ssl:8443:private_key={key}:cert_key={cert}:verify_client=maybe",
    "ssl:8443:private_key={key}:cert_key={cert}:verify_client=yes",  # no ca_file
    "ssl:8443:private_key={key}:cert_key={cert}:bogus=1",
])
def test_bad_ssl_server_strings_raise_value_error(certs: Certs, description: str) -> None:
    with pytest.raises(ValueError):
        server_from_string(MemoryReactor(), description.format(key=certs.server_key,
                                                               cert=certs.server_cert))


@pytest.mark.parametrize("description", [
    "tls:localhost",  # no port
    "tls:port=443",  # no host
    "tls:localhost:443:verify=no",  # unknown option
    "tls:localhost:443:cert_file={cert}",  # no key_file
])
def test_bad_tls_client_strings_raise_value_error(certs: Certs, description: str) -> None:
    with pytest.raises(ValueError):
        client_from_string(MemoryReactor(), description.format(cert=certs.client_cert))


def test_a_missing_key_file_in_a_string_raises_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        server_from_string(MemoryReactor(), f"ssl:0:private_key={tmp_path / 'k.pem'}")


def test_the_client_refuses_a_server_that_speaks_only_tls_1_1(certs: Certs) -> None:
    context = peer_context(certs, server_side=True, cert=(certs.server_cert, certs.server_key))
    context.set_cipher_list(b"DEFAULT@SECLEVEL=0")  # let OpenSSL speak TLS 1.1 at all
    context.set_min_proto_version(SSL.TLS1_1_VERSION)
    context.set_max_proto_version(SSL.TLS1_1_VERSION)
    peer = Peer(context, server_side=True)
    _, app, _, outcome = client_of_peer(certs, client_options("localhost", ca_file=certs.ca),
                                        peer)
    (failure,) = outcome
    assert isinstance(failure, Failure)
    assert isinstance(failure.value, TLSError)
    assert "version" in str(failure.value) or "protocol" in str(failure.value), failure.value
    assert app.events == []
