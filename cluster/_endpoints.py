"""Endpoints: where to listen or connect, described by Twisted's strings.

Theory of operation
-------------------
A description is ``type:arg:arg:name=value:...``. ``parse_description`` splits it on
every ``:`` not escaped by a backslash; in each piece the first unescaped ``=`` parts a
keyword from its value, and after it ``=`` is literal (Twisted's tokenizer). A
backslash makes the next character literal, so ``unix:/tmp/a\\:b`` names ``/tmp/a:b``.
Pieces without ``=`` are positional and map, in order, onto the type's positional
names (``tcp:8080`` is ``tcp:port=8080``; the client ``tcp:h:80`` is
``tcp:host=h:port=80``).

The type, lower-cased, selects a *builder* in ``SERVER_BUILDERS`` or
``CLIENT_BUILDERS``: a callable ``builder(reactor, options) -> endpoint`` where
``options`` is an ``Options`` that hands out typed values and, on ``finish()``,
refuses anything the builder did not take. These registries are the extension
point: TLS (``ssl:``, ``tls:``) adds entries to them. Every malformed description
(unknown type, missing or repeated option, bad number, unknown option, dangling
backslash) raises ``ValueError`` with a message that names the description.

Endpoints are thin: ``listen`` and ``connect`` call the reactor and return Deferreds;
an exception raised synchronously by the reactor becomes an errback.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from plait.cluster.defer import Deferred, fail, succeed
from plait.cluster.interfaces import IStreamClientEndpoint, IStreamServerEndpoint

__all__ = [
    "CLIENT_BUILDERS",
    "SERVER_BUILDERS",
    "AdoptedStreamServerEndpoint",
    "Options",
    "TCP4ClientEndpoint",
    "TCP4ServerEndpoint",
    "TCP6ServerEndpoint",
    "UNIXClientEndpoint",
    "UNIXServerEndpoint",
    "client_from_string",
    "parse_description",
    "server_from_string",
]

_DEFAULT_BACKLOG = 511
_DEFAULT_TIMEOUT = 30.0


def _call(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
    """Call ``f``; a Deferred of its result, or of the exception it raised."""
    try:
        result = f(*args, **kwargs)
    except Exception as exc:
        return fail(exc)
    if isinstance(result, Deferred):
        return result
    return succeed(result)


# ------------------------------------------------------------------- endpoints


@implementer(IStreamServerEndpoint)
class TCP4ServerEndpoint:
    """Listen on a TCP port (``tcp:8080:interface=127.0.0.1:backlog=512``).

    Args:
        reactor: An ``IReactorTCP``.
        port: The port; 0 picks a free one.
        backlog: The listen queue length.
        interface: The address to bind; ``""`` is every IPv4 address.
    """

    def __init__(
        self, reactor: Any, port: int, backlog: int = _DEFAULT_BACKLOG, interface: str = ""
    ) -> None:
        self._reactor = reactor
        self._port = port
        self._backlog = backlog
        self._interface = interface

    def listen(self, factory: Callable[[], Any]) -> Deferred[Any]:
        """A Deferred of the listening port; errbacks with the bind's ``OSError``."""
        return _call(
            self._reactor.listen_tcp,
            self._port,
            factory,
            backlog=self._backlog,
            interface=self._interface,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._interface or '*'}:{self._port}>"


@implementer(IStreamServerEndpoint)
class TCP6ServerEndpoint(TCP4ServerEndpoint):
    """Listen on a TCP port over IPv6 (``tcp6:8080:interface=\\:\\:1``); default ``::``."""

    def __init__(
        self, reactor: Any, port: int, backlog: int = _DEFAULT_BACKLOG, interface: str = "::"
    ) -> None:
        super().__init__(reactor, port, backlog, interface)


@implementer(IStreamServerEndpoint)
class UNIXServerEndpoint:
    """Listen on a Unix socket path (``unix:/run/app.sock:mode=660``).

    Args:
        reactor: An ``IReactorUNIX``.
        address: The path, or a Linux abstract name starting with ``"\\0"``.
        backlog: The listen queue length.
        mode: The permission bits given to the socket file.
    """

    def __init__(
        self, reactor: Any, address: str, backlog: int = _DEFAULT_BACKLOG, mode: int = 0o666
    ) -> None:
        self._reactor = reactor
        self._address = address
        self._backlog = backlog
        self._mode = mode

    def listen(self, factory: Callable[[], Any]) -> Deferred[Any]:
        """A Deferred of the listening port; errbacks with ``OSError`` (``EADDRINUSE``...)."""
        return _call(
            self._reactor.listen_unix,
            self._address,
            factory,
            backlog=self._backlog,
            mode=self._mode,
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._address!r}>"


