"""TCP for the native reactor: listening ports, the accept loop, and the connector.

Theory of operation:

- ``Port`` owns a listening socket and is its fd's reader. One readable event
  accepts at most ``accept_batch`` connections (default 16). A small batch is what
  lets several processes that share one listening socket share its load: a process
  that drains the whole queue on every wake-up (Twisted accepts 100+) takes every
  connection while its siblings sleep.
- Running out of descriptors (``EMFILE``/``ENFILE``) or kernel memory while
  accepting does not spin and does not crash: the port stops watching its socket,
  logs once, and retries after a back-off that grows from 0.1 s to 1 s and is reset
  by the next successful accept. The waiting connections stay in the kernel's queue.
- Each accepted socket gets ``TCP_NODELAY`` and a ``StreamTransport``; the factory
  builds the protocol (``build_protocol(addr)`` on a ``Factory``), and ``None`` or an
  exception refuses that connection only.
- ``_Connector`` implements ``connect_tcp``. A numeric host is one attempt. A name
  is resolved in the thread pool; the addresses are interleaved by family
  (RFC 8305 section 4: the first family of the resolver's answer, then alternating),
  and attempts start 250 ms apart (RFC 8305 section 5, "Connection Attempt Delay"),
  or at once when the previous attempt fails. The first to connect wins; the others
  are closed. The overall ``timeout`` and ``cancel()`` close every attempt.
"""

from __future__ import annotations

import errno
import ipaddress
import logging
import os
import socket
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from zope.interface import implementer

from plait.cluster._defer import Deferred
from plait.cluster._defer import TimeoutError as DeferTimeoutError
from plait.cluster._delayed_call import DelayedCall
from plait.cluster._stream import StreamTransport
from plait.cluster.interfaces import IListeningPort
from plait.cluster.protocol import build_protocol

__all__ = [
    "Port",
    "adopt_stream_connection",
    "adopt_stream_port",
    "connect_tcp",
    "interleave_addresses",
    "listen_tcp",
]

_log = logging.getLogger("plait.reactor")

#: Errors of ``accept()`` that mean "out of resources": back off, then retry.
_ACCEPT_EXHAUSTED = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: Errors of ``accept()`` about one connection only: skip it.
_ACCEPT_SKIP = frozenset({errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.EINTR,
                          errno.ECONNRESET})
_BACKOFF_MIN = 0.1
_BACKOFF_MAX = 1.0
#: RFC 8305 section 5: the recommended Connection Attempt Delay.
CONNECTION_ATTEMPT_DELAY = 0.25


def _transport_class(reactor: Any, family: int) -> Callable[..., StreamTransport]:
    cls: Callable[..., StreamTransport] = getattr(reactor, "stream_transports", {}).get(
        family, StreamTransport)
    return cls


def _tune(sock: socket.socket) -> None:
    sock.setblocking(False)
    if sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:  # not every stream socket is TCP
            _log.debug("TCP_NODELAY on %r: %s", sock, exc)


def _start_transport(reactor: Any, sock: socket.socket, factory: Callable[[], Any],
                     addr: Any) -> Any:
    """Build the protocol and its transport on a connected socket; ``None`` if refused."""
    try:
        protocol = build_protocol(factory, addr)
    except Exception:
        _log.exception("protocol factory %r failed; connection from %r refused", factory, addr)
        sock.close()
        return None
    if protocol is None:
        sock.close()
        return None
    try:
        transport = _transport_class(reactor, sock.family)(reactor, sock, protocol)
    except Exception:
        _log.exception("cannot make a transport for the connection from %r", addr)
        sock.close()
        return None
    transport._start()
    return protocol


def _check_batch(accept_batch: object) -> int:
    if not isinstance(accept_batch, int) or isinstance(accept_batch, bool) or accept_batch < 1:
        raise ValueError(f"accept_batch must be an int >= 1, not {accept_batch!r}")
    return accept_batch


