"""TCP on the native reactor over real loopback sockets: serving, faults, ports.

Connecting (timeouts, Happy Eyeballs) is in test_tcp_connect.py, flow control and
half-close in test_tcp_flow.py; the helpers are in tests/reactor_support.py.
"""

from __future__ import annotations

import errno
import gc
import logging
import os
import socket
import struct
import sys
import time
import warnings
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from plait.cluster.interfaces import IListeningPort, ITransport
from plait.cluster.protocol import Factory, Protocol
from plait.cluster.reactor import Port, Reactor
from tests.reactor_support import Echo, Recorder, outcome, run_until

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


def test_the_interface_limits_which_local_address_is_served(reactor: Reactor) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("only Linux answers on all of 127.0.0.0/8")
    only_one = reactor.listen_tcp(0, Echo, interface="127.0.0.1")
    refused = outcome(reactor, reactor.connect_tcp("127.0.0.2", only_one.port, Recorder))
    assert isinstance(refused, ConnectionRefusedError)
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", only_one.port, Recorder))
    assert client.transport.get_extra_info("peername") == ("127.0.0.1", only_one.port)
    client.transport.abort()
    outcome(reactor, only_one.stop_listening())


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


# ------------------------------------------------------------- faults


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
    servers[0].transport.write(b"after the reset")  # dropped, does not raise
    assert servers[0].transport.get_write_buffer_size() == 0


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
    assert isinstance(bad.events[-1][1], ConnectionResetError)  # aborted: an RST
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


def test_a_port_can_listen_again_on_a_number_left_in_time_wait(reactor: Reactor) -> None:
    class CloseAtOnce(Protocol):
        def connection_made(self, transport: Any) -> None:
            transport.close()  # the server closes first: its end goes to TIME_WAIT

    port = reactor.listen_tcp(0, CloseAtOnce, interface="127.0.0.1")
    number = port.port
    assert port._sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
    client = outcome(reactor, reactor.connect_tcp("127.0.0.1", number,
                                                  lambda: Recorder(on_lost=reactor.stop)))
    run_until(reactor)
    assert client.events == ["made", "eof", ("lost", None)]
    outcome(reactor, port.stop_listening())
    without_reuse = socket.socket()
    try:
        with pytest.raises(OSError) as info:  # what SO_REUSEADDR saves us from
            without_reuse.bind(("127.0.0.1", number))
        assert info.value.errno == errno.EADDRINUSE
    finally:
        without_reuse.close()
    again = reactor.listen_tcp(number, Echo, interface="127.0.0.1")
    assert again.port == number
    outcome(reactor, again.stop_listening())


@pytest.mark.skipif(not hasattr(socket, "TCP_INFO"), reason="no TCP_INFO (Linux only)")
@pytest.mark.parametrize("backlog", [0, 7, 128])
def test_the_backlog_reaches_the_kernel(reactor: Reactor, backlog: int) -> None:
    port = reactor.listen_tcp(0, Echo, backlog=backlog, interface="127.0.0.1")
    info = port._sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 104)
    # For a listening socket Linux reports the accept queue's limit in tcpi_sacked.
    assert struct.unpack_from("8B6I", info)[-1] == backlog
    outcome(reactor, port.stop_listening())


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
    gc.collect()  # earlier tests' garbage must not warn inside the check below
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
