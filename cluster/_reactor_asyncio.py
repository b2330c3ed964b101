"""``AsyncioReactor``: Plait's reactor interfaces on any asyncio event loop.

Theory of operation: a reactor is a loop plus methods that only use the loop
(``ReactorBase``). This class supplies the loop part by delegating to an asyncio
loop, the default one or uvloop's or any other that implements ``add_reader``:

- ``add_reader``/``add_writer``/``remove_*`` are the loop's own; so Plait's native
  TCP, Unix, UDP, TLS, pipe and process transports (``_stream``, ``_tcp``, ...) run
  unchanged on it, and asyncio's libraries (streams, aiohttp, ...) share the loop
  with them: a Plait protocol can ``await asyncio.open_connection(...)`` (through
  ``ensure_deferred``, or an ``asyncio`` Task) and an asyncio program can serve a
  Plait ``Protocol`` with ``loop.create_server`` (the callback names are the same).
- ``call_soon`` and ``call_from_thread`` are ``loop.call_soon`` and
  ``loop.call_soon_threadsafe`` (keyword arguments go through ``functools.partial``);
  they return the loop's ``Handle``.
- ``call_later`` returns Plait's ``DelayedCall`` (``cancel``, ``reset``, ``delay``,
  ``active``, ``get_time``), with ``seconds()`` being ``loop.time()``. Each active call
  holds one ``loop.call_at`` timer; cancelling it cancels the timer, and moving it
  (``reset``/``delay``) cancels the timer and schedules a new one. A call due at an
  infinite time holds no timer at all.
- ``run`` fires the ``startup`` triggers as the loop's first callback and runs
  ``loop.run_forever()``; ``stop`` fires ``shutdown`` (waiting for Deferreds that
  ``before`` triggers return) and then calls ``loop.stop()``. On a loop that some
  other code runs already (an ``asyncio.run`` program, a GUI's loop), ``start``
  fires ``startup`` without running the loop, and ``stop`` then leaves the loop
  running.
- Signals: ``add_signal_handler`` is the loop's, which already delivers a signal as
  an ordinary callback through ``signal.set_wakeup_fd``; the previous Python-level
  handler is put back on removal, as the native reactor does.
- Errors: an exception from a callback goes to the loop's exception handler
  (asyncio logs it on the ``asyncio`` logger) and the loop goes on.
- uvloop: its ``add_reader`` reports a socket error (``EPOLLERR``, as when an RST
  arrives) by calling the reader once and then dropping it for good. The native
  TCP transport reads once per event, so a reader that got the last bytes before
  the RST in that call would never hear of the reset. On uvloop, TCP connections
  therefore run on uvloop's own transport behind ``AsyncioStreamTransport``
  (``_reactor_asyncio_stream``, also much faster); a ``BufferedProtocol`` keeps the
  native transport as ``_UvloopStreamTransport``, which reads until ``EAGAIN`` (at
  most ``_UV_READS`` times per event) so that the error is seen in the same call.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import signal
import socket
import threading
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from plait.cluster._delayed_call import DelayedCall
from plait.cluster._fd_table import fileno
from plait.cluster._reactor_asyncio_stream import AsyncioStreamTransport
from plait.cluster._reactor_base import ReactorBase
from plait.cluster._stream import StreamTransport
from plait.cluster.interfaces import (
    IReactorCore,
    IReactorFDSet,
    IReactorProcess,
    IReactorSSL,
    IReactorTCP,
    IReactorThreads,
    IReactorTime,
    IReactorUDP,
    IReactorUNIX,
)

__all__ = ["AsyncioReactor"]

_log = logging.getLogger("plait.reactor")

#: Most ``recv`` calls per readable event on uvloop (``_UvloopStreamTransport``).
_UV_READS = 16


class _UvloopStreamTransport(StreamTransport):
    """The native TCP transport on uvloop, for ``BufferedProtocol``s: reads until
    ``EAGAIN`` (see the module docstring), into bytes or into the protocol's buffer."""

    def _on_readable(self) -> None:
        recv = self._recv
        size = self.max_read
        for _ in range(_UV_READS):
            try:
                data = recv(size)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fatal_error(exc)
                return
            if not data:
                self._on_eof()
                return
            try:
                self._data_received(data)
            except Exception as exc:
                _log.exception("data_received of %r failed; aborting its connection",
                               self._protocol)
                self._force_close(exc)
                return
            if not self._reading:  # paused, or closed, by data_received
                return

    def _on_readable_into(self) -> None:
        protocol = self._protocol
        recv_into = self._sock.recv_into
        for _ in range(_UV_READS):
            try:
                buf = protocol.get_buffer(-1)
                if not len(buf):
                    raise RuntimeError(f"get_buffer() of {protocol!r} returned an empty buffer")
            except Exception as exc:
                _log.exception("get_buffer of %r failed; aborting its connection", protocol)
                self._force_close(exc)
                return
            try:
                n = recv_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._fatal_error(exc)
                return
            if not n:
                self._on_eof()
                return
            try:
                protocol.buffer_updated(n)
            except Exception as exc:
                _log.exception("buffer_updated of %r failed; aborting its connection", protocol)
                self._force_close(exc)
                return
            if not self._reading:
                return


