"""ClientService and its backoff policy, with a Clock and a fake endpoint."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from plait.cluster.defer import CancelledError, Deferred
from plait.cluster.endpoints import ClientService, backoff_policy
from plait.cluster.failure import Failure
from plait.cluster.interfaces import IProtocol, IStreamClientEndpoint
from plait.cluster.protocol import Protocol
from plait.cluster.task import Clock
from plait.cluster.testing import MemoryTransport


def _result(d: Deferred[Any]) -> Any:
    box: list[Any] = []
    d.add_both(box.append)
    assert box, "the Deferred has not fired"
    if isinstance(box[0], Failure):
        box[0].raise_exception()
    return box[0]


def _failure(d: Deferred[Any]) -> Failure:
    box: list[Any] = []
    d.add_both(box.append)
    assert box and isinstance(box[0], Failure), f"expected a failure, got {box!r}"
    return box[0]


# ------------------------------------------------------------ backoff policy


def test_backoff_doubles_from_a_tenth_of_a_second_up_to_thirty() -> None:
    retry = backoff_policy(random=lambda: 1.0)
    assert [round(retry(n), 6) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.8, 1.6]
    assert retry(20) == 30.0
    assert retry(10_000) == 30.0


def test_backoff_has_full_jitter() -> None:
    draws = iter([0.0, 0.5, 0.25])
    retry = backoff_policy(initial=1.0, maximum=100.0, random=lambda: next(draws))
    assert [retry(3), retry(3), retry(3)] == [0.0, 2.0, 1.0]


def test_backoff_survives_an_overflowing_exponent() -> None:
    retry = backoff_policy(initial=1.0, maximum=7.0, factor=1e300, random=lambda: 1.0)
    assert retry(5) == 7.0


@pytest.mark.parametrize("kwargs", [{"initial": -1.0}, {"maximum": -1.0}, {"factor": 0.5}])
def test_backoff_refuses_bad_parameters(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        backoff_policy(**kwargs)


# ------------------------------------------------------------ ClientService


class _Recorder(Protocol):
    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.fds: list[list[int]] = []
        self.lost: list[BaseException | None] = []

    def data_received(self, data: bytes) -> None:
        self.received.append(data)

    def fds_received(self, fds: list[int]) -> None:
        self.fds.append(fds)

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)


@implementer(IStreamClientEndpoint)
class _FakeEndpoint:
    """Hands out one pending Deferred per ``connect``; the test settles each."""

    def __init__(self) -> None:
        self.attempts: list[tuple[Deferred[Any], Callable[[], Any]]] = []
        self.cancelled = 0
        self.raise_next: Exception | None = None

    def connect(self, factory: Callable[[], Any]) -> Deferred[Any]:
        if self.raise_next is not None:
            exc, self.raise_next = self.raise_next, None
            raise exc

        def cancel(d: Deferred[Any]) -> None:
            self.cancelled += 1

        d: Deferred[Any] = Deferred(cancel)
        self.attempts.append((d, factory))
        return d

    def succeed(self, index: int = -1) -> tuple[Any, MemoryTransport]:
        d, factory = self.attempts[index]
        proto = factory()
        transport = MemoryTransport(proto)
        transport.make_connection(proto)
        d.callback(proto)
        return proto, transport

    def fail(self, index: int = -1, exc: Exception | None = None) -> None:
        d, _ = self.attempts[index]
        d.errback(Failure(exc or ConnectionRefusedError("refused")))


def _service(
    retry: Callable[[int], float] | None = None,
) -> tuple[ClientService, _FakeEndpoint, Clock]:
    endpoint, clock = _FakeEndpoint(), Clock()
    service = ClientService(endpoint, _Recorder, retry=retry or (lambda n: float(n)), clock=clock)
    return service, endpoint, clock


def test_the_fake_endpoint_provides_the_interface() -> None:
    assert verifyObject(IStreamClientEndpoint, _FakeEndpoint())


def test_service_connects_on_start_and_hands_out_the_users_protocol() -> None:
    service, endpoint, _ = _service()
    waiting = service.when_connected()
    assert not endpoint.attempts
    service.start_service()
    assert service.running and len(endpoint.attempts) == 1
    assert not waiting.called
    proxy, _ = endpoint.succeed()
    proto = _result(waiting)
    assert isinstance(proto, _Recorder) and proto is proxy._wrapped
    assert _result(service.when_connected()) is proto


def test_the_default_clock_is_the_process_reactor(monkeypatch: pytest.MonkeyPatch) -> None:
    import plait.cluster._react

    process_reactor = Clock()  # stands in, so no real global reactor is made here
    monkeypatch.setattr(plait.cluster._react, "_reactor", process_reactor)
    service = ClientService(_FakeEndpoint(), _Recorder)
    assert service._clock is process_reactor


def test_start_service_twice_makes_one_attempt() -> None:
    service, endpoint, _ = _service()
    service.start_service()
    service.start_service()
    assert len(endpoint.attempts) == 1


def test_failed_attempts_are_retried_after_the_policys_delay() -> None:
    seen: list[int] = []

    def retry(attempt: int) -> float:
        seen.append(attempt)
        return 10.0 * attempt

    service, endpoint, clock = _service(retry)
    service.start_service()
    endpoint.fail()
    clock.advance(9.9)
    assert len(endpoint.attempts) == 1
    clock.advance(0.1)
    assert len(endpoint.attempts) == 2
    endpoint.fail()
    clock.advance(19.9)
    assert len(endpoint.attempts) == 2
    clock.advance(0.1)
    assert len(endpoint.attempts) == 3
    assert seen == [1, 2]


def test_a_success_resets_the_attempt_count() -> None:
    seen: list[int] = []

    def retry(attempt: int) -> float:
        seen.append(attempt)
        return 1.0

    service, endpoint, clock = _service(retry)
    service.start_service()
    endpoint.fail()
    clock.advance(1)
    endpoint.fail()
    clock.advance(1)
    _, transport = endpoint.succeed()
    transport.abort()
    clock.advance(1)
    endpoint.fail()
    assert seen == [1, 2, 1, 2]


def test_a_lost_connection_is_remade_and_when_connected_gets_the_new_protocol() -> None:
    service, endpoint, clock = _service(lambda n: 5.0)
    service.start_service()
    first, transport = endpoint.succeed()
    transport.abort()
    assert first._wrapped.lost == [None]
    waiting = service.when_connected()
    clock.advance(5)
    assert len(endpoint.attempts) == 2
    second, _ = endpoint.succeed()
    assert _result(waiting) is second._wrapped is not first._wrapped


def test_when_connected_fails_after_the_given_number_of_failures() -> None:
    service, endpoint, clock = _service(lambda n: 1.0)
    patient = service.when_connected()
    impatient = service.when_connected(fail_after_failures=2)
    service.start_service()
    endpoint.fail()
    assert not impatient.called
    clock.advance(1)
    endpoint.fail(exc=TimeoutError("slow"))
    assert _failure(impatient).check(TimeoutError)
    assert not patient.called
    clock.advance(1)
    endpoint.succeed()
    assert isinstance(_result(patient), _Recorder)


def test_a_synchronous_endpoint_error_counts_as_a_failed_attempt() -> None:
    service, endpoint, clock = _service(lambda n: 1.0)
    endpoint.raise_next = OSError("no route")
    waiting = service.when_connected(fail_after_failures=1)
    service.start_service()
    assert _failure(waiting).check(OSError)
    clock.advance(1)
    assert len(endpoint.attempts) == 1


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2", True])
def test_when_connected_refuses_a_bad_failure_count(bad: Any) -> None:
    service, _, _ = _service()
    with pytest.raises(ValueError):
        service.when_connected(fail_after_failures=bad)


def test_stop_while_waiting_cancels_the_timer_and_pending_waiters() -> None:
    service, endpoint, clock = _service(lambda n: 1.0)
    service.start_service()
    endpoint.fail()
    waiting = service.when_connected()
    stopped = service.stop_service()
    assert _result(stopped) is None
    assert _failure(waiting).check(CancelledError)
    clock.advance(100)
    assert len(endpoint.attempts) == 1
    assert not service.running


def test_stop_while_connecting_cancels_the_attempt() -> None:
    service, endpoint, clock = _service(lambda n: 1.0)
    service.start_service()
    assert _result(service.stop_service()) is None
    assert endpoint.cancelled == 1
    clock.advance(100)
    assert len(endpoint.attempts) == 1


def test_stop_cancels_an_attempt_the_endpoint_cannot_cancel() -> None:
    @implementer(IStreamClientEndpoint)
    class Stubborn(_FakeEndpoint):
        def connect(self, factory: Callable[[], Any]) -> Deferred[Any]:
            d: Deferred[Any] = Deferred(lambda d: None)  # cannot cancel
            self.attempts.append((d, factory))
            return d

    stubborn = Stubborn()
    service = ClientService(stubborn, _Recorder, clock=Clock())
    service.start_service()
    service.stop_service()
    d, _ = stubborn.attempts[0]
    assert d.called  # cancelled, and its CancelledError consumed by the service
    assert not service.running
    assert verifyObject(IStreamClientEndpoint, stubborn)


def test_stop_while_connected_closes_and_fires_after_connection_lost() -> None:
    service, endpoint, clock = _service(lambda n: 1.0)
    service.start_service()
    proxy, transport = endpoint.succeed()
    transport.buffer_size = 10  # the close waits for the kernel to drain
    stopped = service.stop_service()
    also_stopped = service.stop_service()
    assert transport.is_closing() and not stopped.called
    assert _failure(service.when_connected()).check(CancelledError)
    transport.buffer_size = 0
    assert _result(stopped) is None and _result(also_stopped) is None
    assert proxy._wrapped.lost == [None]
    clock.advance(100)
    assert len(endpoint.attempts) == 1


def test_when_connected_after_stop_fails_until_restarted() -> None:
    service, endpoint, _ = _service()
    assert _result(service.stop_service()) is None
    assert _failure(service.when_connected()).check(CancelledError)
    service.start_service()
    waiting = service.when_connected()
    endpoint.succeed()
    assert isinstance(_result(waiting), _Recorder)


def test_a_cancelled_waiter_is_forgotten() -> None:
    service, endpoint, _ = _service()
    service.start_service()
    waiting = service.when_connected()
    waiting.cancel()
    assert _failure(waiting).check(CancelledError)
    endpoint.succeed()  # must not try to fire the cancelled Deferred again


def test_a_connection_lost_before_the_endpoint_fires_is_retried() -> None:
    service, endpoint, clock = _service(lambda n: 2.0)
    service.start_service()
    d, factory = endpoint.attempts[0]
    proxy = factory()
    transport = MemoryTransport(proxy)
    transport.make_connection(proxy)
    transport.abort()
    d.callback(proxy)
    waiting = service.when_connected()
    assert not waiting.called
    clock.advance(2)
    assert len(endpoint.attempts) == 2


def test_when_connected_inside_connection_lost_waits_for_the_next_connection() -> None:
    service, endpoint, clock = _service(lambda n: 1.0)
    service.start_service()
    seen: list[Deferred[Any]] = []
    proxy, transport = endpoint.succeed()
    proxy._wrapped.connection_lost = lambda exc: seen.append(service.when_connected())
    transport.abort()
    assert len(seen) == 1 and not seen[0].called
    clock.advance(1)
    second, _ = endpoint.succeed()
    assert _result(seen[0]) is second._wrapped


def test_the_protocol_proxy_forwards_everything() -> None:
    service, endpoint, _ = _service()
    service.start_service()
    proxy, transport = endpoint.succeed()
    assert verifyObject(IProtocol, proxy)
    proxy.data_received(b"x")
    proxy.fds_received([7])
    assert proxy.eof_received() is None
    proxy.pause_writing()
    proxy.resume_writing()
    assert proxy._wrapped.received == [b"x"] and proxy._wrapped.fds == [[7]]
    assert proxy._wrapped.transport is transport


def test_a_factory_that_refuses_gives_none() -> None:
    endpoint = _FakeEndpoint()
    service = ClientService(endpoint, lambda: None, clock=Clock())
    service.start_service()
    _, factory = endpoint.attempts[0]
    assert factory() is None


def test_the_service_uses_build_protocol_of_a_twisted_style_factory() -> None:
    from plait.cluster.protocol import Factory

    endpoint = _FakeEndpoint()
    factory = Factory.for_protocol(_Recorder)
    service = ClientService(endpoint, factory, clock=Clock())
    service.start_service()
    proxy, _ = endpoint.succeed()
    assert proxy._wrapped.factory is factory

