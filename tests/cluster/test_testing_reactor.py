"""MemoryReactor: records calls, keeps time on a Clock, fires what the test says."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from typing import Any

import pytest

from plait.cluster.protocol import DatagramProtocol, Factory, Protocol
from plait.cluster.task import Clock
from plait.cluster.testing import (
    MemoryDatagramTransport,
    MemoryListeningPort,
    MemoryReactor,
    connect_in_memory,
)
from tests.cluster._recorders import Recorder


def test_listen_tcp_is_recorded_and_port_zero_gets_a_number() -> None:
    reactor = MemoryReactor()
    factory = Factory.for_protocol(Recorder)
    port = reactor.listen_tcp(0, factory, backlog=7, interface="127.0.0.1")
    other = reactor.listen_tcp(0, factory)
    (first, second) = reactor.tcp_servers
    assert first.factory is factory and first.backlog == 7 and first.interface == "127.0.0.1"
    assert first.port is port and isinstance(port, MemoryListeningPort)
    assert port.get_host() == ("127.0.0.1", 40000) and port.port == 40000
    assert other.get_host() == ("0.0.0.0", 40001)
    assert second.address == ("0.0.0.0", 40001)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda r: r.listen_tcp(-1, Protocol), ValueError),
        (lambda r: r.listen_tcp(70000, Protocol), ValueError),
        (lambda r: r.listen_tcp("80", Protocol), ValueError),
        (lambda r: r.listen_tcp(80, Protocol, backlog=-1), ValueError),
        (lambda r: r.listen_tcp(80, "not callable"), TypeError),
        (lambda r: r.connect_tcp("h", 0, Protocol), ValueError),
        (lambda r: r.connect_tcp("", 80, Protocol), ValueError),
        (lambda r: r.connect_tcp("h", 80, Protocol, timeout=0), ValueError),
        (lambda r: r.connect_tcp("h", 80, Protocol, timeout=float("nan")), ValueError),
        (lambda r: r.connect_tcp("h", 80, None), TypeError),
        (lambda r: r.listen_unix("", Protocol), ValueError),
        (lambda r: r.listen_unix(b"/x", Protocol), TypeError),
        (lambda r: r.connect_unix("/x", Protocol, timeout=-1), ValueError),
        (lambda r: r.listen_udp(-5, DatagramProtocol()), ValueError),
        (lambda r: r.adopt_stream_port(-1, socket.AF_INET, Protocol), ValueError),
        (lambda r: r.adopt_stream_port("3", socket.AF_INET, Protocol), TypeError),
        (lambda r: r.adopt_stream_connection(3, socket.AF_INET, 42), TypeError),
        (lambda r: r.call_soon(None), TypeError),
        (lambda r: r.call_from_thread(None), TypeError),
        (lambda r: r.add_reader(3, None), TypeError),
        (lambda r: r.advance(-1), ValueError),
        (lambda r: r.call_later(-1, print), ValueError),
        (lambda r: r.add_system_event_trigger("soon", "shutdown", print), ValueError),
        (lambda r: r.add_system_event_trigger("before", "shutdown", 3), TypeError),
        (lambda r: r.remove_system_event_trigger(("before", "shutdown", 99)), ValueError),
        (lambda r: r.remove_system_event_trigger("junk"), ValueError),
    ],
)
def test_bad_reactor_calls_raise_what_the_native_reactor_raises(
    call: Callable[[MemoryReactor], object], error: type[Exception]
) -> None:
    reactor = MemoryReactor()
    with pytest.raises(error):
        call(reactor)
    assert reactor.tcp_servers == [] and reactor.tcp_clients == []


def test_connect_tcp_returns_a_deferred_the_test_fires_with_connect() -> None:
    reactor = MemoryReactor()
    got: list[Any] = []
    d = reactor.connect_tcp("example.org", 443, Recorder, timeout=5)
    d.add_callback(got.append)
    (record,) = reactor.tcp_clients
    assert record.address == ("example.org", 443) and record.timeout == 5
    assert record.pending and got == []
    server = Recorder(echo=True)
    pump = record.connect(server)
    assert not record.pending
    (client,) = got
    assert client.events == ["made"] and server.events == ["made"]
    client.transport.write(b"echo me")
    pump.flush()
    assert bytes(client.data) == b"echo me"


def test_a_connection_can_be_failed_and_then_not_completed_again() -> None:
    reactor = MemoryReactor()
    errors: list[Any] = []
    reactor.connect_tcp("h", 1, Recorder).add_errback(errors.append)
    reactor.connect_unix("/run/app.sock", Recorder).add_errback(errors.append)
    reactor.tcp_clients[0].fail()
    reactor.unix_clients[0].fail(TimeoutError("slow"))
    assert errors[0].check(ConnectionRefusedError)
    assert errors[1].check(TimeoutError)
    with pytest.raises(RuntimeError):
        reactor.tcp_clients[0].connect()
    with pytest.raises(RuntimeError):
        reactor.unix_clients[0].fail()


def test_a_cancelled_connection_attempt_cannot_be_completed() -> None:
    from plait.cluster.defer import CancelledError

    reactor = MemoryReactor()
    errors: list[Any] = []
    d = reactor.connect_tcp("h", 1, Recorder)
    d.add_errback(errors.append)
    d.cancel()
    assert errors[0].check(CancelledError)
    with pytest.raises(RuntimeError):
        reactor.tcp_clients[0].connect()


def test_a_client_factory_that_refuses_fails_the_deferred() -> None:
    reactor = MemoryReactor()
    errors: list[Any] = []
    reactor.connect_tcp("h", 1, lambda: None).add_errback(errors.append)
    with pytest.raises(RuntimeError):
        reactor.tcp_clients[0].connect()
    assert errors[0].check(ConnectionRefusedError)


def test_a_listening_port_accepts_simulated_connections_until_stopped() -> None:
    reactor = MemoryReactor()
    port = reactor.listen_unix("/run/app.sock", Factory.for_protocol(Recorder), mode=0o600)
    assert reactor.unix_servers[0].mode == 0o600
    assert port.get_host() == "/run/app.sock"
    client = Recorder()
    pump = port.accept(client)
    assert isinstance(pump.server, Recorder) and pump.server.factory is port.factory
    client.transport.write(b"hi")
    pump.flush()
    assert bytes(pump.server.data) == b"hi"
    stopped: list[object] = []
    port.stop_listening().add_callback(stopped.append)
    assert stopped == [None] and not port.listening
    with pytest.raises(RuntimeError):
        port.accept()
    with pytest.raises(TypeError):
        _ = port.port


def test_a_port_whose_factory_refuses_raises_on_accept() -> None:
    port = MemoryReactor().listen_tcp(80, lambda: None)
    with pytest.raises(RuntimeError):
        port.accept()


def test_datagram_ports_are_recorded_and_their_transports_record_sendto() -> None:
    class Datagrams(DatagramProtocol):
        lost: list[object] = []

        def connection_lost(self, exc: BaseException | None) -> None:
            self.lost.append(exc)

    reactor = MemoryReactor()
    protocol = Datagrams()
    transport = reactor.listen_udp(0, protocol, interface="127.0.0.1")
    assert isinstance(transport, MemoryDatagramTransport)
    assert protocol.transport is transport
    assert reactor.udp_servers[0].address == ("127.0.0.1", 40000)
    assert transport.get_extra_info("sockname") == ("127.0.0.1", 40000)
    transport.sendto(b"ping", ("10.0.0.1", 53))
    with pytest.raises(TypeError):
        transport.sendto("text")
    transport.close()
    transport.sendto(b"late")
    assert transport.sent == [(b"ping", ("10.0.0.1", 53))]
    assert protocol.lost == [None] and transport.is_closing()
    reactor.listen_multicast(5353, DatagramProtocol(), listen_multiple=True)
    assert reactor.multicast_servers[0].listen_multiple
    reactor.listen_unix_datagram("/run/d.sock", DatagramProtocol())
    assert reactor.unix_datagram_servers[0].address == "/run/d.sock"


def test_adopted_ports_and_connections_are_recorded() -> None:
    reactor = MemoryReactor()
    port = reactor.adopt_stream_port(5, socket.AF_INET, Recorder)
    assert reactor.adopted_ports[0].fd == 5 and reactor.adopted_ports[0].port is port
    assert port.get_host() is None
    protocol = reactor.adopt_stream_connection(6, socket.AF_UNIX, Recorder)
    record = reactor.adopted_connections[0]
    assert record.protocol is protocol and protocol.events == ["made"]
    assert record.transport is protocol.transport
    assert reactor.adopt_stream_connection(7, socket.AF_INET, lambda: None) is None


def test_call_soon_runs_on_advance_and_what_it_schedules_runs_next_round() -> None:
    reactor = MemoryReactor()
    ran: list[str] = []

    def first() -> None:
        ran.append("first")
        reactor.call_soon(ran.append, "nested")

    reactor.call_soon(first)
    cancelled = reactor.call_soon(ran.append, "cancelled")
    cancelled.cancel()
    assert cancelled.cancelled()
    assert ran == []
    reactor.advance()
    assert ran == ["first"]
    reactor.advance()
    assert ran == ["first", "nested"]
    assert reactor.pending_calls == []


def test_call_from_thread_is_queued_and_runs_on_advance() -> None:
    reactor = MemoryReactor()
    ran: list[str] = []
    thread = threading.Thread(target=reactor.call_from_thread, args=(ran.append, "from thread"))
    thread.start()
    thread.join(timeout=5)
    assert len(reactor.pending_calls) == 1 and ran == []
    reactor.advance()
    assert ran == ["from thread"]


def test_time_is_the_embedded_clock() -> None:
    clock = Clock(start=100.0)
    reactor = MemoryReactor(clock)
    ran: list[float] = []
    call = reactor.call_later(2, lambda: ran.append(reactor.seconds()))
    assert reactor.get_delayed_calls() == [call]
    reactor.pump([1, 1])
    assert ran == [102.0] and reactor.clock is clock
    assert reactor.get_delayed_calls() == []


def test_advance_runs_soon_calls_made_by_timed_calls_in_the_same_advance() -> None:
    reactor = MemoryReactor()
    ran: list[str] = []
    reactor.call_later(1, reactor.call_soon, ran.append, "soon after timer")
    reactor.advance(1)
    assert ran == ["soon after timer"]


def test_run_fires_startup_and_when_running_and_stop_fires_shutdown_in_phases() -> None:
    reactor = MemoryReactor()
    events: list[str] = []
    reactor.add_system_event_trigger("after", "startup", events.append, "startup after")
    reactor.add_system_event_trigger("before", "startup", events.append, "startup before")
    reactor.call_when_running(events.append, "running")
    for phase in ("after", "during", "before"):
        reactor.add_system_event_trigger(phase, "shutdown", events.append, f"shutdown {phase}")
    reactor.run()
    assert reactor.running and reactor.has_run
    assert events == ["startup before", "startup after", "running"]
    reactor.call_when_running(events.append, "at once")
    assert events[-1] == "at once"
    reactor.stop()
    assert events[-3:] == ["shutdown before", "shutdown during", "shutdown after"]
    assert not reactor.running and reactor.has_stopped


def test_a_before_shutdown_trigger_returning_a_deferred_delays_the_rest() -> None:
    from plait.cluster.defer import Deferred

    reactor = MemoryReactor()
    gate: Deferred[None] = Deferred()
    events: list[str] = []
    reactor.add_system_event_trigger("before", "shutdown", lambda: gate)
    reactor.add_system_event_trigger("during", "shutdown", events.append, "during")
    reactor.run()
    reactor.stop()
    reactor.stop()  # a second stop while stopping is a no-op
    assert events == [] and reactor.running
    gate.callback(None)
    assert events == ["during"] and not reactor.running


def test_stop_when_not_running_and_run_when_running_raise() -> None:
    from plait.cluster.reactor import ReactorNotRunning

    reactor = MemoryReactor()
    with pytest.raises(ReactorNotRunning):
        reactor.stop()
    reactor.run()
    with pytest.raises(RuntimeError):
        reactor.run()


def test_removed_triggers_do_not_fire_and_custom_events_fire_on_request() -> None:
    reactor = MemoryReactor()
    events: list[str] = []
    gone = reactor.add_system_event_trigger("during", "shutdown", events.append, "gone")
    reactor.add_system_event_trigger("during", "reload", events.append, "reload")
    reactor.remove_system_event_trigger(gone)
    with pytest.raises(ValueError):
        reactor.remove_system_event_trigger(gone)
    reactor.fire_system_event("reload")
    reactor.run()
    reactor.stop()
    assert events == ["reload"]
    assert reactor.triggers["shutdown"]["during"] == []


def test_readers_and_writers_are_recorded_and_removed() -> None:
    reactor = MemoryReactor()
    reactor.add_reader(3, print, "r")
    reactor.add_writer(4, print)
    assert reactor.readers == {3: (print, ("r",))} and 4 in reactor.writers
    assert reactor.remove_reader(3) and not reactor.remove_reader(3)
    assert reactor.remove_writer(4) and not reactor.remove_writer(4)


def test_resolve_answers_literals_and_known_hosts_and_fails_the_rest() -> None:
    reactor = MemoryReactor()
    reactor.hosts["db.internal"] = ["10.0.0.5", "fd00::5"]
    results: list[Any] = []
    reactor.resolve("127.0.0.1", 80).add_callback(results.append)
    reactor.resolve("db.internal", 5432).add_callback(results.append)
    reactor.resolve("nowhere.invalid", 1).add_errback(results.append)
    assert results[0] == [
        (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("127.0.0.1", 80))
    ]
    assert [info[4] for info in results[1]] == [("10.0.0.5", 5432), ("fd00::5", 5432, 0, 0)]
    assert results[2].check(socket.gaierror)
    assert reactor.resolutions == [("127.0.0.1", 80), ("db.internal", 5432), ("nowhere.invalid", 1)]


def test_a_memory_reactor_can_be_the_clock_of_a_pump() -> None:
    reactor = MemoryReactor()
    server, client = Recorder(), Recorder()
    pump = connect_in_memory(server, client, clock=reactor)
    reactor.call_soon(client.transport.write, b"via call_soon")
    pump.flush()
    assert bytes(server.data) == b"via call_soon"


def test_a_cancelled_call_when_running_does_not_run() -> None:
    reactor = MemoryReactor()
    ran: list[str] = []
    handle = reactor.call_when_running(ran.append, "cancelled")
    reactor.call_when_running(ran.append, "kept")
    handle.cancel()
    reactor.run()
    assert ran == ["kept"]


def test_a_stopped_port_can_start_listening_again() -> None:
    port = MemoryReactor().listen_tcp(8080, Recorder)
    port.stop_listening()
    port.start_listening()
    assert port.listening
    pump = port.accept()
    assert isinstance(pump.server, Recorder)
