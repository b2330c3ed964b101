"""The demo app that ``plait run`` serves by default, driven over MemoryTransport."""

from __future__ import annotations

import http.client
import io
import json
from email.message import Message

from plait.cluster.testing import MemoryTransport
from plait.protocols.http import HTTPServerProtocol, Site
from plait.worker import demo


class _Stream(io.BytesIO):
    def close(self) -> None:
        pass


class _Sock:
    def __init__(self, data: bytes) -> None:
        self._stream = _Stream(data)

    def makefile(self, mode: str) -> io.BytesIO:
        return self._stream


def request(wire: bytes, method: str = "GET") -> tuple[int, Message, bytes]:
    protocol = demo.app()
    transport = MemoryTransport(protocol)
    protocol.connection_made(transport)
    protocol.data_received(wire)
    response = http.client.HTTPResponse(_Sock(transport.value()), method=method)  # type: ignore[arg-type]
    response.begin()
    return response.status, response.headers, response.read()


def test_the_demo_app_is_a_site_making_http_protocols() -> None:
    assert isinstance(demo.app, Site)
    assert isinstance(demo.app(), HTTPServerProtocol)


def test_the_index_says_it_is_the_demo_and_lists_the_routes() -> None:
    status, _, body = request(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status == 200
    assert b"Plait demo" in body
    for route in (b"/hello/{name}", b"/echo", b"/time", b"/healthz"):
        assert route in body


def test_hello_greets_by_name() -> None:
    status, _, body = request(b"GET /hello/Ada%20L HTTP/1.1\r\nHost: h\r\n\r\n")
    assert (status, body) == (200, b"Hello, Ada L!\n")


def test_echo_sends_the_body_back() -> None:
    status, headers, body = request(
        b"POST /echo HTTP/1.1\r\nHost: h\r\nContent-Type: text/x-demo\r\n"
        b"Content-Length: 11\r\n\r\necho me now",
        "POST",
    )
    assert (status, body) == (200, b"echo me now")
    assert headers["Content-Type"] == "text/x-demo"


def test_time_is_a_json_document() -> None:
    status, headers, body = request(b"GET /time HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status == 200
    assert headers["Content-Type"] == "application/json"
    document = json.loads(body)
    assert isinstance(document["unix"], float)
    assert document["iso"].endswith("+00:00")


def test_healthz_is_ok() -> None:
    assert request(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")[::2] == (200, b"ok\n")


def test_an_unknown_path_is_a_404_and_a_wrong_method_a_405() -> None:
    assert request(b"GET /nope HTTP/1.1\r\nHost: h\r\n\r\n")[0] == 404
    status, headers, _ = request(b"GET /echo HTTP/1.1\r\nHost: h\r\n\r\n")
    assert status == 405
    assert headers["Allow"] == "POST"
