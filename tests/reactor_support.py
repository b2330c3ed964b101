"""Helpers for tests that run the native reactor over real sockets (bounded waits)."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

from plait.cluster._defer import Deferred
from plait.cluster.protocol import Protocol
from plait.cluster.reactor import Reactor


def has_ipv6() -> bool:
    """Whether this host can bind a UDP socket on ::1 (IPv6 switched on)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def run_until(reactor: Reactor, limit: float = 5.0) -> None:
    """Run ``reactor`` until something stops it, failing the test after ``limit`` s."""
    timed_out = []

    def give_up() -> None:
        timed_out.append(True)
        reactor.stop()

    guard = reactor.call_later(limit, give_up)
    reactor.run(install_signal_handlers=False)
    assert not timed_out, f"the reactor was still running after {limit} s"
    if guard.active():
        guard.cancel()


def outcome(reactor: Reactor, d: Deferred[Any], limit: float = 5.0) -> Any:
    """Run until ``d`` fires; its result, or the exception it failed with."""
    got: list[Any] = []

    def done(result: Any) -> None:
        got.append(getattr(result, "value", result) if hasattr(result, "get_traceback")
                   else result)
        if reactor.running:
            reactor.stop()

    d.add_both(done)
    if not got:
        run_until(reactor, limit)
    return got[0]


def run_deferred(reactor: Any, main: Callable[[], Deferred[Any]], limit: float = 10.0) -> Any:
    """Run ``reactor`` until the Deferred that ``main()`` returns fires; its result.

    ``main`` is called once the reactor runs; a failure is raised here, and so is
    ``TimeoutError`` when nothing fired within ``limit`` seconds.
    """
    outcome: list[Any] = []

    def start() -> None:
        d = main()
        d.add_both(outcome.append)
        d.add_both(lambda _: reactor.stop())

    def give_up() -> None:
        outcome.append(TimeoutError(f"not done in {limit} s"))
        reactor.stop()

    reactor.call_when_running(start)
    guard = reactor.call_later(limit, give_up)
    reactor.run(install_signal_handlers=False)
    if guard.active():
        guard.cancel()
    result = outcome[0]
    if isinstance(result, BaseException):
        raise result
    if hasattr(result, "raise_exception"):
        result.raise_exception()
    return result


def closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port: int = s.getsockname()[1]
    s.close()
    return port


class Echo(Protocol):
    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class Recorder(Protocol):
    """Records every callback; optionally sends ``greeting`` on connect."""

    def __init__(self, greeting: bytes = b"", on_lost: Callable[[], object] | None = None):
        self.greeting = greeting
        self.on_lost = on_lost
        self.events: list[Any] = []
        self.data = b""

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self.events.append("made")
        if self.greeting:
            transport.write(self.greeting)

    def data_received(self, data: bytes) -> None:
        self.data += data

    def eof_received(self) -> bool | None:
        self.events.append("eof")
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        self.events.append(("lost", exc))
        if self.on_lost is not None:
            self.on_lost()
