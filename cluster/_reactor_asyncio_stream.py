"""Plait's stream transport over an asyncio transport: uvloop's C TCP transport.

Why: on uvloop, the native transport (``_stream``) works through ``add_reader``, so
each readable event costs a Python callback, a ``recv`` call and, for uvloop's error
reporting (see ``_reactor_asyncio``), a second ``recv``; uvloop's own transport reads
and writes in C. ``AsyncioReactor`` on uvloop therefore builds TCP connections with
this adapter: Plait still accepts and connects (``_tcp``: its ports, Happy Eyeballs,
timeouts, ``adopt_stream_port``), then hands the connected socket to
``loop.connect_accepted_socket`` and puts this thin ``ITransport`` between the
asyncio transport and the Plait protocol.

Theory of operation:

- The hot path has one small Python frame per direction. The asyncio transport
  calls the bridge's ``data_received``, an instance attribute of the bridge (uvloop
  caches it, so every change of it is followed by ``set_protocol(bridge)``): a
  closure, ``_guarded``, around the Plait protocol's bound method that catches what
  it raises, so that the connection is aborted with an RST as on the native
  transport (uvloop itself would close it cleanly, with a FIN); ``write`` is this
  class's method, which checks two flags and the type and calls the C ``write``.
- Plait's contract calls ``connection_made`` synchronously when the socket is
  handed over (``_start``), and ``connect_tcp``'s Deferred fires right after. The
  asyncio transport exists at once (the ``connect_accepted_socket`` coroutine is
  stepped by hand up to its ``await``) but tells its protocol a loop turn later;
  until then (``_attach``) writes, ``write_eof``, ``close``, ``abort``, read pausing
  and water marks are recorded here and applied in order on attach.
- uvloop starts reading right after its ``connection_made``, whatever was asked
  inside it; a connection paused before attach (or paused while uvloop could still
  deliver) holds what arrives and delivers it on ``resume_reading``.
- Flow control: asyncio's ``pause_writing``/``resume_writing`` become the Plait
  protocol's and a push producer's. A pull producer is asked for more whenever the
  buffer is empty; to hear when it drains, the asyncio water marks are set to 0
  while it waits (asyncio then calls ``resume_writing`` at empty) and put back after.
- Ending: ``close``/``abort``/``write_eof`` map to asyncio's; ``abort`` sets
  ``SO_LINGER`` 0 first so that the peer gets an RST, as the native transport does.
  Writes after ``close`` or ``write_eof`` are dropped, not raised. A protocol whose
  ``data_received`` raises has its connection aborted (an RST), the exception
  logged on ``plait.reactor`` and given to ``connection_lost``.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from zope.interface import implementer

from plait.cluster._transport_helpers import WriteFlowControl
from plait.cluster.interfaces import ITransport

__all__ = ["AsyncioStreamTransport"]

_log = logging.getLogger("plait.reactor")
_LINGER_RST = struct.pack("ii", 1, 0)


def _guarded(owner: AsyncioStreamTransport, protocol: Any) -> Callable[[bytes], None]:
    """``protocol.data_received``, aborting ``owner``'s connection when it raises."""
    receive = protocol.data_received

    def data_received(data: bytes) -> None:
        try:
            receive(data)
        except Exception as exc:
            owner._protocol_failed(protocol, exc)

    return data_received


