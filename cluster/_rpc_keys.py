"""CURVE keys for buses across hosts: generate, save (0600), load, and authorise.

Theory of operation: a cluster shares one CURVE key pair by default (``plait
keys`` writes it; every node loads it). A bus that binds ``tcp://`` is a CURVE
server with that pair; a bus that connects is a CURVE client presenting its own
pair and expecting the server's public key. CURVE alone lets any client that knows
the server's public key in, so every CURVE bus also answers ZAP (RFC 27) for its
ZeroMQ context and admits only client public keys in ``authorized`` (by default
the cluster's own): a peer without the right secret key cannot even finish the
handshake, let alone call anything. Keys are Z85 text (40 characters), the form
``zmq.curve_keypair`` returns and ``zmq.auth`` certificates hold.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.utils import z85

__all__ = ["CurveKeys", "ZapResponder", "generate", "load", "save"]

log = logging.getLogger("plait.cluster.rpc")

_ZAP_ENDPOINT = "inproc://zeromq.zap.01"


@dataclass(frozen=True, slots=True, kw_only=True)
class CurveKeys:
    """A node's CURVE keys and whom it trusts.

    Attributes:
        public: This node's public key (Z85, 40 bytes).
        secret: This node's secret key (Z85, 40 bytes).
        server_public: The public key of the buses this node connects to; the
            default is ``public`` (a cluster sharing one pair).
        authorized: Client public keys this node's bound bus admits; the
            default is ``{public}``.
    """

    public: bytes
    secret: bytes
    server_public: bytes | None = None
    authorized: frozenset[bytes] = field(default_factory=frozenset)

    def __post_init__(self) -> None:
        for key in (self.public, self.secret, self.server_public or self.public):
            if not (isinstance(key, bytes) and len(key) == 40):
                raise ValueError("CURVE keys are 40 bytes of Z85 text")
        if not self.authorized:
            object.__setattr__(self, "authorized", frozenset({self.public}))

    def apply_server(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock``'s next ``bind`` a CURVE server."""
        sock.setsockopt(zmq.CURVE_SERVER, 1)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)

    def apply_client(self, sock: zmq.Socket[Any]) -> None:
        """Make ``sock``'s next ``connect`` a CURVE client."""
        sock.setsockopt(zmq.CURVE_SERVER, 0)
        sock.setsockopt(zmq.CURVE_PUBLICKEY, self.public)
        sock.setsockopt(zmq.CURVE_SECRETKEY, self.secret)
        sock.setsockopt(zmq.CURVE_SERVERKEY, self.server_public or self.public)


def generate() -> CurveKeys:
    """A fresh key pair (``zmq.curve_keypair``)."""
    public, secret = zmq.curve_keypair()
    return CurveKeys(public=public, secret=secret)


def save(keys: CurveKeys, path: str | os.PathLike[str]) -> None:
    """Write ``keys`` to ``path`` as a ZeroMQ certificate, readable by the owner only.

    The file is created with mode 0600 (an existing one is replaced and gets
    0600 too); ``zmq.auth.load_certificate`` reads it as well.
    """
    text = (
        "#   Plait bus CURVE key pair: keep this file secret (mode 0600)\n"
        "metadata\n"
        "curve\n"
        f'    public-key = "{keys.public.decode()}"\n'
        f'    secret-key = "{keys.secret.decode()}"\n'
    )
    tmp = f"{os.fspath(path)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, text.encode())
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load(path: str | os.PathLike[str]) -> CurveKeys:
    """Read keys written by ``save``.

    Raises:
        PermissionError: the file is readable by group or others.
        ValueError: the file holds no public and secret key.
    """
    if os.stat(path).st_mode & 0o077:
        raise PermissionError(f"{os.fspath(path)} must be private to its owner (0600)")
    public = secret = None
    with open(path, encoding="utf-8") as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            value = value.strip().strip('"')
            if key.strip() == "public-key":
                public = value.encode()
            elif key.strip() == "secret-key":
                secret = value.encode()
    if public is None or secret is None:
        raise ValueError(f"{os.fspath(path)} holds no CURVE key pair")
    return CurveKeys(public=public, secret=secret)


class ZapResponder:
    """Answers ZAP requests of one ZeroMQ context from the reactor.

    Admits CURVE clients whose public key is in ``authorized``; refuses the rest
    (and every other mechanism). RFC 27: https://rfc.zeromq.org/spec/27/
    """

    def __init__(self, context: zmq.Context[Any], reactor: Any, authorized: frozenset[bytes]):
        self._reactor = reactor
        self._authorized = {z85.decode(key) for key in authorized}
        self._socket: zmq.Socket[Any] | None = context.socket(zmq.REP)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.bind(_ZAP_ENDPOINT)
        self._fd = self._socket.getsockopt(zmq.FD)
        reactor.add_reader(self._fd, self._drain)
        reactor.call_soon(self._drain)

    def _drain(self) -> None:
        while self._socket is not None:
            try:
                request = self._socket.recv_multipart(zmq.NOBLOCK)
            except zmq.Again:
                return
            self._socket.send_multipart(self._answer(request))

    def _answer(self, request: list[bytes]) -> list[bytes]:
        if len(request) < 6:
            log.warning("malformed ZAP request of %d frames", len(request))
            return [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"malformed", b"", b""]
        version, request_id, _domain, address, _identity, mechanism = request[:6]
        credentials = request[6:]
        if mechanism == b"CURVE" and credentials and credentials[0] in self._authorized:
            return [version, request_id, b"200", b"OK", b"", b""]
        log.warning("refused a bus peer at %s (%s key not authorised)",
                    address.decode(errors="replace"), mechanism.decode(errors="replace"))
        return [version, request_id, b"400", b"not authorised", b"", b""]

    def close(self) -> None:
        """Stop answering (the context's CURVE handshakes then fail)."""
        if self._socket is not None:
            self._reactor.remove_reader(self._fd)
            self._socket.close(linger=0)
            self._socket = None
