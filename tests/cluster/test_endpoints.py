"""Endpoint strings, endpoint objects and ClientService, without sockets."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from plait.cluster._endpoints import parse_description
from plait.cluster.defer import CancelledError, Deferred, succeed
from plait.cluster.endpoints import (
    AdoptedStreamServerEndpoint,
    ClientService,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
    backoff_policy,
    client_from_string,
    server_from_string,
)
from plait.cluster.failure import Failure
from plait.cluster.interfaces import (
    IListeningPort,
    IProtocol,
    IReactorTCP,
    IReactorUNIX,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from plait.cluster.protocol import Protocol
from plait.cluster.task import Clock
from plait.cluster.testing import MemoryTransport

# ------------------------------------------------------------------- fakes


@implementer(IListeningPort)
class _FakePort:
    def __init__(self, call: tuple[Any, ...]) -> None:
        self.call = call

    def start_listening(self) -> None:
        pass

    def stop_listening(self) -> Deferred[None]:
        return succeed(None)

    def get_host(self) -> Any:
        return self.call


@implementer(IReactorTCP, IReactorUNIX)
class _RecordingReactor:
    """Records what endpoints ask of it; ``error`` makes every call raise."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.error: Exception | None = None

    def _record(self, *call: Any) -> _FakePort:
        self.calls.append(call)
        if self.error is not None:
            raise self.error
        return _FakePort(call)

    def listen_tcp(
        self, port: int, factory: Callable[[], Any], backlog: int = 511, interface: str = ""
    ) -> _FakePort:
        return self._record("listen_tcp", port, factory, backlog, interface)

    def connect_tcp(
        self, host: str, port: int, factory: Callable[[], Any], timeout: float = 30.0
    ) -> Deferred[Any]:
        return succeed(self._record("connect_tcp", host, port, factory, timeout))

    def adopt_stream_port(self, fd: int, family: int, factory: Callable[[], Any]) -> _FakePort:
        return self._record("adopt_stream_port", fd, family, factory)

    def adopt_stream_connection(self, fd: int, family: int, factory: Callable[[], Any]) -> Any:
        return self._record("adopt_stream_connection", fd, family, factory)

    def listen_unix(
        self, address: str, factory: Callable[[], Any], backlog: int = 511, mode: int = 0o666
    ) -> _FakePort:
        return self._record("listen_unix", address, factory, backlog, mode)

    def connect_unix(
        self, path: str, factory: Callable[[], Any], timeout: float = 30.0
    ) -> Deferred[Any]:
        return succeed(self._record("connect_unix", path, factory, timeout))

    def listen_unix_datagram(self, address: str, protocol: Any, mode: int = 0o666) -> Any:
        return self._record("listen_unix_datagram", address, protocol, mode)


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


def _factory() -> Protocol:
    return Protocol()


def test_the_recording_reactor_provides_the_reactor_interfaces() -> None:
    assert verifyObject(IReactorTCP, _RecordingReactor())
    assert verifyObject(IReactorUNIX, _RecordingReactor())


# ------------------------------------------------------------------ parsing


