"""Unix sockets: listening paths, stream connections with fd passing, datagrams.

Theory of operation
-------------------
Paths. ``listen_unix`` and ``listen_unix_datagram`` share ``prepare_path``: a path
that does not exist is bound as is; an existing *socket* file is probed with a
non-blocking ``connect`` of the same socket type. ``ECONNREFUSED`` means nobody owns it
(a server died without unlinking), so the file is removed and bound; a successful
connect, ``EAGAIN`` (a full backlog) or ``EPROTOTYPE`` (bound by a socket of the other
type) mean somebody does, and ``EADDRINUSE`` is raised. Anything else that exists
(a regular file, a directory) is never removed: ``FileExistsError``. Names that start
with ``"\\0"`` are Linux abstract names: no file, no ``mode``, nothing to clean up.
After ``bind`` the file gets ``mode`` (``chmod``); when the port or datagram transport
closes it unlinks the file, but only if the inode is still the one it bound (another
server may have replaced it).

File descriptors (SCM_RIGHTS). ``send_fds(fds, data)`` queues one message that carries
the descriptors with at least one byte of data, so that the kernel keeps them attached
to that byte. The receiving transport reads with ``recvmsg`` and an ancillary buffer
big enough for ``_MAX_FDS`` descriptors; when a read returns descriptors, it calls
``protocol.fds_received(fds)`` *before* ``data_received`` for the bytes of the same
read. A protocol without ``fds_received`` gets the descriptors closed (logged at debug)
so they never leak; so does a truncated ancillary buffer (``MSG_CTRUNC``).
"""

from __future__ import annotations

import array
import errno
import logging
import os
import socket
import stat
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from zope.interface import implementer

from plait.cluster._defer import Deferred
from plait.cluster._stream import _IOV_MAX, StreamTransport
from plait.cluster._tcp import Port, _ConnectorBase
from plait.cluster._udp import DatagramTransport
from plait.cluster.interfaces import IDatagramTransport, IListeningPort, IUnixTransport
from plait.cluster.protocol import build_protocol

__all__ = [
    "MAX_FDS",
    "UnixDatagramTransport",
    "UnixPort",
    "UnixStreamTransport",
    "connect_unix",
    "listen_unix",
    "listen_unix_datagram",
    "prepare_path",
]

log = logging.getLogger(__name__)


def _is_abstract(address: str | bytes) -> bool:
    return (address[:1] in ("\0", b"\0")) if address else False


def _check_address(address: str) -> None:
    if not isinstance(address, str):
        raise TypeError(f"a Unix socket address is a str, not {type(address).__name__}")
    if not address:
        raise ValueError("a Unix socket address may not be empty")
    if "\0" in address[1:]:
        raise ValueError(f"NUL inside a Unix socket address: {address!r}")


def prepare_path(address: str, sock_type: int = socket.SOCK_STREAM) -> None:
    """Make ``address`` bindable: remove a stale socket file, refuse anything else.

    Args:
        address: The socket path, or an abstract name starting with ``"\\0"``.
        sock_type: ``SOCK_STREAM`` or ``SOCK_DGRAM``: the type used to probe.

    Raises:
        OSError: ``EADDRINUSE`` when a live socket owns the path.
        FileExistsError: the path exists and is not a socket.
    """
    if _is_abstract(address):
        return
    try:
        st = os.lstat(address)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise FileExistsError(errno.EEXIST, "exists and is not a socket", address)
    probe = socket.socket(socket.AF_UNIX, sock_type)
    try:
        probe.setblocking(False)
        try:
            probe.connect(address)
        except ConnectionRefusedError:
            log.info("removing stale Unix socket %s", address)
            os.unlink(address)
            return
        except (BlockingIOError, InterruptedError):
            pass  # a full backlog: somebody listens
        except OSError as exc:
            if exc.errno != errno.EPROTOTYPE:
                raise
    finally:
        probe.close()
    raise OSError(errno.EADDRINUSE, "a live socket is bound to this path", address)


def bind_unix(address: str, sock_type: int, mode: int) -> tuple[socket.socket, int | None]:
    """Bind a non-blocking Unix socket at ``address`` and ``chmod`` it to ``mode``.

    Returns:
        The socket and the inode of its file (``None`` for an abstract name).

    Raises:
        OSError, FileExistsError: as for ``prepare_path``, or from ``bind``/``chmod``.
        ValueError: ``mode`` is not a permission mode.
    """
    _check_address(address)
    if not isinstance(mode, int) or not 0 <= mode <= 0o7777:
        raise ValueError(f"mode must be a permission mode such as 0o660, not {mode!r}")
    prepare_path(address, sock_type)
    sock = socket.socket(socket.AF_UNIX, sock_type)
    inode = None
    try:
        sock.setblocking(False)
        sock.bind(address)
        if not _is_abstract(address):
            inode = os.stat(address).st_ino
            os.chmod(address, mode)
    except BaseException:
        sock.close()
        unlink_if_ours(address, inode)
        raise
    return sock, inode


