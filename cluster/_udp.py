"""Datagram transports: UDP, multicast, and the base that Unix datagrams share.

Theory of operation
-------------------
A datagram transport owns one non-blocking socket and one protocol *instance*
(asyncio's and Twisted's convention for datagram endpoints: there is no factory,
because there are no connections). The rules:

* ``connection_made(transport)`` runs synchronously inside ``listen_udp`` before the
  transport is returned, then the socket is registered for reading with the reactor's
  ``add_reader``. Nothing else of the reactor is used but ``add_writer``, the two
  ``remove_*`` calls and ``call_soon``.
* Reading drains at most ``_MAX_READS`` datagrams per wake-up, so one busy socket
  cannot starve the rest of the loop. ``BlockingIOError`` ends the burst; any other
  ``OSError`` from ``recvfrom`` is an ICMP error report (``ECONNREFUSED`` on a
  connected socket, for instance) and goes to ``protocol.error_received(exc)``.
* ``sendto`` tries the system call at once when nothing is queued. A datagram that
  would block is queued whole (datagrams are never split) and the socket is watched for
  writability until the queue drains; an ``OSError`` goes to ``error_received``. The
  queue honours asyncio's write-buffer limits and calls ``pause_writing`` /
  ``resume_writing`` on protocols that have them.
* ``close()`` stops reading at once, sends what is queued, then calls
  ``connection_lost(None)`` from ``call_soon`` (never re-entrantly) and closes the
  socket. ``abort()`` drops the queue. Both are idempotent.
* An exception raised by a protocol callback is logged on this module's logger and
  the transport keeps serving: one bad datagram must not take a port down.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import socket
import struct
from typing import Any

from zope.interface import implementer

from plait.cluster._transport_helpers import DEFAULT_HIGH_WATER, call_hook, write_buffer_limits
from plait.cluster.interfaces import IDatagramTransport

__all__ = [
    "DatagramTransport",
    "MulticastTransport",
    "UDPTransport",
    "listen_multicast",
    "listen_udp",
]

log = logging.getLogger(__name__)

#: Largest UDP payload (65535 - 8 byte UDP header - 20 byte IPv4 header); IPv6
#: jumbograms are not supported.
MAX_DATAGRAM = 65535
_MAX_READS = 32
#: Interface indexes are unsigned 32-bit in ``ipv6_mreq``; the kernel's are int-sized.
_MAX_IF_INDEX = 2**31 - 1


def _family_for(interface: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in interface else socket.AF_INET


@implementer(IDatagramTransport)
class DatagramTransport:
    """A datagram socket driven by a reactor, delivering to one protocol.

    Used for UDP (``listen_udp``) and, through a subclass, Unix datagrams. Create
    one with ``reactor.listen_udp``; the constructor expects a bound, non-blocking
    socket.

    Args:
        reactor: Anything with ``add_reader``/``add_writer``/``remove_reader``/
            ``remove_writer``/``call_soon``.
        sock: The bound socket; the transport owns it from now on.
        protocol: The datagram protocol instance.
    """

    def __init__(self, reactor: Any, sock: socket.socket, protocol: Any) -> None:
        self._reactor = reactor
        self._sock = sock
        self._fileno = sock.fileno()
        self._protocol = protocol
        self._buffer: collections.deque[tuple[bytes, Any]] = collections.deque()
        self._buffer_size = 0
        self._writing = False
        self._closing = False
        self._lost = False
        self._paused = False
        self._high = DEFAULT_HIGH_WATER
        self._low = DEFAULT_HIGH_WATER // 4
        self._address: Any = None
        self._extra: dict[str, Any] = {"socket": sock}
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            log.debug("getsockname failed on a fresh datagram socket", exc_info=True)

    # -------------------------------------------------------------- life cycle

    def _start(self) -> None:
        """Tell the protocol, then start reading (the ``listen_*`` helpers call this)."""
        try:
            self._protocol.connection_made(self)
        except BaseException:
            self._sock.close()
            self._closed()
            raise
        if not self._closing:
            self._reactor.add_reader(self._fileno, self._read_ready)

    def close(self) -> None:
        """Stop reading; send what is queued, then ``connection_lost(None)``."""
        if self._closing:
            return
        self._closing = True
        self._reactor.remove_reader(self._fileno)
        if not self._buffer:
            self._lost = True
            self._reactor.call_soon(self._call_connection_lost, None)

    def abort(self) -> None:
        """Close at once, dropping queued datagrams."""
        self._force_close(None)

    def is_closing(self) -> bool:
        """True once ``close`` or ``abort`` was called."""
        return self._closing

    def _force_close(self, exc: BaseException | None) -> None:
        if self._lost:
            return
        if self._buffer:
            self._buffer.clear()
            self._buffer_size = 0
        if self._writing:
            self._reactor.remove_writer(self._fileno)
            self._writing = False
        if not self._closing:
            self._closing = True
            self._reactor.remove_reader(self._fileno)
        self._lost = True
        self._reactor.call_soon(self._call_connection_lost, exc)

    def _call_connection_lost(self, exc: BaseException | None) -> None:
        self._lost = True
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
            self._closed()

    def _closed(self) -> None:
        """Hook for subclasses, run after the socket is closed (Unix: unlink the path)."""

    # ---------------------------------------------------------------- reading

    def _read_ready(self) -> None:
        for _ in range(_MAX_READS):
            if self._closing:
                return
            try:
                data, addr = self._sock.recvfrom(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._deliver_error(exc)
                continue
            try:
                self._protocol.datagram_received(data, addr)
            except Exception:
                log.exception("datagram_received raised; the datagram from %r is dropped", addr)

    def _deliver_error(self, exc: OSError) -> None:
        try:
            self._protocol.error_received(exc)
        except Exception:
            log.exception("error_received raised while handling %r", exc)

    # ---------------------------------------------------------------- writing

    def sendto(self, data: bytes, addr: Any = None) -> None:
        """Send one datagram to ``addr``, or to the connected peer when ``addr`` is None.

        Errors of the system call (no route, refused, message too long) go to the
        protocol's ``error_received``; sending after ``close`` is silently dropped,
        as in asyncio.

        Raises:
            TypeError: ``data`` is not bytes-like.
            ValueError: ``addr`` differs from the address given to ``connect``.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"data must be bytes-like, not {type(data).__name__}")
        if self._address is not None and addr not in (None, self._address):
            raise ValueError(f"invalid address: must be None or {self._address!r}")
        if self._closing:
            log.debug("sendto on a closing transport: datagram dropped")
            return
        if not self._buffer:
            try:
                self._send_one(data, addr)
                return
            except (BlockingIOError, InterruptedError):
                pass
            except OSError as exc:
                self._deliver_error(exc)
                return
        self._buffer.append((bytes(data), addr))
        self._buffer_size += len(data)
        if not self._writing:
            self._writing = True
            self._reactor.add_writer(self._fileno, self._write_ready)
        self._maybe_pause()

    def _send_one(self, data: bytes | bytearray | memoryview, addr: Any) -> None:
        if addr is None:
            self._sock.send(data)
        else:
            self._sock.sendto(data, addr)

    def _write_ready(self) -> None:
        while self._buffer:
            data, addr = self._buffer[0]
            try:
                self._send_one(data, addr)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._deliver_error(exc)
            self._buffer.popleft()
            self._buffer_size -= len(data)
        self._maybe_resume()
        self._reactor.remove_writer(self._fileno)
        self._writing = False
        if self._closing and not self._lost:
            self._lost = True
            self._reactor.call_soon(self._call_connection_lost, None)

    def _maybe_pause(self) -> None:
        if not self._paused and self._buffer_size > self._high:
            self._paused = True
            self._call_protocol("pause_writing")

    def _maybe_resume(self) -> None:
        if self._paused and self._buffer_size <= self._low:
            self._paused = False
            self._call_protocol("resume_writing")

    def _call_protocol(self, name: str) -> None:
        call_hook(self._protocol, name, log, "protocol %s raised", name)

    def get_write_buffer_size(self) -> int:
        """Bytes queued and not yet sent."""
        return self._buffer_size

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        """Set the queue's high and low water marks (asyncio's defaults: 64 KiB, high/4).

        Raises:
            ValueError: ``low`` exceeds ``high`` or either is negative.
        """
        high, low = write_buffer_limits(high, low)
        self._high, self._low = high, low
        self._maybe_pause()
        self._maybe_resume()

    # ---------------------------------------------------------------- the rest

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        """``sockname``, ``peername`` (after ``connect``) and ``socket``."""
        return self._extra.get(name, default)

    def get_protocol(self) -> Any:
        """The protocol receiving the datagrams."""
        return self._protocol

    def set_protocol(self, protocol: Any) -> None:
        """Deliver to ``protocol`` from now on."""
        self._protocol = protocol

    def get_host(self) -> Any:
        """The bound address (Twisted's ``getHost``)."""
        return self._sock.getsockname()

    def __repr__(self) -> str:
        state = "closing" if self._closing else "open"
        return f"<{type(self).__name__} {self._extra.get('sockname')!r} {state}>"


