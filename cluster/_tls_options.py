"""TLS options: pyOpenSSL contexts with Plait's defaults, for servers and clients.

Theory of operation: ``server_options`` and ``client_options`` build one
``OpenSSL.SSL.Context`` each (an expensive object: certificates parsed, keys
checked, the CA store loaded) and wrap it in a ``TLSOptions`` that every connection
using it shares. Per connection, ``TLSOptions.new_connection`` makes an
``SSL.Connection`` over memory BIOs (no socket: ``_tls.TLSTransport`` feeds it).

Defaults (the same for both sides):

- TLS 1.2 is the oldest version spoken (``set_min_proto_version``); TLS 1.1 and
  older peers get a ``protocol_version`` alert.
- TLS 1.2 cipher suites are ECDHE key exchange with AEAD ciphers only (AES-GCM,
  ChaCha20-Poly1305); TLS 1.3 suites are all AEAD already.
- Compression is off (``OP_NO_COMPRESSION``, CRIME) and renegotiation is refused
  (``OP_NO_RENEGOTIATION``): OpenSSL answers a renegotiating ClientHello with a
  ``no_renegotiation`` alert, and the transport closes that connection.
- Clients verify the server's chain against ``ca_file`` or, without one, the
  system store (``set_default_verify_paths``, which honours ``SSL_CERT_FILE`` and
  ``SSL_CERT_DIR``), and then the host name (RFC 6125: DNS names of the
  subjectAltName, ``*.`` wildcards in the leftmost label only; IP addresses against
  IP entries). A failure stops the handshake; the reason reaches the Deferred of
  ``connect_ssl``/``start_tls`` as a ``CertificateVerifyError``.

The verify callback runs inside OpenSSL; it finds the transport of the connection
through ``Connection.get_app_data()`` to record why a certificate was refused.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Mapping
from typing import Any, cast

from cryptography import x509
from OpenSSL import SSL

__all__ = [
    "CIPHERS",
    "DEFAULT_HANDSHAKE_TIMEOUT",
    "TLSOptions",
    "client_options",
    "hostname_matches",
    "server_options",
    "verify_message",
]

#: TLS 1.2 suites: ECDHE key exchange, AEAD ciphers (OpenSSL cipher-list syntax).
CIPHERS = b"ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:!SHA1:!SHA256:!SHA384"
#: Seconds a handshake may take before the connection is dropped.
DEFAULT_HANDSHAKE_TIMEOUT = 30.0

_OPTIONS = SSL.OP_NO_COMPRESSION | getattr(SSL, "OP_NO_RENEGOTIATION", 0)

#: OpenSSL's X509_V_ERR_* codes a user is likely to meet, in words.
_VERIFY_MESSAGES = {
    2: "unable to get issuer certificate",
    9: "certificate is not yet valid",
    10: "certificate has expired",
    18: "self-signed certificate",
    19: "self-signed certificate in certificate chain",
    20: "unable to get local issuer certificate (unknown CA)",
    21: "unable to verify the first certificate",
    24: "invalid CA certificate",
    26: "unsupported certificate purpose",
    62: "host name mismatch",
    64: "IP address mismatch",
}


def verify_message(code: int) -> str:
    """The words for an OpenSSL ``X509_V_ERR_*`` code."""
    return _VERIFY_MESSAGES.get(code, f"certificate verification error {code}")


def _label_matches(pattern: str, label: str) -> bool:
    return pattern == "*" or pattern == label


def hostname_matches(cert: x509.Certificate, hostname: str) -> bool:
    """Whether ``cert`` is valid for ``hostname`` (a DNS name or an IP address).

    RFC 6125 section 6.4: only the subjectAltName counts; a ``*`` matches one whole
    leftmost label (``*.example.com`` matches ``a.example.com``, not
    ``example.com`` nor ``a.b.example.com``). An IP address matches IP entries only.
    """
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return False
    try:
        ip = ipaddress.ip_address(hostname.partition("%")[0])
    except ValueError:
        ip = None
    if ip is not None:
        return ip in san.get_values_for_type(x509.IPAddress)
    wanted = hostname.rstrip(".").lower().split(".")
    for name in san.get_values_for_type(x509.DNSName):
        labels = name.rstrip(".").lower().split(".")
        if len(labels) != len(wanted):
            continue
        if labels[0] == "*" and len(labels) < 3:
            continue  # "*.com" is too broad to honour
        if _label_matches(labels[0], wanted[0]) and labels[1:] == wanted[1:]:
            return True
    return False


class TLSOptions:
    """Everything one side of a TLS connection needs; shared by its connections.

    Build with ``server_options`` or ``client_options``.

    Attributes:
        context: The pyOpenSSL ``Context`` (configure it further before the first
            connection if you must; OpenSSL copies it into each connection).
        server_side: True for ``server_options``.
        hostname: The name a client sends (SNI) and verifies; ``None`` on servers.
        verify: Whether the peer's certificate is checked.
        alpn: The ALPN protocols offered or accepted, in preference order.
        handshake_timeout: Seconds before an unfinished handshake is dropped.
    """

    def __init__(self, context: SSL.Context, *, server_side: bool, hostname: str | None,
                 verify: bool, alpn: tuple[str, ...], handshake_timeout: float) -> None:
        self.context = context
        self.server_side = server_side
        self.hostname = hostname
        self.verify = verify
        self.alpn = alpn
        self.handshake_timeout = handshake_timeout
        self._sni_name: bytes | None = None
        if hostname is not None:
            try:
                ipaddress.ip_address(hostname.partition("%")[0])
            except ValueError:
                self._sni_name = hostname.rstrip(".").encode("idna")

    def __repr__(self) -> str:
        side = "server" if self.server_side else f"client for {self.hostname!r}"
        return f"<TLSOptions {side} verify={self.verify} alpn={list(self.alpn)}>"

    def new_connection(self, app_data: Any) -> SSL.Connection:
        """A memory-BIO ``SSL.Connection`` in the right state; ``app_data`` is its owner."""
        conn = SSL.Connection(self.context, None)
        conn.set_app_data(app_data)
        if self.server_side:
            conn.set_accept_state()
        else:
            if self._sni_name is not None:
                conn.set_tlsext_host_name(self._sni_name)
            conn.set_connect_state()
        return conn


def _check_timeout(handshake_timeout: float) -> float:
    if isinstance(handshake_timeout, bool) or not isinstance(handshake_timeout, int | float):
        raise TypeError(f"handshake_timeout must be a number, not {handshake_timeout!r}")
    if not 0 < handshake_timeout < float("inf"):
        raise ValueError(f"handshake_timeout must be > 0 and finite, not {handshake_timeout!r}")
    return float(handshake_timeout)


def _check_alpn(alpn: Iterable[str]) -> tuple[str, ...]:
    if isinstance(alpn, str | bytes):
        raise TypeError("alpn must be a sequence of protocol names, such as ('h2', 'http/1.1')")
    names = tuple(alpn)
    for name in names:
        if not isinstance(name, str) or not 0 < len(name.encode()) < 256:
            raise ValueError(f"an ALPN protocol name is a non-empty str under 256 bytes: {name!r}")
    return names


def _need_file(path: str | os.PathLike[str], what: str) -> str:
    name = os.fspath(path)
    if not os.path.isfile(name):
        raise FileNotFoundError(f"{what} file {name!r} does not exist")
    return name


def _reasons(exc: SSL.Error) -> str:
    parts = [str(item[-1]) for item in exc.args[0]] if exc.args and isinstance(
        exc.args[0], list) else []
    return "; ".join(p for p in parts if p) or repr(exc)


def _base_context() -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(_OPTIONS)
    ctx.set_cipher_list(CIPHERS)
    ctx.set_info_callback(_info_callback)
    return ctx


def _info_callback(conn: SSL.Connection, where: int, ret: int) -> None:
    """Note a refused renegotiation: OpenSSL sends ``no_renegotiation`` (alert 100)."""
    if where & SSL.SSL_CB_WRITE_ALERT and ret & 0xFF == 100:
        owner = conn.get_app_data()
        note = getattr(owner, "_renegotiation_refused", None)
        if note is not None:
            note()


def _load_identity(ctx: SSL.Context, cert_file: str | os.PathLike[str],
                   key_file: str | os.PathLike[str],
                   chain_file: str | os.PathLike[str] | None = None) -> None:
    cert_name = _need_file(cert_file, "certificate")
    key_name = _need_file(key_file, "private key")
    try:
        ctx.use_certificate_chain_file(cert_name)
    except SSL.Error as exc:
        raise ValueError(f"cannot load certificate {cert_name!r}: {_reasons(exc)}") from None
    if chain_file is not None:
        chain_name = _need_file(chain_file, "chain")
        with open(chain_name, "rb") as f:
            try:
                chain = x509.load_pem_x509_certificates(f.read())
            except ValueError as exc:
                raise ValueError(f"cannot load chain {chain_name!r}: {exc}") from None
        for cert in chain:
            ctx.add_extra_chain_cert(cast(Any, cert))  # stubs lag: a cryptography cert is fine
    try:
        ctx.use_privatekey_file(key_name)
        ctx.check_privatekey()
    except SSL.Error as exc:
        raise ValueError(
            f"cannot use private key {key_name!r} with {cert_name!r}: {_reasons(exc)}"
        ) from None


def _load_ca(ctx: SSL.Context, ca_file: str | os.PathLike[str]) -> str:
    name = _need_file(ca_file, "CA")
    try:
        ctx.load_verify_locations(name)
    except SSL.Error as exc:
        raise ValueError(f"cannot load CA file {name!r}: {_reasons(exc)}") from None
    return name


def _verify_chain(conn: SSL.Connection, cert: Any, code: int, depth: int, ok: int) -> bool:
    """Context verify callback: record the first failure on the connection's owner."""
    if not ok:
        owner = conn.get_app_data()
        note = getattr(owner, "_verify_failed", None)
        if note is not None:
            note(code, depth)
        return False
    if depth == 0:
        owner = conn.get_app_data()
        hostname = getattr(owner, "_verify_hostname", None)
        if hostname is not None and not hostname_matches(cert.to_cryptography(), hostname):
            owner._verify_failed(62, 0)
            return False
    return True


