"""TLS over any stream transport, with pyOpenSSL memory BIOs.

Theory of operation
-------------------
``TLSTransport`` sits between two layers, as Twisted's ``TLSMemoryBIOProtocol``
does: it is the *protocol* of the lower transport (TCP, Unix, memory) and the
*transport* of the application protocol. OpenSSL never touches a socket: received
ciphertext goes into the connection's read BIO (``bio_write``), OpenSSL's output is
taken from its write BIO (``bio_read``) and written to the lower transport.

- Handshake: the client speaks first (``connection_made`` of the lower layer). A
  timer of ``options.handshake_timeout`` seconds aborts a handshake that stalls.
  Once it completes, the application protocol gets ``connection_made`` (for
  ``listen_ssl``/``connect_ssl``; not for ``start_tls``, which, as asyncio's
  ``loop.start_tls``, hands the new transport to the caller instead) and
  ``handshake`` (a Deferred) fires. A failed handshake never reaches the
  application protocol of a new connection; it is logged on ``plait.tls`` at INFO
  with its reason (a peer's mistake is not our warning), the alert OpenSSL wrote is
  sent, and the connection is closed.
- Reading: each ``data_received`` does one ``bio_write`` of everything received,
  then ``recv`` in a loop until OpenSSL wants more bytes, delivering each chunk.
  ``pause_reading`` stops the loop (records stay inside OpenSSL) and pauses the
  lower transport; ``resume_reading`` drains what was left on the next turn.
- Writing: a write made while this transport is delivering (the common "answer in
  ``data_received``" case) is queued, and the queue is encrypted with one
  ``SSL_write`` and sent with one lower ``write`` when the delivery loop ends (a
  write made before the handshake ends waits for it the same way); any other
  write is encrypted and sent at once. ``bio_read`` asks for more than the
  ciphertext can be, so one call empties the BIO.
- Flow control is the lower transport's: its water marks (``set_write_buffer_limits``
  is forwarded), its ``pause_writing``/``resume_writing`` relayed to the application,
  and producers registered on it directly (their writes come back through here).
- Closing: ``close()`` sends ``close_notify`` and closes the lower transport after
  its buffer; ``write_eof()`` sends ``close_notify`` and half-closes the lower
  transport, and reading goes on (TLS 1.3 allows it, and OpenSSL reads after its
  own ``close_notify`` in TLS 1.2 too). A received ``close_notify`` is
  ``eof_received``. An EOF without ``close_notify`` after the handshake is passed
  on as ``eof_received`` as well (many peers close that way); before it, it is a
  failed handshake. ``abort()`` aborts the lower transport.
- Errors after the handshake (a bad record, a refused renegotiation) close the
  connection with a ``TLSError`` that the application gets in ``connection_lost``.

The reactor's entry points that put this transport in place (``listen_ssl``,
``connect_ssl``, ``start_tls``) are in ``_tls_reactor.py``; the errors in
``_tls_errors.py``; contexts, verification and SNI in ``_tls_options.py``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from OpenSSL import SSL
from zope.interface import implementer

from plait.cluster._defer import Deferred
from plait.cluster._defer import TimeoutError as DeferTimeoutError
from plait.cluster._tls_errors import CertificateVerifyError, TLSError, describe
from plait.cluster._tls_options import TLSOptions, verify_message
from plait.cluster.interfaces import IProtocol, ITransport

__all__ = [
    "CertificateVerifyError",
    "TLSError",
    "TLSTransport",
]

_log = logging.getLogger("plait.tls")

_WantRead = SSL.WantReadError
_ZeroReturn = SSL.ZeroReturnError
_SSLError = SSL.Error
#: Largest plaintext piece asked of ``SSL_read`` (four full records).
_RECV_SIZE = 65536


#: Bytes a record adds to its plaintext, by (version, AEAD): header 5, tag 16, plus
#: the inner content type (TLS 1.3) or the explicit nonce of AES-GCM (TLS 1.2).
_OVERHEADS = {("TLSv1.3", "GCM"): 22, ("TLSv1.3", "CHACHA20"): 22,
              ("TLSv1.2", "GCM"): 29, ("TLSv1.2", "CHACHA20"): 21}


def _record_overhead(ssl: SSL.Connection) -> int:
    """The exact per-record overhead of the session's cipher, or 0 if not known."""
    name = ssl.get_cipher_name() or ""
    if "CCM" in name:  # CCM_8 has a shorter tag; never negotiated by our defaults
        return 0
    version = ssl.get_protocol_version_name()
    for (v, aead), overhead in _OVERHEADS.items():
        if v == version and aead in name:
            return overhead
    return 0


