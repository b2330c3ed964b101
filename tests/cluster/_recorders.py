"""Protocols and producers that record what the fakes of plait.cluster.testing do."""

from __future__ import annotations

from typing import Any

from zope.interface import implementer

from plait.cluster.interfaces import IPullProducer, IPushProducer
from plait.cluster.protocol import Protocol
from plait.cluster.testing import MemoryTransport

__all__ = ["FdRecorder", "PullProducer", "PushProducer", "Recorder"]


class Recorder(Protocol):
    def __init__(self, *, keep_open: bool = False, echo: bool = False) -> None:
        self.events: list[Any] = []
        self.data = bytearray()
        self.lost: list[BaseException | None] = []
        self.keep_open = keep_open
        self.echo = echo
        self.fail: Exception | None = None

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.events.append("made")

    def data_received(self, data: bytes) -> None:
        if self.fail is not None:
            raise self.fail
        self.data += data
        self.events.append(("data", bytes(data)))
        if self.echo:
            self.transport.write(data)

    def eof_received(self) -> bool:
        self.events.append("eof")
        return self.keep_open

    def connection_lost(self, exc: BaseException | None) -> None:
        self.lost.append(exc)
        self.events.append("lost")

    def pause_writing(self) -> None:
        self.events.append("pause_writing")

    def resume_writing(self) -> None:
        self.events.append("resume_writing")


class FdRecorder(Recorder):
    def fds_received(self, fds: list[int]) -> None:
        self.events.append(("fds", fds))


@implementer(IPushProducer)
class PushProducer:
    def __init__(self) -> None:
        self.calls: list[str] = []

    def pause_producing(self) -> None:
        self.calls.append("pause")

    def resume_producing(self) -> None:
        self.calls.append("resume")

    def stop_producing(self) -> None:
        self.calls.append("stop")


@implementer(IPullProducer)
class PullProducer:
    """Writes one chunk per ``resume_producing`` until ``chunks`` run out."""

    def __init__(self, transport: MemoryTransport, chunks: list[bytes]) -> None:
        self.transport = transport
        self.chunks = chunks
        self.calls: list[str] = []

    def resume_producing(self) -> None:
        self.calls.append("resume")
        if self.chunks:
            self.transport.write(self.chunks.pop(0))
        else:
            self.transport.unregister_producer()

    def stop_producing(self) -> None:
        self.calls.append("stop")
