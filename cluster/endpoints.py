"""plait.cluster.endpoints: where to listen or connect, from Twisted's strings.

``server_from_string(reactor, "tcp:8080:interface=127.0.0.1")`` and
``client_from_string(reactor, "tcp:host=example.com:port=80")`` build endpoints
whose ``listen(factory)`` / ``connect(factory)`` return Deferreds; ``ClientService``
keeps one client connection up with jittered exponential backoff. See
docs/endpoints.md for the syntax table.
"""

from plait.cluster._client_service import ClientService, backoff_policy
from plait.cluster._endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
    client_from_string,
    server_from_string,
)

__all__ = [
    "AdoptedStreamServerEndpoint",
    "ClientService",
    "TCP4ClientEndpoint",
    "TCP4ServerEndpoint",
    "TCP6ServerEndpoint",
    "UNIXClientEndpoint",
    "UNIXServerEndpoint",
    "backoff_policy",
    "client_from_string",
    "server_from_string",
]
