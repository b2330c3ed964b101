"""plait.cluster.tls: TLS options and the TLS transport's errors.

Build options here and pass them to ``reactor.listen_ssl``, ``reactor.connect_ssl``
or ``reactor.start_tls``; see docs/tls.md.
"""

from plait.cluster._tls import TLSTransport
from plait.cluster._tls_errors import CertificateVerifyError, TLSError
from plait.cluster._tls_options import TLSOptions, client_options, server_options

__all__ = [
    "CertificateVerifyError",
    "TLSError",
    "TLSOptions",
    "TLSTransport",
    "client_options",
    "server_options",
]
