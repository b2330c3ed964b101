"""Micro-benchmark: Plait's sans-IO HTTP/1.1 core against h11 (if installed).

Measures, for a typical 6-header GET:
  parse  - a fresh server Connection parses the request (Request + EndOfMessage);
  cycle  - one kept-alive server Connection parses the request, serializes a
           12-byte response and starts the next cycle (what a server does per request).

Run:  .venv/bin/python tests/bench/bench_http_parser.py [--n 100000] [--repeat 5]
(h11 comes with the bench extra: .venv/bin/pip install -e '.[bench]').
Prints ops/s, the best of ``--repeat`` rounds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from plait.protocols.http import core as plait_http

REQUEST = (
    b"GET /api/items?id=42 HTTP/1.1\r\n"
    b"Host: localhost:8080\r\n"
    b"User-Agent: Mozilla/5.0 (X11; Linux x86_64) bench/1.0\r\n"
    b"Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
    b"Accept-Encoding: gzip, deflate\r\n"
    b"Accept-Language: en-US,en;q=0.5\r\n"
    b"Connection: keep-alive\r\n"
    b"\r\n"
)
BODY = b"Hello world!"


def plait_parse(n: int) -> None:
    Connection, SERVER = plait_http.Connection, plait_http.SERVER
    for _ in range(n):
        conn = Connection(SERVER)
        conn.receive_data(REQUEST)
        conn.next_event()
        conn.next_event()


def plait_cycle(n: int) -> None:
    h = plait_http
    conn = h.Connection(h.SERVER)
    headers = h.Headers([("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))])
    response = h.Response(status_code=200, headers=headers)
    data, end = h.Data(data=BODY), h.EndOfMessage()
    for _ in range(n):
        conn.receive_data(REQUEST)
        conn.next_event()
        conn.next_event()
        conn.send(response) + conn.send(data) + conn.send(end)
        conn.start_next_cycle()


def h11_parse(n: int) -> None:
    import h11

    for _ in range(n):
        conn = h11.Connection(h11.SERVER)
        conn.receive_data(REQUEST)
        conn.next_event()
        conn.next_event()


def h11_cycle(n: int) -> None:
    import h11

    conn = h11.Connection(h11.SERVER)
    headers = [("Content-Type", "text/plain"), ("Content-Length", str(len(BODY)))]
    for _ in range(n):
        conn.receive_data(REQUEST)
        conn.next_event()
        conn.next_event()
        conn.send(h11.Response(status_code=200, headers=headers))
        conn.send(h11.Data(data=BODY))
        conn.send(h11.EndOfMessage())
        conn.start_next_cycle()


def best_rate(fn: Callable[[int], None], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn(n)
        best = min(best, time.perf_counter() - start)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    try:
        import h11  # noqa: F401

        have_h11 = True
    except ImportError:
        have_h11 = False
    for label, ours, theirs in [("parse", plait_parse, h11_parse), ("cycle", plait_cycle, h11_cycle)]:
        rate = best_rate(ours, args.n, args.repeat)
        line = f"{label:6s} plait {rate:>10,.0f} ops/s"
        if have_h11:
            other = best_rate(theirs, args.n, args.repeat)
            line += f"   h11 {other:>10,.0f} ops/s   plait/h11 {rate / other:4.2f}x"
        print(line, flush=True)


if __name__ == "__main__":
    main()
