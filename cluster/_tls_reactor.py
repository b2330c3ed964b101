"""The reactor's TLS entry points: ``listen_ssl``, ``connect_ssl``, ``start_tls``.

Theory of operation
-------------------
Each wraps a plain stream connection in a ``TLSTransport`` (``_tls.py``), which is
the protocol of the lower transport and the transport of the application:

- ``listen_ssl`` listens with ``listen_tcp`` and a ``TLSServerFactory``, which asks
  the application factory for a protocol and puts a ``TLSTransport`` in front of
  it; a failed handshake is logged by the transport and never reaches the factory.
- ``connect_ssl`` connects with ``connect_tcp`` and fires its Deferred with the
  application protocol once the handshake is done (or with the TCP or TLS error);
  cancelling it cancels the TCP attempt or aborts the half-made TLS connection.
- ``start_tls`` swaps a ``TLSTransport`` in as the protocol of a connected
  transport (``set_protocol``) and starts the handshake at once; as asyncio's
  ``loop.start_tls``, the Deferred fires with the new transport and the
  application protocol gets no second ``connection_made``.

``ReactorBase`` imports this module lazily, so a program without TLS never loads
pyOpenSSL.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from plait.cluster._defer import Deferred
from plait.cluster._tls import TLSTransport
from plait.cluster._tls_options import TLSOptions
from plait.cluster.protocol import build_protocol

__all__ = ["TLSServerFactory", "connect_ssl", "listen_ssl", "start_tls"]


class TLSServerFactory:
    """Wraps an application protocol factory: each connection gets a ``TLSTransport``.

    The application factory is asked first; ``None`` refuses the connection.
    ``do_start``/``do_stop`` are forwarded.
    """

    def __init__(self, clock: Any, factory: Callable[[], Any], options: TLSOptions) -> None:
        if not options.server_side:
            raise ValueError(f"{options!r} are client options; listen_ssl needs server_options")
        self._clock = clock
        self._factory = factory
        self._options = options

    def build_protocol(self, addr: object) -> TLSTransport | None:
        """The TLS layer for one accepted connection, or ``None`` if refused."""
        protocol = build_protocol(self._factory, addr)
        if protocol is None:
            return None
        tls = TLSTransport(self._clock, self._options, protocol)
        tls.handshake.add_errback(lambda failure: None)  # logged by the transport
        return tls

    def do_start(self) -> None:
        """Forward to the application factory."""
        start = getattr(self._factory, "do_start", None)
        if start is not None:
            start()

    def do_stop(self) -> None:
        """Forward to the application factory."""
        stop = getattr(self._factory, "do_stop", None)
        if stop is not None:
            stop()

    def __call__(self) -> TLSTransport | None:
        return self.build_protocol(None)


def listen_ssl(reactor: Any, port: int, factory: Callable[[], Any], options: TLSOptions,
               backlog: int = 511, interface: str = "") -> Any:
    """Listen for TLS on TCP ``port``; see ``Reactor.listen_ssl``."""
    if not isinstance(options, TLSOptions):
        raise TypeError(f"options must come from server_options(), not {options!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, not {factory!r}")
    return reactor.listen_tcp(port, TLSServerFactory(reactor, factory, options), backlog,
                              interface)


def connect_ssl(reactor: Any, host: str, port: int, factory: Callable[[], Any],
                options: TLSOptions, timeout: float = 30.0) -> Deferred[Any]:
    """Connect over TCP, then TLS; see ``Reactor.connect_ssl``."""
    if not isinstance(options, TLSOptions) or options.server_side:
        raise TypeError(f"options must come from client_options(), not {options!r}")
    if not callable(factory):
        raise TypeError(f"factory must be callable, not {factory!r}")
    layers: list[TLSTransport] = []

    def make() -> TLSTransport | None:
        protocol = build_protocol(factory, (host, port))
        if protocol is None:
            return None
        tls = TLSTransport(reactor, options, protocol)
        layers.append(tls)
        return tls

    def cancel(d: Deferred[Any]) -> None:
        connecting.cancel()
        for tls in layers:
            tls.handshake.add_errback(lambda failure: None)
            tls.abort()

    result: Deferred[Any] = Deferred(cancel)
    connecting = reactor.connect_tcp(host, port, make, timeout)

    def connected(tls: TLSTransport) -> None:
        tls.handshake.add_callbacks(lambda t: _fire(result, t.get_protocol()),
                                    lambda failure: _fire(result, failure))

    connecting.add_callbacks(connected, lambda failure: _fire(result, failure))
    return result


def _fire(d: Deferred[Any], outcome: Any) -> None:
    if d.called:
        return
    if hasattr(outcome, "raise_exception"):
        d.errback(outcome)
    else:
        d.callback(outcome)


def start_tls(clock: Any, transport: Any, options: TLSOptions,
              server_side: bool = False) -> Deferred[TLSTransport]:
    """Upgrade ``transport`` to TLS; see ``Reactor.start_tls``."""
    if not isinstance(options, TLSOptions):
        raise TypeError(f"options must come from server_options()/client_options(), "
                        f"not {options!r}")
    if options.server_side != bool(server_side):
        want = "server_options" if server_side else "client_options"
        raise ValueError(f"server_side={server_side!r} needs {want}(), not {options!r}")
    if transport.is_closing():
        raise ConnectionError(f"cannot start TLS on {transport!r}: it is closing")
    protocol = transport.get_protocol()
    tls = TLSTransport(clock, options, protocol, notify_connection_made=False)
    if not transport.is_reading():
        tls._read_paused = True  # the application paused; the handshake still reads
        transport.resume_reading()
    transport.set_protocol(tls)
    tls.connection_made(transport)
    return tls.handshake
