"""IPv6 multicast scenarios run in a network namespace of their own (run as a script).

Usage: python multicast6_child.py IP_COMMAND SPEC_JSON

Why a namespace: Linux cannot carry IPv6 multicast over ``lo``. A route such as
``ip -6 route add multicast ff00::/8 dev lo`` is accepted but promoted to a reject
route (``fib6_is_reject``: any non-local route through a loopback device), so
``sendto`` succeeds and the datagram is dropped (``Ip6OutNoRoutes``). The test
(tests/integration/test_multicast_ipv6.py) therefore starts this script under
``unshare -rn``; the script makes a veth pair ``mc6a`` <-> ``mc6b`` (the kernel adds
the ``ff00::/8`` routes and link-local addresses itself; duplicate address detection
is switched off so that they are usable at once), runs one scenario with Plait's
native reactor and prints one JSON line. It exits 77 when the kernel refuses the veth
pair, so that the test can skip with the kernel's words.

SPEC_JSON::

    {"members": [{"join": [[group, interface], ...], "leave": [[group, interface], ...],
                  "expect": true}, ...],  # interface: a name, {"index": name} (an int)
                                          # or {"decimal": name} (the index as text)
     "shared_port": false,            # members share one port (listen_multiple)
     "send": {"to": group, "interface": "mc6a", "loop": true, "hops": null},
     "hop_probe": null}               # or an interface: a stdlib member reports the
                                      # hop limit of the datagram it receives there

Every member binds ``::`` (its own ephemeral port unless ``shared_port``); the sender
sends ``b"group"`` to each port. A member expected to receive is waited for until the
group datagram arrives. A member expected to receive nothing is then sent a unicast
``b"marker"`` over ``::1`` and waited for until the marker arrives: the group
datagram, had it been delivered, was looped back earlier on the same CPU, so it would
have arrived first. Every wait is bounded (``WAIT`` seconds).

Output: ``{"indexes": {"mc6a": n, "mc6b": m}, "received": [[[payload, scope_id], ...]
per member], "timed_out": bool, "hop_limit": int | null}``; ``scope_id`` is the index
of the interface the datagram arrived on.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from plait.cluster.defer import Deferred, TimeoutError, ensure_deferred
from plait.cluster.failure import Failure
from plait.cluster.protocol import DatagramProtocol
from plait.cluster.reactor import Reactor

WAIT = 5.0
LINKS = ("mc6a", "mc6b")
NO_VETH = 77
_TENTATIVE = 0x40  # IFA_F_TENTATIVE in /proc/net/if_inet6
_LINK_SCOPE = 0x20


class Member(DatagramProtocol):
    """Records datagrams; ``until(payload)`` fires when one with that payload arrives."""

    def __init__(self) -> None:
        self.received: list[tuple[str, int]] = []
        self._waiting: dict[bytes, Deferred[None]] = {}

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.received.append((data.decode(), addr[3]))
        waiting = self._waiting.pop(data, None)
        if waiting is not None:
            waiting.callback(None)

    def until(self, payload: bytes) -> Deferred[None]:
        d: Deferred[None] = Deferred()
        if any(data == payload.decode() for data, _ in self.received):
            d.callback(None)
        else:
            self._waiting[payload] = d
        return d


def _ip(ip: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([ip, *args], capture_output=True, text=True, timeout=10, check=False)


def _links_ready() -> bool:
    """Both links have a usable link-local address and their ``ff00::/8`` route."""
    usable = set()
    for line in Path("/proc/net/if_inet6").read_text().splitlines():
        _, _, _, scope, flags, name = line.split()
        if int(scope, 16) == _LINK_SCOPE and not int(flags, 16) & _TENTATIVE:
            usable.add(name)
    routed = set()
    for line in Path("/proc/net/ipv6_route").read_text().splitlines():
        fields = line.split()
        if fields[0].startswith("ff") and fields[1] == "08":
            routed.add(fields[-1])
    return usable >= set(LINKS) and routed >= set(LINKS)


def set_up_links(ip: str) -> dict[str, int]:
    """Make the veth pair and wait (bounded) until IPv6 is ready on it."""
    for conf in ("all", "default"):
        Path(f"/proc/sys/net/ipv6/conf/{conf}/accept_dad").write_text("0")
    made = _ip(ip, "link", "add", LINKS[0], "type", "veth", "peer", "name", LINKS[1])
    if made.returncode != 0:
        print(f"ip link add type veth: {made.stderr.strip()}", file=sys.stderr)
        sys.exit(NO_VETH)
    for name in ("lo", *LINKS):
        up = _ip(ip, "link", "set", name, "up")
        if up.returncode != 0:
            sys.exit(f"ip link set {name} up: {up.stderr.strip()}")
    deadline = time.monotonic() + WAIT
    while not _links_ready():
        if time.monotonic() > deadline:
            sys.exit("IPv6 link-local addresses or routes did not appear on the veth pair")
        time.sleep(0.005)
    return {name: socket.if_nametoindex(name) for name in LINKS}


def _interface(value: Any) -> Any:
    """A spec's interface: a name, ``{"index": name}`` (an int) or ``{"decimal": name}``."""
    if isinstance(value, dict):
        ((form, name),) = value.items()
        index = socket.if_nametoindex(name)
        return index if form == "index" else str(index)
    return value


