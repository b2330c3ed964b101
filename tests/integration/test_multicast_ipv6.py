"""IPv6 multicast: membership, loopback, leaving and interface selection.

Linux cannot carry IPv6 multicast over ``lo`` (a multicast route through a loopback
device becomes a reject route; see tests/integration/multicast6_child.py), so the
tests come in two kinds:

* Membership and argument checks run here, on ``lo``: joining needs no route, and
  ``/proc/net/igmp6`` shows on which interface the kernel recorded a membership.
* Delivery runs in a child process in a network namespace of its own (``unshare
  -rn``, a user namespace, so no root needed), over a veth pair ``mc6a`` <->
  ``mc6b``. Those tests skip only where this host does not permit network namespaces
  (or the kernel has no veth); iproute2's ``ip`` must be installed
  (``.ci/system-deps`` does it).
"""

from __future__ import annotations

import errno
import functools
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from plait.cluster.defer import Deferred
from plait.cluster.protocol import DatagramProtocol
from plait.cluster.reactor import Reactor
from tests.reactor_support import has_ipv6

pytestmark = [
    pytest.mark.skipif(
        not sys.platform.startswith("linux"),
        reason="uses Linux's lo, /proc/net/igmp6 and network namespaces",
    ),
    pytest.mark.skipif(not has_ipv6(), reason="this host has IPv6 switched off"),
]

CHILD = Path(__file__).with_name("multicast6_child.py")
NO_VETH = 77  # the child's exit status when the kernel refuses a veth pair
CHILD_TIMEOUT = 30.0


def _unique_group(prefix: str = "ff02") -> str:
    """A group no other test (or xdist worker) on this host uses at the same time."""
    tail = uuid.uuid4().hex
    return str(ipaddress.IPv6Address(f"{prefix}::5eed:{tail[:4]}:{tail[4:8]}"))


def _memberships(interface: str) -> set[str]:
    """The groups the kernel lists as joined on ``interface``, as compressed text."""
    groups = set()
    for line in Path("/proc/net/igmp6").read_text().splitlines():
        _, name, hexaddr, *_ = line.split()
        if name == interface:
            groups.add(socket.inet_ntop(socket.AF_INET6, bytes.fromhex(hexaddr)))
    return groups


@pytest.fixture
def transport(reactor: Reactor) -> Any:
    transport = reactor.listen_multicast(0, DatagramProtocol(), "::")
    yield transport
    transport.abort()


LO_INDEX = socket.if_nametoindex("lo") if sys.platform.startswith("linux") else 0


# --------------------------------------------------- membership, on lo, in process


@pytest.mark.parametrize(
    ("zone", "interface"),
    [("", "lo"), ("", LO_INDEX), ("", str(LO_INDEX)), ("%lo", ""), ("%lo", "lo")],
    ids=["name", "index", "decimal-index", "zone", "zone-and-name"],
)
def test_join_group_records_the_membership_on_the_interface_named(
    transport: Any, zone: str, interface: str | int
) -> None:
    group = _unique_group()
    transport.join_group(group + zone, interface)
    assert group in _memberships("lo")
    transport.leave_group(group, "lo")
    assert group not in _memberships("lo")


class _Closing(DatagramProtocol):
    def __init__(self) -> None:
        self.lost: Deferred[None] = Deferred()

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.callback(None)


async def test_closing_the_transport_drops_its_memberships(reactor: Reactor) -> None:
    protocol = _Closing()
    transport = reactor.listen_multicast(0, protocol, "::")
    group = _unique_group()
    transport.join_group(group, "lo")
    assert group in _memberships("lo")
    transport.close()
    await protocol.lost
    turn: Deferred[None] = Deferred()
    reactor.call_soon(turn.callback, None)  # the socket closes after connection_lost
    await turn
    assert transport.get_extra_info("socket").fileno() == -1
    assert group not in _memberships("lo")


def test_joining_a_group_twice_on_one_interface_raises(transport: Any) -> None:
    group = _unique_group()
    transport.join_group(group, "lo")
    with pytest.raises(OSError) as info:
        transport.join_group(group, "lo")
    assert info.value.errno == errno.EADDRINUSE
    transport.leave_group(group, "lo")


def test_leaving_an_ipv6_group_never_joined_raises(transport: Any) -> None:
    with pytest.raises(OSError) as info:
        transport.leave_group(_unique_group(), "lo")
    assert info.value.errno == errno.EADDRNOTAVAIL


