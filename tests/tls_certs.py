"""Throwaway certificates for TLS tests, made at test time with ``cryptography``.

``make_certs(directory)`` writes PEM files for: a test CA; a server certificate for
``localhost`` with 127.0.0.1 and ::1 in its subjectAltName, signed by the CA; a
second server certificate for ``other.test`` (SNI tests); a client certificate
signed by the CA; an "evil" CA and a client certificate signed by it. Keys are
P-256 (fast to make). Nothing generated is ever committed.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["Certs", "make_certs"]


@dataclass(frozen=True)
class Certs:
    """Paths of the PEM files ``make_certs`` wrote."""

    ca: str
    server_cert: str
    server_key: str
    other_cert: str
    other_key: str
    client_cert: str
    client_key: str
    evil_ca: str
    evil_client_cert: str
    evil_client_key: str


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _cert(subject: str, key: ec.EllipticCurvePrivateKey, issuer: str,
          issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False,
          sans: list[x509.GeneralName] | None = None, client: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(digital_signature=True, content_commitment=False,
                          key_encipherment=False, data_encipherment=False,
                          key_agreement=False, key_cert_sign=True, crl_sign=True,
                          encipher_only=False, decipher_only=False), critical=True)
    else:
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False)
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _write(directory: Path, name: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey | None = None) -> tuple[str, str]:
    cert_path = directory / f"{name}.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = directory / f"{name}.key"
    if key is not None:
        key_path.write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def make_certs(directory: Path) -> Certs:
    """Write a CA, server, client and evil certificates under ``directory``."""
    ca_key, evil_key = _key(), _key()
    ca = _cert("Plait Test CA", ca_key, "Plait Test CA", ca_key, ca=True)
    evil = _cert("Evil CA", evil_key, "Evil CA", evil_key, ca=True)
    server_key, other_key, client_key, evil_client_key = _key(), _key(), _key(), _key()
    server = _cert("localhost", server_key, "Plait Test CA", ca_key, sans=[
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ])
    other = _cert("other.test", other_key, "Plait Test CA", ca_key,
                  sans=[x509.DNSName("other.test")])
    client = _cert("client", client_key, "Plait Test CA", ca_key, client=True)
    evil_client = _cert("intruder", evil_client_key, "Evil CA", evil_key, client=True)
    ca_path, _ = _write(directory, "ca", ca)
    evil_path, _ = _write(directory, "evil-ca", evil)
    server_paths = _write(directory, "server", server, server_key)
    other_paths = _write(directory, "other", other, other_key)
    client_paths = _write(directory, "client", client, client_key)
    evil_client_paths = _write(directory, "evil-client", evil_client, evil_client_key)
    return Certs(ca_path, *server_paths, *other_paths, *client_paths, evil_path,
                 *evil_client_paths)