@implementer(IListeningPort)
class Port:
    """A listening stream socket serving a protocol factory.

    Args:
        reactor: The reactor.
        sock: A bound, listening socket; the port owns it.
        factory: Protocol factory; ``do_start``/``do_stop`` are called if it has them.
        accept_batch: Most connections accepted per readable event.
    """

    def __init__(self, reactor: Any, sock: socket.socket, factory: Callable[[], Any], *,
                 accept_batch: int = 16) -> None:
        self._reactor = reactor
        self._sock = sock
        self._fd = sock.fileno()
        self._factory = factory
        self._batch = _check_batch(accept_batch)
        self._listening = False
        self._stopped: Deferred[None] | None = None
        self._backoff = _BACKOFF_MIN
        self._retry: DelayedCall | None = None
        self._host = sock.getsockname()
        #: Connections accepted so far (for statistics and tests).
        self.accepted = 0

    def __repr__(self) -> str:
        return f"<Port {self._host!r} {'listening' if self._listening else 'stopped'}>"

    def start_listening(self) -> None:
        """Start accepting (done by ``listen_tcp``/``adopt_stream_port``).

        Raises:
            RuntimeError: the port was stopped.
        """
        if self._stopped is not None:
            raise RuntimeError(f"{self!r} was stopped")
        if self._listening:
            return
        self._listening = True
        do_start = getattr(self._factory, "do_start", None)
        if do_start is not None:
            do_start()
        self._reactor.add_reader(self._fd, self._on_acceptable)

    def stop_listening(self) -> Deferred[None]:
        """Stop accepting and close the socket.

        Returns:
            A Deferred that fires with ``None`` once the socket is closed (the same
            one on every call).
        """
        if self._stopped is not None:
            return self._stopped
        self._stopped = Deferred()
        if self._retry is not None and self._retry.active():
            self._retry.cancel()
        self._retry = None
        self._reactor.remove_reader(self._fd)
        self._reactor.call_soon(self._finish_stop)
        return self._stopped

    def _finish_stop(self) -> None:
        self._sock.close()
        if self._listening:
            self._listening = False
            do_stop = getattr(self._factory, "do_stop", None)
            if do_stop is not None:
                try:
                    do_stop()
                except Exception:
                    _log.exception("do_stop of %r failed", self._factory)
        assert self._stopped is not None
        self._stopped.callback(None)

    def get_host(self) -> Any:
        """The bound address (``getsockname()``): ``(host, port)`` or IPv6 4-tuple."""
        return self._host

    @property
    def port(self) -> int:
        """The bound port number (handy with ``listen_tcp(0, ...)``).

        Raises:
            AttributeError: the socket has no port number (an adopted Unix socket).
        """
        if not isinstance(self._host, tuple):
            raise AttributeError(f"{self!r} has an address, not a port number")
        return int(self._host[1])

    def _on_acceptable(self) -> None:
        accept = self._sock.accept
        reactor = self._reactor
        factory = self._factory
        for _ in range(self._batch):
            try:
                conn, addr = accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _ACCEPT_EXHAUSTED:
                    self._pause_accepting(exc)
                    return
                if exc.errno in _ACCEPT_SKIP:
                    _log.debug("%r: accept: %s", self, exc)
                    continue
                # Unexpected (EINVAL after a shutdown(), ...): back off rather than
                # spin on a socket that stays readable.
                self._pause_accepting(exc)
                return
            self.accepted += 1
            self._backoff = _BACKOFF_MIN
            try:
                _tune(conn)
            except OSError as exc:  # the peer is gone already
                _log.debug("%r: %s", self, exc)
                conn.close()
                continue
            _start_transport(reactor, conn, factory, addr)

    def _pause_accepting(self, exc: OSError) -> None:
        _log.warning("%r: cannot accept (%s); retrying in %.1f s", self, exc, self._backoff)
        self._reactor.remove_reader(self._fd)
        self._retry = self._reactor.call_later(self._backoff, self._resume_accepting)
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX)

    def _resume_accepting(self) -> None:
        self._retry = None
        if self._stopped is None:
            self._reactor.add_reader(self._fd, self._on_acceptable)