def test_the_outgoing_interface_reaches_the_socket(transport: Any) -> None:
    sock = transport.get_extra_info("socket")
    transport.set_outgoing_interface(LO_INDEX)
    assert transport.get_outgoing_interface() == str(LO_INDEX)
    assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF) == LO_INDEX
    transport.set_outgoing_interface("")
    assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF) == 0
    transport.set_outgoing_interface("lo")
    assert transport.get_outgoing_interface() == "lo"
    assert sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF) == LO_INDEX


@pytest.mark.parametrize(
    ("group", "interface", "message"),
    [
        ("fe80::1", "lo", "not a multicast address"),
        ("ff02::1%lo", str(2**31), "interface index out of range"),
        ("ff02::1", -1, "interface index out of range"),
        ("ff02::1", 2**32 + LO_INDEX, "interface index out of range"),
        ("ff02::1", True, "an interface is a name or an index"),
        ("ff02::1", 1.0, "an interface is a name or an index"),
        ("ff02::1%no-such-if0", "", "no such network interface"),
        ("ff02::1", "lo\0", "no such network interface"),
        ("ff02::1%lo", str(LO_INDEX + 1000), "names another interface"),
    ],
)
def test_bad_ipv6_group_arguments_raise(
    transport: Any, group: str, interface: Any, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        transport.join_group(group, interface)
    with pytest.raises(ValueError, match=message):
        transport.leave_group(group, interface)


@pytest.mark.parametrize("interface", [-1, 2**31, True, "no-such-if0", 1.5])
def test_a_bad_ipv6_outgoing_interface_raises(transport: Any, interface: Any) -> None:
    with pytest.raises(ValueError):
        transport.set_outgoing_interface(interface)
    assert transport.get_outgoing_interface() == ""


def test_an_ipv4_socket_refuses_an_interface_index(reactor: Reactor) -> None:
    transport = reactor.listen_multicast(0, DatagramProtocol(), "127.0.0.1")
    with pytest.raises(ValueError, match="not an IPv4 interface address"):
        transport.join_group("239.255.77.18", LO_INDEX)
    with pytest.raises(ValueError, match="not an IPv4 interface address"):
        transport.set_outgoing_interface(LO_INDEX)
    transport.abort()


# ------------------------------------------------ delivery, in a network namespace


# ip lives in /usr/sbin (or /sbin), which a non-root PATH often leaves out.
_SEARCH_PATH = os.pathsep.join([os.environ.get("PATH", os.defpath), "/usr/sbin", "/sbin"])


class _Namespaces(NamedTuple):
    prefix: list[str]  # the unshare command line that works here, [] if none
    refusal: str  # why none works (the skip reason)
    ip: str  # iproute2's ip, "" if missing


@functools.cache
def _namespaces() -> _Namespaces:
    """Probe once per process how this host lets a child enter a new network namespace."""
    ip = shutil.which("ip", path=_SEARCH_PATH) or ""
    unshare = shutil.which("unshare", path=_SEARCH_PATH)
    if unshare is None:
        return _Namespaces([], "util-linux's unshare is not installed", ip)
    refusals = []
    for flags in ("-rn", "-n"):  # a user namespace first: needs no root
        probe = subprocess.run(
            [unshare, flags, "true"], capture_output=True, text=True, timeout=CHILD_TIMEOUT
        )
        if probe.returncode == 0:
            return _Namespaces([unshare, flags], "", ip)
        refusals.append(f"unshare {flags}: {probe.stderr.strip() or probe.returncode}")
    return _Namespaces(
        [], "this host does not permit network namespaces: " + "; ".join(refusals), ip
    )


def _scenario(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one scenario of multicast6_child.py in a fresh namespace; its JSON report."""
    namespaces = _namespaces()
    if not namespaces.prefix:
        pytest.skip(namespaces.refusal)
    if not namespaces.ip:
        pytest.fail("iproute2's ip is not installed: run `make system-deps` as root")
    proc = subprocess.Popen(
        [*namespaces.prefix, sys.executable, str(CHILD), namespaces.ip, json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=CHILD_TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=CHILD_TIMEOUT)
    if proc.returncode == NO_VETH:
        pytest.skip(f"this kernel refuses a veth pair in a namespace: {err.strip()}")
    assert proc.returncode == 0, err
    report: dict[str, Any] = json.loads(out)
    assert report["timed_out"] is False, report
    return report


def _member(group: str, interface: Any, *, expect: bool, leave: bool = False) -> dict[str, Any]:
    entry: dict[str, Any] = {"join": [[group, interface]], "expect": expect}
    if leave:
        entry["leave"] = [[group, interface]]
    return entry


def _send(group: str, interface: Any, *, loop: bool, hops: int | None = None) -> dict[str, Any]:
    return {"to": group, "interface": interface, "loop": loop, "hops": hops}


@pytest.mark.parametrize(
    "group", ["ff02::1:3", "ff05::7", "ff15::77"], ids=["link", "site", "transient"]
)
def test_a_group_datagram_loops_back_to_a_member_on_the_sending_interface(group: str) -> None:
    report = _scenario(
        {"members": [_member(group, "mc6a", expect=True)], "send": _send(group, "mc6a", loop=True)}
    )
    assert report["received"] == [[["group", report["indexes"]["mc6a"]]]]


def test_with_loopback_off_a_member_on_the_sending_interface_gets_nothing() -> None:
    report = _scenario(
        {
            "members": [_member("ff02::1:3", "mc6a", expect=False)],
            "send": _send("ff02::1:3", "mc6a", loop=False),
        }
    )
    assert report["received"] == [[["marker", 0]]]


@pytest.mark.parametrize(
    ("member_interface", "sender_interface"),
    [
        ("mc6b", "mc6a"),
        ("mc6a", "mc6b"),
        ({"index": "mc6b"}, {"index": "mc6a"}),
        ({"decimal": "mc6a"}, {"decimal": "mc6b"}),
    ],
    ids=["names", "names-reversed", "indexes", "decimal-indexes"],
)
def test_a_member_on_the_far_end_of_the_link_gets_what_the_chosen_interface_sent(
    member_interface: Any, sender_interface: Any
) -> None:
    report = _scenario(
        {
            "members": [_member("ff02::1:3", member_interface, expect=True)],
            "send": _send("ff02::1:3", sender_interface, loop=False),
        }
    )
    far_end = (
        member_interface
        if isinstance(member_interface, str)
        else next(iter(member_interface.values()))
    )
    assert report["received"] == [[["group", report["indexes"][far_end]]]]


@pytest.mark.parametrize(("member", "sender"), [("mc6b", "mc6a"), ("mc6a", "mc6b")])
def test_a_zone_in_the_group_chooses_the_interface_to_join(member: str, sender: str) -> None:
    report = _scenario(
        {
            "members": [_member(f"ff02::1:3%{member}", "", expect=True)],
            "send": _send("ff02::1:3", sender, loop=False),
        }
    )
    assert report["received"] == [[["group", report["indexes"][member]]]]


def test_a_member_that_left_an_ipv6_group_gets_no_more_group_datagrams() -> None:
    report = _scenario(
        {
            "members": [_member("ff02::1:3", "mc6a", expect=False, leave=True)],
            "send": _send("ff02::1:3", "mc6a", loop=True),
        }
    )
    assert report["received"] == [[["marker", 0]]]


def test_a_socket_that_left_still_gets_a_group_another_socket_here_belongs_to() -> None:
    """Linux's ``IPV6_MULTICAST_ALL`` (on by default, and kept): documented, so pinned."""
    report = _scenario(
        {
            "members": [
                _member("ff02::1:3", "mc6a", expect=True),
                _member("ff02::1:3", "mc6a", expect=True, leave=True),
            ],
            "send": _send("ff02::1:3", "mc6a", loop=True),
        }
    )
    index = report["indexes"]["mc6a"]
    assert report["received"] == [[["group", index]], [["group", index]]]


def test_an_interface_local_group_loops_back_on_its_interface() -> None:
    report = _scenario(
        {
            "members": [_member("ff01::9", "mc6a", expect=True)],
            "send": _send("ff01::9", "mc6a", loop=True),
        }
    )
    assert report["received"] == [[["group", report["indexes"]["mc6a"]]]]


def test_an_interface_local_group_never_reaches_the_link() -> None:
    report = _scenario(
        {
            "members": [_member("ff01::9", "mc6b", expect=False)],
            "send": _send("ff01::9", "mc6a", loop=True),
        }
    )
    assert report["received"] == [[["marker", 0]]]


def test_listen_multiple_lets_two_ipv6_members_share_a_port() -> None:
    report = _scenario(
        {
            "members": [_member("ff02::1:3", "mc6a", expect=True)] * 2,
            "shared_port": True,
            "send": _send("ff02::1:3", "mc6a", loop=True),
        }
    )
    index = report["indexes"]["mc6a"]
    assert report["received"] == [[["group", index]], [["group", index]]]


@pytest.mark.parametrize("hops", [1, 7, 200])
def test_ipv6_group_datagrams_leave_with_the_hop_limit_that_was_set(hops: int) -> None:
    report = _scenario(
        {
            "members": [],
            "send": _send("ff02::1:3", "mc6a", loop=False, hops=hops),
            "hop_probe": "mc6b",
        }
    )
    assert report["hop_limit"] == hops
