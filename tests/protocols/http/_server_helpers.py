"""Helpers for the HTTP server adapter tests: a served connection and a response parser."""

from __future__ import annotations

import http.client
import io
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from plait.cluster.task import Clock
from plait.cluster.testing import MemoryTransport
from plait.protocols.http import HTTPServerProtocol, Request, Response, Site

from ._helpers import split


@dataclass
class Served:
    """One in-memory connection to a Site, driven by a Clock."""

    site: Site
    protocol: HTTPServerProtocol
    transport: MemoryTransport
    clock: Clock
    lost: list[BaseException | None] = field(default_factory=list)

    def feed(self, wire: bytes, how: str = "whole") -> None:
        for piece in split(wire, how):
            self.protocol.data_received(piece)

    def take(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def connect_another(self) -> Served:
        return connect(self.site, self.clock)


def connect(site: Site, clock: Clock) -> Served:
    protocol = site()
    transport = MemoryTransport(protocol)
    protocol.connection_made(transport)
    return Served(site, protocol, transport, clock)


def serve(app: Any, **kwargs: Any) -> Served:
    clock = Clock()
    site = Site(app, clock=clock, **kwargs)
    return connect(site, clock)


class _Unclosable(io.BytesIO):
    def close(self) -> None:
        pass


class _Sock:
    def __init__(self, stream: io.BytesIO) -> None:
        self._stream = stream

    def makefile(self, mode: str) -> io.BytesIO:
        return self._stream


@dataclass
class Parsed:
    status: int
    headers: Message
    body: bytes
    raw_head: bytes


def parse(data: bytes, methods: tuple[str, ...] = ("GET",)) -> list[Parsed]:
    """Parse consecutive responses (one per request method given) with http.client."""
    stream = _Unclosable(data)
    out: list[Parsed] = []
    for method in methods:
        start = stream.tell()
        response = http.client.HTTPResponse(_Sock(stream), method=method)  # type: ignore[arg-type]
        response.begin()
        head_end = data.find(b"\r\n\r\n", start) + 4
        body = response.read()
        out.append(Parsed(response.status, response.headers, body, data[start:head_end]))
    assert stream.read() == b"", "bytes left after the expected responses"
    return out


def one(data: bytes, method: str = "GET") -> Parsed:
    return parse(data, (method,))[0]


GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"


def hello(request: Request) -> Response:
    return Response(200, body=b"Hello, World!", headers=[("Content-Type", "text/plain")])


async def echo(request: Request) -> Response:
    body = await request.body()
    return Response(200, body, {"X-Method": request.method})


def post(body: bytes, target: bytes = b"/", extra: bytes = b"") -> bytes:
    return (
        b"POST %s HTTP/1.1\r\nHost: h\r\nContent-Length: %d\r\n%s\r\n%s"
        % (target, len(body), extra, body)
    )


def chunked(*pieces: bytes) -> bytes:
    wire = b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
    for piece in pieces:
        wire += b"%x\r\n%s\r\n" % (len(piece), piece)
    return wire + b"0\r\n\r\n"