def _start_or_close(port: Port, sock: socket.socket) -> None:
    try:
        port.start_listening()
    except BaseException:  # e.g. the factory's start_factory raised
        sock.close()
        raise


def _bind_address(interface: str, port: int) -> tuple[socket.AddressFamily, Any]:
    if not isinstance(interface, str):
        raise ValueError(f"interface must be an IP address string, not {interface!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int in 0..65535, not {port!r}")
    family = socket.AF_INET6 if ":" in interface else socket.AF_INET
    try:
        infos = socket.getaddrinfo(interface or None, port, family, socket.SOCK_STREAM, 0,
                                   socket.AI_NUMERICHOST | socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise ValueError(f"interface must be an IP address, not {interface!r}: {exc}") from None
    return family, infos[0][4]


def listen_tcp(reactor: Any, port: int, factory: Callable[[], Any], backlog: int = 511,
               interface: str = "", *, reuse_port: bool = False, accept_batch: int = 16) -> Port:
    """Bind and listen; see ``Reactor.listen_tcp``."""
    if not callable(factory):
        raise TypeError(f"factory must be callable, not {factory!r}")
    if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 0:
        raise ValueError(f"backlog must be an int >= 0, not {backlog!r}")
    _check_batch(accept_batch)
    family, address = _bind_address(interface, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:
            if not hasattr(socket, "SO_REUSEPORT"):
                raise ValueError("SO_REUSEPORT is not available on this platform")
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    p = Port(reactor, sock, factory, accept_batch=accept_batch)
    _start_or_close(p, sock)
    return p


def _adopt(fd: int, family: int) -> socket.socket:
    if isinstance(fd, bool) or not isinstance(fd, int) or fd < 0:
        raise ValueError(f"fd must be a file descriptor number, not {fd!r}")
    dup = os.dup(fd)
    try:
        sock = socket.socket(family, socket.SOCK_STREAM, 0, dup)
    except OSError as exc:
        os.close(dup)
        if exc.errno == errno.ENOTSOCK:
            raise ValueError(f"fd {fd} is not a socket") from None
        raise
    try:
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_TYPE) != socket.SOCK_STREAM:
            raise ValueError(f"fd {fd} is not a stream socket")
        if sock.getsockopt(socket.SOL_SOCKET, socket.SO_DOMAIN) != family:
            raise ValueError(f"fd {fd} is not a socket of family {family!r}")
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENOTSOCK:
            raise ValueError(f"fd {fd} is not a socket") from None
        raise
    except BaseException:
        sock.close()
        raise
    return sock


def adopt_stream_port(reactor: Any, fd: int, family: int, factory: Callable[[], Any], *,
                      accept_batch: int = 16) -> Port:
    """Serve on the listening socket ``fd`` (a duplicate; the caller closes its copy)."""
    if not callable(factory):
        raise TypeError(f"factory must be callable, not {factory!r}")
    _check_batch(accept_batch)
    sock = _adopt(fd, family)
    try:
        if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
            raise ValueError(f"fd {fd} is not a listening socket")
        sock.setblocking(False)
        p = Port(reactor, sock, factory, accept_batch=accept_batch)
    except BaseException:
        sock.close()
        raise
    _start_or_close(p, sock)
    return p


def adopt_stream_connection(reactor: Any, fd: int, family: int,
                            factory: Callable[[], Any]) -> Any:
    """Run a protocol on the connected socket ``fd`` (a duplicate).

    Returns:
        The protocol, or ``None`` when the factory refused the connection.
    """
    if not callable(factory):
        raise TypeError(f"factory must be callable, not {factory!r}")
    sock = _adopt(fd, family)
    try:
        peer = sock.getpeername()
        _tune(sock)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.ENOTCONN:
            raise ValueError(f"fd {fd} is not a connected socket") from None
        raise
    return _start_transport(reactor, sock, factory, peer)


def interleave_addresses(infos: list[Any]) -> list[tuple[int, Any]]:
    """Order ``getaddrinfo`` results for Happy Eyeballs (RFC 8305 section 4).

    Duplicates are dropped; the family of the first answer goes first, then the
    families alternate.

    Returns:
        ``[(family, sockaddr), ...]``.
    """
    by_family: dict[int, list[tuple[int, Any]]] = {}
    seen = set()
    for family, _, _, _, sockaddr in infos:
        key = (family, sockaddr)
        if key in seen:
            continue
        seen.add(key)
        by_family.setdefault(family, []).append(key)
    queues = [deque(v) for v in by_family.values()]
    out: list[tuple[int, Any]] = []
    while queues:
        for q in list(queues):
            out.append(q.popleft())
            if not q:
                queues.remove(q)
    return out


class _Attempt:
    """One non-blocking ``connect()`` of a ``_Connector``."""

    def __init__(self, connector: _Connector, family: int, address: Any) -> None:
        self.connector = connector
        self.address = address
        self.sock: socket.socket | None = socket.socket(family, socket.SOCK_STREAM)
        reactor = connector.reactor
        try:
            self.sock.setblocking(False)
            if connector.bind_address is not None:
                self.sock.bind(connector.bind_address)
            err = self.sock.connect_ex(address)
        except BaseException:
            self.close()
            raise
        if err in (0, errno.EINPROGRESS, errno.EWOULDBLOCK, errno.EAGAIN):
            reactor.add_writer(self.sock.fileno(), self._on_writable)
        else:
            self.close()
            raise OSError(err, os.strerror(err), address)

    def _on_writable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        self.connector.reactor.remove_writer(sock.fileno())
        try:
            err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        except OSError as exc:
            err = exc.errno or errno.EBADF
        if err:
            self.close()
            self.connector._attempt_failed(self, OSError(err, os.strerror(err), self.address))
            return
        self.sock = None
        self.connector._attempt_connected(self, sock)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        if sock is not None:
            self.connector.reactor.remove_writer(sock.fileno())
            sock.close()


class _ConnectorBase:
    """What the TCP and Unix connectors share: the Deferred, the timeout, the end.

    A subclass provides ``_target()`` (the address, for messages) and ``_finish()``
    (set ``done`` and release what it holds); the Deferred's cancel and the
    timeout both end in ``_finish``.
    """

    def __init__(self, reactor: Any, timeout: float | None) -> None:
        self.reactor = reactor
        self.deferred: Deferred[Any] = Deferred(self._cancel)
        self.timer: DelayedCall | None = None
        self.done = False
        if timeout is not None:
            self.timer = reactor.call_later(timeout, self._timed_out, timeout)

    if TYPE_CHECKING:
        def _target(self) -> str: ...
        def _finish(self) -> None: ...

    def _fail(self, exc: BaseException) -> None:
        self._finish()
        self.deferred.errback(exc)

    def _timed_out(self, timeout: float) -> None:
        self.timer = None
        if not self.done:
            self._fail(DeferTimeoutError(
                f"connecting to {self._target()} timed out after {timeout} s"))

    def _cancel(self, d: Deferred[Any]) -> None:
        if not self.done:
            self._finish()  # the Deferred then errbacks with CancelledError

    def _deliver(self, protocol: Any) -> None:
        """Fire the Deferred with ``protocol``, or fail it if the factory refused (None)."""
        if protocol is None:
            self.deferred.errback(ConnectionAbortedError(
                f"the protocol factory refused the connection to {self._target()}"))
            return
        self.deferred.callback(protocol)


class _Connector(_ConnectorBase):
    """Drives ``connect_tcp``: resolve, then staggered attempts, first one wins."""

    def __init__(self, reactor: Any, host: str, port: int, factory: Callable[[], Any],
                 timeout: float | None, bind_address: tuple[str, int] | None) -> None:
        super().__init__(reactor, timeout)
        self.host = host
        self.port = port
        self.factory = factory
        self.bind_address = bind_address
        self.addresses: deque[tuple[int, Any]] = deque()
        self.attempts: list[_Attempt] = []
        self.errors: list[BaseException] = []
        self.resolving: Deferred[Any] | None = None
        self.stagger: DelayedCall | None = None

    def _target(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        self.resolving = self.reactor.resolve(self.host, self.port)
        self.resolving.add_callbacks(self._resolved, self._resolve_failed)

    def _resolved(self, infos: list[Any]) -> None:
        self.resolving = None
        if self.done:
            return
        self.addresses.extend(interleave_addresses(infos))
        if not self.addresses:
            self._fail(OSError(errno.EADDRNOTAVAIL, f"no address for {self.host!r}"))
            return
        self._next()

    def _resolve_failed(self, failure: Any) -> None:
        self.resolving = None
        if not self.done:
            self._fail(failure.value)

    def _next(self) -> None:
        """Start the next attempt; schedule the one after it (RFC 8305 section 5)."""
        if self.stagger is not None and self.stagger.active():
            self.stagger.cancel()
        self.stagger = None
        while self.addresses and not self.done:
            family, address = self.addresses.popleft()
            try:
                attempt = _Attempt(self, family, address)
            except (OSError, TypeError, ValueError, OverflowError) as exc:
                # e.g. ENETUNREACH at once, or a bind_address of the wrong family:
                # this address is out, try the next one now.
                self.errors.append(exc)
                continue
            self.attempts.append(attempt)
            if self.addresses:
                self.stagger = self.reactor.call_later(CONNECTION_ATTEMPT_DELAY, self._next)
            return
        if not self.attempts and not self.done:
            self._fail(self.errors[-1] if self.errors else OSError("no address to connect to"))

    def _attempt_failed(self, attempt: _Attempt, exc: OSError) -> None:
        self.attempts.remove(attempt)
        self.errors.append(exc)
        if not self.done:
            self._next()

    def _attempt_connected(self, attempt: _Attempt, sock: socket.socket) -> None:
        self.attempts.remove(attempt)
        self._finish()
        try:
            _tune(sock)
            addr = sock.getpeername()
        except OSError as exc:
            sock.close()
            self.deferred.errback(exc)
            return
        self._deliver(_start_transport(self.reactor, sock, self.factory, addr))

    def _finish(self) -> None:
        self.done = True
        for timer in (self.stagger, self.timer):
            if timer is not None and timer.active():
                timer.cancel()
        self.stagger = self.timer = None
        for other in self.attempts:
            other.close()
        self.attempts = []
        if self.resolving is not None:
            resolving, self.resolving = self.resolving, None
            resolving.add_errback(lambda f: None)  # the answer no longer matters
            resolving.cancel()


def connect_tcp(reactor: Any, host: str, port: int, factory: Callable[[], Any],
                timeout: float | None = 30.0, *,
                bind_address: tuple[str, int] | None = None) -> Deferred[Any]:
    """Connect; see ``Reactor.connect_tcp``."""
    if not callable(factory):
        raise TypeError(f"factory must be callable, not {factory!r}")
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty string, not {host!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port <= 65535:
        raise ValueError(f"port must be an int in 1..65535, not {port!r}")
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 or None, not {timeout!r}")
    connector = _Connector(reactor, host, port, factory, timeout, bind_address)
    try:
        ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        connector.start()  # a name: resolve it in the thread pool
    else:
        try:
            infos = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM, 0,
                                       socket.AI_NUMERICHOST)
        except OSError as exc:
            connector._fail(exc)
        else:
            connector._resolved(infos)
    return connector.deferred