class _Bridge(asyncio.Protocol):
    """The asyncio protocol of the connection; forwards to its ``AsyncioStreamTransport``."""

    def __init__(self, owner: AsyncioStreamTransport) -> None:
        self._owner = owner
        self.data_received = _guarded(owner, owner._protocol)  # type: ignore[method-assign,assignment]

    def connection_made(self, transport: Any) -> None:
        self._owner._attach(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self._owner._on_lost(exc)

    def eof_received(self) -> bool:
        return self._owner._on_eof()

    def pause_writing(self) -> None:
        self._owner._on_pause_writing()

    def resume_writing(self) -> None:
        self._owner._on_resume_writing()


def _step(coro: Coroutine[Any, Any, Any], owner: AsyncioStreamTransport) -> None:
    """Drive ``coro`` by hand: one step now, the next when the future it awaits is done."""
    try:
        future = coro.send(None)
    except StopIteration:
        return
    except Exception as exc:
        owner._attach_failed(exc)
        return
    future.add_done_callback(lambda _: _step(coro, owner))


@implementer(ITransport)
class AsyncioStreamTransport(WriteFlowControl):
    """A Plait transport over the asyncio transport that the loop builds for ``sock``.

    Args:
        reactor: The ``AsyncioReactor`` (its ``loop`` and ``call_soon``).
        sock: A connected stream socket; the loop takes it over.
        protocol: The Plait protocol.
        extra: Extra ``get_extra_info`` entries.
    """

    def __init__(self, reactor: Any, sock: socket.socket, protocol: Any,
                 extra: dict[str, Any] | None = None) -> None:
        self._reactor = reactor
        self._loop: asyncio.AbstractEventLoop = reactor.loop
        self._sock = sock
        self._protocol = protocol
        self._t: Any = None
        self._pending: list[bytes] = []
        self._closing = False
        self._aborting = False
        self._eof_written = False
        self._eof_received = False
        self._lost = False
        self._lost_exc: BaseException | None = None
        self._read_paused = False
        self._held: list[bytes] | None = None
        self._high, self._low = 64 * 1024, 16 * 1024
        self._protocol_paused = False
        self._producer: Any = None
        self._streaming = False
        self._producer_paused = False
        self._draining = False
        self._dropped_writes = 0
        self._extra: dict[str, Any] = {"socket": sock}
        for name, get in (("sockname", sock.getsockname), ("peername", sock.getpeername)):
            try:
                self._extra[name] = get()
            except OSError:
                self._extra[name] = None
        if extra:
            self._extra.update(extra)
        self._bridge = _Bridge(self)

    def __repr__(self) -> str:
        state = "closed" if self._lost else "closing" if self._closing else "open"
        return f"<AsyncioStreamTransport {state} peer={self._extra['peername']}>"

    # ----------------------------------------------------------------- starting

    def _start(self) -> None:
        """``connection_made`` now, then hand the socket to the loop (by the creator)."""
        try:
            self._protocol.connection_made(self)
        except Exception as exc:
            _log.exception("connection_made of %r failed; aborting", self._protocol)
            self._lost_exc = exc
            self.abort()
        _step(self._loop.connect_accepted_socket(lambda: self._bridge, self._sock), self)

    def _attach_failed(self, exc: Exception) -> None:
        _log.error("the loop did not take the connection %r", self, exc_info=exc)
        if self._t is None and not self._lost:
            self._sock.close()
            self._on_lost(exc)

    def _attach(self, t: Any) -> None:
        self._t = t
        t.set_protocol(self._bridge)  # uvloop cached data_received before set_protocol/pause
        if self._high != 64 * 1024 or self._low != 16 * 1024:
            t.set_write_buffer_limits(self._high, self._low)
        if self._read_paused:
            self._hold()
        pending, self._pending = self._pending, []
        if pending and not self._aborting:
            t.writelines(pending)
        if self._aborting:
            self._abort_now()
        elif self._closing:
            t.close()
        elif self._eof_written:
            t.write_eof()
        if self._producer is not None and not self._streaming:
            self._reactor.call_soon(self._pull)

    # ------------------------------------------------------------------ reading

    def _hold(self) -> None:
        """Keep what uvloop still delivers until ``resume_reading``."""
        if self._held is None:
            held: list[bytes] = []
            self._held = held
            self._bridge.data_received = held.append  # type: ignore[method-assign,assignment]
            self._rebind()
        if self._t is not None:
            self._t.pause_reading()

    def _rebind(self) -> None:
        """Make the asyncio transport read the bridge's ``data_received`` again (it caches it)."""
        if self._t is not None:
            self._t.set_protocol(self._bridge)

    def pause_reading(self) -> None:
        """Stop calling ``data_received`` until ``resume_reading``."""
        if self._closing or self._read_paused:
            return
        self._read_paused = True
        self._hold()

    def resume_reading(self) -> None:
        """Resume calling ``data_received``."""
        if not self._read_paused:
            return
        self._read_paused = False
        held, self._held = self._held, None
        self._bridge.data_received = _guarded(self, self._protocol)  # type: ignore[method-assign,assignment]
        self._rebind()
        if held:
            self._reactor.call_soon(self._deliver_held, held)
        if self._t is not None and not self._closing:
            self._t.resume_reading()

    def _deliver_held(self, held: list[bytes]) -> None:
        for data in held:
            if self._lost or self._read_paused:
                break
            try:
                self._protocol.data_received(data)
            except Exception as exc:
                self._protocol_failed(self._protocol, exc)
                return

    def _protocol_failed(self, protocol: Any, exc: Exception) -> None:
        """``protocol.data_received`` raised ``exc``: log it and abort (an RST)."""
        _log.error("data_received of %r failed; aborting its connection", protocol,
                   exc_info=exc)
        if self._lost_exc is None:
            self._lost_exc = exc
        self.abort()

    def is_reading(self) -> bool:
        """True unless reading is paused or the transport is closing."""
        return not self._read_paused and not self._closing

    def _on_eof(self) -> bool:
        self._eof_received = True
        try:
            keep_open = self._protocol.eof_received()
        except Exception as exc:
            _log.exception("eof_received of %r failed; aborting", self._protocol)
            self._lost_exc = exc
            self.abort()
            return True
        if not keep_open or self._eof_written:
            self.close()
        return True

    # ------------------------------------------------------------------ writing

    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Send ``data``; dropped once the transport is closing or after ``write_eof``.

        Raises:
            TypeError: ``data`` is not bytes-like.
        """
        if self._closing or self._eof_written:
            self._drop_write()
            return
        if type(data) is not bytes:
            if not isinstance(data, bytearray | memoryview):
                raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
            data = bytes(data)  # the caller may mutate a bytearray after we return
        t = self._t
        if t is not None:
            t.write(data)
        else:
            self._pending.append(data)

    def writelines(self, list_of_data: Iterable[bytes | bytearray | memoryview]) -> None:
        """Send several buffers in order."""
        for data in list_of_data:
            self.write(data)

    def _drop_write(self) -> None:
        self._dropped_writes += 1
        if self._dropped_writes == 1:
            _log.debug("%r: write after close or write_eof dropped", self)

    def can_write_eof(self) -> bool:
        """True: TCP can half-close."""
        return True

    def write_eof(self) -> None:
        """Half-close once the buffered bytes are out; reading goes on."""
        if self._closing or self._eof_written:
            return
        self._eof_written = True
        if self._t is not None:
            self._t.write_eof()
        if self._eof_received:
            self.close()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the water marks (asyncio's defaults: 64 KiB high, a quarter of it low).

        Raises:
            ValueError: not ``high >= low >= 0``.
        """
        if high is None:
            high = 64 * 1024 if low is None else 4 * low
        if low is None:
            low = high // 4
        if not high >= low >= 0:
            raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
        self._high, self._low = high, low
        if self._t is not None and not self._draining:
            self._t.set_write_buffer_limits(high, low)

    def get_write_buffer_limits(self) -> tuple[int, int]:
        """``(low, high)``, as asyncio returns them."""
        return (self._low, self._high)

    def get_write_buffer_size(self) -> int:
        """Bytes buffered and not yet sent."""
        if self._t is None:
            return sum(map(len, self._pending))
        return int(self._t.get_write_buffer_size())

    def _on_pause_writing(self) -> None:
        if self._draining and self.get_write_buffer_size() <= self._high:
            return  # only the drain watch (water marks at 0)
        self._pause_protocol()

    def _on_resume_writing(self) -> None:
        if self._draining:
            self._draining = False
            if self._t is not None:
                self._t.set_write_buffer_limits(self._high, self._low)
            self._reactor.call_soon(self._pull)
        if self._protocol_paused:
            self._resume_protocol()

    # ---------------------------------------------------------------- producers

    def _may_pull(self) -> bool:
        return self._t is not None

    def _pull(self) -> None:
        producer = self._producer
        if producer is None or self._streaming or self._closing or self._t is None:
            return
        if self.get_write_buffer_size():
            self._watch_drain()
            return
        try:
            producer.resume_producing()
        except Exception as exc:
            _log.exception("resume_producing of %r failed; aborting", producer)
            self._lost_exc = exc
            self.abort()
            return
        if self._producer is producer and not self._closing:
            if self.get_write_buffer_size():
                self._watch_drain()
            else:
                self._reactor.call_soon(self._pull)

    def _watch_drain(self) -> None:
        """Water marks at 0: asyncio calls ``resume_writing`` when the buffer is empty."""
        if not self._draining:
            self._draining = True
            self._t.set_write_buffer_limits(0, 0)

    # ------------------------------------------------------------------ closing

    def is_closing(self) -> bool:
        """True once ``close``/``abort`` was called or the connection was lost."""
        return self._closing

    def close(self) -> None:
        """Stop reading; close once the buffer is sent; ``connection_lost(None)`` follows."""
        if self._closing:
            return
        self._closing = True
        if self._t is not None:
            self._t.close()

    def abort(self) -> None:
        """Close now, dropping the buffer; the peer gets an RST."""
        if self._lost or self._aborting:
            return
        self._closing = True
        self._aborting = True
        self._pending = []
        if self._t is not None:
            self._abort_now()

    def _abort_now(self) -> None:
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
        except OSError as exc:
            _log.debug("SO_LINGER on %r: %s", self, exc)
        self._t.abort()

    def _on_lost(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        self._lost = True
        self._closing = True
        if self._lost_exc is not None:
            exc = self._lost_exc
        try:
            self._protocol.connection_lost(exc)
        except Exception:
            _log.exception("connection_lost of %r failed", self._protocol)
        finally:
            self._stop_producer()

    # -------------------------------------------------------------------- misc

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``peername``, ``sockname``, ``socket`` (and what the creator added)."""
        return self._extra.get(name, default)

    def get_protocol(self) -> Any:
        """The protocol this transport delivers to."""
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        """Deliver to ``protocol`` from now on."""
        self._protocol = protocol
        if self._held is None:
            self._bridge.data_received = _guarded(self, protocol)  # type: ignore[method-assign,assignment]
            self._rebind()