@implementer(IDatagramTransport)
class UDPTransport(DatagramTransport):
    """A UDP transport (``reactor.listen_udp``); ``connect`` fixes the peer."""

    def connect(self, host: str, port: int) -> None:
        """Fix the peer: ``sendto`` may then omit the address and ICMP errors are reported.

        Only literal addresses are accepted, because resolving a name would block.

        Raises:
            ValueError: ``host`` is not a literal IP address.
            OSError: the kernel refused (for example a family mismatch).
        """
        try:
            ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            raise ValueError(f"connect needs a literal IP address, not {host!r}") from None
        self._sock.connect((host, port))
        self._address = self._sock.getpeername()
        self._extra["peername"] = self._address


@implementer(IDatagramTransport)
class MulticastTransport(UDPTransport):
    """A UDP transport with multicast group membership and sending options.

    IPv4 groups are joined with ``IP_ADD_MEMBERSHIP`` and ``interface`` is the address
    of the interface. On an IPv6 socket the group is IPv6 (``IPV6_JOIN_GROUP``) and
    ``interface`` is an interface name (``"eth0"``) or decimal index (``"2"``); a group
    written with a zone (``"ff02::1:3%eth0"``) names its interface itself. ``""`` lets
    the kernel choose, which for link-local groups (``ff02::``) is rarely what you want.
    """

    def _v6(self) -> bool:
        return self._sock.family == socket.AF_INET6

    def _membership(self, addr: str, interface: str | int) -> bytes:
        try:
            group = ipaddress.ip_address(addr)
        except ValueError:
            raise ValueError(f"not an IP address: {addr!r}") from None
        if not group.is_multicast:
            raise ValueError(f"not a multicast address: {addr!r}")
        if self._v6():
            if not isinstance(group, ipaddress.IPv6Address):
                raise ValueError(f"an IPv6 socket needs an IPv6 group, not {addr!r}")
            index = self._if_index(interface)
            if group.scope_id is not None:
                zone = self._if_index(group.scope_id)
                if index and zone != index:
                    raise ValueError(
                        f"group {addr!r} names another interface than {interface!r}"
                    )
                index = zone
            return group.packed + struct.pack("@I", index)
        if group.version != 4:
            raise ValueError(f"an IPv4 socket needs an IPv4 group, not {addr!r}")
        return group.packed + self._v4_interface(interface or "0.0.0.0")

    @staticmethod
    def _v4_interface(interface: str | int) -> bytes:
        try:
            if not isinstance(interface, str):
                raise TypeError(interface)
            return socket.inet_aton(interface)
        except (OSError, TypeError):
            raise ValueError(f"not an IPv4 interface address: {interface!r}") from None

    @staticmethod
    def _if_index(interface: str | int) -> int:
        """The index of an IPv6 interface given by name or index (``""``: 0, any)."""
        if isinstance(interface, bool) or not isinstance(interface, str | int):
            raise ValueError(f"an interface is a name or an index, not {interface!r}")
        if isinstance(interface, str) and interface.isascii() and interface.isdigit():
            interface = int(interface)
        if isinstance(interface, int):
            if not 0 <= interface <= _MAX_IF_INDEX:
                raise ValueError(f"interface index out of range: {interface!r}")
            return interface
        if not interface:
            return 0
        try:
            return socket.if_nametoindex(interface)
        except (OSError, ValueError):
            raise ValueError(f"no such network interface: {interface!r}") from None

    def join_group(self, addr: str, interface: str | int = "") -> None:
        """Join multicast group ``addr`` on ``interface`` (``""``: the kernel's choice).

        IPv4: ``interface`` is the interface's address. IPv6: a name or index; a zone
        in the group (``"ff02::1:3%eth0"``) names the interface too.

        Raises:
            ValueError: ``addr`` is not a multicast address of the socket's family, or
                ``interface`` is malformed, unknown, or differs from the group's zone.
            OSError: the kernel refused (``EADDRINUSE`` when already joined, ``ENODEV``
                when the kernel finds no interface for the group).
        """
        mreq = self._membership(addr, interface)
        if self._v6():
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        else:
            self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)

    def leave_group(self, addr: str, interface: str | int = "") -> None:
        """Leave a group joined with ``join_group``.

        Raises:
            ValueError: as for ``join_group``.
            OSError: the kernel refused (``EADDRNOTAVAIL`` when not a member).
        """
        mreq = self._membership(addr, interface)
        if self._v6():
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_LEAVE_GROUP, mreq)
        else:
            self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_DROP_MEMBERSHIP, mreq)

    def set_ttl(self, ttl: int) -> None:
        """Set the hop limit of outgoing multicast datagrams (0-255; default 1).

        Raises:
            ValueError: ``ttl`` is out of range.
        """
        if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 255:
            raise ValueError(f"ttl must be an int from 0 to 255, not {ttl!r}")
        if self._v6():
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ttl)
        else:
            self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)

    def get_ttl(self) -> int:
        """The hop limit of outgoing multicast datagrams."""
        if self._v6():
            return self._sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS)
        return self._sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL)

    def set_loopback_mode(self, mode: bool) -> None:
        """Whether this host's own members receive what it sends to a group."""
        if self._v6():
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, int(mode))
        else:
            self._sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, int(mode))

    def get_loopback_mode(self) -> bool:
        """True when sent datagrams loop back to this host's members."""
        if self._v6():
            return bool(self._sock.getsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP))
        return bool(self._sock.getsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP))

    def set_outgoing_interface(self, addr: str | int) -> None:
        """Send multicast through one interface.

        IPv4: ``addr`` is the interface's address (``"0.0.0.0"``: the kernel's choice).
        IPv6: its name or index (``""`` or ``0``: the kernel's choice).

        Raises:
            ValueError: ``addr`` is malformed.
            OSError: no interface has that address.
        """
        if self._v6():
            index = self._if_index(addr)
            self._sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, index)
        else:
            self._sock.setsockopt(
                socket.IPPROTO_IP, socket.IP_MULTICAST_IF, self._v4_interface(addr)
            )
        self._extra["outgoing_interface"] = str(addr)

    def get_outgoing_interface(self) -> str:
        """What ``set_outgoing_interface`` was given, as a string (``""``: the kernel's)."""
        value: str = self._extra.get("outgoing_interface", "")
        return value


