"""The transport conformance suite: one set of checks, every stream transport.

Theory of operation: a check never touches a socket or a pump itself. It asks a
``PairBuilder`` for connected ``Pair``s of ``Recorder`` protocols and calls
``pair.drive(until, timeout)``, which runs the loop (or the in-memory pump) until
``until()`` holds and says whether it did. A check that something does *not*
happen (paused reading) drives for a short bounded time and asserts the condition
stayed false; with the memory pump that is "until quiet".

``TransportConformance`` holds the checks; a test module subclasses it as
``Test<Name>`` and provides a ``builder`` fixture (see ``tests/conformance/__init__``).
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from zope.interface import implementer

from plait.cluster.interfaces import IPullProducer, IPushProducer, ITransport, IUnixTransport
from plait.cluster.protocol import Protocol

__all__ = [
    "Pair",
    "PairBuilder",
    "PullingProducer",
    "ReactorPairBuilder",
    "Recorder",
    "RecordingProducer",
    "TransportConformance",
]

Drive = Callable[[Callable[[], bool], float], bool]

NEGATIVE_WAIT = 0.05
"""Seconds a real loop runs to show that something does not happen."""

MIB = 1 << 20


class Recorder(Protocol):
    """A protocol that records every callback, and can echo, keep open or fail."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.made = False
        self.data = bytearray()
        self.eofs = 0
        self.lost: list[BaseException | None] = []
        self.pauses = 0
        self.resumes = 0
        self.events: list[str] = []
        self.fds: list[list[int]] = []
        self.data_before_fds: list[int] = []
        self.echo = False
        self.keep_open_on_eof = False
        self.fail_with: Exception | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.made = True
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.data += data
        if not self.events or self.events[-1] != "data":
            self.events.append("data")
        if self.echo:
            self.transport.write(data)

    def fds_received(self, fds: list[int]) -> None:
        self.fds.append(fds)
        self.data_before_fds.append(len(self.data))
        self.events.append("fds")

    def eof_received(self) -> bool:
        self.eofs += 1
        self.events.append("eof")
        return self.keep_open_on_eof

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)
        self.events.append("lost")

    def pause_writing(self) -> None:
        self.pauses += 1
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        self.resumes += 1
        self.events.append("resume_writing")


@implementer(IPushProducer)
class RecordingProducer:
    """A push producer that only records what the transport asks of it."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_producing(self) -> None:
        self.calls.append("pause")

    def resume_producing(self) -> None:
        self.calls.append("resume")

    def stop_producing(self) -> None:
        self.calls.append("stop")


@implementer(IPullProducer)
class PullingProducer:
    """A pull producer that writes one chunk per ``resume_producing``, then unregisters."""

    def __init__(self, transport: Any, chunks: list[bytes]) -> None:
        self.transport = transport
        self.chunks = chunks
        self.resumes = 0
        self.stops = 0

    def resume_producing(self) -> None:
        self.resumes += 1
        if self.chunks:
            self.transport.write(self.chunks.pop(0))
        else:
            self.transport.unregister_producer()

    def stop_producing(self) -> None:
        self.stops += 1


@dataclass
class Pair:
    """One connection: both protocols (``connection_made`` done) and its driver."""

    server: Recorder
    client: Recorder
    drive: Drive


class PairBuilder(abc.ABC):
    """Makes connected pairs over one kind of transport and tears them down.

    Capabilities a transport may lack are class attributes, so that a check can
    state its expectation per transport instead of being skipped.
    """

    name = "?"
    abort_resets_peer = True
    """The peer of an aborting side sees an error (TCP sends RST; Unix sockets may not)."""
    carries_fds = False
    """Transports provide ``IUnixTransport``: ``send_fds`` reaches ``fds_received``."""

    @abc.abstractmethod
    def open(self) -> Pair:
        """Connect a new client Recorder to a new server Recorder and return both."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release everything the builder made (ports, sockets, the loop)."""


