"""UDP and multicast transports on loopback, driven by the native reactor."""

from __future__ import annotations

import errno
import logging
import socket
import struct
import sys
from typing import Any

import pytest
from zope.interface.verify import verifyObject

from plait.cluster.defer import Deferred
from plait.cluster.interfaces import IDatagramProtocol, IDatagramTransport, IReactorUDP
from plait.cluster.protocol import DatagramProtocol
from plait.cluster.reactor import Reactor
from tests.reactor_support import has_ipv6

GROUP = "239.255.77.18"


class Recorder(DatagramProtocol):
    """Records every callback; ``wait()`` gives a Deferred of the next event."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []
        self.datagrams: list[tuple[bytes, Any]] = []
        self.errors: list[Exception] = []
        self._waiting: list[Deferred[Any]] = []

    def _event(self, kind: str, value: Any) -> None:
        self.events.append((kind, value))
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback((kind, value))

    def wait(self) -> Deferred[Any]:
        d: Deferred[Any] = Deferred()
        self._waiting.append(d)
        return d

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._event("made", transport)

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.datagrams.append((data, addr))
        self._event("datagram", (data, addr))

    def error_received(self, exc: Exception) -> None:
        self.errors.append(exc)
        self._event("error", exc)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._event("lost", exc)


def _next_turn(reactor: Reactor) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.call_soon(d.callback, None)
    return d


def test_reactor_and_transports_provide_their_interfaces(reactor: Reactor) -> None:
    assert verifyObject(IReactorUDP, reactor)
    assert verifyObject(IDatagramProtocol, Recorder())
    udp = reactor.listen_udp(0, Recorder(), "127.0.0.1")
    multicast = reactor.listen_multicast(0, Recorder(), "127.0.0.1")
    assert verifyObject(IDatagramTransport, udp)
    assert verifyObject(IDatagramTransport, multicast)
    udp.abort()
    multicast.abort()


def test_connection_made_runs_before_listen_udp_returns(reactor: Reactor) -> None:
    proto = Recorder()
    transport = reactor.listen_udp(0, proto, "127.0.0.1")
    assert proto.events == [("made", transport)]
    host, port = transport.get_extra_info("sockname")
    assert host == "127.0.0.1" and port > 0
    assert transport.get_extra_info("socket").type == socket.SOCK_DGRAM
    assert transport.get_extra_info("peername") is None
    assert transport.get_extra_info("nonsense", 7) == 7
    assert transport.get_protocol() is proto
    transport.abort()


async def test_datagrams_go_both_ways_over_ipv4(reactor: Reactor) -> None:
    server, client = Recorder(), Recorder()
    server_t = reactor.listen_udp(0, server, "127.0.0.1")
    client_t = reactor.listen_udp(0, client, "127.0.0.1")
    arrived = server.wait()
    client_t.sendto(b"ping", server_t.get_extra_info("sockname"))
    assert await arrived == ("datagram", (b"ping", client_t.get_extra_info("sockname")))
    answered = client.wait()
    server_t.sendto(b"pong", server.datagrams[0][1])
    assert await answered == ("datagram", (b"pong", server_t.get_extra_info("sockname")))
    server_t.close()
    client_t.close()


@pytest.mark.skipif(not has_ipv6(), reason="this host cannot bind ::1")
async def test_datagrams_go_both_ways_over_ipv6(reactor: Reactor) -> None:
    server, client = Recorder(), Recorder()
    server_t = reactor.listen_udp(0, server, "::1")
    client_t = reactor.listen_udp(0, client, "::1")
    assert server_t.get_extra_info("socket").family == socket.AF_INET6
    arrived = server.wait()
    client_t.sendto(b"six", server_t.get_extra_info("sockname")[:2])
    kind, (data, addr) = await arrived
    assert (kind, data, addr[:2]) == ("datagram", b"six", client_t.get_extra_info("sockname")[:2])
    server_t.close()
    client_t.close()


async def test_a_connected_socket_reports_icmp_refusal_to_error_received(
    reactor: Reactor,
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        dead_port = closed.getsockname()[1]
    proto = Recorder()
    transport = reactor.listen_udp(0, proto, "127.0.0.1")
    transport.connect("127.0.0.1", dead_port)
    assert transport.get_extra_info("peername") == ("127.0.0.1", dead_port)
    failed = proto.wait()
    transport.sendto(b"anyone?")
    kind, exc = await failed
    assert kind == "error" and isinstance(exc, ConnectionRefusedError)
    transport.close()


def test_connect_accepts_only_literal_addresses(reactor: Reactor) -> None:
    transport = reactor.listen_udp(0, Recorder(), "127.0.0.1")
    with pytest.raises(ValueError, match="literal IP address"):
        transport.connect("localhost", 53)
    transport.abort()


def test_sendto_checks_its_arguments(reactor: Reactor) -> None:
    transport = reactor.listen_udp(0, Recorder(), "127.0.0.1")
    with pytest.raises(TypeError):
        transport.sendto("text", ("127.0.0.1", 9))
    transport.connect("127.0.0.1", 9)
    with pytest.raises(ValueError, match="invalid address"):
        transport.sendto(b"x", ("127.0.0.1", 10))
    transport.abort()


def test_a_datagram_too_big_goes_to_error_received(reactor: Reactor) -> None:
    proto = Recorder()
    transport = reactor.listen_udp(0, proto, "127.0.0.1")
    transport.sendto(b"x" * 70_000, ("127.0.0.1", 9))
    assert [getattr(e, "errno", None) for e in proto.errors] == [errno.EMSGSIZE]
    transport.abort()


def test_binding_a_port_in_use_raises(reactor: Reactor) -> None:
    first = reactor.listen_udp(0, Recorder(), "127.0.0.1")
    port = first.get_extra_info("sockname")[1]
    with pytest.raises(OSError) as info:
        reactor.listen_udp(port, Recorder(), "127.0.0.1")
    assert info.value.errno == errno.EADDRINUSE
    first.abort()


async def test_close_delivers_connection_lost_once_and_later(reactor: Reactor) -> None:
    proto = Recorder()
    transport = reactor.listen_udp(0, proto, "127.0.0.1")
    sock = transport.get_extra_info("socket")
    lost = proto.wait()
    transport.close()
    transport.close()
    transport.abort()
    assert transport.is_closing()
    assert proto.events[-1][0] == "made"  # not re-entrant
    transport.sendto(b"dropped", ("127.0.0.1", 9))
    assert await lost == ("lost", None)
    assert [kind for kind, _ in proto.events] == ["made", "lost"]
    await _next_turn(reactor)
    assert sock.fileno() == -1


async def test_a_protocol_error_is_logged_and_reading_goes_on(
    reactor: Reactor, caplog: pytest.LogCaptureFixture
) -> None:
    class Fragile(Recorder):
        def datagram_received(self, data: bytes, addr: Any) -> None:
            super().datagram_received(data, addr)
            if data == b"bad":
                raise RuntimeError("cannot parse")

    proto = Fragile()
    server = reactor.listen_udp(0, proto, "127.0.0.1")
    client = reactor.listen_udp(0, Recorder(), "127.0.0.1")
    address = server.get_extra_info("sockname")
    client.sendto(b"bad", address)
    client.sendto(b"good", address)
    while len(proto.datagrams) < 2:
        await proto.wait()
    assert [d for d, _ in proto.datagrams] == [b"bad", b"good"]
    assert "cannot parse" in caplog.text
    assert any(r.levelno == logging.ERROR for r in caplog.records)
    server.close()
    client.close()


@pytest.mark.parametrize(("high", "low"), [(10, 20), (-1, None), (None, -4)])
def test_bad_write_buffer_limits_raise(reactor: Reactor, high: Any, low: Any) -> None:
    transport = reactor.listen_udp(0, Recorder(), "127.0.0.1")
    with pytest.raises(ValueError):
        transport.set_write_buffer_limits(high, low)
    transport.abort()


# ------------------------------------------------------------------- multicast


async def test_multicast_on_loopback_reaches_a_member(reactor: Reactor) -> None:
    member = Recorder()
    member_t = reactor.listen_multicast(0, member)
    member_t.join_group(GROUP, "127.0.0.1")
    sender_t = reactor.listen_multicast(0, Recorder(), "127.0.0.1")
    sender_t.set_outgoing_interface("127.0.0.1")
    assert sender_t.get_outgoing_interface() == "127.0.0.1"
    sender_t.set_loopback_mode(True)
    assert sender_t.get_loopback_mode() is True
    arrived = member.wait()
    sender_t.sendto(b"to the group", (GROUP, member_t.get_extra_info("sockname")[1]))
    kind, (data, _) = await arrived
    assert (kind, data) == ("datagram", b"to the group")
    member_t.leave_group(GROUP, "127.0.0.1")
    member_t.close()
    sender_t.close()


async def _only_the_marker_arrives(member: Recorder, member_t: Any, sender_t: Any) -> None:
    """Send to the group, then a unicast marker: the member must get the marker alone.

    Both go over loopback in order, so a group datagram that was delivered would
    arrive before the marker.
    """
    port = member_t.get_extra_info("sockname")[1]
    arrived = member.wait()
    sender_t.sendto(b"to the group", (GROUP, port))
    sender_t.sendto(b"marker", ("127.0.0.1", port))
    kind, (data, _) = await arrived
    assert (kind, data) == ("datagram", b"marker")
    assert [d for d, _ in member.datagrams] == [b"marker"]


async def test_a_member_that_left_the_group_gets_no_more_group_datagrams(
    reactor: Reactor,
) -> None:
    member = Recorder()
    member_t = reactor.listen_multicast(0, member)
    member_t.join_group(GROUP, "127.0.0.1")
    member_t.leave_group(GROUP, "127.0.0.1")
    sender_t = reactor.listen_multicast(0, Recorder(), "127.0.0.1")
    sender_t.set_outgoing_interface("127.0.0.1")
    await _only_the_marker_arrives(member, member_t, sender_t)
    member_t.close()
    sender_t.close()


async def test_listen_multiple_lets_two_members_share_a_port(reactor: Reactor) -> None:
    first, second = Recorder(), Recorder()
    first_t = reactor.listen_multicast(0, first, listen_multiple=True)
    port = first_t.get_extra_info("sockname")[1]
    second_t = reactor.listen_multicast(port, second, listen_multiple=True)
    for transport in (first_t, second_t):
        transport.join_group(GROUP, "127.0.0.1")
    sender = reactor.listen_multicast(0, Recorder(), "127.0.0.1")
    sender.set_outgoing_interface("127.0.0.1")
    both = [first.wait(), second.wait()]
    sender.sendto(b"all", (GROUP, port))
    for d in both:
        kind, (data, _) = await d
        assert (kind, data) == ("datagram", b"all")
    for transport in (first_t, second_t, sender):
        transport.close()


def test_without_listen_multiple_a_shared_port_is_refused(reactor: Reactor) -> None:
    first = reactor.listen_multicast(0, Recorder())
    with pytest.raises(OSError):
        reactor.listen_multicast(first.get_extra_info("sockname")[1], Recorder())
    first.abort()


def test_ttl_and_loopback_options_round_trip(reactor: Reactor) -> None:
    transport = reactor.listen_multicast(0, Recorder(), "127.0.0.1")
    assert transport.get_ttl() == 1
    transport.set_ttl(32)
    assert transport.get_ttl() == 32
    transport.set_loopback_mode(False)
    assert transport.get_loopback_mode() is False
    transport.abort()


_IP_RECVTTL = 12  # Linux's value; the socket module does not name it


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="IP_RECVTTL is Linux's")
@pytest.mark.parametrize("ttl", [1, 7, 200])
def test_group_datagrams_leave_with_the_ttl_that_was_set(reactor: Reactor, ttl: int) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender_t = reactor.listen_multicast(0, Recorder(), "127.0.0.1")
    try:
        receiver.bind(("", 0))
        receiver.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                            socket.inet_aton(GROUP) + socket.inet_aton("127.0.0.1"))
        receiver.setsockopt(socket.IPPROTO_IP, _IP_RECVTTL, 1)
        receiver.settimeout(5)
        sender_t.set_outgoing_interface("127.0.0.1")
        sender_t.set_ttl(ttl)
        sender_t.sendto(b"hop", (GROUP, receiver.getsockname()[1]))
        data, ancillary, _, _ = receiver.recvmsg(16, socket.CMSG_SPACE(4))
        assert data == b"hop"
        ((level, kind, value),) = ancillary
        assert (level, kind) == (socket.IPPROTO_IP, socket.IP_TTL)
        assert struct.unpack("i", value[:4]) == (ttl,)
    finally:
        receiver.close()
        sender_t.abort()


@pytest.mark.parametrize("ttl", [-1, 256, 1.5, True, "3"])
def test_a_bad_ttl_raises(reactor: Reactor, ttl: Any) -> None:
    transport = reactor.listen_multicast(0, Recorder(), "127.0.0.1")
    with pytest.raises(ValueError):
        transport.set_ttl(ttl)
    transport.abort()


@pytest.mark.parametrize(
    ("group", "interface", "message"),
    [
        ("10.1.2.3", "", "not a multicast address"),
        ("not-an-ip", "", "not an IP address"),
        ("ff02::1", "", "IPv4 socket needs an IPv4 group"),
        (GROUP, "not-an-ip", "not an IPv4 interface address"),
    ],
)
def test_bad_group_arguments_raise(
    reactor: Reactor, group: str, interface: str, message: str
) -> None:
    transport = reactor.listen_multicast(0, Recorder())
    with pytest.raises(ValueError, match=message):
        transport.join_group(group, interface)
    with pytest.raises(ValueError, match=message):
        transport.leave_group(group, interface)
    transport.abort()


def test_leaving_a_group_never_joined_raises(reactor: Reactor) -> None:
    transport = reactor.listen_multicast(0, Recorder())
    with pytest.raises(OSError):
        transport.leave_group(GROUP)
    transport.abort()


def test_a_bad_outgoing_interface_raises(reactor: Reactor) -> None:
    transport = reactor.listen_multicast(0, Recorder())
    with pytest.raises(ValueError):
        transport.set_outgoing_interface("nowhere")
    transport.abort()


@pytest.mark.skipif(not has_ipv6(), reason="this host cannot bind ::1")
def test_ipv6_multicast_options(reactor: Reactor) -> None:
    transport = reactor.listen_multicast(0, Recorder(), "::")
    transport.set_ttl(5)
    assert transport.get_ttl() == 5
    transport.set_loopback_mode(False)
    assert transport.get_loopback_mode() is False
    transport.set_outgoing_interface("lo")
    with pytest.raises(ValueError, match="IPv6 socket needs an IPv6 group"):
        transport.join_group(GROUP)
    with pytest.raises(ValueError, match="no such network interface"):
        transport.join_group("ff02::1:2", "no-such-if0")
    transport.abort()