def _uvloop_tcp_transport(reactor: Any, sock: socket.socket, protocol: Any,
                          extra: dict[str, Any] | None = None) -> Any:
    """The transport of a TCP connection on uvloop: uvloop's own, behind Plait's API.

    A ``BufferedProtocol`` (``get_buffer``) keeps the native transport, which reads
    into its buffer.
    """
    if hasattr(protocol, "get_buffer"):
        return _UvloopStreamTransport(reactor, sock, protocol, extra)
    return AsyncioStreamTransport(reactor, sock, protocol, extra)


def _is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.split(".")[0] == "uvloop"


@implementer(IReactorCore, IReactorTime, IReactorFDSet, IReactorTCP, IReactorThreads,
             IReactorProcess, IReactorUDP, IReactorUNIX, IReactorSSL)
class AsyncioReactor(ReactorBase):
    """A reactor on an asyncio event loop (the default loop, uvloop, ...).

    Example:
        >>> reactor = AsyncioReactor()
        >>> _ = reactor.call_later(0.01, reactor.stop)
        >>> reactor.run()
        >>> reactor.close()

    Args:
        loop: The asyncio loop to use; it must implement ``add_reader`` and
            ``add_writer`` (selector loops and uvloop do). Default: a new loop
            from ``asyncio.new_event_loop()``, which ``close()`` closes; a loop you
            pass stays yours to close.

    Raises:
        TypeError: ``loop`` is not an asyncio event loop.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        if loop is not None and not isinstance(loop, asyncio.AbstractEventLoop):
            raise TypeError(f"loop must be an asyncio event loop, not {loop!r}")
        self._init_base()
        self._owns_loop = loop is None
        self._loop: asyncio.AbstractEventLoop = (
            asyncio.new_event_loop() if loop is None else loop)
        self._timers: dict[DelayedCall, asyncio.TimerHandle | None] = {}
        self._runs_loop = False
        self._previous_handlers: dict[int, Any] = {}
        self._readers: set[int] = set()
        self._writers: set[int] = set()
        if _is_uvloop(self._loop):
            self.stream_transports = {**type(self).stream_transports,
                                      socket.AF_INET: _uvloop_tcp_transport,
                                      socket.AF_INET6: _uvloop_tcp_transport}

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The asyncio loop under this reactor."""
        return self._loop

    # ------------------------------------------------------------------ running

    def run(self, install_signal_handlers: bool = True) -> None:
        """Run the loop (``loop.run_forever()``) until ``stop`` and its triggers finish.

        Args:
            install_signal_handlers: In the main thread, make SIGINT and SIGTERM stop
                the reactor cleanly (a second one stops the loop at once) unless
                handlers of their own were added with ``add_signal_handler``.

        Raises:
            RuntimeError: the reactor runs already or was closed, or some other
                code runs the loop already (use ``start``).
        """
        if self._loop.is_running():
            raise RuntimeError("the asyncio loop is running already: use start()")
        self._begin(install_signal_handlers)
        self._runs_loop = True
        try:
            self._loop.run_forever()
        finally:
            self._runs_loop = False
            self._end()

    def start(self, install_signal_handlers: bool = False) -> None:
        """Run the reactor on a loop that other code runs (or will run).

        The ``startup`` triggers and ``call_when_running`` calls run on the loop's
        next turn. ``stop`` fires ``shutdown`` and leaves the loop running.

        Raises:
            RuntimeError: the reactor runs already, or was closed.
        """
        self._begin(install_signal_handlers)

    def _exit(self) -> None:
        if self._runs_loop:
            self._loop.stop()
        else:
            self._end()

    def _leave_loop_now(self) -> None:
        if self._runs_loop:
            self._loop.stop()

    def _release(self) -> None:
        """Release the timers, signals and thread pool, and the loop if it made it."""
        for signum in list(self._previous_handlers):
            self.remove_signal_handler(signum)
        self._stop_thread_pool()
        for handle in self._timers.values():
            if handle is not None:
                handle.cancel()
        self._timers.clear()
        if self._owns_loop:
            self._loop.close()

    # -------------------------------------------------------------------- time

    def seconds(self) -> float:
        """The reactor's clock: the loop's ``time()``."""
        return self._loop.time()

    def call_later(self, delay: float, f: Callable[..., object], *args: Any,
                   **kwargs: Any) -> DelayedCall:
        """Run ``f(*args, **kwargs)`` in ``delay`` seconds.

        Returns:
            The ``DelayedCall`` (``cancel``, ``reset``, ``delay``, ``active``).

        Raises:
            ValueError: ``delay`` is negative or NaN.
            TypeError: ``f`` is not callable.
        """
        if not delay >= 0:  # also catches NaN
            raise ValueError(f"delay must be a number >= 0, not {delay!r}")
        if not callable(f):
            raise TypeError(f"{f!r} is not callable")
        call = DelayedCall(self._loop.time() + delay, f, args, kwargs, self)
        self._schedule(call)
        return call

    def _schedule(self, call: DelayedCall) -> None:
        if math.isfinite(call.time):
            self._timers[call] = self._loop.call_at(call.time, self._run_timer, call)
        else:
            self._timers[call] = None  # never due: no loop timer

    def _run_timer(self, call: DelayedCall) -> None:
        del self._timers[call]
        call.run()

    def _call_cancelled(self, call: DelayedCall) -> None:
        handle = self._timers.pop(call, None)
        if handle is not None:
            handle.cancel()

    def _call_moved(self, call: DelayedCall) -> None:
        handle = self._timers.pop(call, None)
        if handle is not None:
            handle.cancel()
        if math.isnan(call.time) or call.time == -math.inf:
            call.time = 0.0
        self._schedule(call)

    def get_delayed_calls(self) -> list[DelayedCall]:
        """Every scheduled call that is still active, soonest first."""
        return sorted(self._timers)

    # --------------------------------------------------------------- callbacks

    def call_soon(self, f: Callable[..., object], *args: Any, **kwargs: Any) -> asyncio.Handle:
        """Run ``f(*args, **kwargs)`` on the loop's next turn (FIFO).

        Not thread-safe: from another thread use ``call_from_thread``.

        Returns:
            The loop's ``Handle``; its ``cancel()`` stops the call.
        """
        if not callable(f):
            raise TypeError(f"{f!r} is not callable")
        if kwargs:
            return self._loop.call_soon(functools.partial(f, *args, **kwargs))
        return self._loop.call_soon(f, *args)

    def call_from_thread(self, f: Callable[..., object], *args: Any, **kwargs: Any) -> None:
        """Thread-safe: run ``f(*args, **kwargs)`` in the loop's thread soon."""
        if not callable(f):
            raise TypeError(f"{f!r} is not callable")
        if kwargs:
            f = functools.partial(f, *args, **kwargs)
            args = ()
        try:
            self._loop.call_soon_threadsafe(f, *args)
        except RuntimeError as exc:  # the loop is closed
            _log.debug("could not wake the reactor: %s", exc)

    # ------------------------------------------------------------------ fd set

    def add_reader(self, fd: Any, f: Callable[..., object], *args: Any) -> None:
        """Call ``f(*args)`` whenever ``fd`` (int or object with ``fileno()``) is readable."""
        n = fileno(fd)
        self._loop.add_reader(fd, f, *args)
        self._readers.add(n)

    def add_writer(self, fd: Any, f: Callable[..., object], *args: Any) -> None:
        """Call ``f(*args)`` whenever ``fd`` is writable."""
        n = fileno(fd)
        self._loop.add_writer(fd, f, *args)
        self._writers.add(n)

    def remove_reader(self, fd: Any) -> bool:
        """Stop watching ``fd`` for reading; True if it was watched.

        (The reactor keeps its own set of watched fds: uvloop's ``remove_reader``
        returns None.)
        """
        n = fileno(fd)
        self._loop.remove_reader(fd)
        if n in self._readers:
            self._readers.remove(n)
            return True
        return False

    def remove_writer(self, fd: Any) -> bool:
        """Stop watching ``fd`` for writing; True if it was watched."""
        n = fileno(fd)
        self._loop.remove_writer(fd)
        if n in self._writers:
            self._writers.remove(n)
            return True
        return False

    def get_readers(self) -> list[int]:
        """The fds watched for reading through this reactor."""
        return sorted(self._readers)

    def get_writers(self) -> list[int]:
        """The fds watched for writing through this reactor."""
        return sorted(self._writers)

    # ---------------------------------------------------------------- signals

    def add_signal_handler(self, signum: int, f: Callable[..., object], *args: Any) -> None:
        """Call ``f(*args)`` in the loop when signal ``signum`` arrives.

        Replaces the reactor's default SIGINT/SIGTERM behaviour for that signal.

        Raises:
            ValueError: invalid or uncatchable signal, or not the main thread.
            TypeError: ``f`` is not callable, or ``signum`` is not an int.
        """
        if not callable(f):
            raise TypeError(f"signal callback must be callable, not {f!r}")
        if not isinstance(signum, int) or isinstance(signum, bool):
            raise TypeError(f"signal number must be an int, not {signum!r}")
        if signum not in signal.valid_signals():
            raise ValueError(f"invalid signal number {signum}")
        if threading.current_thread() is not threading.main_thread():
            raise ValueError("signal handlers can only be added from the main thread")
        if signum in self._default_signals:
            self._default_signals.remove(signum)
        previous = signal.getsignal(signum)
        try:
            self._loop.add_signal_handler(signum, f, *args)
        except (RuntimeError, OSError) as exc:  # SIGKILL, SIGSTOP
            raise ValueError(f"signal {signum} cannot be caught: {exc}") from exc
        self._previous_handlers.setdefault(signum, previous)

    def _has_signal_handler(self, signum: int) -> bool:
        return signum in self._previous_handlers

    def remove_signal_handler(self, signum: int) -> bool:
        """Stop handling ``signum``; its previous handler is restored.

        Returns:
            True if a handler was registered.
        """
        if signum not in self._previous_handlers:
            return False
        previous = self._previous_handlers.pop(signum)
        if signum in self._default_signals:
            self._default_signals.remove(signum)
        try:
            self._loop.remove_signal_handler(signum)
        except RuntimeError as exc:  # the loop is closed
            _log.debug("remove_signal_handler(%d): %s", signum, exc)
        try:
            signal.signal(signum, signal.SIG_DFL if previous is None else previous)
        except (OSError, RuntimeError, ValueError) as exc:
            _log.warning("could not restore the handler of signal %d: %s", signum, exc)
        return True

    def __repr__(self) -> str:
        state = "running" if self.running else "closed" if self._closed else "idle"
        return f"<AsyncioReactor {state} loop={type(self._loop).__name__}>"