def _pattern(size: int, seed: int = 0) -> bytes:
    block = bytes((i * 7 + seed) % 251 for i in range(251))
    return (block * (size // len(block) + 1))[:size]


def _fill_until_paused(pair: Pair, chunk: int = 64 * 1024, limit: int = 64 * MIB) -> int:
    """Write from the client while the server does not read, until writing pauses."""
    written = 0
    transport = pair.client.transport
    while pair.client.pauses == 0 and written < limit:
        transport.write(_pattern(chunk, written // chunk))
        written += chunk
        if pair.client.pauses == 0 and written % (16 * chunk) == 0:
            pair.drive(lambda: pair.client.pauses > 0, 0.01)
    return written


def _expected_fill(written: int, chunk: int = 64 * 1024) -> bytes:
    return b"".join(_pattern(chunk, i) for i in range(written // chunk))


class TransportConformance:
    """The checks every stream transport must pass (subclass with a ``builder`` fixture)."""

    @pytest.fixture
    def pair(self, builder: PairBuilder) -> Pair:
        return builder.open()

    def test_transports_provide_itransport(self, pair: Pair) -> None:
        from zope.interface.verify import verifyObject

        assert verifyObject(ITransport, pair.server.transport)
        assert verifyObject(ITransport, pair.client.transport)

    def test_bytes_flow_both_ways_in_order(self, pair: Pair) -> None:
        sent_up = [b"up-%d;" % i for i in range(200)]
        sent_down = [b"down-%d;" % i for i in range(200)]
        for up, down in zip(sent_up, sent_down, strict=True):
            pair.client.transport.write(up)
            pair.server.transport.write(down)
        want_up, want_down = b"".join(sent_up), b"".join(sent_down)
        assert pair.drive(
            lambda: (
                len(pair.server.data) >= len(want_up) and len(pair.client.data) >= len(want_down)
            ),
            5.0,
        )
        assert bytes(pair.server.data) == want_up
        assert bytes(pair.client.data) == want_down

    def test_one_mebibyte_arrives_intact_both_ways(self, pair: Pair) -> None:
        up, down = _pattern(MIB, 1), _pattern(MIB, 2)
        pair.client.transport.write(up)
        pair.server.transport.write(down)
        assert pair.drive(
            lambda: len(pair.server.data) >= MIB and len(pair.client.data) >= MIB, 10.0
        )
        assert bytes(pair.server.data) == up
        assert bytes(pair.client.data) == down

    def test_writelines_sends_the_buffers_in_order(self, pair: Pair) -> None:
        pair.client.transport.writelines([b"alpha", bytearray(b"-beta"), memoryview(b"-gamma")])
        assert pair.drive(lambda: len(pair.server.data) >= 16, 5.0)
        assert bytes(pair.server.data) == b"alpha-beta-gamma"

    def test_close_delivers_connection_lost_none_on_both_sides(self, pair: Pair) -> None:
        pair.client.transport.write(b"bye")
        pair.client.transport.close()
        assert pair.client.transport.is_closing()
        assert pair.drive(lambda: bool(pair.client.lost and pair.server.lost), 5.0)
        assert pair.client.lost == [None]
        assert pair.server.lost == [None]
        assert bytes(pair.server.data) == b"bye"
        assert pair.server.events[-2:] == ["eof", "lost"]

    def test_close_sends_every_buffered_byte_first(self, pair: Pair) -> None:
        payload = _pattern(4 * MIB, 3)
        pair.client.transport.write(payload)
        pair.client.transport.close()
        assert pair.drive(lambda: bool(pair.server.lost), 10.0)
        assert bytes(pair.server.data) == payload
        assert pair.server.lost == [None]

    def test_abort_reports_none_here_and_an_error_to_the_peer(
        self, builder: PairBuilder, pair: Pair
    ) -> None:
        pair.client.transport.write(b"dropped or not")
        pair.client.transport.abort()
        assert pair.client.transport.is_closing()
        assert pair.drive(lambda: bool(pair.client.lost and pair.server.lost), 5.0)
        # The documented rule (asyncio's): the side that aborts gets None.
        assert pair.client.lost == [None]
        (peer_exc,) = pair.server.lost
        if builder.abort_resets_peer:
            assert isinstance(peer_exc, ConnectionError), peer_exc
        else:
            assert peer_exc is None or isinstance(peer_exc, ConnectionError), peer_exc

    def test_write_after_close_is_dropped_without_raising(self, pair: Pair) -> None:
        pair.client.transport.write(b"before")
        pair.client.transport.close()
        pair.client.transport.write(b"after")
        pair.client.transport.writelines([b"after", b"again"])
        assert pair.drive(lambda: bool(pair.server.lost), 5.0)
        assert bytes(pair.server.data) == b"before"

    def test_write_eof_reaches_the_peer_which_may_still_answer(self, pair: Pair) -> None:
        assert pair.client.transport.can_write_eof()
        pair.server.keep_open_on_eof = True
        pair.client.transport.write(b"question")
        pair.client.transport.write_eof()
        assert pair.drive(lambda: pair.server.eofs == 1, 5.0)
        assert bytes(pair.server.data) == b"question"
        assert not pair.server.transport.is_closing()
        pair.server.transport.write(b"answer")
        pair.server.transport.close()
        assert pair.drive(lambda: bool(pair.client.lost and pair.server.lost), 5.0)
        assert bytes(pair.client.data) == b"answer"
        assert pair.client.eofs == 1
        assert pair.client.lost == [None]
        assert pair.server.lost == [None]

    def test_write_after_write_eof_is_dropped_without_raising(self, pair: Pair) -> None:
        pair.server.keep_open_on_eof = True
        pair.client.transport.write(b"before")
        pair.client.transport.write_eof()
        pair.client.transport.write(b"after")
        pair.client.transport.writelines([b"after", b"again"])
        assert pair.drive(lambda: pair.server.eofs == 1, 5.0)
        assert bytes(pair.server.data) == b"before"

    def test_a_connection_half_closed_both_ways_ends_on_both_sides(self, pair: Pair) -> None:
        pair.server.keep_open_on_eof = True
        pair.client.keep_open_on_eof = True
        pair.client.transport.write_eof()
        assert pair.drive(lambda: pair.server.eofs == 1, 5.0)
        pair.server.transport.write(b"reply")
        pair.server.transport.write_eof()
        assert pair.drive(lambda: bool(pair.client.lost and pair.server.lost), 5.0)
        assert bytes(pair.client.data) == b"reply"
        assert pair.client.eofs == 1
        assert pair.client.lost == [None] and pair.server.lost == [None]

    def test_eof_closes_the_peer_when_eof_received_returns_false(self, pair: Pair) -> None:
        pair.client.transport.write_eof()
        assert pair.drive(lambda: bool(pair.server.lost and pair.client.lost), 5.0)
        assert pair.server.eofs == 1
        assert pair.server.lost == [None]
        assert pair.client.lost == [None]

    def test_pause_reading_holds_data_until_resume_reading(self, pair: Pair) -> None:
        server = pair.server.transport
        assert server.is_reading()
        server.pause_reading()
        assert not server.is_reading()
        pair.client.transport.write(b"held")
        assert not pair.drive(lambda: bool(pair.server.data), NEGATIVE_WAIT)
        server.resume_reading()
        assert server.is_reading()
        assert pair.drive(lambda: len(pair.server.data) >= 4, 5.0)
        assert bytes(pair.server.data) == b"held"

    def test_idle_transports_have_empty_write_buffers(self, pair: Pair) -> None:
        pair.client.transport.write(b"x")
        assert pair.drive(lambda: bool(pair.server.data), 5.0)
        assert pair.client.transport.get_write_buffer_size() == 0
        assert pair.server.transport.get_write_buffer_size() == 0

    def test_write_buffer_limits_are_checked(self, pair: Pair) -> None:
        with pytest.raises(ValueError):
            pair.client.transport.set_write_buffer_limits(high=10, low=20)
        with pytest.raises(ValueError):
            pair.client.transport.set_write_buffer_limits(high=-1)

    def test_water_marks_call_pause_writing_then_resume_writing(self, pair: Pair) -> None:
        client = pair.client.transport
        client.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
        pair.server.transport.pause_reading()
        written = _fill_until_paused(pair)
        assert pair.client.pauses == 1
        assert client.get_write_buffer_size() > 64 * 1024
        pair.server.transport.resume_reading()
        assert pair.drive(lambda: pair.client.resumes == 1, 10.0)
        assert client.get_write_buffer_size() <= 16 * 1024
        assert pair.client.pauses == 1
        assert pair.drive(lambda: len(pair.server.data) >= written, 10.0)
        assert bytes(pair.server.data) == _expected_fill(written)

    def test_push_producer_is_paused_and_resumed(self, pair: Pair) -> None:
        producer = RecordingProducer()
        client = pair.client.transport
        client.set_write_buffer_limits(high=64 * 1024, low=16 * 1024)
        client.register_producer(producer, True)
        pair.server.transport.pause_reading()
        _fill_until_paused(pair)
        assert producer.calls == ["pause"]
        pair.server.transport.resume_reading()
        assert pair.drive(lambda: producer.calls == ["pause", "resume"], 10.0)
        client.unregister_producer()

    def test_pull_producer_is_asked_for_more_until_it_unregisters(self, pair: Pair) -> None:
        chunks = [_pattern(16 * 1024, i) for i in range(64)]
        producer = PullingProducer(pair.client.transport, list(chunks))
        pair.client.transport.register_producer(producer, False)
        want = b"".join(chunks)
        assert pair.drive(
            lambda: len(pair.server.data) >= len(want) and producer.resumes > len(chunks), 10.0
        )
        assert bytes(pair.server.data) == want
        assert producer.resumes == len(chunks) + 1
        assert producer.stops == 0

    def test_get_extra_info_names_both_ends(self, pair: Pair) -> None:
        server, client = pair.server.transport, pair.client.transport
        assert server.get_extra_info("sockname") is not None
        assert client.get_extra_info("peername") is not None
        assert server.get_extra_info("sockname") == client.get_extra_info("peername")
        assert client.get_extra_info("sockname") == server.get_extra_info("peername")
        marker = object()
        assert client.get_extra_info("no such name", marker) is marker

    def test_descriptors_sent_with_send_fds_arrive_before_their_bytes(
        self, builder: PairBuilder, pair: Pair
    ) -> None:
        client = pair.client.transport
        if not builder.carries_fds:
            assert not IUnixTransport.providedBy(client)
            return
        assert IUnixTransport.providedBy(client)
        r, w = os.pipe()
        try:
            client.write(b"a")
            client.send_fds([r], b"b")
        finally:
            os.close(r)  # the transport sends its own copy
        try:
            assert pair.drive(lambda: len(pair.server.data) >= 2, 5.0)
            assert bytes(pair.server.data) == b"ab"
            (received,) = pair.server.fds
            assert len(received) == 1
            assert pair.server.data_before_fds[0] <= 1
            os.write(w, b"through the descriptor")
            assert os.read(received[0], 64) == b"through the descriptor"
            os.close(received[0])
        finally:
            os.close(w)

    def test_exception_in_data_received_aborts_that_connection_only(
        self, builder: PairBuilder, pair: Pair
    ) -> None:
        other = builder.open()
        other.server.echo = True
        boom = RuntimeError("boom in data_received")
        pair.server.fail_with = boom
        pair.client.transport.write(b"trigger")
        assert pair.drive(lambda: bool(pair.server.lost and pair.client.lost), 5.0)
        assert pair.server.lost == [boom]
        (peer_exc,) = pair.client.lost
        if builder.abort_resets_peer:
            # Aborted, not closed: the peer sees a reset.
            assert isinstance(peer_exc, ConnectionError), peer_exc
        other.client.transport.write(b"still here")
        assert other.drive(lambda: len(other.client.data) >= 10, 5.0)
        assert bytes(other.client.data) == b"still here"
        assert other.server.lost == [] and other.client.lost == []


class ReactorPairBuilder(PairBuilder):
    """Pairs over real sockets of a reactor: one listening port, one client per ``open``.

    Args:
        name: The transport's name, for messages.
        make_reactor: Makes the reactor (``Reactor``, later ``AsyncioReactor``, ...).
        listen: ``listen(reactor, factory) -> port``.
        connect: ``connect(reactor, port, factory) -> Deferred[protocol]``.
        abort_resets_peer: See ``PairBuilder.abort_resets_peer``.
        carries_fds: See ``PairBuilder.carries_fds``.
    """

    poll_interval = 0.001
    """Seconds between two checks of ``drive``'s condition while the loop runs."""

    def __init__(
        self,
        name: str,
        make_reactor: Callable[[], Any],
        listen: Callable[[Any, Callable[[], Any]], Any],
        connect: Callable[[Any, Any, Callable[[], Any]], Any],
        *,
        abort_resets_peer: bool = True,
        carries_fds: bool = False,
    ) -> None:
        self.name = name
        self.abort_resets_peer = abort_resets_peer
        self.carries_fds = carries_fds
        self.reactor = make_reactor()
        self._connect = connect
        self._waiting_servers: list[Recorder] = []
        self.pairs: list[Pair] = []
        self.port = listen(self.reactor, self._next_server)

    def _next_server(self) -> Recorder:
        return self._waiting_servers.pop(0)

    def open(self) -> Pair:
        server, client = Recorder(), Recorder()
        self._waiting_servers.append(server)
        outcome: list[Any] = []
        d = self._connect(self.reactor, self.port, lambda: client)
        d.add_callbacks(outcome.append, outcome.append)
        assert self.drive(lambda: bool(outcome) and server.made, 5.0), (
            f"{self.name}: no connection within 5 seconds"
        )
        if outcome[0] is not client:
            outcome[0].raise_exception()
        pair = Pair(server, client, self.drive)
        self.pairs.append(pair)
        return pair

    def drive(self, until: Callable[[], bool], timeout: float) -> bool:
        """Run the reactor until ``until()`` holds or ``timeout`` seconds have passed."""
        if until():
            return True
        reactor = self.reactor
        deadline = time.monotonic() + timeout
        errors: list[Exception] = []

        def check() -> None:
            try:
                done = until()
            except Exception as exc:  # re-raised below, outside the loop
                errors.append(exc)
                done = True
            if done or time.monotonic() >= deadline:
                reactor.stop()
            else:
                reactor.call_later(self.poll_interval, check)

        reactor.call_soon(check)
        reactor.run(install_signal_handlers=False)
        if errors:
            raise errors[0]
        return until()

    def close(self) -> None:
        for pair in self.pairs:
            for protocol in (pair.server, pair.client):
                if protocol.transport is not None and not protocol.lost:
                    protocol.transport.abort()
        self.drive(lambda: all(p.server.lost and p.client.lost for p in self.pairs), 2.0)
        stopped: list[object] = []
        self.port.stop_listening().add_both(stopped.append)
        self.drive(lambda: bool(stopped), 2.0)
        self.reactor.close()