def server_options(
    cert_file: str | os.PathLike[str],
    key_file: str | os.PathLike[str],
    *,
    chain_file: str | os.PathLike[str] | None = None,
    ca_file: str | os.PathLike[str] | None = None,
    verify_client: bool = False,
    alpn: Iterable[str] = (),
    sni: Mapping[str, tuple[str | os.PathLike[str], str | os.PathLike[str]]] | None = None,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> TLSOptions:
    """Options for a TLS server (``listen_ssl``, ``start_tls(server_side=True)``).

    Args:
        cert_file: PEM certificate (a chain may follow it in the same file).
        key_file: PEM private key of that certificate.
        chain_file: PEM intermediates sent after the certificate.
        ca_file: PEM CAs that client certificates must chain to.
        verify_client: Require a client certificate signed by ``ca_file`` (mutual
            TLS); the handshake fails without one.
        alpn: Protocols accepted, in the server's preference order; the first one
            the client also offers is chosen (none in common: no ALPN).
        sni: Host name -> ``(cert_file, key_file)``: the certificate served to
            clients that ask for that name (SNI); others get ``cert_file``.
        handshake_timeout: Seconds a client has to finish the handshake.

    Returns:
        The ``TLSOptions``.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: a file cannot be loaded, the key does not match its
            certificate, ``verify_client`` without ``ca_file``, or a bad ALPN name.
        TypeError: ``alpn`` is a string, or ``handshake_timeout`` not a number.

    .. versionadded:: 0.1
    """
    timeout = _check_timeout(handshake_timeout)
    protocols = _check_alpn(alpn)
    if verify_client and ca_file is None:
        raise ValueError("verify_client=True needs ca_file, the CAs client certificates chain to")

    def make(cert: str | os.PathLike[str], key: str | os.PathLike[str]) -> SSL.Context:
        ctx = _base_context()
        ctx.set_options(SSL.OP_CIPHER_SERVER_PREFERENCE)
        _load_identity(ctx, cert, key, chain_file if cert is cert_file else None)
        if protocols:
            ctx.set_alpn_select_callback(_alpn_selector(protocols))
        return ctx

    ctx = make(cert_file, key_file)
    if ca_file is not None:
        ca_name = _load_ca(ctx, ca_file)
        ctx.load_client_ca(ca_name.encode())
    if verify_client:
        ctx.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify_chain)
    if sni:
        by_name = {name.rstrip(".").lower(): make(c, k) for name, (c, k) in sni.items()}

        def choose(conn: SSL.Connection) -> None:
            name = conn.get_servername()
            if name is not None:
                chosen = by_name.get(name.decode("ascii", "replace").lower())
                if chosen is not None:
                    conn.set_context(chosen)

        ctx.set_tlsext_servername_callback(choose)
    return TLSOptions(ctx, server_side=True, hostname=None, verify=verify_client,
                      alpn=protocols, handshake_timeout=timeout)


