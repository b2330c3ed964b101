"""The HTTP server adapter against faults: bad input, limits, application errors,
timeouts (on a Clock), clients that leave, and draining."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from plait.cluster.defer import Deferred, succeed
from plait.protocols.http import Limits, Request, Response, Site

from ._server_helpers import GET, chunked, echo, hello, one, post, serve

# -- bad input ----------------------------------------------------------------------------

BAD = [
    (b"GARBAGE\r\n\r\n", 400),
    (b"GET / HTTP/1.1 extra\r\nHost: h\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX: " + b"v" * 700 + b"\r\n\r\n", 431),
    (b"GET /" + b"a" * 600 + b" HTTP/1.1\r\nHost: h\r\n\r\n", 414),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2000\r\n\r\n", 413),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
    (b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
    (b"GET / HTTP/1.1\r\nHost: h\r\nX-Folded: a\r\n  b\r\n\r\n", 400),
    (b"GET / HTTP/1.1\r\n\r\n", 400),
    (b"GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505),
]
SMALL = Limits(max_request_line=512, max_header_bytes=512, max_body=1024)


@pytest.mark.parametrize("how", ["whole", "bytewise", "random1"])
@pytest.mark.parametrize(("wire", "status"), BAD)
def test_bad_requests_get_an_error_and_never_reach_the_app(
    wire: bytes, status: int, how: str
) -> None:
    called: list[Request] = []

    def app(request: Request) -> Response:
        called.append(request)
        return hello(request)

    served = serve(app, limits=SMALL)
    served.feed(wire, how)
    response = one(served.take())
    assert response.status == status
    assert response.headers["Connection"] == "close"
    assert served.transport.is_closing()
    assert called == []
    # The site still serves other connections.
    other = served.connect_another()
    other.feed(GET)
    assert one(other.take()).status == 200


def test_a_body_over_the_limit_in_chunks_fails_the_body_with_413() -> None:
    served = serve(echo, limits=SMALL)
    served.feed(chunked(b"x" * 600, b"y" * 600))
    response = one(served.take(), "POST")
    assert response.status == 413
    assert served.transport.is_closing()


def test_an_exception_in_the_app_is_a_500_without_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def app(request: Request) -> Response:
        raise ValueError("secret detail")

    served = serve(app)
    with caplog.at_level(logging.ERROR, logger="plait.http"):
        served.feed(GET)
    response = one(served.take())
    assert response.status == 500
    assert b"secret" not in response.body and b"Traceback" not in response.body
    assert "secret detail" in caplog.text and "Traceback" in caplog.text
    served.feed(GET)  # the connection still serves
    assert one(served.take()).status == 500


def test_a_failing_coroutine_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    async def app(request: Request) -> Response:
        raise KeyError("inner")

    served = serve(app)
    with caplog.at_level(logging.ERROR, logger="plait.http"):
        served.feed(GET)
    assert one(served.take()).status == 500
    assert "KeyError" in caplog.text


@pytest.mark.parametrize("result", [None, 42, {"a": 1}, succeed(3.5)])
def test_a_wrong_return_type_is_a_500_and_logged(
    result: Any, caplog: pytest.LogCaptureFixture
) -> None:
    served = serve(lambda request: result)
    with caplog.at_level(logging.ERROR, logger="plait.http"):
        served.feed(GET)
    assert one(served.take()).status == 500
    assert "expected Response" in caplog.text


@pytest.mark.parametrize(
    "headers",
    [[("X-Bad", "a\r\nInjected: 1")], [("Bad Name", "v")], [("X", "nul\x00")]],
)
def test_an_invalid_response_header_is_a_500(
    headers: list[tuple[str, str]], caplog: pytest.LogCaptureFixture
) -> None:
    served = serve(lambda request: Response(200, b"x", headers))
    with caplog.at_level(logging.ERROR, logger="plait.http"):
        served.feed(GET)
    data = served.take()
    assert b"Injected" not in data
    assert one(data).status == 500


def test_a_1xx_final_status_from_the_app_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    served = serve(lambda request: Response(102))
    with caplog.at_level(logging.ERROR, logger="plait.http"):
        served.feed(GET)
    assert one(served.take()).status == 500


def test_the_app_is_cancelled_when_the_client_leaves(caplog: pytest.LogCaptureFixture) -> None:
    d: Deferred[Any] = Deferred()
    served = serve(lambda request: d)
    served.feed(GET)
    with caplog.at_level(logging.WARNING, logger="plait.http"):
        served.transport.abort()
    assert d.called
    assert caplog.text == ""


def test_a_client_half_close_still_gets_its_response() -> None:
    d: Deferred[Any] = Deferred()
    served = serve(lambda request: d)
    served.feed(b"GET /x HTTP/1.1\r\nHost: h\r\n\r\n")
    assert served.protocol.eof_received() is True
    d.callback("late")
    assert one(served.take()).body == b"late"
    assert served.transport.is_closing()


def test_an_idle_half_close_closes() -> None:
    served = serve(hello)
    served.protocol.eof_received()
    assert served.transport.is_closing()


# -- timeouts -----------------------------------------------------------------------------


def test_a_slowloris_client_is_cut_off_while_others_are_served() -> None:
    served = serve(hello, header_timeout=10)
    wire = b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: " + b"a" * 30
    for byte in range(len(wire)):
        served.feed(wire[byte : byte + 1])
        served.clock.advance(1)
        if served.transport.is_closing():
            break
        other = served.connect_another()
        other.feed(GET)
        assert one(other.take()).status == 200
    assert served.transport.is_closing()
    assert one(served.take()).status == 408
    assert served.clock.seconds() == 10


def test_a_silent_new_connection_gets_408_after_the_header_timeout() -> None:
    served = serve(hello, header_timeout=5)
    served.clock.advance(4.9)
    assert not served.transport.is_closing()
    served.clock.advance(0.1)
    assert one(served.take()).status == 408
    assert served.transport.is_closing()


def test_an_idle_keep_alive_connection_is_closed_quietly() -> None:
    served = serve(hello, idle_timeout=60, header_timeout=10)
    served.feed(GET)
    served.take()
    served.clock.advance(59)
    assert not served.transport.is_closing()
    served.feed(GET)  # activity starts a new idle period
    served.take()
    served.clock.advance(59)
    assert not served.transport.is_closing()
    served.clock.advance(1)
    assert served.transport.is_closing()
    assert served.take() == b""


def test_the_header_timeout_starts_again_with_the_next_request() -> None:
    served = serve(hello, idle_timeout=60, header_timeout=10)
    served.feed(GET)
    served.take()
    served.clock.advance(30)
    served.feed(b"GET / HT")
    served.clock.advance(9)
    assert not served.transport.is_closing()
    served.clock.advance(1)
    assert one(served.take()).status == 408


def test_a_slow_body_gets_408_after_the_body_timeout() -> None:
    served = serve(echo, body_timeout=30)
    served.feed(post(b"0123456789")[:-5])
    served.clock.advance(29)
    assert not served.transport.is_closing()
    served.clock.advance(1)
    assert one(served.take(), "POST").status == 408
    assert served.transport.is_closing()


def test_a_slow_application_has_no_deadline() -> None:
    d: Deferred[Any] = Deferred()
    served = serve(lambda request: d, header_timeout=1, idle_timeout=2, body_timeout=3)
    served.feed(GET)
    served.clock.advance(1000)
    assert not served.transport.is_closing()
    d.callback("ok")
    assert one(served.take()).body == b"ok"


# -- drain ---------------------------------------------------------------------------------


def test_drain_closes_idle_connections_and_finishes_in_flight_ones() -> None:
    d: Deferred[Any] = Deferred()

    def app(request: Request) -> Any:
        return d if request.path == "/slow" else "quick"

    busy = serve(app)
    idle = busy.connect_another()
    idle.feed(GET)
    idle.take()
    busy.feed(b"GET /slow HTTP/1.1\r\nHost: h\r\n\r\n")
    drained = busy.site.drain()
    assert idle.transport.is_closing()
    assert not busy.transport.is_closing()
    assert not drained.called
    late = busy.connect_another()
    assert late.transport.is_closing()
    d.callback("finished")
    response = one(busy.take())
    assert response.body == b"finished"
    assert response.headers["Connection"] == "close"
    assert busy.transport.is_closing()
    assert drained.called


def test_drain_with_no_connections_fires_at_once() -> None:
    site = Site(hello)
    assert site.drain().called


def test_drain_refuses_pipelined_requests_after_the_one_in_flight() -> None:
    served = serve(hello)
    d: Deferred[Any] = Deferred()
    served.site.app = lambda request: d
    served.protocol._app = served.site.app
    served.feed(GET + GET)
    served.site.drain()
    d.callback("only one")
    assert one(served.take()).body == b"only one"
    assert served.transport.is_closing()




def test_a_body_that_breaks_while_the_app_reads_it_is_a_400() -> None:
    served = serve(echo)
    served.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n")
    assert served.take() == b""  # the app is waiting for the rest
    served.feed(b"zz-not-hex\r\n")
    response = one(served.take(), "POST")
    assert response.status == 400
    assert served.transport.is_closing()


def test_a_client_that_leaves_mid_body_fails_the_body_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    served = serve(echo)
    served.feed(post(b"0123456789")[:-5])
    with caplog.at_level(logging.WARNING, logger="plait.http"):
        served.transport.abort()
    assert caplog.text == ""


def test_a_large_unread_body_is_discarded_without_stalling() -> None:
    served = serve(hello)
    body = b"z" * 200_000
    served.feed(post(body)[:100_000])
    assert one(served.take(), "POST").status == 200
    assert served.transport.is_reading()
    served.feed(post(body)[100_000:] + GET)
    assert one(served.take()).body == b"Hello, World!"


def test_a_discarded_body_that_stalls_is_closed_without_a_second_answer() -> None:
    served = serve(hello, body_timeout=5)
    served.feed(post(b"0123456789")[:-5])
    assert one(served.take(), "POST").status == 200
    served.clock.advance(5)
    assert served.transport.is_closing()
    assert served.take() == b""


def test_a_discarded_body_that_breaks_is_closed_without_a_second_answer() -> None:
    served = serve(hello)
    served.feed(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n")
    assert one(served.take(), "POST").status == 200
    served.feed(b"not-a-chunk-size\r\n")
    assert served.transport.is_closing()
    assert served.take() == b""


def test_unread_body_bytes_past_the_high_water_mark_pause_reading() -> None:
    chunks: list[bytes] = []
    gate: Deferred[None] = Deferred()

    async def app(request: Request) -> str:
        await gate
        async for chunk in request.stream():
            chunks.append(chunk)
        return "read"

    served = serve(app)
    served.feed(post(b"a" * 100_000)[:-30_000])
    assert not served.transport.is_reading()
    gate.callback(None)
    assert served.transport.is_reading()
    served.feed(b"a" * 30_000)
    assert one(served.take(), "POST").body == b"read"
    assert sum(map(len, chunks)) == 100_000
