"""Endpoint strings, endpoint objects and ClientService, without sockets."""

from __future__ import annotations

import socket
from collections.abc import Callable
from typing import Any

import pytest
from zope.interface import implementer
from zope.interface.verify import verifyObject

from plait.cluster._endpoints import parse_description
from plait.cluster.defer import Deferred, succeed
from plait.cluster.endpoints import (
    AdoptedStreamServerEndpoint,
    TCP4ClientEndpoint,
    TCP4ServerEndpoint,
    TCP6ServerEndpoint,
    UNIXClientEndpoint,
    UNIXServerEndpoint,
    client_from_string,
    server_from_string,
)
from plait.cluster.failure import Failure
from plait.cluster.interfaces import (
    IListeningPort,
    IReactorTCP,
    IReactorUNIX,
    IStreamClientEndpoint,
    IStreamServerEndpoint,
)
from plait.cluster.protocol import Protocol

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