def _alpn_selector(protocols: tuple[str, ...]) -> Any:
    ours = [p.encode() for p in protocols]

    def select(conn: SSL.Connection, offered: list[bytes]) -> Any:
        for name in ours:
            if name in offered:
                return name
        return SSL.NO_OVERLAPPING_PROTOCOLS

    return select


def client_options(
    hostname: str,
    *,
    ca_file: str | os.PathLike[str] | None = None,
    cert_file: str | os.PathLike[str] | None = None,
    key_file: str | os.PathLike[str] | None = None,
    alpn: Iterable[str] = (),
    verify: bool = True,
    handshake_timeout: float = DEFAULT_HANDSHAKE_TIMEOUT,
) -> TLSOptions:
    """Options for a TLS client (``connect_ssl``, ``start_tls``).

    Args:
        hostname: The server's name: sent as SNI (unless an IP address) and checked
            against its certificate.
        ca_file: PEM CAs to trust; default: the system store (``SSL_CERT_FILE`` and
            ``SSL_CERT_DIR`` are honoured).
        cert_file: A client certificate (mutual TLS), with ``key_file``.
        key_file: The client certificate's key.
        alpn: Protocols offered, in preference order.
        verify: False skips every check of the server's certificate (tests only).
        handshake_timeout: Seconds the server has to finish the handshake.

    Returns:
        The ``TLSOptions``.

    Raises:
        FileNotFoundError: a file does not exist.
        ValueError: an empty hostname, a file that cannot be loaded, ``cert_file``
            without ``key_file`` (or the reverse), or a bad ALPN name.

    .. versionadded:: 0.1
    """
    if not isinstance(hostname, str) or not hostname:
        raise ValueError(f"hostname must be a non-empty str, not {hostname!r}")
    timeout = _check_timeout(handshake_timeout)
    protocols = _check_alpn(alpn)
    if (cert_file is None) != (key_file is None):
        raise ValueError("give cert_file and key_file together")
    ctx = _base_context()
    if cert_file is not None and key_file is not None:
        _load_identity(ctx, cert_file, key_file)
    if verify:
        if ca_file is not None:
            _load_ca(ctx, ca_file)
        else:
            ctx.set_default_verify_paths()
        ctx.set_verify(SSL.VERIFY_PEER, _verify_chain)
    else:
        ctx.set_verify(SSL.VERIFY_NONE)
    if protocols:
        ctx.set_alpn_protos([p.encode() for p in protocols])
    return TLSOptions(ctx, server_side=False, hostname=hostname, verify=verify,
                      alpn=protocols, handshake_timeout=timeout)
