"""TLS endpoints and their strings: ``ssl:`` servers and ``tls:`` clients.

Twisted's syntax with snake_case option names (Twisted's ``privateKey``,
``certKey`` and ``extraCertChain`` are ``private_key``, ``cert_key`` and
``extra_cert_chain``; the camelCase spellings are refused as unknown options):

- ``ssl:PORT:private_key=KEY.pem[:cert_key=CERT.pem][:extra_cert_chain=CHAIN.pem]
  [:ca_file=CA.pem[:verify_client=yes]][:alpn=h2,http/1.1][:interface=ADDR]
  [:backlog=N][:handshake_timeout=SECONDS]``. ``cert_key`` defaults to
  ``private_key`` (one PEM file holding both, as in Twisted).
- ``tls:host=HOST:port=PORT[:ca_file=CA.pem][:cert_file=CERT.pem:key_file=KEY.pem]
  [:alpn=h2,http/1.1][:timeout=SECONDS][:handshake_timeout=SECONDS]`` (or
  ``tls:HOST:PORT``). ``HOST`` is also the name verified in the certificate.

``_endpoints`` registers the two builders with lazy imports, so that pyOpenSSL is
loaded only when a TLS string is parsed. Certificate files are loaded when the
string is parsed: a missing or bad file raises there, not at ``listen``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from plait.cluster._endpoints import Options, _call
from plait.cluster._tls_options import (
    DEFAULT_HANDSHAKE_TIMEOUT,
    TLSOptions,
    client_options,
    server_options,
)
from plait.cluster.defer import Deferred
from plait.cluster.interfaces import IStreamClientEndpoint, IStreamServerEndpoint

__all__ = ["SSL4ServerEndpoint", "TLSClientEndpoint", "ssl_server", "tls_client"]

_YES = {"yes": True, "true": True, "1": True, "no": False, "false": False, "0": False}


@implementer(IStreamServerEndpoint)
class SSL4ServerEndpoint:
    """Listen for TLS on a TCP port (``ssl:8443:private_key=key.pem:cert_key=cert.pem``).

    Args:
        reactor: An ``IReactorSSL``.
        port: The port; 0 picks a free one.
        options: ``tls.server_options(...)``.
        backlog: The listen queue length.
        interface: The address to bind; ``""`` is every IPv4 address.
    """

    def __init__(self, reactor: Any, port: int, options: TLSOptions, backlog: int = 511,
                 interface: str = "") -> None:
        self._reactor = reactor
        self._port = port
        self._options = options
        self._backlog = backlog
        self._interface = interface

    def listen(self, factory: Callable[[], Any]) -> Deferred[Any]:
        """A Deferred of the listening port; errbacks with the bind's ``OSError``."""
        return _call(self._reactor.listen_ssl, self._port, factory, self._options,
                     backlog=self._backlog, interface=self._interface)

    def __repr__(self) -> str:
        return f"<SSL4ServerEndpoint {self._interface or '*'}:{self._port}>"


@implementer(IStreamClientEndpoint)
class TLSClientEndpoint:
    """Connect over TCP and TLS (``tls:host=example.com:port=443``).

    Args:
        reactor: An ``IReactorSSL``.
        host: The host to connect to.
        port: The port.
        options: ``tls.client_options(...)``.
        timeout: Seconds for the TCP connection.
    """

    def __init__(self, reactor: Any, host: str, port: int, options: TLSOptions,
                 timeout: float = 30.0) -> None:
        self._reactor = reactor
        self._host = host
        self._port = port
        self._options = options
        self._timeout = timeout

    def connect(self, factory: Callable[[], Any]) -> Deferred[Any]:
        """A Deferred of the protocol after the handshake; errbacks as ``connect_ssl``."""
        return _call(self._reactor.connect_ssl, self._host, self._port, factory,
                     self._options, timeout=self._timeout)

    def __repr__(self) -> str:
        return f"<TLSClientEndpoint {self._host}:{self._port}>"


def _alpn(options: Options) -> tuple[str, ...]:
    raw = options.take_str("alpn")
    return tuple(name for name in raw.split(",") if name)


def _flag(options: Options, name: str) -> bool:
    raw = options.take_str(name, "no")
    try:
        return _YES[raw.lower()]
    except KeyError:
        raise options.error(f"{name}={raw!r} is not yes or no") from None


def ssl_server(reactor: Any, options: Options) -> SSL4ServerEndpoint:
    """Build the endpoint of an ``ssl:`` server string.

    Raises:
        ValueError: a missing port or ``private_key``, a bad value, an unknown
            option, or a certificate or key that cannot be loaded.
        FileNotFoundError: a certificate, key or CA file does not exist.
    """
    port = options.take_int("port", maximum=65535)
    key = options.take_str("private_key", required=True)
    cert = options.take_str("cert_key", key)
    chain = options.take("extra_cert_chain")
    ca_file = options.take("ca_file")
    verify_client = _flag(options, "verify_client")
    alpn = _alpn(options)
    interface = options.take_str("interface")
    backlog = options.take_int("backlog", 511, minimum=1)
    handshake_timeout = options.take_float("handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT)
    options.finish()
    tls = server_options(cert, key, chain_file=chain, ca_file=ca_file,
                         verify_client=verify_client, alpn=alpn,
                         handshake_timeout=handshake_timeout)
    return SSL4ServerEndpoint(reactor, port, tls, backlog, interface)


def tls_client(reactor: Any, options: Options) -> TLSClientEndpoint:
    """Build the endpoint of a ``tls:`` client string.

    Raises:
        ValueError: a missing host or port, a bad value, an unknown option, or
            ``cert_file`` without ``key_file``.
        FileNotFoundError: a certificate, key or CA file does not exist.
    """
    host = options.take_str("host", required=True)
    port = options.take_int("port", minimum=1, maximum=65535)
    ca_file = options.take("ca_file")
    cert_file = options.take("cert_file")
    key_file = options.take("key_file")
    alpn = _alpn(options)
    timeout = options.take_float("timeout", 30.0)
    handshake_timeout = options.take_float("handshake_timeout", DEFAULT_HANDSHAKE_TIMEOUT)
    options.finish()
    tls = client_options(host, ca_file=ca_file, cert_file=cert_file, key_file=key_file,
                         alpn=alpn, handshake_timeout=handshake_timeout)
    return TLSClientEndpoint(reactor, host, port, tls, timeout)