@implementer(IStreamServerEndpoint)
class AdoptedStreamServerEndpoint:
    """Serve on an inherited listening socket (``fd:3`` or ``fd:fileno=3:domain=INET``).

    The descriptor is duplicated by the reactor; the caller keeps its own.

    Args:
        reactor: A reactor with ``adopt_stream_port``.
        fileno: The listening socket's descriptor.
        family: ``AF_INET``, ``AF_INET6`` or ``AF_UNIX``; ``None`` reads it from the
            socket when ``listen`` is called.
    """

    def __init__(self, reactor: Any, fileno: int, family: int | None = None) -> None:
        self._reactor = reactor
        self._fileno = fileno
        self._family = family

    def listen(self, factory: Callable[[], Any]) -> Deferred[Any]:
        """A Deferred of the port; errbacks with ``OSError`` (``EBADF``, not a stream
        socket, not listening) or ``ValueError`` (the family given disagrees)."""
        try:
            family = self._check_socket()
        except (OSError, ValueError) as exc:
            return fail(exc)
        return _call(self._reactor.adopt_stream_port, self._fileno, family, factory)

    def _check_socket(self) -> int:
        sock = socket.socket(fileno=os.dup(self._fileno))
        try:
            if sock.type != socket.SOCK_STREAM:
                raise OSError(f"fd {self._fileno} is not a stream socket")
            if not sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN):
                raise OSError(f"fd {self._fileno} is not a listening socket")
            if self._family is not None and sock.family != self._family:
                raise ValueError(
                    f"fd {self._fileno} is {sock.family.name}, "
                    f"not {socket.AddressFamily(self._family).name}"
                )
            return int(sock.family)
        finally:
            sock.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} fd={self._fileno}>"


@implementer(IStreamClientEndpoint)
class TCP4ClientEndpoint:
    """Connect over TCP (``tcp:host=example.com:port=80:timeout=5`` or ``tcp:h:80``).

    Args:
        reactor: An ``IReactorTCP``.
        host: A name (resolved off the loop by the reactor) or a literal address.
        port: The port.
        timeout: Seconds before the attempt fails with ``TimeoutError``.
    """

    def __init__(self, reactor: Any, host: str, port: int, timeout: float = _DEFAULT_TIMEOUT):
        self._reactor = reactor
        self._host = host
        self._port = port
        self._timeout = timeout

    def connect(self, factory: Callable[[], Any]) -> Deferred[Any]:
        """A Deferred of the connected protocol; errbacks as ``reactor.connect_tcp``."""
        return _call(
            self._reactor.connect_tcp, self._host, self._port, factory, timeout=self._timeout
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._host}:{self._port}>"


@implementer(IStreamClientEndpoint)
class UNIXClientEndpoint:
    """Connect to a Unix socket (``unix:/run/app.sock`` or ``unix:path=...:timeout=5``)."""

    def __init__(self, reactor: Any, path: str, timeout: float = _DEFAULT_TIMEOUT) -> None:
        self._reactor = reactor
        self._path = path
        self._timeout = timeout

    def connect(self, factory: Callable[[], Any]) -> Deferred[Any]:
        """A Deferred of the connected protocol; errbacks as ``reactor.connect_unix``."""
        return _call(self._reactor.connect_unix, self._path, factory, timeout=self._timeout)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._path!r}>"


# ---------------------------------------------------------------------- parsing


def parse_description(description: str) -> tuple[str, list[str], dict[str, str]]:
    """Split ``description`` into its type, positional and keyword arguments.

    Example:
        >>> parse_description(r"unix:/tmp/a\\:b:mode=660")
        ('unix', ['/tmp/a:b'], {'mode': '660'})

    Raises:
        ValueError: an empty description or type, a dangling backslash, an empty
            keyword, or a keyword given twice.
    """
    if not isinstance(description, str):
        raise TypeError(f"an endpoint description is a str, not {type(description).__name__}")
    pieces: list[tuple[str, str | None]] = []
    key: str | None = None
    current: list[str] = []
    chars = iter(description)
    for char in chars:
        if char == "\\":
            escaped = next(chars, None)
            if escaped is None:
                raise ValueError(f"dangling backslash at the end of {description!r}")
            current.append(escaped)
        elif char == ":":
            pieces.append((key, "".join(current)) if key is not None else ("".join(current), None))
            key, current = None, []
        elif char == "=" and key is None:
            key, current = "".join(current), []
        else:
            current.append(char)
    pieces.append((key, "".join(current)) if key is not None else ("".join(current), None))

    kind, kind_value = pieces[0]
    if kind_value is not None or not kind:
        raise ValueError(f"endpoint description {description!r} does not start with a type")
    args: list[str] = []
    kwargs: dict[str, str] = {}
    for name, value in pieces[1:]:
        if value is None:
            args.append(name)
            continue
        if not name:
            raise ValueError(f"empty option name in {description!r}")
        if name in kwargs:
            raise ValueError(f"option {name!r} given twice in {description!r}")
        kwargs[name] = value
    return kind.lower(), args, kwargs