def unlink_if_ours(address: str, inode: int | None) -> None:
    """Remove the socket file at ``address`` if it still is the one we bound."""
    if inode is None:
        return
    try:
        if os.lstat(address).st_ino == inode:
            os.unlink(address)
    except FileNotFoundError:
        pass
    except OSError:
        log.warning("could not remove Unix socket %s", address, exc_info=True)


@implementer(IDatagramTransport)
class UnixDatagramTransport(DatagramTransport):
    """A Unix datagram socket bound to a path; unlinks it when closed."""

    def __init__(
        self, reactor: Any, sock: socket.socket, protocol: Any, address: str, inode: int | None
    ) -> None:
        super().__init__(reactor, sock, protocol)
        self._path = address
        self._inode = inode

    def connect(self, path: str) -> None:
        """Fix the peer, so that ``sendto`` may omit the address.

        Raises:
            OSError: nobody is bound to ``path`` (``ECONNREFUSED``/``ENOENT``).
        """
        _check_address(path)
        self._sock.connect(path)
        self._address = self._sock.getpeername()
        self._extra["peername"] = self._address

    def _closed(self) -> None:
        unlink_if_ours(self._path, self._inode)


def listen_unix_datagram(
    reactor: Any, address: str, protocol: Any, mode: int = 0o666
) -> UnixDatagramTransport:
    """Bind a Unix datagram socket at ``address`` and run ``protocol`` (an instance).

    Returns:
        The transport, after ``protocol.connection_made`` ran.

    Raises:
        OSError: ``EADDRINUSE`` when a live socket owns the path, or the bind failed.
        FileExistsError: the path exists and is not a socket.
        ValueError: an empty address or a bad ``mode``.
    """
    sock, inode = bind_unix(address, socket.SOCK_DGRAM, mode)
    transport = UnixDatagramTransport(reactor, sock, protocol, address, inode)
    transport._start()
    return transport


@implementer(IListeningPort)
class UnixPort(Port):
    """A listening Unix stream socket; unlinks its file when it stops listening."""

    def __init__(self, reactor: Any, sock: socket.socket, factory: Callable[[], Any],
                 address: str, inode: int | None) -> None:
        super().__init__(reactor, sock, factory)
        self._path = address
        self._inode = inode

    def _finish_stop(self) -> None:
        unlink_if_ours(self._path, self._inode)
        super()._finish_stop()

    @property
    def port(self) -> int:
        """Unix ports have no number: this raises; use ``get_host()`` for the path.

        Raises:
            AttributeError: always.
        """
        raise AttributeError(f"{self!r} is a Unix socket: it has a path, not a port number")

    def __repr__(self) -> str:
        state = "listening" if self._listening else "stopped"
        return f"<UnixPort {self._path!r} {state}>"


def listen_unix(reactor: Any, address: str, factory: Callable[[], Any], backlog: int = 511,
                mode: int = 0o666) -> UnixPort:
    """Listen on the Unix socket ``address``; see ``Reactor.listen_unix``.

    Raises:
        OSError: ``EADDRINUSE`` when a live socket owns the path, or the bind failed.
        FileExistsError: the path exists and is not a socket.
        ValueError: an empty address, a bad ``mode`` or ``backlog``.
        TypeError: ``factory`` is not callable.
    """
    if not callable(factory):
        raise TypeError(f"factory must be callable, not {factory!r}")
    if isinstance(backlog, bool) or not isinstance(backlog, int) or backlog < 0:
        raise ValueError(f"backlog must be an int >= 0, not {backlog!r}")
    sock, inode = bind_unix(address, socket.SOCK_STREAM, mode)
    try:
        sock.listen(backlog)
    except BaseException:
        sock.close()
        unlink_if_ours(address, inode)
        raise
    port = UnixPort(reactor, sock, factory, address, inode)
    port.start_listening()
    return port


_RETRY_FIRST = 0.005
_RETRY_MAX = 0.1


