"""WebSocket echo: Plait's WebSocketResource against the ``websockets`` library's server.

Workloads, each against a server process running one implementation, the two
implementations interleaved round by round:

- ``text64``: CONNS (50) WebSocket connections to 127.0.0.1; each sends a 64-byte
  text message, waits for its echo, then sends the next. Figure: messages echoed
  per second, summed over connections.
- ``binary16k``: the same with 16 KiB binary messages (MB/s shown too).

Servers: Plait (``Site(Router)`` with ``WebSocketResource(echo)`` on the native
``Reactor``; ``async for message in ws: ws.send(message)``) and ``websockets``
(its asyncio server; ``async for message in ws: await ws.send(message)``), both
with their default limits; the client offers no compression, so neither
compresses. The client is one asyncio process (uvloop when installed) writing
pre-masked frames and reading back exact lengths, the same for both servers. On
a shared 2-core machine client and server each want a core: the table shows both
CPU figures, and server CPU per message, steadier than rates.

Run:  .venv/bin/python tests/bench/bench_websocket.py [--runs 3] [--duration 4]

``micro`` times Plait's side alone, in one process with no sockets: the server's
``WebSocketProtocol`` and the same echo handler fed the client's frame in a loop
(a fake transport counts what it writes), the sans-IO ``Connection`` alone, and
unmasking 16 KiB; microseconds per message, best of 7 repeats. Steadier than the
socket figures on a loaded machine, it is what to compare before and after a
change to the WebSocket code:

      .venv/bin/python tests/bench/bench_websocket.py micro
"""
import argparse
import base64
import json
import os
import resource
import signal
import socket
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

IMPLS = ("plait", "websockets")
WORKLOADS = ("text64", "binary16k")
MASK = b"\x11\x22\x33\x44"


def serve(impl):
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(1024)
    sock.setblocking(False)
    port = sock.getsockname()[1]
    if impl == "plait":
        from plait.cluster.reactor import Reactor
        from plait.protocols.http import Router, Site
        from plait.protocols.websocket import WebSocketResource

        reactor = Reactor()

        async def echo(ws):
            async for message in ws:
                ws.send(message)

        router = Router()
        router.add_route("GET", "/", WebSocketResource(echo))
        reactor.adopt_stream_port(sock.fileno(), socket.AF_INET, Site(router, reactor=reactor))
        sock.close()
        reactor.call_soon(print, f"READY {port}", flush=True)
        reactor.run()
    else:
        import asyncio

        from websockets.asyncio.server import serve as ws_serve
        from websockets.exceptions import ConnectionClosed

        async def echo(ws):
            try:
                async for message in ws:
                    await ws.send(message)
            except ConnectionClosed:
                pass  # the client aborts its connections at the end of a run

        async def main():
            async with ws_serve(echo, sock=sock, ping_interval=None):
                print(f"READY {port}", flush=True)
                await asyncio.Future()

        asyncio.run(main())


def frame(workload):
    size = 16384 if workload == "binary16k" else 64
    opcode = 0x2 if workload == "binary16k" else 0x1
    payload = b"x" * size
    masked = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    if size < 126:
        head = bytes((0x80 | opcode, 0x80 | size))
    else:
        head = bytes((0x80 | opcode, 0x80 | 126)) + struct.pack("!H", size)
    answer = (2 if size < 126 else 4) + size  # the server's unmasked echo
    return head + MASK + masked, answer, size


