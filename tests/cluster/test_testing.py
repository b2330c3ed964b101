"""plait.cluster.testing: the fakes are verified, not trusted.

``verifyObject`` for every fake and each interface it claims, and unit tests of
``MemoryTransport``. ``connect_in_memory``/``IOPump`` are tested in
``test_testing_pump.py`` and ``MemoryReactor`` in ``test_testing_reactor.py``; the
behaviour shared with real transports is checked again by ``tests/conformance``.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from zope.interface import Interface, providedBy
from zope.interface.verify import verifyObject

from plait.cluster.interfaces import (
    IConsumer,
    IDatagramTransport,
    IListeningPort,
    IReactorCore,
    IReactorFDSet,
    IReactorTCP,
    IReactorTime,
    IReactorUDP,
    IReactorUNIX,
    ITransport,
    IUnixTransport,
)
from plait.cluster.protocol import DatagramProtocol, Protocol
from plait.cluster.testing import IOPump, MemoryReactor, MemoryTransport, connect_in_memory
from tests.cluster._recorders import PullProducer, PushProducer, Recorder

# ------------------------------------------------------------------ verifyObject


def _memory_pump() -> IOPump:
    return connect_in_memory(Protocol(), Protocol())


@pytest.mark.parametrize(
    ("interface", "make"),
    [
        (ITransport, MemoryTransport),
        (IUnixTransport, MemoryTransport),
        (IConsumer, MemoryTransport),
        (ITransport, lambda: _memory_pump().server_transport),
        (IUnixTransport, lambda: _memory_pump().client_transport),
        (IReactorTime, MemoryReactor),
        (IReactorTCP, MemoryReactor),
        (IReactorUNIX, MemoryReactor),
        (IReactorUDP, MemoryReactor),
        (IReactorCore, MemoryReactor),
        (IReactorFDSet, MemoryReactor),
        (IListeningPort, lambda: MemoryReactor().listen_tcp(0, Protocol)),
        (IListeningPort, lambda: MemoryReactor().listen_unix("/tmp/x.sock", Protocol)),
        (IDatagramTransport, lambda: MemoryReactor().listen_udp(0, DatagramProtocol())),
    ],
)
def test_every_fake_provides_what_it_claims(
    interface: type[Interface], make: Callable[[], object]
) -> None:
    assert verifyObject(interface, make())


def _every_fake() -> list[object]:
    reactor = MemoryReactor()
    pump = _memory_pump()
    return [
        MemoryTransport(),
        pump.server_transport,
        pump.client_transport,
        reactor,
        reactor.listen_tcp(0, Protocol),
        reactor.listen_unix("/tmp/x.sock", Protocol),
        reactor.listen_udp(0, DatagramProtocol()),
    ]


@pytest.mark.parametrize("index", range(len(_every_fake())))
def test_every_interface_a_fake_declares_is_verified(index: int) -> None:
    fake = _every_fake()[index]
    declared = list(providedBy(fake).flattened())
    assert declared, f"{fake!r} declares no interface"
    for interface in declared:
        assert verifyObject(interface, fake), interface


# ------------------------------------------------------------------ MemoryTransport


def test_value_returns_every_byte_written_and_clear_forgets_them() -> None:
    transport = MemoryTransport()
    transport.write(b"abc")
    transport.write(bytearray(b"de"))
    transport.writelines([b"f", memoryview(b"gh")])
    assert transport.value() == b"abcdefgh"
    transport.clear()
    assert transport.value() == b""
    transport.write(b"i")
    assert transport.value() == b"i"


@pytest.mark.parametrize("bad", ["text", 3, None, [b"x"]])
def test_write_of_something_not_bytes_like_raises_type_error(bad: Any) -> None:
    transport = MemoryTransport()
    with pytest.raises(TypeError):
        transport.write(bad)
    assert transport.value() == b""


def test_writelines_with_one_bad_item_writes_nothing() -> None:
    transport = MemoryTransport()
    with pytest.raises(TypeError):
        transport.writelines([b"ok", "not bytes"])  # type: ignore[list-item]
    assert transport.value() == b""


def test_write_after_close_is_dropped_and_counted_without_raising() -> None:
    transport = MemoryTransport()
    transport.write(b"kept")
    transport.close()
    transport.write(b"late")
    transport.writelines([b"later"])
    assert transport.value() == b"kept"
    assert transport.dropped_bytes == 9


def test_write_after_write_eof_is_dropped_and_counted_without_raising() -> None:
    transport = MemoryTransport()
    transport.write(b"kept")
    transport.write_eof()
    assert transport.eof_written
    assert transport.can_write_eof()
    transport.write(b"late")
    transport.send_fds([3], b"x")
    assert transport.value() == b"kept"
    assert transport.dropped_bytes == 5
    assert transport.sent_fds == []


def test_standalone_close_delivers_connection_lost_none_at_once_and_only_once() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    transport.close()
    transport.close()
    transport.abort()
    assert transport.is_closing()
    assert transport.disconnected
    assert protocol.lost == [None]


def test_close_without_a_protocol_only_marks_the_transport_closing() -> None:
    transport = MemoryTransport()
    transport.close()
    assert transport.is_closing()
    assert not transport.is_reading()


def test_standalone_close_waits_for_the_simulated_buffer_to_drain() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    transport.buffer_size = 100
    transport.close()
    assert protocol.lost == []
    transport.buffer_size = 0
    assert protocol.lost == [None]


def test_standalone_abort_delivers_connection_lost_none_at_once() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    transport.buffer_size = 100
    transport.abort()
    assert transport.aborted
    assert transport.get_write_buffer_size() == 0
    assert protocol.lost == [None]


def test_make_connection_adopts_the_protocol_and_calls_connection_made() -> None:
    protocol = Recorder()
    transport = MemoryTransport()
    transport.make_connection(protocol)
    assert protocol.events == ["made"]
    assert transport.get_protocol() is protocol
    other = Recorder()
    transport.set_protocol(other)
    transport.close()
    assert other.lost == [None] and protocol.lost == []


def test_pause_and_resume_reading_flip_is_reading() -> None:
    transport = MemoryTransport()
    assert transport.is_reading()
    transport.pause_reading()
    assert not transport.is_reading()
    transport.resume_reading()
    assert transport.is_reading()


def test_extra_info_has_configurable_peername_and_sockname_defaults() -> None:
    transport = MemoryTransport()
    assert transport.get_extra_info("peername") == ("127.0.0.1", 54321)
    assert transport.get_extra_info("sockname") == ("127.0.0.1", 12345)
    assert transport.get_extra_info("cipher", "none") == "none"
    custom = MemoryTransport(peername=("::1", 1), extra={"sockname": "/run/x.sock", "k": 1})
    assert custom.get_extra_info("peername") == ("::1", 1)
    assert custom.get_extra_info("sockname") == "/run/x.sock"
    assert custom.get_extra_info("k") == 1


def test_write_buffer_limits_default_like_asyncio() -> None:
    transport = MemoryTransport()
    assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
    transport.set_write_buffer_limits(high=1000)
    assert transport.get_write_buffer_limits() == (250, 1000)
    transport.set_write_buffer_limits(low=100)
    assert transport.get_write_buffer_limits() == (100, 400)
    transport.set_write_buffer_limits(high=0)
    assert transport.get_write_buffer_limits() == (0, 0)


@pytest.mark.parametrize(
    ("high", "low", "error"),
    [(10, 20, ValueError), (-1, None, ValueError), (None, -4, ValueError),
     (1.5, None, TypeError), (None, "1", TypeError), (True, None, TypeError)],
)
def test_bad_write_buffer_limits_are_refused(high: Any, low: Any, error: type[Exception]) -> None:
    transport = MemoryTransport()
    with pytest.raises(error):
        transport.set_write_buffer_limits(high=high, low=low)
    assert transport.get_write_buffer_limits() == (16 * 1024, 64 * 1024)


def test_buffer_size_crossing_the_water_marks_pauses_and_resumes_writing() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    transport.set_write_buffer_limits(high=100, low=20)
    transport.buffer_size = 100
    assert protocol.events == []
    transport.buffer_size = 101
    transport.buffer_size = 500
    assert protocol.events == ["pause_writing"]
    transport.buffer_size = 21
    assert protocol.events == ["pause_writing"]
    transport.buffer_size = 20
    assert protocol.events == ["pause_writing", "resume_writing"]
    assert transport.get_write_buffer_size() == 20


def test_lowering_the_high_water_mark_below_the_buffer_pauses_writing() -> None:
    protocol = Recorder()
    transport = MemoryTransport(protocol)
    transport.buffer_size = 50
    transport.set_write_buffer_limits(high=10)
    assert protocol.events == ["pause_writing"]
    transport.set_write_buffer_limits(high=100, low=60)
    assert protocol.events == ["pause_writing", "resume_writing"]


@pytest.mark.parametrize(("size", "error"), [(-1, ValueError), (1.0, TypeError)])
def test_bad_buffer_size_is_refused(size: Any, error: type[Exception]) -> None:
    with pytest.raises(error):
        MemoryTransport().buffer_size = size


def test_an_exception_in_pause_writing_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Broken(Protocol):
        def pause_writing(self) -> None:
            raise RuntimeError("broken pause")

    transport = MemoryTransport(Broken())
    transport.set_write_buffer_limits(high=1)
    with caplog.at_level(logging.ERROR):
        transport.buffer_size = 5
    assert "pause_writing() failed" in caplog.text


def test_push_producer_follows_the_water_marks() -> None:
    producer = PushProducer()
    transport = MemoryTransport(Recorder())
    transport.set_write_buffer_limits(high=10, low=2)
    transport.register_producer(producer, True)
    assert transport.producer is producer and transport.streaming
    transport.buffer_size = 11
    transport.buffer_size = 2
    assert producer.calls == ["pause", "resume"]
    transport.unregister_producer()
    transport.buffer_size = 50
    assert producer.calls == ["pause", "resume"]
    assert transport.producer is None


def test_push_producer_registered_while_writing_is_paused_is_paused_at_once() -> None:
    transport = MemoryTransport(Recorder())
    transport.set_write_buffer_limits(high=10)
    transport.buffer_size = 11
    producer = PushProducer()
    transport.register_producer(producer, True)
    assert producer.calls == ["pause"]


def test_registering_a_second_producer_raises_runtime_error() -> None:
    transport = MemoryTransport()
    transport.register_producer(PushProducer(), True)
    with pytest.raises(RuntimeError):
        transport.register_producer(PushProducer(), True)


def test_producer_is_stopped_when_the_connection_is_lost_or_already_lost() -> None:
    transport = MemoryTransport(Recorder())
    producer = PushProducer()
    transport.register_producer(producer, True)
    transport.close()
    assert producer.calls == ["stop"]
    assert transport.producer is None
    late = PushProducer()
    transport.register_producer(late, True)
    assert late.calls == ["stop"]
    assert transport.producer is None


def test_pull_producer_is_resumed_on_registration() -> None:
    transport = MemoryTransport()
    producer = PullProducer(transport, [b"one", b"two"])
    transport.register_producer(producer, False)
    assert producer.calls == ["resume"]
    assert transport.value() == b"one"
    assert not transport.streaming


def test_send_fds_records_the_descriptors_and_the_data() -> None:
    transport = MemoryTransport()
    transport.send_fds([3, 4])
    transport.send_fds((5,), b"x")
    assert transport.sent_fds == [[3, 4], [5]]
    assert transport.value() == b"\0x"


@pytest.mark.parametrize(
    ("fds", "data", "error"),
    [([3], b"", ValueError), ([-1], b"\0", ValueError), (["3"], b"\0", TypeError),
     ([3], "text", TypeError), ([True], b"\0", TypeError)],
)
def test_bad_send_fds_calls_are_refused(fds: Any, data: Any, error: type[Exception]) -> None:
    transport = MemoryTransport()
    with pytest.raises(error):
        transport.send_fds(fds, data)
    assert transport.sent_fds == [] and transport.value() == b""


def test_send_fds_after_close_is_dropped() -> None:
    transport = MemoryTransport()
    transport.close()
    transport.send_fds([3])
    assert transport.sent_fds == []


# ------------------------------------------------------------------ the guide


DOC = Path(__file__).resolve().parents[2] / "docs" / "testing-fakes.md"


def python_blocks(markdown: str) -> list[str]:
    """The ```python blocks of ``markdown`` whose first line is not ``# not-run``."""
    blocks = re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.S | re.M)
    return [b for b in blocks if not b.lstrip().startswith("# not-run")]


def test_python_blocks_finds_runnable_blocks_and_leaves_not_run_ones() -> None:
    text = "```python\na = 1\n```\n\n```python\n# not-run\nboom()\n```\n```text\nx\n```\n"
    assert python_blocks(text) == ["a = 1\n"]


def test_the_examples_in_docs_testing_fakes_run() -> None:
    blocks = python_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 8
    namespace: dict[str, Any] = {"__name__": "docs_testing_fakes"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{DOC.name} block {number}", "exec"), namespace)