def _hop_probe(interface: str, group: str) -> socket.socket:
    probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    probe.bind(("::", 0))
    mreq = socket.inet_pton(socket.AF_INET6, group) + socket.if_nametoindex(interface).to_bytes(
        4, sys.byteorder
    )
    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT, 1)
    probe.settimeout(WAIT)
    return probe


def _read_hop_limit(probe: socket.socket) -> int:
    _, ancillary, _, _ = probe.recvmsg(16, socket.CMSG_SPACE(4))
    for level, kind, value in ancillary:
        if (level, kind) == (socket.IPPROTO_IPV6, socket.IPV6_HOPLIMIT):
            return int.from_bytes(value[:4], sys.byteorder)
    raise AssertionError(f"no hop limit in {ancillary!r}")


async def run_scenario(reactor: Reactor, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one scenario (see the module docstring) and report what arrived."""
    members: list[Member] = []
    transports: list[Any] = []
    ports: list[int] = []
    for entry in spec["members"]:
        member = Member()
        port = ports[0] if spec.get("shared_port") and ports else 0
        transport = reactor.listen_multicast(
            port, member, "::", listen_multiple=bool(spec.get("shared_port"))
        )
        members.append(member)
        transports.append(transport)
        ports.append(transport.get_extra_info("sockname")[1])
        for group, interface in entry.get("join", []):
            transport.join_group(group, _interface(interface))
        for group, interface in entry.get("leave", []):
            transport.leave_group(group, _interface(interface))
    send = spec["send"]
    probe = _hop_probe(spec["hop_probe"], send["to"]) if spec.get("hop_probe") else None
    sender = reactor.listen_multicast(0, DatagramProtocol(), "::")
    sender.set_outgoing_interface(_interface(send["interface"]))
    sender.set_loopback_mode(send["loop"])
    if send.get("hops") is not None:
        sender.set_ttl(send["hops"])
    for port in dict.fromkeys(ports):
        sender.sendto(b"group", (send["to"], port))
    hop_limit = None
    if probe is not None:
        sender.sendto(b"group", (send["to"], probe.getsockname()[1]))
        hop_limit = _read_hop_limit(probe)
        probe.close()
    waits = []
    for entry, member, port in zip(spec["members"], members, ports, strict=True):
        if entry["expect"]:
            waits.append(member.until(b"group"))
        else:
            sender.sendto(b"marker", ("::1", port))
            waits.append(member.until(b"marker"))
    timed_out = False
    for d in waits:
        d.add_timeout(WAIT, reactor)
        try:
            await d
        except TimeoutError:  # reported below with what did arrive
            timed_out = True
    for transport in (*transports, sender):
        transport.abort()
    return {
        "received": [member.received for member in members],
        "timed_out": timed_out,
        "hop_limit": hop_limit,
    }


def main() -> None:
    ip, spec = sys.argv[1], json.loads(sys.argv[2])
    indexes = set_up_links(ip)
    reactor = Reactor()
    outcome: dict[str, Any] = {}

    def done(result: Any) -> None:
        outcome["result"] = result
        reactor.stop()

    def start() -> None:  # once running, so that a scenario finishing at once can stop it
        ensure_deferred(run_scenario(reactor, spec)).add_both(done)

    reactor.call_soon(start)
    reactor.call_later(4 * WAIT, reactor.stop)
    reactor.run()
    result = outcome.get("result")
    if isinstance(result, Failure):
        sys.exit(f"the scenario failed:\n{result.get_traceback()}")
    if not isinstance(result, dict):
        sys.exit(f"the scenario did not finish within {4 * WAIT} s")
    print(json.dumps({"indexes": indexes, **result}))


if __name__ == "__main__":
    main()