def client(port, workload, conns, duration, warmup):
    import asyncio

    try:
        import uvloop

        loop = uvloop.new_event_loop()
    except ImportError:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    wire, answer, size = frame(workload)
    stats = {"count": 0, "running": True}
    handshake = (
        "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )

    class C(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t
            self.head = b""
            self.got = -1
            key = base64.b64encode(os.urandom(16)).decode()
            t.write(handshake.format(key=key).encode())

        def data_received(self, data):
            if self.got < 0:
                self.head += data
                end = self.head.find(b"\r\n\r\n")
                if end < 0:
                    return
                assert self.head.startswith(b"HTTP/1.1 101"), self.head[:80]
                self.got = len(self.head) - end - 4
                self.t.write(wire)
                return
            self.got += len(data)
            while self.got >= answer:
                self.got -= answer
                stats["count"] += 1
                if stats["running"]:
                    self.t.write(wire)

    async def main():
        ts = []
        for _ in range(conns):
            t, _ = await asyncio.wait_for(loop.create_connection(C, "127.0.0.1", port), 10)
            ts.append(t)
        await asyncio.sleep(warmup)
        c0, r0, t0 = stats["count"], resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        await asyncio.sleep(duration)
        c1, r1, t1 = stats["count"], resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        stats["running"] = False
        for t in ts:
            t.abort()
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        rate = (c1 - c0) / (t1 - t0)
        return {"rate": rate, "mb_per_s": rate * size / 1e6,
                "client_cpu_pct": round(100 * cpu / (t1 - t0), 1)}

    result = loop.run_until_complete(asyncio.wait_for(main(), duration + warmup + 30))
    print(json.dumps(result), flush=True)


def micro():
    import timeit

    from plait.cluster.defer import Deferred
    from plait.cluster.task import Clock
    from plait.protocols.websocket.core import SERVER, Connection, apply_mask
    from plait.protocols.websocket.protocol import WebSocketProtocol

    class Transport:
        written = 0

        def write(self, data):
            self.written += len(data)

        def get_extra_info(self, name, default=None):
            return default

    async def echo(ws):
        async for message in ws:
            ws.send(message)

    def best(fn, number):
        return min(timeit.repeat(fn, number=number, repeat=7)) / number * 1e6

    for workload, number in (("text64", 20000), ("binary16k", 3000)):
        wire, answer, _ = frame(workload)
        ws = WebSocketProtocol(Connection(SERVER), clock=Clock(),
                               on_open=lambda w: Deferred.from_coroutine(echo(w)))
        transport = Transport()
        ws.connection_made(transport)
        echo_us = best(lambda ws=ws, wire=wire: ws.data_received(wire), number)
        assert transport.written == 7 * number * answer, "the handler did not echo"
        core = Connection(SERVER)
        core_us = best(lambda core=core, wire=wire: core.receive_data(wire), number)
        print(f"{workload}: echo through WebSocketProtocol {echo_us:.2f} us/msg, "
              f"Connection.receive_data {core_us:.2f} us/msg")
    payload = bytes(range(256)) * 64
    print(f"apply_mask 16 KiB: {best(lambda: apply_mask(payload, MASK), 3000):.2f} us")


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(impl):
    proc = subprocess.Popen([sys.executable, __file__, "serve", impl],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{impl} server did not start")
    return proc, int(line.split()[1])


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(args):
    results = {}
    impls = args.impls.split(",")
    for rnd in range(args.runs):
        for workload in args.workloads.split(","):
            for impl in impls if rnd % 2 == 0 else impls[::-1]:
                srv, port = start_server(impl)
                try:
                    cli = subprocess.Popen(
                        [sys.executable, __file__, "client", "--port", str(port),
                         "--workload", workload, "--conns", str(args.conns),
                         "--duration", str(args.duration)],
                        stdout=subprocess.PIPE, text=True)
                    time.sleep(1.3)
                    s0, t0 = proc_cpu(srv.pid), time.monotonic()
                    time.sleep(args.duration - 0.6)
                    s1, t1 = proc_cpu(srv.pid), time.monotonic()
                    out, _ = cli.communicate(timeout=args.duration + 60)
                finally:
                    stop(srv)
                rec = json.loads(out.strip().splitlines()[-1])
                rec["server_cpu_pct"] = round(100 * (s1 - s0) / (t1 - t0), 1)
                rec["server_us_per_msg"] = 1e6 * (s1 - s0) / (t1 - t0) / max(rec["rate"], 1)
                results.setdefault((workload, impl), []).append(rec)
                print(f"round {rnd} {workload} {impl}: {rec['rate']:,.0f} msg/s "
                      f"{rec['server_us_per_msg']:.1f} us CPU/msg "
                      f"({rec['mb_per_s']:.1f} MB/s) server {rec['server_cpu_pct']}% "
                      f"client {rec['client_cpu_pct']}%", flush=True)
    print(f"\n| workload | server | messages/s, median of {args.runs} | MB/s | "
          "server CPU% | client CPU% | server CPU us/msg | Plait / websockets (rate; CPU/msg) |")
    print("|---|---|---|---|---|---|---|---|")
    for workload in args.workloads.split(","):
        medians, costs = {}, {}
        for impl in impls:
            rs = results[(workload, impl)]
            medians[impl] = statistics.median(r["rate"] for r in rs)
            costs[impl] = statistics.median(r["server_us_per_msg"] for r in rs)
        for impl in impls:
            rs = results[(workload, impl)]
            ratio = ""
            if impl == "plait" and medians.get("websockets"):
                ratio = (f"{medians['plait'] / medians['websockets']:.2f}x; "
                         f"{costs['websockets'] / costs['plait']:.2f}x")
            print(f"| {workload} | {impl} | {medians[impl]:,.0f} | "
                  f"{statistics.median(r['mb_per_s'] for r in rs):.1f} | "
                  f"{statistics.median(r['server_cpu_pct'] for r in rs):.0f} | "
                  f"{statistics.median(r['client_cpu_pct'] for r in rs):.0f} | "
                  f"{costs[impl]:.1f} | {ratio} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    p = sub.add_parser("serve")
    p.add_argument("impl", choices=IMPLS)
    sub.add_parser("micro", help="time Plait's WebSocket code in-process (no sockets)")
    p = sub.add_parser("client")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workload", choices=WORKLOADS, required=True)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--duration", type=float, default=4)
    p.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--duration", type=float, default=4)
    a = ap.parse_args()
    if a.cmd == "serve":
        serve(a.impl)
    elif a.cmd == "micro":
        micro()
    elif a.cmd == "client":
        client(a.port, a.workload, a.conns, a.duration, a.warmup)
    else:
        run(a)


if __name__ == "__main__":
    main()
