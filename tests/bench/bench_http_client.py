"""HTTP client throughput: Plait's Agent against Twisted's Agent and aiohttp's client.

One fixed server for every client: a raw asyncio protocol (on uvloop when it is
installed) in its own process on 127.0.0.1, answering every ``GET`` with a
13-byte ``Hello, world!`` (``Content-Length``, keep-alive). Each client runs in a
process of its own, for DURATION seconds after a short warm-up, the clients
interleaved round by round (median of the rounds):

- ``sequential``: one request at a time on one kept-alive connection (request,
  read the whole body, next). Figure: requests per second.
- ``concurrent``: 50 requests in flight (50 coroutines looping request + read)
  over a pool of up to 50 connections. Figure: requests per second.

The client CPU column is the client process's CPU seconds per wall second (1.00 is
one core busy): near 1.00 means the figure is client-bound, which is what this
benchmark is meant to compare. The machine is shared and noisy: ratios between
clients of the same run matter more than absolutes.

Plait: ``Agent(reactor, pool=HTTPConnectionPool(reactor, max_per_host=50))`` on the
native ``Reactor``, coroutines driven by ``ensure_deferred``. Twisted:
``twisted.web.client.Agent`` with a persistent ``HTTPConnectionPool``
(``maxPersistentPerHost=50``) and ``readBody`` on the epoll reactor. aiohttp:
``ClientSession`` with ``TCPConnector(limit=50)`` on asyncio (skipped when aiohttp
is not installed).

Run:  .venv/bin/python tests/bench/bench_http_client.py [--runs 3] [--duration 3]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

CONCURRENCY = 50
WARMUP = 0.5
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\nContent-Type: text/plain\r\n\r\nHello, world!"


# -- the server ------------------------------------------------------------------------------


def serve() -> None:
    """A raw asyncio hello server; prints its port, runs until killed."""
    import asyncio

    class Hello(asyncio.Protocol):
        def connection_made(self, transport: Any) -> None:
            self.transport = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            count = self.buf.count(b"\r\n\r\n")
            if count:
                self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4 :]
                self.transport.write(ANSWER * count)

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Hello, "127.0.0.1", 0, backlog=1024)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


# -- the clients -------------------------------------------------------------------------------


def client_plait(url: str, workers: int, duration: float) -> int:
    from plait.cluster.defer import ensure_deferred, gather
    from plait.cluster.reactor import Reactor
    from plait.protocols.http.client import Agent, HTTPConnectionPool

    reactor = Reactor()
    agent = Agent(reactor, pool=HTTPConnectionPool(reactor, max_per_host=CONCURRENCY))
    count = [0]

    async def worker(deadline: float, counted: bool) -> None:
        while time.perf_counter() < deadline:
            response = await agent.request("GET", url)
            await response.read()
            if counted:
                count[0] += 1

    async def main() -> None:
        await gather(
            [ensure_deferred(worker(time.perf_counter() + WARMUP, False)) for _ in range(workers)]
        )
        deadline = time.perf_counter() + duration
        await gather([ensure_deferred(worker(deadline, True)) for _ in range(workers)])
        await agent.close()

    d = ensure_deferred(main())
    failures: list[Any] = []
    d.add_errback(failures.append).add_both(lambda _: reactor.stop())
    reactor.run(install_signal_handlers=False)
    if failures:
        failures[0].raise_exception()
    return count[0]


def client_twisted(url: str, workers: int, duration: float) -> int:
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import defer, reactor
    from twisted.web.client import Agent, HTTPConnectionPool, readBody

    pool = HTTPConnectionPool(reactor, persistent=True)
    pool.maxPersistentPerHost = CONCURRENCY
    agent = Agent(reactor, pool=pool)
    raw_url = url.encode()
    count = [0]

    async def worker(deadline: float, counted: bool) -> None:
        while time.perf_counter() < deadline:
            response = await agent.request(b"GET", raw_url)
            await readBody(response)
            if counted:
                count[0] += 1

    async def main() -> None:
        await defer.gatherResults(
            [
                defer.ensureDeferred(worker(time.perf_counter() + WARMUP, False))
                for _ in range(workers)
            ]
        )
        deadline = time.perf_counter() + duration
        await defer.gatherResults(
            [defer.ensureDeferred(worker(deadline, True)) for _ in range(workers)]
        )
        await pool.closeCachedConnections()

    failures: list[Any] = []
    d = defer.ensureDeferred(main())
    d.addErrback(failures.append)
    d.addBoth(lambda _: reactor.stop())
    reactor.run(installSignalHandlers=False)
    if failures:
        failures[0].raiseException()
    return count[0]


def client_aiohttp(url: str, workers: int, duration: float) -> int:
    import asyncio

    import aiohttp

    count = [0]

    async def main() -> None:
        connector = aiohttp.TCPConnector(limit=CONCURRENCY)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker(deadline: float, counted: bool) -> None:
                while time.perf_counter() < deadline:
                    async with session.get(url) as response:
                        await response.read()
                    if counted:
                        count[0] += 1

            await asyncio.gather(
                *(worker(time.perf_counter() + WARMUP, False) for _ in range(workers))
            )
            deadline = time.perf_counter() + duration
            await asyncio.gather(*(worker(deadline, True) for _ in range(workers)))

    asyncio.run(main())
    return count[0]


CLIENTS = {"plait": client_plait, "twisted": client_twisted, "aiohttp": client_aiohttp}
WORKLOADS = {"sequential": 1, "concurrent": CONCURRENCY}


def run_client(name: str, port: int, workload: str, duration: float) -> None:
    """Child process: run one client, print JSON with requests and CPU."""
    url = f"http://127.0.0.1:{port}/"
    start_cpu = time.process_time()
    start = time.perf_counter()
    count = CLIENTS[name](url, WORKLOADS[workload], duration)
    wall = time.perf_counter() - start
    cpu = time.process_time() - start_cpu
    print(json.dumps({"rps": count / duration, "cpu": cpu / wall}))


# -- the driver ----------------------------------------------------------------------------------


def available() -> list[str]:
    names = ["plait", "twisted"]
    try:
        import aiohttp  # noqa: F401
    except ImportError:
        print("aiohttp is not installed: skipped", file=sys.stderr)
    else:
        names.append("aiohttp")
    return names


def measure(name: str, port: int, workload: str, duration: float) -> dict[str, float]:
    out = subprocess.run(
        [
            sys.executable,
            __file__,
            "--client",
            name,
            "--port",
            str(port),
            "--workload",
            workload,
            "--duration",
            str(duration),
        ],
        capture_output=True,
        text=True,
        timeout=duration + 60,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"{name} {workload} failed:\n{out.stderr}")
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--duration", type=float, default=3.0)
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--client", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workload", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve()
        return
    if args.client:
        run_client(args.client, args.port, args.workload, args.duration)
        return
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        names = available()
        results: dict[tuple[str, str], list[dict[str, float]]] = {}
        for run in range(args.runs):
            for workload in WORKLOADS:
                for name in names:
                    figure = measure(name, port, workload, args.duration)
                    results.setdefault((workload, name), []).append(figure)
                    print(
                        f"run {run + 1} {workload:10} {name:8} {figure['rps']:9.0f} req/s"
                        f"  client CPU {figure['cpu']:.2f}",
                        file=sys.stderr,
                    )
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)
    print(
        f"\nmedian of {args.runs} runs of {args.duration:g} s; server: raw asyncio protocol"
        f" in its own process; Python {sys.version.split()[0]}\n"
    )
    print("| workload | client | req/s | vs Plait | client CPU |")
    print("| --- | --- | ---: | ---: | ---: |")
    for workload in WORKLOADS:
        base = statistics.median(f["rps"] for f in results[(workload, "plait")])
        for name in names:
            figures = results[(workload, name)]
            rps = statistics.median(f["rps"] for f in figures)
            cpu = statistics.median(f["cpu"] for f in figures)
            print(f"| {workload} | {name} | {rps:,.0f} | {rps / base:.2f}x | {cpu:.2f} |")


if __name__ == "__main__":
    main()