class _UnixConnector(_ConnectorBase):
    """Drives one ``connect_unix``: connect, retry while the backlog is full, time out.

    A Unix ``connect`` either succeeds at once, fails at once (``ECONNREFUSED``,
    ``ENOENT``), or, on Linux, says ``EAGAIN`` when the listener's backlog is full,
    which is not "in progress": nothing will signal completion, so we retry with a
    short, growing delay until ``timeout``. Success is delivered from ``call_soon``,
    never inside ``connect_unix`` itself.
    """

    def __init__(self, reactor: Any, path: str, factory: Callable[[], Any],
                 timeout: float | None) -> None:
        super().__init__(reactor, timeout)
        self.path = path
        self.factory = factory
        self.sock: socket.socket | None = None
        self.retry: Any = None
        self.delay = _RETRY_FIRST

    def _target(self) -> str:
        return repr(self.path)

    def attempt(self) -> None:
        self.retry = None
        if self.done:
            return
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        except OSError as exc:  # EMFILE and friends
            self._fail(exc)
            return
        sock.setblocking(False)
        err = sock.connect_ex(self.path)
        if err == 0:
            self.sock = sock
            self.reactor.call_soon(self._connected)
        elif err == errno.EINPROGRESS:
            self.sock = sock
            self.reactor.add_writer(sock.fileno(), self._writable)
        elif err in (errno.EAGAIN, errno.EWOULDBLOCK):
            sock.close()
            self.retry = self.reactor.call_later(self.delay, self.attempt)
            self.delay = min(self.delay * 2, _RETRY_MAX)
        else:
            sock.close()
            self._fail(OSError(err, os.strerror(err), self.path))

    def _writable(self) -> None:
        sock = self.sock
        if sock is None:
            return
        self.reactor.remove_writer(sock.fileno())
        err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if err:
            self._fail(OSError(err, os.strerror(err), self.path))
            return
        self._connected()

    def _connected(self) -> None:
        sock, self.sock = self.sock, None
        if sock is None or self.done:
            return
        self._finish()
        self._deliver(_start_unix_transport(self.reactor, sock, self.factory))

    def _finish(self) -> None:
        self.done = True
        for timer in (self.timer, self.retry):
            if timer is not None and timer.active():
                timer.cancel()
        self.timer = self.retry = None
        sock, self.sock = self.sock, None
        if sock is not None:
            self.reactor.remove_writer(sock.fileno())
            sock.close()


def _start_unix_transport(reactor: Any, sock: socket.socket, factory: Callable[[], Any]) -> Any:
    try:
        addr = sock.getpeername()
        protocol = build_protocol(factory, addr)
    except Exception:
        log.exception("protocol factory %r failed; connection refused", factory)
        sock.close()
        return None
    if protocol is None:
        sock.close()
        return None
    UnixStreamTransport(reactor, sock, protocol)._start()
    return protocol


def connect_unix(reactor: Any, path: str, factory: Callable[[], Any],
                 timeout: float | None = 30.0) -> Deferred[Any]:
    """Connect to the Unix socket ``path``; see ``Reactor.connect_unix``.

    Returns:
        A Deferred of the connected protocol. It errbacks with
        ``ConnectionRefusedError`` (nobody listens), ``FileNotFoundError`` (no such
        path), another ``OSError``, ``TimeoutError`` after ``timeout`` seconds,
        ``ConnectionAbortedError`` when the factory refused, or ``CancelledError``.

    Raises:
        TypeError: ``factory`` is not callable or ``path`` is not a str.
        ValueError: an empty path or a timeout that is not positive.
    """
    if not callable(factory):
        raise TypeError(f"factory must be callable, not {factory!r}")
    _check_address(path)
    if timeout is not None and not timeout > 0:
        raise ValueError(f"timeout must be > 0 or None, not {timeout!r}")
    connector = _UnixConnector(reactor, path, factory, timeout)
    connector.attempt()
    return connector.deferred


def _close_fds(fds: Iterable[int]) -> None:
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            log.debug("closing fd %d failed", fd, exc_info=True)


#: Most descriptors one message may carry (Linux's SCM_MAX_FD).
MAX_FDS = 253
_ANC_SIZE = socket.CMSG_SPACE(MAX_FDS * array.array("i").itemsize)
_RECV_FLAGS = getattr(socket, "MSG_CMSG_CLOEXEC", 0)


class _FdChunk(bytes):
    """Bytes in the write buffer that must leave with descriptors attached.

    ``fds`` are duplicates owned by the transport (the caller may close its own as
    soon as ``send_fds`` returns); they are closed once sent or dropped.
    """

    fds: list[int]


def _fds_from(ancdata: list[tuple[int, int, bytes]]) -> list[int]:
    fds: list[int] = []
    for level, kind, payload in ancdata:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            usable = len(payload) - len(payload) % _FD_SIZE
            fds.extend(array.array("i", payload[:usable]))
    return fds