class Options:
    """The arguments of one description, handed out by name and type to a builder.

    Args:
        description: The whole description (for error messages).
        args: Positional values, mapped onto ``positional`` in order.
        kwargs: Keyword values.
        positional: The names positional values stand for.

    Raises:
        ValueError: more positional values than names, or a name given both ways.
    """

    def __init__(
        self,
        description: str,
        args: list[str],
        kwargs: dict[str, str],
        positional: tuple[str, ...] = (),
    ) -> None:
        self.description = description
        if len(args) > len(positional):
            extra = ", ".join(repr(a) for a in args[len(positional) :])
            raise ValueError(f"unexpected positional argument(s) {extra} in {description!r}")
        self._values = dict(kwargs)
        for name, value in zip(positional, args, strict=False):
            if name in self._values:
                raise ValueError(f"option {name!r} given twice in {description!r}")
            self._values[name] = value

    def error(self, message: str) -> ValueError:
        """A ``ValueError`` naming the description."""
        return ValueError(f"{message} in endpoint {self.description!r}")

    def take(self, name: str, default: str | None = None, *, required: bool = False) -> str | None:
        """Remove and return option ``name`` as a string.

        Raises:
            ValueError: ``required`` and the option is missing or empty.
        """
        value = self._values.pop(name, None)
        if value is None or (required and not value):
            if required:
                raise self.error(f"missing {name!r}")
            return default
        return value

    def take_str(self, name: str, default: str = "", *, required: bool = False) -> str:
        """Like ``take`` but never ``None``."""
        value = self.take(name, default, required=required)
        return default if value is None else value

    def take_int(
        self,
        name: str,
        default: int | None = None,
        *,
        minimum: int = 0,
        maximum: int | None = None,
        base: int = 10,
    ) -> int:
        """Remove option ``name`` and parse it as an integer in ``[minimum, maximum]``.

        Raises:
            ValueError: missing without a default, not an integer, or out of range.
        """
        raw = self.take(name)
        if raw is None:
            if default is None:
                raise self.error(f"missing {name!r}")
            return default
        try:
            value = int(raw, base)
        except ValueError:
            kind = "an octal" if base == 8 else "an"
            raise self.error(f"{name}={raw!r} is not {kind} integer") from None
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
            raise self.error(f"{name}={raw!r} is out of range (must be {bounds})")
        return value

    def take_float(self, name: str, default: float) -> float:
        """Remove option ``name`` and parse it as a positive number of seconds.

        Raises:
            ValueError: not a number, or not positive.
        """
        raw = self.take(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise self.error(f"{name}={raw!r} is not a number") from None
        if not value > 0 or value == float("inf"):
            raise self.error(f"{name}={raw!r} must be a positive finite number")
        return value

    def finish(self) -> None:
        """Refuse every option not taken.

        Raises:
            ValueError: an unknown option remains.
        """
        if self._values:
            names = ", ".join(sorted(self._values))
            raise self.error(f"unknown option(s) {names}")


ServerBuilder = Callable[[Any, Options], Any]
ClientBuilder = Callable[[Any, Options], Any]


def _build_tcp_server(reactor: Any, options: Options, *, default_interface: str) -> Any:
    port = options.take_int("port", maximum=65535)
    interface = options.take_str("interface", default_interface)
    backlog = options.take_int("backlog", _DEFAULT_BACKLOG, minimum=1)
    options.finish()
    if default_interface == "::":
        try:
            ipaddress.IPv6Address(interface.split("%", 1)[0])
        except ValueError:
            raise options.error(f"interface={interface!r} is not an IPv6 address") from None
        return TCP6ServerEndpoint(reactor, port, backlog, interface)
    return TCP4ServerEndpoint(reactor, port, backlog, interface)


def _tcp_server(reactor: Any, options: Options) -> Any:
    return _build_tcp_server(reactor, options, default_interface="")


def _tcp6_server(reactor: Any, options: Options) -> Any:
    return _build_tcp_server(reactor, options, default_interface="::")


def _unix_path(options: Options, *names: str) -> str:
    given = [(n, options.take(n)) for n in names]
    found = [(n, v) for n, v in given if v is not None]
    if len(found) > 1:
        raise options.error(f"give only one of {', '.join(names)}")
    if not found or not found[0][1]:
        raise options.error("missing the socket path")
    return found[0][1]


def _unix_server(reactor: Any, options: Options) -> Any:
    address = _unix_path(options, "address", "path")
    mode = options.take_int("mode", 0o666, maximum=0o7777, base=8)
    backlog = options.take_int("backlog", _DEFAULT_BACKLOG, minimum=1)
    options.finish()
    return UNIXServerEndpoint(reactor, address, backlog, mode)


_DOMAINS = {"INET": socket.AF_INET, "INET6": socket.AF_INET6, "UNIX": socket.AF_UNIX}


def _fd_server(reactor: Any, options: Options) -> Any:
    fileno = options.take_int("fileno")
    domain = options.take("domain")
    options.finish()
    family: int | None = None
    if domain is not None:
        try:
            family = _DOMAINS[domain.upper()]
        except KeyError:
            raise options.error(
                f"domain={domain!r} is not one of {', '.join(_DOMAINS)}"
            ) from None
    return AdoptedStreamServerEndpoint(reactor, fileno, family)


def _tcp_client(reactor: Any, options: Options) -> Any:
    host = options.take_str("host", required=True)
    port = options.take_int("port", minimum=1, maximum=65535)
    timeout = options.take_float("timeout", _DEFAULT_TIMEOUT)
    options.finish()
    return TCP4ClientEndpoint(reactor, host, port, timeout)


def _unix_client(reactor: Any, options: Options) -> Any:
    path = _unix_path(options, "path", "address")
    timeout = options.take_float("timeout", _DEFAULT_TIMEOUT)
    options.finish()
    return UNIXClientEndpoint(reactor, path, timeout)


def _ssl_server(reactor: Any, options: Options) -> Any:
    from plait.cluster._tls_endpoints import ssl_server  # pyOpenSSL only when used

    return ssl_server(reactor, options)


def _tls_client(reactor: Any, options: Options) -> Any:
    from plait.cluster._tls_endpoints import tls_client  # pyOpenSSL only when used

    return tls_client(reactor, options)


#: Server types: name -> (positional option names, builder).
SERVER_BUILDERS: dict[str, tuple[tuple[str, ...], ServerBuilder]] = {
    "tcp": (("port",), _tcp_server),
    "tcp6": (("port",), _tcp6_server),
    "unix": (("address",), _unix_server),
    "fd": (("fileno",), _fd_server),
    "ssl": (("port",), _ssl_server),
}

#: Client types: name -> (positional option names, builder).
CLIENT_BUILDERS: dict[str, tuple[tuple[str, ...], ClientBuilder]] = {
    "tcp": (("host", "port"), _tcp_client),
    "unix": (("path",), _unix_client),
    "tls": (("host", "port"), _tls_client),
}


def _from_string(
    reactor: Any,
    description: str,
    builders: dict[str, tuple[tuple[str, ...], Callable[[Any, Options], Any]]],
    side: str,
) -> Any:
    kind, args, kwargs = parse_description(description)
    try:
        positional, build = builders[kind]
    except KeyError:
        known = ", ".join(sorted(builders))
        raise ValueError(
            f"unknown {side} endpoint type {kind!r} in {description!r} (known: {known})"
        ) from None
    return build(reactor, Options(description, args, kwargs, positional))


def server_from_string(reactor: Any, description: str) -> Any:
    """Make a server endpoint from a description such as ``tcp:8080:interface=127.0.0.1``.

    Types: ``tcp:PORT[:interface=ADDR][:backlog=N]``, ``tcp6:...`` (interface
    defaults to ``::``), ``unix:PATH[:mode=OCTAL][:backlog=N]`` and
    ``fd:FILENO[:domain=INET|INET6|UNIX]``, and TLS as
    ``ssl:PORT:private_key=KEY:cert_key=CERT`` (see docs/tls.md for its options).

    Returns:
        An ``IStreamServerEndpoint``; ``listen(factory)`` gives a Deferred of the port.

    Raises:
        ValueError: unknown type, missing port or path, bad value or unknown option.
    """
    return _from_string(reactor, description, SERVER_BUILDERS, "server")


def client_from_string(reactor: Any, description: str) -> Any:
    """Make a client endpoint from a description such as ``tcp:host=h:port=80``.

    Types: ``tcp:HOST:PORT[:timeout=SECONDS]`` (or ``host=``/``port=``) and
    ``unix:PATH[:timeout=SECONDS]`` (or ``path=``), and TLS as
    ``tls:HOST:PORT[:ca_file=CA]`` (see docs/tls.md for its options).

    Returns:
        An ``IStreamClientEndpoint``; ``connect(factory)`` gives a Deferred of the
        protocol.

    Raises:
        ValueError: unknown type, missing host, port or path, bad value or unknown option.
    """
    return _from_string(reactor, description, CLIENT_BUILDERS, "client")
