"""TCP on the native reactor over real loopback sockets (bounded waits)."""

from __future__ import annotations

import errno
import gc
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from plait.cluster._defer import CancelledError, Deferred
from plait.cluster._tcp import interleave_addresses
from plait.cluster.interfaces import IListeningPort, ITransport
from plait.cluster.protocol import Factory, Protocol
from plait.cluster.reactor import Port, Reactor


@pytest.fixture
def reactor() -> Iterator[Reactor]:
    r = Reactor()
    yield r
    r.close()


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


@pytest.fixture
def unresponsive() -> Iterator[int]:
    """A loopback port whose accept queue is full: a connect to it hangs."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    port = server.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=5)
    yield port
    filler.close()
    server.close()


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


# ------------------------------------------------------------------ basics


def test_an_echo_server_echoes_what_a_client_sends(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")

    class Client(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.data == b"hello":
                self.transport.close()

    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                  lambda: Client(b"hello", reactor.stop)))
    run_until(reactor)
    assert client.data == b"hello"
    assert client.events == ["made", ("lost", None)]


def test_ipv6_loopback_works_when_the_host_has_it(reactor: Reactor) -> None:
    try:
        port = reactor.listen_tcp(0, Echo, interface="::1")
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback: {exc}")
    client = outcome(reactor, reactor.connect_tcp("::1", port.port, Recorder))
    assert client.transport.get_extra_info("peername")[0] == "::1"
    client.transport.abort()


def test_transport_and_port_provide_their_interfaces(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    assert verifyObject(ITransport, client.transport)
    assert verifyObject(IListeningPort, port)
    client.transport.abort()


def test_extra_info_and_nodelay_on_both_ends(reactor: Reactor) -> None:
    servers: list[Recorder] = []

    def make() -> Recorder:
        servers.append(Recorder())
        return servers[-1]

    port = reactor.listen_tcp(0, make, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    reactor.call_later(0.02, reactor.stop)
    run_until(reactor)
    t = client.transport
    assert t.get_extra_info("peername") == ("127.0.0.1", port.port)
    assert t.get_extra_info("sockname") == servers[0].transport.get_extra_info("peername")
    assert t.get_extra_info("nonesuch", 7) == 7
    for proto in (client, servers[0]):
        sock = proto.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
    assert port.get_host() == ("127.0.0.1", port.port)
    t.abort()


def test_writelines_sends_every_buffer_in_order(reactor: Reactor) -> None:
    got: list[bytes] = []

    class Collect(Protocol):
        def data_received(self, data: bytes) -> None:
            got.append(data)
            if b"".join(got) == b"abcdef" * 1000:
                reactor.stop()

    port = reactor.listen_tcp(0, Collect, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    client.transport.writelines([b"abc", bytearray(b"def")] * 1000)
    run_until(reactor)
    assert b"".join(got) == b"abcdef" * 1000
    client.transport.abort()


@pytest.mark.parametrize("bad", ["text", 42, None, [b"x"]])
def test_write_rejects_what_is_not_bytes(reactor: Reactor, bad: Any) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    with pytest.raises(TypeError):
        client.transport.write(bad)
    with pytest.raises(TypeError):
        client.transport.writelines([b"ok", bad])
    client.transport.abort()


# ------------------------------------------------------------- faults


def test_connecting_to_a_closed_port_errbacks_with_connection_refused(
    reactor: Reactor,
) -> None:
    result = outcome(reactor, reactor.connect_tcp("127.0.0.1", closed_port(), Recorder))
    assert isinstance(result, ConnectionRefusedError)


def test_a_connect_that_hangs_times_out(reactor: Reactor, unresponsive: int) -> None:
    result = outcome(reactor, reactor.connect_tcp("127.0.0.1", unresponsive, Recorder,
                                                  timeout=0.05))
    assert isinstance(result, TimeoutError)
    assert reactor.get_writers() == []


def test_cancelling_a_connect_errbacks_with_cancelled_and_closes_the_socket(
    reactor: Reactor, unresponsive: int
) -> None:
    d = reactor.connect_tcp("127.0.0.1", unresponsive, Recorder)
    reactor.call_later(0.01, d.cancel)
    assert isinstance(outcome(reactor, d), CancelledError)
    assert reactor.get_writers() == [] and reactor.get_delayed_calls() == []


def test_a_peer_reset_mid_write_reaches_connection_lost(reactor: Reactor) -> None:
    servers: list[Recorder] = []

    class Flood(Recorder):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            servers.append(self)
            self.pump()

        def pump(self) -> None:
            if not self.transport.is_closing():
                self.transport.write(b"x" * 65536)
                reactor.call_later(0.001, self.pump)

    port = reactor.listen_tcp(0, lambda: Flood(on_lost=reactor.stop), interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    client.transport.pause_reading()  # let the server's buffer fill up
    reactor.call_later(0.05, client.transport.abort)  # RST
    run_until(reactor)
    lost = servers[0].events[-1]
    assert lost[0] == "lost"
    assert isinstance(lost[1], (ConnectionResetError, BrokenPipeError))


def test_abort_sends_a_reset_to_the_peer(reactor: Reactor) -> None:
    class Aborter(Protocol):
        def connection_made(self, transport: Any) -> None:
            transport.write(b"never sent, maybe")
            transport.abort()

    port = reactor.listen_tcp(0, Aborter, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                  lambda: Recorder(on_lost=reactor.stop)))
    if client.events[-1] == "made":
        run_until(reactor)
    lost = client.events[-1]
    assert lost[0] == "lost" and isinstance(lost[1], ConnectionResetError)


def test_an_exception_in_data_received_aborts_that_connection_only(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    class Fragile(Echo):
        def data_received(self, data: bytes) -> None:
            if data == b"boom":
                raise ValueError("protocol bug")
            super().data_received(data)

    port = reactor.listen_tcp(0, Fragile, interface="127.0.0.1")
    bad = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                               lambda: Recorder(on_lost=reactor.stop)))
    good = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    with caplog.at_level(logging.ERROR, logger="plait.reactor"):
        bad.transport.write(b"boom")
        run_until(reactor)
    assert bad.events[-1][0] == "lost"
    good.transport.write(b"still served")
    reactor.call_later(0.05, reactor.stop)
    run_until(reactor)
    assert good.data == b"still served"
    assert "protocol bug" in caplog.text
    good.transport.abort()


def test_a_write_to_a_closed_transport_is_dropped_without_raising(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                  lambda: Recorder(on_lost=reactor.stop)))
    client.transport.close()
    client.transport.write(b"dropped")
    client.transport.writelines([b"dropped"])
    run_until(reactor)
    client.transport.write(b"dropped after connection_lost")
    assert client.events == ["made", ("lost", None)]
    assert client.transport.get_write_buffer_size() == 0


def test_a_factory_returning_none_refuses_the_connection(reactor: Reactor) -> None:
    class Refuser(Factory):
        def build_protocol(self, addr: object) -> Any:
            return None

    port = reactor.listen_tcp(0, Refuser(), interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                  lambda: Recorder(on_lost=reactor.stop)))
    run_until(reactor)
    assert client.events[-1][0] == "lost"


def test_a_failing_factory_refuses_that_connection_and_is_logged(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    calls = [0]

    def flaky() -> Protocol:
        calls[0] += 1
        if calls[0] == 1:
            raise RuntimeError("factory bug")
        return Echo()

    port = reactor.listen_tcp(0, flaky, interface="127.0.0.1")
    with caplog.at_level(logging.ERROR, logger="plait.reactor"):
        first = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                     lambda: Recorder(on_lost=reactor.stop)))
        run_until(reactor)
    assert first.events[-1][0] == "lost"
    assert "factory bug" in caplog.text
    second = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                  lambda: Recorder(b"ok")))
    reactor.call_later(0.05, reactor.stop)
    run_until(reactor)
    assert second.data == b"ok"
    second.transport.abort()


def test_a_client_factory_returning_none_errbacks_the_connect(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    result = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, lambda: None))
    assert isinstance(result, ConnectionAbortedError)


# ------------------------------------------------------------ half-close


def test_eof_received_returning_true_keeps_the_connection_half_open(reactor: Reactor) -> None:
    class Answer(Protocol):
        def data_received(self, data: bytes) -> None:
            self.got = data

        def eof_received(self) -> bool:
            self.transport.write(b"answer to " + self.got)
            self.transport.close()
            return True

    port = reactor.listen_tcp(0, Answer, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                  lambda: Recorder(on_lost=reactor.stop)))
    assert client.transport.can_write_eof()
    client.transport.write(b"question")
    client.transport.write_eof()
    client.transport.write(b"after eof: dropped")
    run_until(reactor)
    assert client.data == b"answer to question"
    assert client.events == ["made", "eof", ("lost", None)]


def test_eof_received_returning_none_closes_the_connection(reactor: Reactor) -> None:
    servers: list[Recorder] = []

    def make() -> Recorder:
        servers.append(Recorder(on_lost=reactor.stop))
        return servers[-1]

    port = reactor.listen_tcp(0, make, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    client.transport.write_eof()
    run_until(reactor)
    assert servers[0].events == ["made", "eof", ("lost", None)]
    client.transport.abort()


# ----------------------------------------------------------- flow control


def test_pause_reading_stops_data_until_resume(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, lambda: Recorder(b"hello"), interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    client.transport.pause_reading()
    assert not client.transport.is_reading()
    reactor.call_later(0.05, reactor.stop)
    run_until(reactor)
    assert client.data == b""
    client.transport.resume_reading()
    assert client.transport.is_reading()
    reactor.call_later(0.05, reactor.stop)
    run_until(reactor)
    assert client.data == b"hello"
    client.transport.abort()


def test_pause_and_resume_writing_follow_the_water_marks(reactor: Reactor) -> None:
    servers: list[Any] = []

    class Writer(Recorder):
        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            servers.append(self)
            transport.set_write_buffer_limits(high=1024)
            assert transport.get_write_buffer_limits() == (256, 1024)
            while "paused" not in self.events:
                transport.write(b"y" * 65536)
            self.events.append(("buffered", transport.get_write_buffer_size() > 1024))

        def pause_writing(self) -> None:
            self.events.append("paused")

        def resume_writing(self) -> None:
            self.events.append("resumed")
            reactor.stop()

    port = reactor.listen_tcp(0, Writer, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    run_until(reactor)  # the client reads everything; the server drains and resumes
    assert servers[0].events == ["made", "paused", ("buffered", True), "resumed"]
    client.transport.abort()


@pytest.mark.parametrize("high,low", [(10, 20), (-1, None), (None, -4)])
def test_bad_water_marks_are_refused(reactor: Reactor, high: Any, low: Any) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    with pytest.raises(ValueError):
        client.transport.set_write_buffer_limits(high, low)
    client.transport.abort()


def test_a_push_producer_is_paused_and_resumed(reactor: Reactor) -> None:
    events: list[str] = []

    class Producer:
        def pause_producing(self) -> None:
            events.append("pause")

        def resume_producing(self) -> None:
            events.append("resume")
            transport.unregister_producer()
            reactor.stop()

        def stop_producing(self) -> None:
            events.append("stop")

    port = reactor.listen_tcp(0, Recorder, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    transport = client.transport
    transport.set_write_buffer_limits(high=1024)
    transport.register_producer(Producer(), True)
    with pytest.raises(RuntimeError):
        transport.register_producer(Producer(), True)
    while "pause" not in events:
        transport.write(b"z" * 65536)
    run_until(reactor)
    assert events == ["pause", "resume"]
    transport.abort()


def test_a_pull_producer_is_asked_until_it_unregisters(reactor: Reactor) -> None:
    received: list[bytes] = []

    class Sink(Protocol):
        def data_received(self, data: bytes) -> None:
            received.append(data)
            if len(b"".join(received)) == 5 * 100_000:
                reactor.stop()

    class Chunks:
        left = 5

        def resume_producing(self) -> None:
            transport.write(b"c" * 100_000)
            self.left -= 1
            if not self.left:
                transport.unregister_producer()

        def stop_producing(self) -> None:
            pass

    port = reactor.listen_tcp(0, Sink, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    transport = client.transport
    producer = Chunks()
    transport.register_producer(producer, False)
    run_until(reactor)
    assert producer.left == 0
    transport.abort()


def test_a_producer_is_stopped_when_the_connection_is_lost(reactor: Reactor) -> None:
    events: list[str] = []

    class Producer:
        def pause_producing(self) -> None:
            events.append("pause")

        def resume_producing(self) -> None:
            events.append("resume")

        def stop_producing(self) -> None:
            events.append("stop")
            reactor.stop()

    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    client.transport.register_producer(Producer(), True)
    client.transport.abort()
    run_until(reactor)
    assert events == ["stop"]
    late: list[str] = []

    class Late:
        def stop_producing(self) -> None:
            late.append("stop")

    client.transport.register_producer(Late(), True)
    assert late == ["stop"]


# ------------------------------------------------------------------- ports


def test_stop_listening_closes_the_port_and_calls_do_stop(reactor: Reactor) -> None:
    events: list[str] = []

    class Counting(Factory):
        protocol = Echo

        def start_factory(self) -> None:
            events.append("start")

        def stop_factory(self) -> None:
            events.append("stop")

    port = reactor.listen_tcp(0, Counting(), interface="127.0.0.1")
    d = port.stop_listening()
    assert port.stop_listening() is d
    assert outcome(reactor, d) is None
    assert events == ["start", "stop"]
    result = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder))
    assert isinstance(result, ConnectionRefusedError)
    with pytest.raises(RuntimeError):
        port.start_listening()


def test_the_accept_batch_bounds_accepts_per_wake_up(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1", accept_batch=2)
    clients = [socket.create_connection(("127.0.0.1", port.port), timeout=5)
               for _ in range(5)]
    time.sleep(0.05)  # let the kernel finish the handshakes
    port._on_acceptable()
    assert port.accepted == 2
    reactor.call_later(0.05, reactor.stop)
    run_until(reactor)
    assert port.accepted == 5
    for c in clients:
        c.close()


def test_reuse_port_lets_two_ports_share_a_number(reactor: Reactor) -> None:
    if not hasattr(socket, "SO_REUSEPORT"):
        pytest.skip("no SO_REUSEPORT")
    a = reactor.listen_tcp(0, Echo, interface="127.0.0.1", reuse_port=True)
    b = reactor.listen_tcp(a.port, Echo, interface="127.0.0.1", reuse_port=True)
    assert a.port == b.port
    with pytest.raises(OSError) as info:
        reactor.listen_tcp(a.port, Echo, interface="127.0.0.1")
    assert info.value.errno == errno.EADDRINUSE


@pytest.mark.parametrize(
    "kwargs",
    [
        {"port": -1},
        {"port": 70000},
        {"port": "80"},
        {"port": 0, "interface": "localhost"},
        {"port": 0, "interface": "300.1.1.1"},
        {"port": 0, "backlog": -1},
        {"port": 0, "accept_batch": 0},
    ],
)
def test_listen_tcp_rejects_bad_arguments(reactor: Reactor, kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        reactor.listen_tcp(factory=Echo, **kwargs)


@pytest.mark.parametrize(
    "host,port,timeout",
    [("", 80, 1.0), ("127.0.0.1", 0, 1.0), ("127.0.0.1", 65536, 1.0),
     ("127.0.0.1", 80, -1.0), ("127.0.0.1", 80, 0.0)],
)
def test_connect_tcp_rejects_bad_arguments(
    reactor: Reactor, host: str, port: int, timeout: float
) -> None:
    with pytest.raises(ValueError):
        reactor.connect_tcp(host, port, Recorder, timeout=timeout)


def test_listen_and_connect_reject_a_factory_that_is_not_callable(reactor: Reactor) -> None:
    with pytest.raises(TypeError):
        reactor.listen_tcp(0, "nope", interface="127.0.0.1")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        reactor.connect_tcp("127.0.0.1", 80, "nope")  # type: ignore[arg-type]


def test_an_adopted_port_serves_and_the_callers_copy_stays_open(reactor: Reactor) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port: Port = reactor.adopt_stream_port(listener.fileno(), socket.AF_INET, Echo)
    assert port.port == listener.getsockname()[1]
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                  lambda: Recorder(b"adopted")))
    reactor.call_later(0.05, reactor.stop)
    run_until(reactor)
    assert client.data == b"adopted"
    outcome(reactor, port.stop_listening())
    assert listener.getsockname()[1] == port.port  # our copy is still open
    listener.close()
    client.transport.abort()


def test_adopt_stream_port_refuses_what_is_not_a_listening_socket(reactor: Reactor) -> None:
    r, w = os.pipe()
    unbound = socket.socket()
    try:
        with pytest.raises(ValueError):
            reactor.adopt_stream_port(r, socket.AF_INET, Echo)
        with pytest.raises(ValueError):
            reactor.adopt_stream_port(unbound.fileno(), socket.AF_INET, Echo)
        with pytest.raises(ValueError):
            reactor.adopt_stream_port(unbound.fileno(), socket.AF_INET6, Echo)
        with pytest.raises(ValueError):
            reactor.adopt_stream_port(-1, socket.AF_INET, Echo)
    finally:
        os.close(r)
        os.close(w)
        unbound.close()


def test_an_adopted_connection_runs_a_protocol(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    sock = socket.create_connection(("127.0.0.1", port.port), timeout=5)
    proto = reactor.adopt_stream_connection(sock.fileno(), socket.AF_INET,
                                            lambda: Recorder(b"via adopted"))
    sock.close()
    reactor.call_later(0.05, reactor.stop)
    run_until(reactor)
    assert proto.data == b"via adopted"
    proto.transport.abort()
    unconnected = socket.socket()
    with pytest.raises(ValueError):
        reactor.adopt_stream_connection(unconnected.fileno(), socket.AF_INET, Recorder)
    unconnected.close()


# ----------------------------------------------------------- happy eyeballs


def test_interleave_addresses_alternates_families_starting_with_the_first() -> None:
    v6 = [(socket.AF_INET6, 1, 6, "", (f"::{i}", 80, 0, 0)) for i in (1, 2, 3)]
    v4 = [(socket.AF_INET, 1, 6, "", (f"10.0.0.{i}", 80)) for i in (1, 2)]
    order = interleave_addresses([*v6, *v4, v4[0]])
    assert [a[1][0] for a in order] == ["::1", "10.0.0.1", "::2", "10.0.0.2", "::3"]
    assert interleave_addresses([]) == []


def _fake_resolve(reactor: Reactor, ports: list[int]) -> None:
    from plait.cluster._defer import succeed

    def resolve(host: str, port: int, **kw: Any) -> Deferred[list[Any]]:
        return succeed([(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", p))
                        for p in ports])

    reactor.resolve = resolve  # type: ignore[method-assign]


def test_a_refused_address_moves_on_to_the_next_at_once(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    _fake_resolve(reactor, [closed_port(), port.port])
    start = time.monotonic()
    client = outcome(reactor, reactor.connect_tcp("example.test", 80, Recorder))
    assert client.transport.get_extra_info("peername")[1] == port.port
    assert time.monotonic() - start < 0.25  # did not wait for the attempt delay
    client.transport.abort()


def test_a_hanging_address_gets_a_second_attempt_after_the_delay(
    reactor: Reactor, unresponsive: int
) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    _fake_resolve(reactor, [unresponsive, port.port])
    start = time.monotonic()
    client = outcome(reactor, reactor.connect_tcp("example.test", 80, Recorder))
    assert client.transport.get_extra_info("peername")[1] == port.port
    assert time.monotonic() - start >= 0.25
    assert reactor.get_writers() == []  # the losing attempt was closed
    client.transport.abort()


def test_when_every_address_fails_the_last_error_is_reported(reactor: Reactor) -> None:
    _fake_resolve(reactor, [closed_port(), closed_port()])
    result = outcome(reactor, reactor.connect_tcp("example.test", 80, Recorder))
    assert isinstance(result, ConnectionRefusedError)


def test_connect_tcp_to_a_name_resolves_it(reactor: Reactor) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    client = outcome(reactor, reactor.connect_tcp("localhost", port.port, Recorder), limit=10)
    assert client.transport.get_extra_info("peername")[0] == "127.0.0.1"
    client.transport.abort()


def test_connect_tcp_to_a_name_that_does_not_resolve_errbacks(reactor: Reactor) -> None:
    result = outcome(reactor, reactor.connect_tcp("no-such-host.invalid", 80, Recorder),
                     limit=20)
    assert isinstance(result, socket.gaierror)


def test_a_bind_address_of_the_wrong_family_errbacks_instead_of_raising(
    reactor: Reactor,
) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    result = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port, Recorder,
                                                  bind_address=("::1", 0)))
    assert isinstance(result, OSError)
    assert reactor.get_writers() == []


def test_an_unexpected_accept_error_backs_off_instead_of_spinning(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    port = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    calls = [0]
    real_sock = port._sock

    def failing_accept() -> Any:
        calls[0] += 1
        raise OSError(errno.EINVAL, "Invalid argument")

    port._sock = type("Broken", (), {"accept": staticmethod(failing_accept),
                                      "close": real_sock.close})()
    client = socket.create_connection(("127.0.0.1", port.port), timeout=5)
    with caplog.at_level(logging.WARNING, logger="plait.reactor"):
        reactor.call_later(0.15, reactor.stop)
        run_until(reactor)
    assert 1 <= calls[0] <= 3  # a retry after 0.1 s, not thousands of spins
    assert "cannot accept" in caplog.text
    client.close()


def test_a_storm_of_resets_and_vanishing_peers_leaves_the_server_serving(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    lost: list[BaseException | None] = []

    class BigReply(Echo):
        def data_received(self, data: bytes) -> None:
            self.transport.write(b"r" * 1_000_000)
            self.transport.close()

        def connection_lost(self, exc: BaseException | None) -> None:
            lost.append(exc)

    port = reactor.listen_tcp(0, BigReply, interface="127.0.0.1")
    peers = []
    linger = __import__("struct").pack("ii", 1, 0)
    for i in range(60):
        s = socket.create_connection(("127.0.0.1", port.port), timeout=5)
        if i % 3 == 0:  # reset at once
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        elif i % 3 == 1:  # ask for a big reply, then reset without reading it
            s.sendall(b"go")
            s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        else:  # garbage, half-close, and go away
            s.sendall(os.urandom(3000))
            s.shutdown(socket.SHUT_WR)
        peers.append(s)
    for s in peers[::3] + peers[1::3]:
        s.close()
    deadline = time.monotonic() + 5

    def wait_for_all() -> None:
        if len(lost) == 60 or time.monotonic() > deadline:
            reactor.stop()
        else:
            reactor.call_later(0.01, wait_for_all)

    with caplog.at_level(logging.ERROR, logger="plait.reactor"):
        reactor.call_soon(wait_for_all)
        run_until(reactor, limit=10)
    for s in peers:
        s.close()
    assert len(lost) == 60
    assert not caplog.records  # nothing went wrong on our side
    # and the server still serves
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                  lambda: Recorder(b"?", reactor.stop)))
    run_until(reactor)
    assert len(client.data) == 1_000_000


def test_a_factory_whose_start_fails_leaves_no_socket_open(reactor: Reactor) -> None:
    class Broken(Factory):
        protocol = Echo

        def start_factory(self) -> None:
            raise RuntimeError("cannot start")

    raised = False
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            reactor.listen_tcp(0, Broken(), interface="127.0.0.1")
        except RuntimeError:
            raised = True
        gc.collect()  # an unclosed socket would warn when collected
    assert raised
    assert [w for w in caught if issubclass(w.category, ResourceWarning)] == []
    assert reactor.get_readers() == []


def test_an_adopted_unix_listener_has_no_port_number(
    reactor: Reactor, tmp_path: Any
) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "s"))
    listener.listen(4)
    port = reactor.adopt_stream_port(listener.fileno(), socket.AF_UNIX, Echo)
    listener.close()
    assert port.get_host() == str(tmp_path / "s")
    with pytest.raises(AttributeError):
        _ = port.port
    outcome(reactor, port.stop_listening())


def test_an_asyncio_buffered_protocol_is_read_into_its_own_buffer(reactor: Reactor) -> None:
    import asyncio

    class BufferedEcho(asyncio.BufferedProtocol):
        def __init__(self) -> None:
            self.buf = bytearray(7)  # small: a message arrives in several reads
            self.reads = 0

        def connection_made(self, transport: Any) -> None:
            self.transport = transport

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buf

        def buffer_updated(self, nbytes: int) -> None:
            self.reads += 1
            self.transport.write(bytes(self.buf[:nbytes]))

    servers: list[BufferedEcho] = []

    def make() -> BufferedEcho:
        servers.append(BufferedEcho())
        return servers[-1]

    port = reactor.listen_tcp(0, make, interface="127.0.0.1")
    message = b"buffered protocols work too"

    class Client(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.data == message:
                reactor.stop()

    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                  lambda: Client(message)))
    run_until(reactor)
    assert client.data == message
    assert servers[0].reads >= 4
    client.transport.abort()


def test_a_protocol_without_data_received_or_get_buffer_is_refused(reactor: Reactor) -> None:
    a, b = socket.socketpair()
    from plait.cluster._stream import StreamTransport

    with pytest.raises(TypeError):
        StreamTransport(reactor, a, object())
    a.close()
    b.close()


def test_set_protocol_can_switch_to_a_buffered_protocol_mid_connection(
    reactor: Reactor,
) -> None:
    import asyncio

    class Upper(asyncio.BufferedProtocol):
        def __init__(self, transport: Any) -> None:
            self.transport = transport
            self.buf = bytearray(64)

        def get_buffer(self, sizehint: int) -> bytearray:
            return self.buf

        def buffer_updated(self, nbytes: int) -> None:
            self.transport.write(bytes(self.buf[:nbytes]).upper())

    class Switcher(Protocol):
        def data_received(self, data: bytes) -> None:
            self.transport.write(b"switched;")
            self.transport.set_protocol(Upper(self.transport))
            assert isinstance(self.transport.get_protocol(), Upper)

    port = reactor.listen_tcp(0, Switcher, interface="127.0.0.1")

    class Client(Recorder):
        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.data == b"switched;":
                self.transport.write(b"then buffered")
            elif self.data == b"switched;THEN BUFFERED":
                reactor.stop()

    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", port.port,
                                                  lambda: Client(b"go")))
    run_until(reactor)
    assert client.data == b"switched;THEN BUFFERED"
    client.transport.abort()