@implementer(IUnixTransport)
class UnixStreamTransport(StreamTransport):
    """A Unix stream connection: a ``StreamTransport`` that can carry descriptors.

    ``send_fds`` keeps its place in the byte stream: descriptors sent after buffered
    bytes leave after them. Received descriptors reach ``protocol.fds_received(fds)``
    before the bytes they came with reach ``data_received``.
    """

    # ----------------------------------------------------------------- reading

    def _on_readable(self) -> None:
        try:
            data, ancdata, flags, _ = self._sock.recvmsg(self.max_read, _ANC_SIZE, _RECV_FLAGS)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc)
            return
        if ancdata:
            fds = _fds_from(ancdata)
            if flags & socket.MSG_CTRUNC:
                log.warning("%r: descriptors truncated (more than %d in one message)",
                            self, MAX_FDS)
            if fds and not self._deliver_fds(fds):
                return
        if data:
            try:
                self._data_received(data)
            except Exception as exc:
                log.exception("data_received of %r failed; aborting its connection",
                              self._protocol)
                self._force_close(exc)
        else:
            self._on_eof()

    def _deliver_fds(self, fds: list[int]) -> bool:
        handler = getattr(self._protocol, "fds_received", None)
        if handler is None:
            log.debug("%r: %r has no fds_received; closing %d received fds",
                      self, self._protocol, len(fds))
            _close_fds(fds)
            return True
        try:
            handler(fds)
        except Exception as exc:
            log.exception("fds_received of %r failed; aborting its connection", self._protocol)
            self._force_close(exc)
            return False
        return True

    # ----------------------------------------------------------------- writing

    def send_fds(self, fds: Sequence[int], data: bytes = b"\0") -> None:
        """Send the descriptors ``fds`` attached to ``data`` (at least one byte).

        The descriptors are duplicated first, so the caller may close its own at
        once. Dropped (like ``write``) once the transport is closing.

        Raises:
            TypeError: ``data`` is not bytes-like or an fd is not an int.
            ValueError: ``data`` is empty, no fds or more than ``MAX_FDS``, or an fd
                is negative.
            OSError: an fd is not open (``EBADF``).
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        data = bytes(data)
        if not data:
            raise ValueError("send_fds needs at least one byte of data to carry the fds")
        fds = list(fds)
        if not 1 <= len(fds) <= MAX_FDS:
            raise ValueError(f"send_fds takes 1 to {MAX_FDS} descriptors, not {len(fds)}")
        for fd in fds:
            if isinstance(fd, bool) or not isinstance(fd, int):
                raise TypeError(f"a file descriptor is an int, not {fd!r}")
            if fd < 0:
                raise ValueError(f"not a file descriptor: {fd}")
        if self._closing or self._eof_written:
            self._drop_write()
            return
        if not self._buffer_size:
            try:
                n = self._sock.sendmsg([data], [_rights(fds)])
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError as exc:
                if exc.errno == errno.EBADF:
                    raise
                self._fatal_error(exc)
                return
            if n == len(data):
                return
            if n:  # the descriptors left with the first byte
                self._buffer.append(memoryview(data)[n:])
                self._buffer_size = len(data) - n
                self._reactor.add_writer(self._fd, self._on_writable)
                self._check_high()
                return
        chunk = _FdChunk(data)
        chunk.fds = _dup_all(fds)
        was_empty = not self._buffer_size
        self._buffer.append(chunk)
        self._buffer_size += len(chunk)
        if was_empty:
            self._reactor.add_writer(self._fd, self._on_writable)
        self._check_high()

    def _check_high(self) -> None:
        if self._buffer_size > self._high:
            self._pause_protocol()

    def _flush(self) -> None:
        """Send the buffer; a chunk with descriptors goes alone, in its own sendmsg."""
        buf = self._buffer
        head = buf[0]
        try:
            if isinstance(head, _FdChunk):
                n = self._sock.sendmsg([head], [_rights(head.fds)])
            else:
                chunks: list[bytes | memoryview] = []
                for chunk in buf:
                    if isinstance(chunk, _FdChunk) or len(chunks) == _IOV_MAX:
                        break
                    chunks.append(chunk)
                n = self._sock.sendmsg(chunks)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            self._fatal_error(exc)
            return
        self._buffer_size -= n
        while n:
            chunk = buf[0]
            size = len(chunk)
            if isinstance(chunk, _FdChunk) and n:
                _close_fds(chunk.fds)  # sent: the peer holds its own copies now
                chunk.fds = []
            if size <= n:
                buf.popleft()
                n -= size
            else:
                buf[0] = memoryview(chunk)[n:]
                break

    def _force_close(self, exc: BaseException | None) -> None:
        for chunk in self._buffer:
            if isinstance(chunk, _FdChunk):
                _close_fds(chunk.fds)
                chunk.fds = []
        super()._force_close(exc)


def _rights(fds: Sequence[int]) -> tuple[int, int, bytes]:
    return (socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())


def _dup_all(fds: Sequence[int]) -> list[int]:
    dups: list[int] = []
    try:
        for fd in fds:
            dups.append(os.dup(fd))
    except OSError:
        _close_fds(dups)
        raise
    return dups


_FD_SIZE = array.array("i").itemsize
