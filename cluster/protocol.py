"""Protocol base classes and ``Factory``.

A *protocol factory* is any zero-argument callable returning a protocol (asyncio's
convention); a protocol class is one. ``Factory`` adds Twisted's
``build_protocol(addr)``, ``start_factory()`` and ``stop_factory()`` for code that
wants them. The base classes provide no-op callbacks with asyncio's names, so a
subclass overrides only what it uses.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from zope.interface import implementer

from plait.cluster.interfaces import (
    IDatagramProtocol,
    IProcessProtocol,
    IProtocol,
    IProtocolFactory,
)

__all__ = ["DatagramProtocol", "Factory", "ProcessProtocol", "Protocol", "build_protocol"]


@implementer(IProtocol)
class Protocol:
    """A stream protocol whose callbacks do nothing until overridden.

    Example:
        >>> class Echo(Protocol):
        ...     def data_received(self, data: bytes) -> None:
        ...         self.transport.write(data)
    """

    transport: Any = None
    factory: Any = None

    def connection_made(self, transport: Any) -> None:
        """Keep the transport as ``self.transport``."""
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        """Received bytes; ignored by default."""

    def eof_received(self) -> bool | None:
        """The peer half-closed; by default the transport closes too."""
        return None

    def connection_lost(self, exc: BaseException | None) -> None:
        """The connection ended (``None`` for a clean close)."""

    def pause_writing(self) -> None:
        """The write buffer is over its high-water mark."""

    def resume_writing(self) -> None:
        """The write buffer drained under its low-water mark."""


@implementer(IDatagramProtocol)
class DatagramProtocol:
    """A datagram protocol whose callbacks do nothing until overridden."""

    transport: Any = None

    def connection_made(self, transport: Any) -> None:
        """Keep the transport as ``self.transport``."""
        self.transport = transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        """A datagram arrived from ``addr``; ignored by default."""

    def error_received(self, exc: Exception) -> None:
        """A send or receive failed; ignored by default."""

    def connection_lost(self, exc: BaseException | None) -> None:
        """The transport was closed."""


@implementer(IProcessProtocol)
class ProcessProtocol:
    """A child-process protocol whose callbacks do nothing until overridden."""

    transport: Any = None

    def connection_made(self, transport: Any) -> None:
        """Keep the process transport as ``self.transport``."""
        self.transport = transport

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        """The child wrote ``data`` on descriptor ``fd``."""

    def pipe_connection_lost(self, fd: int, exc: BaseException | None) -> None:
        """The pipe on descriptor ``fd`` closed."""

    def process_exited(self) -> None:
        """The child exited."""


@implementer(IProtocolFactory)
class Factory:
    """Twisted's factory: builds ``protocol`` instances and sets their ``factory``.

    A Factory is also a zero-argument callable, so it serves wherever a protocol
    factory is expected.

    Example:
        >>> factory = Factory.for_protocol(Protocol)
        >>> factory().factory is factory
        True
    """

    protocol: ClassVar[Callable[[], Any] | None] = None
    _protocol: Callable[[], Any] | None = None
    _ports_using = 0

    @classmethod
    def for_protocol(cls, protocol: Callable[[], Any], *args: Any, **kwargs: Any) -> Factory:
        """Make a factory of ``cls`` that builds ``protocol()`` instances."""
        factory = cls(*args, **kwargs)
        factory._protocol = protocol
        return factory

    def build_protocol(self, addr: object) -> Any:
        """Build one protocol; override to refuse (return ``None``) or customise."""
        make = self._protocol or type(self).protocol
        if make is None:
            raise TypeError(f"{type(self).__name__} has no protocol to build")
        proto = make()
        try:
            proto.factory = self
        except AttributeError:  # a protocol with __slots__ and no factory slot
            pass
        return proto

    def start_factory(self) -> None:
        """Called before the first port serving this factory starts."""

    def stop_factory(self) -> None:
        """Called after the last port serving this factory stops."""

    def do_start(self) -> None:
        """Count one more port; the first calls ``start_factory``."""
        if not self._ports_using:
            self.start_factory()
        self._ports_using += 1

    def do_stop(self) -> None:
        """Count one port less; the last calls ``stop_factory``."""
        if self._ports_using:
            self._ports_using -= 1
            if not self._ports_using:
                self.stop_factory()

    def __call__(self) -> Any:
        return self.build_protocol(None)


def build_protocol(factory: Callable[[], Any], addr: object) -> Any:
    """Build a protocol from any protocol factory, passing ``addr`` when it is a Factory.

    Returns ``None`` when the factory refuses the connection.
    """
    build = getattr(factory, "build_protocol", None)
    if build is not None:
        return build(addr)
    return factory()
