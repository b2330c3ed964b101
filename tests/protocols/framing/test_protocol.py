"""The framing adapters on MemoryTransport and over connect_in_memory."""

from __future__ import annotations

import doctest

import pytest
from zope.interface.verify import verifyObject

from plait.cluster.interfaces import IProtocol
from plait.cluster.testing import MemoryTransport, connect_in_memory
from plait.protocols.framing import (
    Int16Protocol,
    Int32Protocol,
    LineProtocol,
    LineTooLongError,
    LocalFramingError,
    NetstringProtocol,
    PrefixedProtocol,
    RemoteFramingError,
    encode_netstring,
    encode_prefixed,
    protocol,
)

from .test_core import CHUNKING_IDS, split


class Lines(LineProtocol):
    """Records lines and raw data; ``LEN n`` switches to raw mode for n bytes."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self.raw: list[bytes] = []
        self._want = 0

    def line_received(self, line: bytes) -> None:
        self.lines.append(line)
        if line.startswith(b"LEN "):
            self._want = int(line[4:])
            self.set_raw_mode()
        elif line == b"QUIT":
            self.transport.close()

    def raw_data_received(self, data: bytes) -> None:
        body, rest = data[: self._want], data[self._want :]
        self._want -= len(body)
        self.raw.append(body)
        if self._want == 0:
            self.set_line_mode(extra=rest)


class Strings(NetstringProtocol):
    def __init__(self) -> None:
        self.strings: list[bytes] = []

    def string_received(self, payload: bytes) -> None:
        self.strings.append(payload)


class Frames16(Int16Protocol):
    max_frame = 10

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def frame_received(self, payload: bytes) -> None:
        self.frames.append(payload)


class Frames32(Int32Protocol):
    max_frame = 10

    def __init__(self) -> None:
        self.frames: list[bytes] = []

    def frame_received(self, payload: bytes) -> None:
        self.frames.append(payload)


def connected(proto: LineProtocol | NetstringProtocol | PrefixedProtocol) -> MemoryTransport:
    transport = MemoryTransport()
    transport.make_connection(proto)
    return transport


def test_docstring_examples_hold() -> None:
    assert doctest.testmod(protocol).failed == 0


@pytest.mark.parametrize("cls", [LineProtocol, NetstringProtocol, Int16Protocol, Int32Protocol])
def test_every_adapter_provides_iprotocol(cls: type) -> None:
    assert verifyObject(IProtocol, cls())


# LineProtocol ----------------------------------------------------------------------


@pytest.mark.parametrize("how", CHUNKING_IDS)
def test_lines_and_raw_sections_arrive_whatever_the_chunking(how: str) -> None:
    proto = Lines()
    connected(proto)
    for piece in split(b"HELLO\r\nLEN 7\r\nab\r\ncdeNEXT\r\nLEN 0\r\nLAST\r\n", how):
        proto.data_received(piece)
    assert proto.lines == [b"HELLO", b"LEN 7", b"NEXT", b"LEN 0", b"LAST"]
    assert b"".join(proto.raw) == b"ab\r\ncde"


def test_switching_to_raw_mode_outside_a_callback_delivers_what_is_buffered() -> None:
    proto = Lines()
    connected(proto)
    proto.data_received(b"partial line")
    proto._want = 100
    proto.set_raw_mode()
    assert proto.raw == [b"partial line"]


def test_switching_to_line_mode_outside_a_callback_parses_the_extra_bytes() -> None:
    proto = Lines()
    connected(proto)
    proto.set_raw_mode()
    proto.set_line_mode(extra=b"one\r\ntwo\r\n")
    assert proto.lines == [b"one", b"two"]


def test_a_line_over_the_limit_aborts_that_connection_only() -> None:
    class Short(Lines):
        max_length = 8

    bad, good = Short(), Short()
    bad_transport, good_transport = connected(bad), connected(good)
    bad.data_received(b"ok\r\nmuch too long for eight")
    good.data_received(b"fine\r\n")
    assert bad_transport.aborted and bad.lines == [b"ok"]
    bad.data_received(b"\r\nmore\r\n")  # late bytes after the abort are ignored
    assert bad.lines == [b"ok"]
    assert not good_transport.is_closing() and good.lines == [b"fine"]


def test_lines_after_the_transport_closes_are_not_delivered() -> None:
    proto = Lines()
    transport = connected(proto)
    proto.data_received(b"QUIT\r\nIGNORED\r\n")
    assert proto.lines == [b"QUIT"]
    assert transport.is_closing() and not transport.aborted


def test_send_line_appends_the_class_delimiter() -> None:
    class Unix(LineProtocol):
        delimiter = b"\n"

    proto = Unix()
    transport = connected(proto)
    proto.send_line(b"hi")
    assert transport.value() == b"hi\n"
    with pytest.raises(LocalFramingError):
        proto.send_line(b"a\nb")


def test_framing_failed_can_be_overridden_to_answer_first() -> None:
    class Polite(LineProtocol):
        max_length = 4

        def framing_failed(self, exc: RemoteFramingError) -> None:
            assert isinstance(exc, LineTooLongError)
            self.send_line(b"ERR line too long")
            super().framing_failed(exc)

    proto = Polite()
    transport = connected(proto)
    proto.data_received(b"toolong")
    assert transport.value() == b"ERR line too long\r\n"
    assert transport.aborted


# NetstringProtocol ------------------------------------------------------------------


@pytest.mark.parametrize("how", CHUNKING_IDS)
def test_netstrings_arrive_whatever_the_chunking(how: str) -> None:
    proto = Strings()
    connected(proto)
    for piece in split(b"5:hello,0:,3:a,b,", how):
        proto.data_received(piece)
    assert proto.strings == [b"hello", b"", b"a,b"]


@pytest.mark.parametrize("wire", [b"x:", b"01:a,", b"1:ab", b"9999999999"])
def test_a_bad_netstring_aborts_that_connection_only(wire: bytes) -> None:
    bad, good = Strings(), Strings()
    bad_transport, good_transport = connected(bad), connected(good)
    bad.data_received(b"2:ok," + wire)
    good.data_received(b"2:ok,")
    assert bad_transport.aborted and bad.strings == [b"ok"]
    assert not good_transport.is_closing() and good.strings == [b"ok"]


def test_netstrings_after_the_transport_closes_are_not_delivered() -> None:
    class CloseAfterFirst(Strings):
        def string_received(self, payload: bytes) -> None:
            super().string_received(payload)
            self.transport.close()

    proto = CloseAfterFirst()
    connected(proto)
    proto.data_received(b"1:a,1:b,")
    assert proto.strings == [b"a"]


def test_send_string_writes_a_netstring() -> None:
    proto = Strings()
    transport = connected(proto)
    proto.send_string(b"hey")
    assert transport.value() == b"3:hey,"


# PrefixedProtocol -------------------------------------------------------------------


@pytest.mark.parametrize("cls", [Frames16, Frames32])
@pytest.mark.parametrize("how", CHUNKING_IDS)
def test_frames_arrive_whatever_the_chunking(cls: type[Frames16], how: str) -> None:
    proto = cls()
    connected(proto)
    wire = b"".join(encode_prefixed(p, prefix_bits=cls.prefix_bits) for p in [b"a", b"", b"xyz"])
    for piece in split(wire, how):
        proto.data_received(piece)
    assert proto.frames == [b"a", b"", b"xyz"]


@pytest.mark.parametrize("cls", [Frames16, Frames32])
def test_an_oversize_prefix_aborts_that_connection_before_its_body(cls: type[Frames16]) -> None:
    bad, good = cls(), cls()
    bad_transport, good_transport = connected(bad), connected(good)
    header = encode_prefixed(b"x" * 11, prefix_bits=cls.prefix_bits)[: cls.prefix_bits // 8]
    bad.data_received(header)  # only the prefix: the body never had to arrive
    good.data_received(encode_prefixed(b"ok", prefix_bits=cls.prefix_bits))
    assert bad_transport.aborted and bad.frames == []
    assert not good_transport.is_closing() and good.frames == [b"ok"]


def test_frames_after_the_transport_closes_are_not_delivered() -> None:
    class CloseAfterFirst(Frames32):
        def frame_received(self, payload: bytes) -> None:
            super().frame_received(payload)
            self.transport.close()

    proto = CloseAfterFirst()
    connected(proto)
    proto.data_received(encode_prefixed(b"a") + encode_prefixed(b"b"))
    assert proto.frames == [b"a"]


def test_send_frame_refuses_what_the_prefix_or_limit_cannot_carry() -> None:
    proto = Frames16()
    transport = connected(proto)
    proto.send_frame(b"abc")
    assert transport.value() == b"\x00\x03abc"
    with pytest.raises(LocalFramingError):
        proto.send_frame(b"x" * 11)


def test_int32_is_the_default_prefix() -> None:
    assert PrefixedProtocol.prefix_bits == Int32Protocol.prefix_bits == 32
    assert Int16Protocol.prefix_bits == 16


# Over a wired in-memory connection --------------------------------------------------


def test_a_netstring_echo_round_trip_over_connect_in_memory() -> None:
    class Echo(NetstringProtocol):
        def string_received(self, payload: bytes) -> None:
            self.send_string(payload.upper())

    client = Strings()
    pump = connect_in_memory(Echo(), client)
    for word in (b"alpha", b"", b"gamma"):
        client.send_string(word)
    pump.flush()
    assert client.strings == [b"ALPHA", b"", b"GAMMA"]


def test_a_peer_sending_garbage_loses_its_connection_over_connect_in_memory() -> None:
    lost: list[BaseException | None] = []

    class Client(LineProtocol):
        def connection_lost(self, exc: BaseException | None) -> None:
            lost.append(exc)

    server = Lines()
    server.max_length = 16
    client = Client()
    pump = connect_in_memory(server, client)
    client.transport.write(b"x" * 100)
    pump.flush()
    assert server.transport.aborted
    assert len(lost) == 1
    assert encode_netstring(b"") == b"0:,"  # the module's other helpers stay usable