@pytest.mark.parametrize(
    ("description", "expected"),
    [
        ("tcp:8080", ("tcp", ["8080"], {})),
        ("tcp:8080:interface=127.0.0.1", ("tcp", ["8080"], {"interface": "127.0.0.1"})),
        ("TCP:80", ("tcp", ["80"], {})),
        (r"unix:/tmp/a\:b", ("unix", ["/tmp/a:b"], {})),
        (r"tcp6:80:interface=\:\:1", ("tcp6", ["80"], {"interface": "::1"})),
        (r"x:a\=b", ("x", ["a=b"], {})),
        (r"x:a\\b", ("x", ["a\\b"], {})),
        ("x:key=a=b", ("x", [], {"key": "a=b"})),
        ("x::y", ("x", ["", "y"], {})),
    ],
)
def test_descriptions_split_like_twisteds(description: str, expected: Any) -> None:
    assert parse_description(description) == expected


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ("", "does not start with a type"),
        (":80", "does not start with a type"),
        ("a=b:80", "does not start with a type"),
        ("tcp:80\\", "dangling backslash"),
        ("tcp:=5", "empty option name"),
        ("tcp:80:backlog=1:backlog=2", "given twice"),
    ],
)
def test_malformed_descriptions_raise_value_error(description: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_description(description)


def test_a_description_that_is_not_a_string_raises_type_error() -> None:
    with pytest.raises(TypeError):
        parse_description(b"tcp:80")  # type: ignore[arg-type]


# ------------------------------------------------------------ server strings


def test_tcp_server_string_passes_port_interface_and_backlog() -> None:
    reactor = _RecordingReactor()
    endpoint = server_from_string(reactor, "tcp:8080:interface=127.0.0.1:backlog=512")
    assert isinstance(endpoint, TCP4ServerEndpoint)
    port = _result(endpoint.listen(_factory))
    assert port.call == ("listen_tcp", 8080, _factory, 512, "127.0.0.1")


def test_tcp_server_string_accepts_the_port_as_a_keyword_and_defaults() -> None:
    reactor = _RecordingReactor()
    _result(server_from_string(reactor, "tcp:port=0").listen(_factory))
    assert reactor.calls == [("listen_tcp", 0, _factory, 511, "")]


def test_tcp6_server_string_defaults_to_every_ipv6_address() -> None:
    reactor = _RecordingReactor()
    endpoint = server_from_string(reactor, "tcp6:8080")
    assert isinstance(endpoint, TCP6ServerEndpoint)
    _result(endpoint.listen(_factory))
    _result(server_from_string(reactor, r"tcp6:port=81:interface=\:\:1").listen(_factory))
    assert [c[4] for c in reactor.calls] == ["::", "::1"]


def test_tcp6_server_string_refuses_an_ipv4_interface() -> None:
    with pytest.raises(ValueError, match="not an IPv6 address"):
        server_from_string(_RecordingReactor(), "tcp6:80:interface=127.0.0.1")


def test_unix_server_string_reads_the_mode_in_octal() -> None:
    reactor = _RecordingReactor()
    endpoint = server_from_string(reactor, "unix:/run/app.sock:mode=660")
    assert isinstance(endpoint, UNIXServerEndpoint)
    _result(endpoint.listen(_factory))
    _result(server_from_string(reactor, "unix:address=/tmp/x:backlog=5").listen(_factory))
    assert reactor.calls == [
        ("listen_unix", "/run/app.sock", _factory, 511, 0o660),
        ("listen_unix", "/tmp/x", _factory, 5, 0o666),
    ]


def test_fd_server_string_takes_a_fileno_and_an_optional_domain() -> None:
    endpoint = server_from_string(_RecordingReactor(), "fd:3")
    assert isinstance(endpoint, AdoptedStreamServerEndpoint)
    assert endpoint._fileno == 3 and endpoint._family is None
    endpoint = server_from_string(_RecordingReactor(), "fd:fileno=4:domain=inet6")
    assert endpoint._fileno == 4 and endpoint._family == socket.AF_INET6


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ("bogus:80", "unknown server endpoint type 'bogus'"),
        ("tcp", "missing 'port'"),
        ("tcp:interface=127.0.0.1", "missing 'port'"),
        ("tcp:http", "'http' is not an integer"),
        ("tcp:70000", "out of range"),
        ("tcp:-1", "out of range"),
        ("tcp:80:backlog=0", "out of range"),
        ("tcp:80:backlog=many", "not an integer"),
        ("tcp:80:foo=1", "unknown option"),
        ("tcp:80:90", "unexpected positional"),
        ("tcp:80:port=81", "given twice"),
        ("unix", "missing the socket path"),
        ("unix:", "missing the socket path"),
        ("unix:/a:mode=999", "not an octal integer"),
        ("unix:/a:mode=17777", "out of range"),
        ("unix:/a:lockfile=0", "unknown option"),
        ("unix:address=/a:path=/b", "only one of"),
        ("fd", "missing 'fileno'"),
        ("fd:three", "not an integer"),
        ("fd:3:domain=IPX", "not one of INET, INET6, UNIX"),
    ],
)
def test_bad_server_strings_raise_value_error(description: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        server_from_string(_RecordingReactor(), description)


def test_a_bind_error_becomes_an_errback() -> None:
    reactor = _RecordingReactor()
    reactor.error = OSError(98, "Address already in use")
    failure = _failure(server_from_string(reactor, "tcp:80").listen(_factory))
    assert failure.check(OSError)
    failure = _failure(server_from_string(reactor, "unix:/x").listen(_factory))
    assert failure.check(OSError)


# ------------------------------------------------------------ client strings


def test_tcp_client_string_with_keywords() -> None:
    reactor = _RecordingReactor()
    endpoint = client_from_string(reactor, "tcp:host=example.com:port=80:timeout=5")
    assert isinstance(endpoint, TCP4ClientEndpoint)
    port = _result(endpoint.connect(_factory))
    assert port.call == ("connect_tcp", "example.com", 80, _factory, 5.0)


def test_tcp_client_string_with_positionals() -> None:
    reactor = _RecordingReactor()
    _result(client_from_string(reactor, "tcp:10.0.0.1:8080").connect(_factory))
    assert reactor.calls == [("connect_tcp", "10.0.0.1", 8080, _factory, 30.0)]


def test_unix_client_string_in_both_forms() -> None:
    reactor = _RecordingReactor()
    endpoint = client_from_string(reactor, "unix:/run/app.sock")
    assert isinstance(endpoint, UNIXClientEndpoint)
    _result(endpoint.connect(_factory))
    _result(client_from_string(reactor, "unix:path=/tmp/s:timeout=2.5").connect(_factory))
    assert reactor.calls == [
        ("connect_unix", "/run/app.sock", _factory, 30.0),
        ("connect_unix", "/tmp/s", _factory, 2.5),
    ]


@pytest.mark.parametrize(
    ("description", "message"),
    [
        ("fd:3", "unknown client endpoint type 'fd'"),
        ("tcp:port=80", "missing 'host'"),
        ("tcp:host=:port=80", "missing 'host'"),
        ("tcp:example.com", "missing 'port'"),
        ("tcp:h:0", "out of range"),
        ("tcp:h:http", "not an integer"),
        ("tcp:h:80:timeout=soon", "not a number"),
        ("tcp:h:80:timeout=0", "positive"),
        ("tcp:h:80:timeout=-1", "positive"),
        ("tcp:h:80:timeout=inf", "positive"),
        ("tcp:h:80:timeout=nan", "positive"),
        ("tcp:h:80:bindAddress=x", "unknown option"),
        ("unix:path=", "missing the socket path"),
        ("unix:/a:checkPID=1", "unknown option"),
    ],
)
def test_bad_client_strings_raise_value_error(description: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        client_from_string(_RecordingReactor(), description)


def test_a_synchronous_connect_error_becomes_an_errback() -> None:
    reactor = _RecordingReactor()
    reactor.error = ConnectionRefusedError()
    failure = _failure(client_from_string(reactor, "tcp:h:1").connect(_factory))
    assert failure.check(ConnectionRefusedError)


@pytest.mark.parametrize(
    "endpoint",
    [
        TCP4ServerEndpoint(None, 80),
        TCP6ServerEndpoint(None, 80),
        UNIXServerEndpoint(None, "/x"),
        AdoptedStreamServerEndpoint(None, 3),
    ],
    ids=repr,
)
def test_server_endpoints_provide_the_interface(endpoint: Any) -> None:
    assert verifyObject(IStreamServerEndpoint, endpoint)


@pytest.mark.parametrize(
    "endpoint", [TCP4ClientEndpoint(None, "h", 80), UNIXClientEndpoint(None, "/x")], ids=repr
)
def test_client_endpoints_provide_the_interface(endpoint: Any) -> None:
    assert verifyObject(IStreamClientEndpoint, endpoint)


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