def _bind_udp(
    port: int, interface: str, *, reuse: bool = False
) -> socket.socket:
    family = _family_for(interface)
    if not interface:
        interface = "::" if family == socket.AF_INET6 else "0.0.0.0"
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if reuse:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if hasattr(socket, "SO_REUSEPORT"):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((interface, port))
    except BaseException:
        sock.close()
        raise
    return sock


def listen_udp(reactor: Any, port: int, protocol: Any, interface: str = "") -> UDPTransport:
    """Bind a UDP socket and run ``protocol`` (an instance) on it.

    Args:
        reactor: The reactor that will drive the socket.
        port: The port; 0 picks a free one (read it from ``get_extra_info('sockname')``).
        protocol: A datagram protocol instance.
        interface: The address to bind; ``""`` is every IPv4 address, and an address
            with a colon (``"::1"``, ``"::"``) makes an IPv6 socket.

    Returns:
        The transport, after ``protocol.connection_made`` ran.

    Raises:
        OSError: the bind failed (``EADDRINUSE``, ``EADDRNOTAVAIL``, ...).
    """
    transport = UDPTransport(reactor, _bind_udp(port, interface), protocol)
    transport._start()
    return transport


def listen_multicast(
    reactor: Any, port: int, protocol: Any, interface: str = "", listen_multiple: bool = False
) -> MulticastTransport:
    """Like ``listen_udp``, returning a transport with the multicast methods.

    With ``listen_multiple`` the socket sets ``SO_REUSEADDR`` (and ``SO_REUSEPORT``
    where it exists) so that several processes may bind the same group port.

    Raises:
        OSError: the bind failed.
    """
    sock = _bind_udp(port, interface, reuse=listen_multiple)
    transport = MulticastTransport(reactor, sock, protocol)
    transport._start()
    return transport

