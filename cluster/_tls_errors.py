"""The TLS transport's errors, and OpenSSL's reasons as one readable line."""

from __future__ import annotations

from OpenSSL import SSL

__all__ = ["CertificateVerifyError", "TLSError", "describe"]


class TLSError(ConnectionError):
    """A TLS handshake failed, or the peer sent what TLS forbids.

    .. versionadded:: 0.1
    """


class CertificateVerifyError(TLSError):
    """The peer's certificate was refused: unknown CA, wrong host name, expired...

    Attributes:
        code: OpenSSL's ``X509_V_ERR_*`` code.
        depth: Position in the chain of the refused certificate (0: the peer's own).

    .. versionadded:: 0.1
    """

    def __init__(self, message: str, code: int = 0, depth: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.depth = depth


def describe(exc: BaseException) -> str:
    """OpenSSL's reasons (``[(lib, func, reason), ...]``) as one line."""
    if isinstance(exc, SSL.SysCallError):
        return "unexpected EOF from the peer"
    args = exc.args
    if args and isinstance(args[0], list) and args[0]:
        return "; ".join(str(item[-1]) for item in args[0] if item)
    return str(exc) or type(exc).__name__
