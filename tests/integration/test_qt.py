"""QtReactor: Plait inside Qt's event loop (PySide6, offscreen), and the GUI stays live.

The test sets ``QT_QPA_PLATFORM=offscreen`` before Qt starts, so no display is
needed. One ``QApplication`` serves the whole module (Qt allows one per process);
each test makes its own reactor on it. The transport conformance suite runs on
``QtReactor`` too (TCP, Unix, TLS), through the same ``ReactorPairBuilder`` as the other
reactors.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from plait.cluster import interfaces
from plait.cluster.defer import Deferred, ensure_deferred, gather
from plait.cluster.protocol import Protocol
from plait.cluster.reactor import QtReactor, ReactorNotRunning
from plait.cluster.tls import client_options, server_options
from tests.conformance.suite import PairBuilder, ReactorPairBuilder, TransportConformance
from tests.tls_certs import Certs, make_certs

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
try:
    from PySide6 import QtCore, QtWidgets
except ImportError as exc:  # e.g. libEGL/libGL missing: see .ci/system-deps
    pytest.skip(f"PySide6 cannot be imported: {exc}", allow_module_level=True)


@pytest.fixture(scope="module")
def app() -> Any:
    existing = QtWidgets.QApplication.instance()
    return existing if existing is not None else QtWidgets.QApplication([])


@pytest.fixture
def reactor(app: Any) -> Iterator[QtReactor]:
    r = QtReactor(app)
    yield r
    r.close()


def run_until_stopped(reactor: QtReactor, limit: float = 5.0) -> None:
    timed_out: list[bool] = []

    def give_up() -> None:
        timed_out.append(True)
        reactor.stop()

    guard = reactor.call_later(limit, give_up)
    reactor.run(install_signal_handlers=False)
    assert not timed_out, f"still running after {limit} s"
    if guard.active():
        guard.cancel()


# --------------------------------------------------------- the GUI stays live


class Echo(Protocol):
    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class Client(Protocol):
    """Ping-pongs 64-byte messages, one in flight, until ``stop`` holds; counts in ``events``."""

    def __init__(self, stop: list[bool], events: list[str]) -> None:
        self.stop = stop
        self.events = events
        self.done: Deferred[int] = Deferred()
        self.echoed = 0

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        transport.write(b"x" * 64)

    def data_received(self, data: bytes) -> None:
        self.echoed += len(data)
        if self.echoed % 64:
            return
        self.events.append("echo")
        if not self.stop[0]:
            self.transport.write(b"x" * 64)
        else:
            self.transport.close()
            self.done.callback(self.echoed // 64)


def test_a_qt_timer_keeps_ticking_while_plait_serves_clients(reactor: QtReactor) -> None:
    # Twenty clients keep a round trip in flight each, so the loop is never idle
    # while they run; the clients stop once a 10 ms QTimer has ticked WANTED times
    # during the serving. A reactor that starved Qt's own sources would never get
    # there (the 20 s guard of run_until_stopped fails the test); one that starved
    # Plait's sockets would show ticks with no round trip between them. Counted,
    # not timed, so a slow shared machine cannot make it flaky.
    clients, wanted = 20, 15
    label = QtWidgets.QLabel("ticks: 0")
    label.show()
    events: list[str] = []  # "tick" and "echo", in the order the loop ran them
    stop = [False]
    serving = [False]
    ticks = [0]

    def tick() -> None:
        ticks[0] += 1
        label.setText(f"ticks: {ticks[0]}")
        if serving[0]:
            events.append("tick")
            if events.count("tick") >= wanted:
                stop[0] = True

    timer = QtCore.QTimer()
    timer.timeout.connect(tick)
    timer.start(10)
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")

    async def serve() -> list[int]:
        protocols = [Client(stop, events) for _ in range(clients)]
        for protocol in protocols:
            await reactor.connect_tcp("127.0.0.1", port.get_host()[1],
                                      functools.partial(lambda p: p, protocol), timeout=5)
        serving[0] = True
        round_trips = await gather([p.done for p in protocols])
        serving[0] = False
        await port.stop_listening()
        return round_trips

    result: list[Any] = []
    reactor.call_when_running(
        lambda: ensure_deferred(serve()).add_both(result.append).add_both(
            lambda _: reactor.stop()))
    try:
        run_until_stopped(reactor, limit=20)
    finally:
        timer.stop()
        label.close()
    (round_trips,) = result
    assert isinstance(round_trips, list), round_trips
    assert len(round_trips) == clients and min(round_trips) >= 1, round_trips
    assert events.count("tick") == wanted
    # Between ticks the loop served: most intervals between two ticks hold round
    # trips (a stall of the whole process may let two ticks meet now and then).
    intervals = "".join("t" if e == "tick" else "e" for e in events).split("t")[1:-1]
    served_between = sum(1 for chunk in intervals if chunk)
    assert served_between >= (wanted - 1) // 2, events
    assert events.count("echo") >= wanted
    assert label.text() == f"ticks: {ticks[0]}"


# ------------------------------------------------------------- the reactor


@pytest.mark.parametrize("iface", [
    interfaces.IReactorCore, interfaces.IReactorTime, interfaces.IReactorFDSet,
    interfaces.IReactorTCP, interfaces.IReactorThreads, interfaces.IReactorProcess,
    interfaces.IReactorUDP, interfaces.IReactorUNIX, interfaces.IReactorSSL,
])
def test_qt_reactor_provides_every_interface_of_the_native_reactor(
        reactor: QtReactor, iface: Any) -> None:
    assert verifyObject(iface, reactor)


def test_callbacks_timers_and_thread_calls_run_in_order(reactor: QtReactor) -> None:
    got: list[Any] = []
    reactor.call_soon(got.append, "soon")
    reactor.call_soon(lambda *, k: got.append(k), k="kw")
    reactor.call_soon(got.append, "cancelled").cancel()
    reactor.call_later(0.02, got.append, "later")
    moved = reactor.call_later(10, got.append, "moved")
    moved.reset(0.03)
    gone = reactor.call_later(0.01, got.append, "never")
    gone.cancel()
    assert reactor.get_delayed_calls() == sorted([moved, *[
        c for c in reactor.get_delayed_calls() if c is not moved]])

    def from_thread() -> None:
        got.append(("thread", reactor.in_reactor_thread()))
        reactor.call_later(0.01, reactor.stop)

    reactor.call_later(0.04, lambda: threading.Thread(
        target=reactor.call_from_thread, args=(from_thread,)).start())
    run_until_stopped(reactor)
    assert got == ["soon", "kw", "later", "moved", ("thread", True)]


def test_an_exception_in_a_callback_is_logged_and_the_loop_goes_on(
        reactor: QtReactor, caplog: pytest.LogCaptureFixture) -> None:
    got: list[str] = []

    def boom() -> None:
        raise ValueError("boom")

    reactor.call_soon(boom)
    reactor.call_later(0, boom)
    reactor.call_later(0.01, got.append, "after")
    reactor.call_later(0.02, reactor.stop)
    run_until_stopped(reactor)
    assert got == ["after"]
    assert sum("boom" in str(r.exc_info[1]) for r in caplog.records if r.exc_info) == 2


def test_readers_and_writers_use_socket_notifiers(reactor: QtReactor) -> None:
    import socket

    a, b = socket.socketpair()
    got: list[bytes] = []
    try:
        def on_read() -> None:
            got.append(a.recv(10))
            assert reactor.remove_reader(a)
            reactor.stop()

        def on_write(data: bytes) -> None:
            assert reactor.remove_writer(b)
            b.send(data)

        reactor.add_reader(a, on_read)
        reactor.add_writer(b, on_write, b"hi")
        assert reactor.get_readers() == [a.fileno()]
        assert reactor.get_writers() == [b.fileno()]
        run_until_stopped(reactor)
        assert got == [b"hi"]
        assert not reactor.remove_reader(a) and not reactor.remove_writer(b)
    finally:
        a.close()
        b.close()


@pytest.mark.parametrize("bad", ["3", None, -1])
def test_bad_arguments_are_refused(reactor: QtReactor, bad: Any) -> None:
    with pytest.raises((TypeError, ValueError)):
        reactor.add_reader(bad, print)
    with pytest.raises(TypeError):
        reactor.call_soon(bad)
    with pytest.raises((TypeError, ValueError)):
        reactor.call_later(-1 if bad is None else 1, bad)


def test_run_stop_close_states(reactor: QtReactor) -> None:
    with pytest.raises(ReactorNotRunning):
        reactor.stop()
    got: list[str] = []
    reactor.add_system_event_trigger("before", "startup", got.append, "startup")
    reactor.add_system_event_trigger("after", "shutdown", got.append, "shutdown")
    for _ in range(2):  # runs again after a stop
        reactor.call_when_running(reactor.stop)
        run_until_stopped(reactor)
    assert got == ["startup", "shutdown"] * 2
    reactor.close()
    with pytest.raises(RuntimeError):
        reactor.run()


def test_start_runs_the_reactor_in_a_loop_the_application_runs(
        reactor: QtReactor, app: Any) -> None:
    got: list[Any] = []
    reactor.call_when_running(got.append, "running")
    reactor.start()

    def later() -> None:
        got.append(reactor.running)
        reactor.stop()

    reactor.call_later(0.01, later)
    QtCore.QTimer.singleShot(100, app.quit)
    app.exec()
    assert got == ["running", True]
    assert not reactor.running


def test_a_signal_arrives_as_a_loop_callback(reactor: QtReactor) -> None:
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signals need the main thread")
    got: list[int] = []

    def on_usr1(signum: int) -> None:
        got.append(signum)
        reactor.stop()

    reactor.add_signal_handler(signal.SIGUSR1, on_usr1, signal.SIGUSR1)
    reactor.call_when_running(os.kill, os.getpid(), signal.SIGUSR1)
    try:
        run_until_stopped(reactor)
    finally:
        assert reactor.remove_signal_handler(signal.SIGUSR1)
    assert got == [signal.SIGUSR1]


def test_without_an_application_the_reactor_is_refused(app: Any) -> None:
    # The module's application exists, so check the branch through a stand-in.
    class NoApp:
        @staticmethod
        def instance() -> None:
            return None

    real = QtCore.QCoreApplication
    QtCore.QCoreApplication = NoApp  # type: ignore[misc,assignment]
    try:
        with pytest.raises(RuntimeError):
            QtReactor()
    finally:
        QtCore.QCoreApplication = real  # type: ignore[misc]


# ------------------------------------------------------------ conformance


class TestTCPTransportOnQt(TransportConformance):
    @pytest.fixture
    def builder(self, app: Any) -> Iterator[PairBuilder]:
        builder = ReactorPairBuilder(
            "tcp-qt",
            lambda: QtReactor(app),
            listen=lambda reactor, factory: reactor.listen_tcp(0, factory, interface="127.0.0.1"),
            connect=lambda reactor, port, factory: reactor.connect_tcp(
                "127.0.0.1", port.get_host()[1], factory, timeout=5),
        )
        yield builder
        builder.close()


class TestUnixTransportOnQt(TransportConformance):
    @pytest.fixture
    def builder(self, app: Any) -> Iterator[PairBuilder]:
        # Not tmp_path: a socket path must fit in sun_path (108 bytes).
        directory = tempfile.mkdtemp(prefix="plait-conf-qt-")
        path = str(Path(directory) / "s.sock")
        builder = ReactorPairBuilder(
            "unix-qt",
            lambda: QtReactor(app),
            listen=lambda reactor, factory: reactor.listen_unix(path, factory),
            connect=lambda reactor, port, factory: reactor.connect_unix(path, factory, timeout=5),
            abort_resets_peer=False,
            carries_fds=True,
        )
        try:
            yield builder
        finally:
            builder.close()
            shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(Path(tmp_path_factory.mktemp("tls-qt-conformance")))


class TestTLSTransportOnQt(TransportConformance):
    @pytest.fixture
    def builder(self, app: Any, certs: Certs) -> Iterator[PairBuilder]:
        server = server_options(certs.server_cert, certs.server_key)
        client = client_options("localhost", ca_file=certs.ca)
        builder = ReactorPairBuilder(
            "tls-qt",
            lambda: QtReactor(app),
            listen=lambda reactor, factory: reactor.listen_ssl(
                0, factory, server, interface="127.0.0.1"),
            connect=lambda reactor, port, factory: reactor.connect_ssl(
                "127.0.0.1", port.get_host()[1], factory, client, timeout=5),
        )
        yield builder
        builder.close()