@implementer(ITransport, IProtocol)
class TLSTransport:
    """The protocol of a lower stream transport and the transport of an application.

    Args:
        clock: Schedules the handshake timeout and deferred reads (the reactor).
        options: ``server_options(...)`` or ``client_options(...)``.
        protocol: The application protocol.
        notify_connection_made: Call ``protocol.connection_made(self)`` after the
            handshake (False for ``start_tls``).

    Attributes:
        handshake: Fires with this transport once the handshake is done; errbacks
            with ``TLSError``/``CertificateVerifyError``, ``TimeoutError``, or the
            lower connection's error.
    """

    def __init__(self, clock: Any, options: TLSOptions, protocol: Any, *,
                 notify_connection_made: bool = True) -> None:
        self._clock = clock
        self._options = options
        self._protocol = protocol
        self._data_received: Callable[[bytes], object] = protocol.data_received
        self._notify = notify_connection_made
        self._ssl = options.new_connection(self)
        self._send = self._ssl.send
        self._bio_read = self._ssl.bio_read
        self._lower: Any = None
        self.handshake: Deferred[TLSTransport] = Deferred()
        self._handshake_done = False
        self._timer: Any = None
        self._verify_hostname = options.hostname if options.verify else None
        self._verify_error: tuple[int, int] | None = None
        self._failure: BaseException | None = None  # reported to connection_lost
        self._delivering = False
        self._queued: list[bytes] = []
        self._read_paused = False
        self._closing = False
        self._eof_written = False
        self._eof_received = False
        self._lost = False
        self._producer: Any = None
        self._drain_scheduled = False
        self._drained = False  # OpenSSL holds no received byte (BIO and record buffer)
        self._overhead = 0  # bytes a record adds to its plaintext; 0: unknown

    def __repr__(self) -> str:
        state = "handshaking" if not self._handshake_done else (
            "closed" if self._lost else "closing" if self._closing else "open")
        return f"<TLSTransport {state} over {self._lower!r}>"

    # ------------------------------------------------ lower transport callbacks

    def connection_made(self, transport: Any) -> None:
        """The lower connection is up: start the handshake (the client speaks first)."""
        self._lower = transport
        self._timer = self._clock.call_later(self._options.handshake_timeout,
                                             self._handshake_timed_out)
        if not self._options.server_side:
            self._advance_handshake()

    def data_received(self, data: bytes) -> None:
        """Ciphertext from the lower transport."""
        if self._lost:
            return
        self._ssl.bio_write(data)
        if self._closing:
            self._discard()
            return
        if not self._handshake_done:
            self._advance_handshake()
            if not self._handshake_done or self._lost:
                return
            if self._closing:  # closed from connection_made
                self._discard()
                return
        if not self._read_paused:
            self._read_records(len(data))

    def eof_received(self) -> bool | None:
        """The lower transport's peer half-closed (TCP FIN)."""
        if not self._handshake_done:
            self._fail_handshake(TLSError("the peer closed the connection during the handshake"))
            return None
        if self._closing:  # our close() waits for this
            return None
        if self._eof_received:  # close_notify came first: the FIN was expected
            return True
        _log.debug("%r: EOF without close_notify", self)
        return self._on_app_eof()

    def connection_lost(self, exc: BaseException | None) -> None:
        """The lower connection ended; tell the application (or fail the handshake)."""
        if self._lost:
            return
        self._lost = True
        self._cancel_timer()
        if not self._handshake_done:
            if not self.handshake.called:
                reason = exc or TLSError("the connection closed during the handshake")
                self._log_failure(reason)
                self.handshake.errback(reason)
            if not self._notify:  # start_tls: the protocol was connected before
                self._call_connection_lost(exc or self._failure)
            return
        self._producer = None
        self._call_connection_lost(self._failure if self._failure is not None else exc)

    def pause_writing(self) -> None:
        """The lower buffer is over its high-water mark: relay."""
        if self._handshake_done and not self._lost:
            try:
                self._protocol.pause_writing()
            except Exception:
                _log.exception("pause_writing of %r failed", self._protocol)

    def resume_writing(self) -> None:
        """The lower buffer drained: relay."""
        if self._handshake_done and not self._lost:
            try:
                self._protocol.resume_writing()
            except Exception:
                _log.exception("resume_writing of %r failed", self._protocol)

    # ------------------------------------------------------------- handshake

    def _advance_handshake(self) -> None:
        try:
            self._ssl.do_handshake()
        except _WantRead:
            self._flush()
            return
        except _SSLError as exc:
            self._flush()  # the alert that tells the peer why
            self._fail_handshake(self._handshake_error(exc))
            return
        self._flush()
        self._handshake_done = True
        self._overhead = _record_overhead(self._ssl)
        self._cancel_timer()
        if self._read_paused:  # start_tls on a transport the application had paused
            self._lower.pause_reading()
        if self._notify:
            try:
                self._protocol.connection_made(self)
            except Exception as exc:
                _log.exception("connection_made of %r failed; aborting", self._protocol)
                self._failure = exc
                if not self.handshake.called:
                    self.handshake.errback(exc)
                self._lower.abort()
                return
        if not self.handshake.called:
            self.handshake.callback(self)
        if self._queued and not self._delivering and not self._closing:
            self._send_queued()

    def _handshake_error(self, exc: BaseException) -> TLSError:
        if self._verify_error is not None:
            code, depth = self._verify_error
            side = "client" if self._options.server_side else "server"
            return CertificateVerifyError(
                f"the {side} certificate was refused: {verify_message(code)}"
                + (f" (for {self._options.hostname!r})" if code == 62 else "")
                + (f" at depth {depth}" if depth else ""), code, depth)
        return TLSError(f"TLS handshake failed: {describe(exc)}")

    def _verify_failed(self, code: int, depth: int) -> None:
        """Called by the verify callback (``_tls_options``) with the first failure."""
        if self._verify_error is None:
            self._verify_error = (code, depth)

    def _renegotiation_refused(self) -> None:
        """Called by the info callback when OpenSSL refuses a renegotiation."""
        if self._failure is None:
            self._failure = TLSError("the peer tried to renegotiate; renegotiation is refused")

    def _fail_handshake(self, exc: BaseException) -> None:
        self._failure = exc
        self._cancel_timer()
        self._log_failure(exc)
        if not self.handshake.called:
            self.handshake.errback(exc)
        if self._lower is not None:
            self._lower.close()

    def _log_failure(self, exc: BaseException) -> None:
        peer = self._lower.get_extra_info("peername") if self._lower is not None else None
        _log.info("TLS handshake with %s failed: %s", peer, exc)

    def _handshake_timed_out(self) -> None:
        self._timer = None
        if self._handshake_done or self._lost:
            return
        timeout = self._options.handshake_timeout
        exc = DeferTimeoutError(f"the TLS handshake did not finish within {timeout} s")
        self._failure = exc
        self._log_failure(exc)
        if not self.handshake.called:
            self.handshake.errback(exc)
        self._lower.abort()

    def _cancel_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    # --------------------------------------------------------------- reading

    def _read_records(self, received: int = 0) -> None:
        recv = self._ssl.recv
        deliver = self._data_received
        # The common case, one whole application record arriving into an empty
        # BIO, is recognised by its size: a record of n plaintext bytes is at
        # least n + overhead long, so if exactly that many bytes were received the
        # record used them all and the BIO is empty, with no need for the final
        # SSL_read that fails with WANT_READ (a costly exception). A padded
        # record, or one with a handshake message before it, is longer and takes
        # the general path.
        overhead = self._overhead
        single = received - overhead if overhead and self._drained and received else -1
        self._drained = False
        self._delivering = True
        try:
            while True:
                try:
                    chunk = recv(_RECV_SIZE)
                except _WantRead:
                    self._drained = True
                    break
                except _ZeroReturn:
                    self._delivering = False
                    self._on_close_notify()
                    break
                except _SSLError as exc:
                    self._delivering = False
                    self._on_record_error(exc)
                    break
                deliver(chunk)
                if len(chunk) == single:
                    self._drained = True
                    single = -2  # nothing else was processed: nothing to flush
                    break
                single = -1
                if self._read_paused or self._closing:
                    break
        finally:
            self._delivering = False
        if self._closing:
            if not self._lost and not self._eof_received and self._failure is None:
                self._discard()
            return
        if self._queued:
            self._send_queued()
        elif not self._lost and single != -2:
            self._flush()  # what OpenSSL wrote by itself (alerts, key updates)
        if self._failure is not None and not self._closing:
            self._on_record_error(None)

    def _discard(self) -> None:
        """Closing: drop what arrives until the peer's ``close_notify``."""
        recv = self._ssl.recv
        while True:
            try:
                recv(_RECV_SIZE)
            except _WantRead:
                return
            except _SSLError:  # ZeroReturnError included: the peer is done too
                self._eof_received = True
                self._lower.close()
                return

    def _on_close_notify(self) -> None:
        if self._eof_received:
            return
        self._flush()
        self._on_app_eof()

    def _on_app_eof(self) -> bool:
        self._eof_received = True
        keep_open = bool(self._protocol.eof_received())
        if not keep_open or self._eof_written:
            self.close()
            return False
        return True

    def _on_record_error(self, exc: BaseException | None) -> None:
        if self._failure is None:
            self._failure = TLSError(f"TLS error: {describe(exc)}" if exc else "TLS error")
        _log.info("TLS connection with %s closed: %s",
                  self._lower.get_extra_info("peername"), self._failure)
        self._flush()
        self._closing = True
        self._lower.close()

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until ``resume_reading``."""
        if self._closing or self._read_paused:
            return
        self._read_paused = True
        self._lower.pause_reading()

    def resume_reading(self) -> None:
        """Resume calling ``data_received``, first with what is decrypted already."""
        if not self._read_paused:
            return
        self._read_paused = False
        if not self._closing:
            self._lower.resume_reading()
            if not self._drain_scheduled:
                self._drain_scheduled = True
                self._clock.call_later(0, self._drain)

    def _drain(self) -> None:
        self._drain_scheduled = False
        if not self._read_paused and not self._closing and not self._lost:
            self._read_records()

    def is_reading(self) -> bool:
        """True unless reading is paused or the transport is closing."""
        return not self._read_paused and not self._closing

    # --------------------------------------------------------------- writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send ``data`` (dropped once closing or after ``write_eof``).

        Raises:
            TypeError: ``data`` is not bytes-like.
        """
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise TypeError(f"data must be bytes, bytearray or memoryview, "
                                f"not {type(data).__name__}")
            data = bytes(data)
        if self._closing or self._eof_written or self._lost or not data:
            return
        if self._delivering or not self._handshake_done:
            self._queued.append(data)  # sent when the delivery loop or handshake ends
            return
        self._encrypt(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Send several buffers as one.

        Raises:
            TypeError: an item is not bytes-like.
        """
        self.write(b"".join(list_of_data))

    def _send_queued(self) -> None:
        queued = self._queued
        data = queued[0] if len(queued) == 1 else b"".join(queued)
        queued.clear()
        if not self._lost:
            self._encrypt(data)

    def _encrypt(self, data: bytes) -> None:
        send = self._send
        total = len(data)
        try:
            sent = send(data)
            if sent < total:  # a partial write: rare with memory BIOs
                view = memoryview(data)
                while sent < total:
                    sent += send(view[sent:])
        except _SSLError as exc:
            self._on_record_error(exc)
            return
        # Ciphertext is at most ~30 bytes per 16 KiB record longer than the data.
        self._flush(total + (total >> 8) + 1024)

    def _flush(self, size: int = 65536) -> None:
        """Move everything OpenSSL wrote to the lower transport (one ``write``)."""
        bio_read = self._bio_read
        try:
            out = bio_read(size)
        except _WantRead:
            return
        if len(out) == size:
            more = [out]
            try:
                while True:
                    more.append(bio_read(size))
            except _WantRead:
                pass
            out = b"".join(more)
        self._lower.write(out)

    def can_write_eof(self) -> bool:
        """True: ``write_eof`` sends ``close_notify`` and half-closes the lower transport."""
        return True

    def write_eof(self) -> None:
        """Send ``close_notify`` and a lower EOF; the peer may still answer."""
        if self._closing or self._eof_written or self._lost:
            return
        self._eof_written = True
        self._shutdown_tls()
        if self._eof_received:
            self.close()
        else:
            self._lower.write_eof()

    def _shutdown_tls(self) -> None:
        if self._queued:
            self._send_queued()
        try:
            self._ssl.shutdown()
        except _SSLError as exc:
            _log.debug("%r: SSL_shutdown: %s", self, describe(exc))
        self._flush()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the lower transport's water marks (ciphertext bytes).

        Raises:
            ValueError: not ``high >= low >= 0``.
        """
        self._lower.set_write_buffer_limits(high, low)

    def get_write_buffer_size(self) -> int:
        """Bytes queued here and in the lower transport."""
        return sum(map(len, self._queued)) + int(self._lower.get_write_buffer_size())

    # ------------------------------------------------------------- producers

    def register_producer(self, producer: Any, streaming: bool) -> None:
        """Attach a producer; the lower transport paces it (its writes come back here).

        Raises:
            RuntimeError: a producer is registered already.
        """
        if self._producer is not None:
            raise RuntimeError(f"{self!r} has a producer already: {self._producer!r}")
        self._producer = producer
        self._lower.register_producer(producer, streaming)

    def unregister_producer(self) -> None:
        """Detach the producer."""
        self._producer = None
        self._lower.unregister_producer()

    # --------------------------------------------------------------- closing

    def is_closing(self) -> bool:
        """True once ``close``/``abort`` was called or the connection was lost."""
        return self._closing or self._lost

    def close(self) -> None:
        """Send what is queued and ``close_notify``; the lower transport closes after
        the peer's ``close_notify`` or EOF (or ``handshake_timeout`` seconds)."""
        if self._closing or self._lost:
            return
        self._closing = True
        if not self._eof_written:
            self._shutdown_tls()
        if self._eof_received or not self._handshake_done or not self._lower.can_write_eof():
            self._lower.close()
            return
        # Wait for the peer's answer, reading and dropping what comes first: closing
        # a socket with unread bytes (a late session ticket) makes the kernel send an
        # RST, and an RST destroys what the peer has not read yet.
        if not self._eof_written:
            self._lower.write_eof()
        self._eof_written = True
        self._lower.resume_reading()
        self._cancel_timer()
        self._timer = self._clock.call_later(self._options.handshake_timeout,
                                             self._lower.abort)

    def abort(self) -> None:
        """Drop everything and abort the lower transport (TCP peers get an RST)."""
        if self._lost:
            return
        self._closing = True
        self._queued.clear()
        self._lower.abort()

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        try:
            self._protocol.connection_lost(exc)
        except Exception:
            _log.exception("connection_lost of %r failed", self._protocol)

    # ------------------------------------------------------------------ misc

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """TLS facts, then the lower transport's (``peername``, ``sockname``, ...).

        ``ssl_object``: the pyOpenSSL ``Connection``; ``peercert``: the peer's
        ``cryptography.x509.Certificate`` or ``None``; ``alpn_protocol``: the
        negotiated ALPN protocol (``str``) or ``None``; ``tls_version``:
        ``"TLSv1.3"``...; ``cipher``: ``(name, version, secret_bits)`` as
        ``ssl.SSLSocket.cipher()``; ``server_hostname``: the SNI name asked for.
        """
        ssl = self._ssl
        if name == "ssl_object":
            return ssl
        if name == "peercert":
            cert = ssl.get_peer_certificate()
            return default if cert is None else cert.to_cryptography()
        if name == "alpn_protocol":
            proto = ssl.get_alpn_proto_negotiated()
            return proto.decode("ascii", "replace") if proto else default
        if name == "tls_version":
            return ssl.get_protocol_version_name() if self._handshake_done else default
        if name == "cipher":
            cipher = ssl.get_cipher_name()
            if cipher is None:
                return default
            return (cipher, ssl.get_cipher_version(), ssl.get_cipher_bits())
        if name == "server_hostname":
            sni = ssl.get_servername()
            return sni.decode("ascii", "replace") if sni else default
        if self._lower is None:
            return default
        return self._lower.get_extra_info(name, default)

    def get_protocol(self) -> Any:
        """The application protocol."""
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        """Deliver to ``protocol`` from now on."""
        self._protocol = protocol
        self._data_received = protocol.data_received
