"""TCP echo ping-pong on foreign loops: AsyncioReactor + uvloop against a raw uvloop Protocol.

Workload (the one of /work/shared/bench/echo_bench.py): CONNS (50) client connections
to 127.0.0.1; each sends a 64-byte message, waits until all 64 bytes have come back,
then sends the next (one message in flight per connection). The figure is round trips
per second summed over connections, counted for DURATION seconds after a 1 s warm-up.
The client is the same for every server: one uvloop process. Servers run one at a
time, interleaved round by round, so that the machine's load hits them alike; the
table gives each server's ratio to raw-uvloop's median (the figure to reach for
plait-uvloop: 0.8), and the server's CPU time per round trip with its ratio (raw
uvloop's cost over this server's: higher is better), which the machine's other load
disturbs less than the rate does.

Servers:
  plait-uvloop    a Plait Protocol on AsyncioReactor(uvloop loop) (adopt_stream_port)
  raw-uvloop      asyncio.Protocol, transport.write(data), on uvloop
  plait-asyncio   a Plait Protocol on AsyncioReactor(default asyncio loop)
  raw-asyncio     asyncio.Protocol on the default loop
  plait           a Plait Protocol on the native Reactor (for reference)

Run:  .venv/bin/python tests/bench/bench_foreign_loops.py [--runs 3] [--duration 5]
"""
import argparse
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import time

IMPLS = ("plait-uvloop", "raw-uvloop", "plait-asyncio", "raw-asyncio", "plait")


def listen_sock():
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    s.setblocking(False)
    return s


def ready(port):
    print(f"READY {port}", flush=True)


def serve(impl):
    import asyncio

    sock = listen_sock()
    port = sock.getsockname()[1]
    if impl.startswith("plait"):
        from plait.cluster.protocol import Protocol
        from plait.cluster.reactor import AsyncioReactor, Reactor

        if impl == "plait-uvloop":
            import uvloop

            reactor = AsyncioReactor(uvloop.new_event_loop())
        elif impl == "plait-asyncio":
            reactor = AsyncioReactor(asyncio.new_event_loop())
        else:
            reactor = Reactor()

        class Echo(Protocol):
            def data_received(self, data):
                self.transport.write(data)

        reactor.adopt_stream_port(sock.fileno(), socket.AF_INET, Echo)
        sock.close()
        reactor.call_soon(ready, port)
        reactor.run()
        return
    if impl == "raw-uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    class AEcho(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    async def main():
        await loop.create_server(AEcho, sock=sock)
        ready(port)

    loop.add_signal_handler(signal.SIGTERM, os._exit, 0)
    loop.run_until_complete(main())
    loop.run_forever()


def client(port, conns, size, duration, warmup):
    import asyncio

    import uvloop

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    msg = b"x" * size
    stats = {"count": 0, "running": True}

    class C(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t
            self.got = 0
            t.write(msg)

        def data_received(self, data):
            self.got += len(data)
            while self.got >= size:
                self.got -= size
                stats["count"] += 1
                if stats["running"]:
                    self.t.write(msg)

    async def main():
        ts = []
        for _ in range(conns):
            t, _ = await asyncio.wait_for(loop.create_connection(C, "127.0.0.1", port), 5)
            ts.append(t)
        await asyncio.sleep(warmup)
        c0, r0, t0 = stats["count"], resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        await asyncio.sleep(duration)
        c1, r1, t1 = stats["count"], resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        stats["running"] = False
        for t in ts:
            t.close()
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        return {"msgs_per_s": (c1 - c0) / (t1 - t0), "client_cpu_pct": round(100 * cpu / (t1 - t0), 1)}

    print(json.dumps(loop.run_until_complete(asyncio.wait_for(main(), duration + warmup + 30))), flush=True)


def proc_cpu(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(impl):
    proc = subprocess.Popen([sys.executable, __file__, "serve", impl], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{impl} server did not start")
    return proc, int(line.split()[1])


def stop(proc):
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def run(args):
    impls = args.impls.split(",")
    results = {}
    for rnd in range(args.runs):
        for impl in impls:
            srv, port = start_server(impl)
            try:
                cli = subprocess.Popen([sys.executable, __file__, "client", "--port", str(port),
                                        "--conns", str(args.conns), "--size", str(args.size),
                                        "--duration", str(args.duration)], stdout=subprocess.PIPE, text=True)
                time.sleep(1.3)
                s0, t0 = proc_cpu(srv.pid), time.monotonic()
                time.sleep(args.duration - 0.6)
                s1, t1 = proc_cpu(srv.pid), time.monotonic()
                out, _ = cli.communicate(timeout=args.duration + 60)
            finally:
                stop(srv)
            rec = json.loads(out.strip().splitlines()[-1])
            rec["server_cpu_pct"] = round(100 * (s1 - s0) / (t1 - t0), 1)
            results.setdefault(impl, []).append(rec)
            print(f"round {rnd} {impl}: {rec['msgs_per_s']:,.0f} msgs/s server {rec['server_cpu_pct']}% "
                  f"client {rec['client_cpu_pct']}%", flush=True)
    base = statistics.median(r["msgs_per_s"] for r in results["raw-uvloop"]) if "raw-uvloop" in results else None
    # Server CPU microseconds per round trip: steadier than msgs/s on a shared machine.
    def cost(r):
        return 1e6 * r["server_cpu_pct"] / 100 / r["msgs_per_s"]

    base_cost = statistics.median(map(cost, results["raw-uvloop"])) if "raw-uvloop" in results else None
    print(f"\n| server | msgs/s median of {args.runs} | min-max | x raw-uvloop | server CPU us/msg "
          "| x raw-uvloop (CPU) | server CPU% | client CPU% |")
    print("|---|---|---|---|---|---|---|---|")
    for impl, rs in results.items():
        v = [r["msgs_per_s"] for r in rs]
        c = statistics.median(map(cost, rs))
        ratio = f"{statistics.median(v) / base:.2f}" if base else "-"
        cpu_ratio = f"{base_cost / c:.2f}" if base_cost else "-"
        print(f"| {impl} | {statistics.median(v):,.0f} | {min(v):,.0f}-{max(v):,.0f} | {ratio} "
              f"| {c:.2f} | {cpu_ratio} "
              f"| {statistics.median(r['server_cpu_pct'] for r in rs):.0f} "
              f"| {statistics.median(r['client_cpu_pct'] for r in rs):.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    p = sub.add_parser("serve")
    p.add_argument("impl", choices=IMPLS)
    p = sub.add_parser("client")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--duration", type=float, default=5)
    p.add_argument("--warmup", type=float, default=1)
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--duration", type=float, default=5)
    a = ap.parse_args()
    if a.cmd == "serve":
        serve(a.impl)
    elif a.cmd == "client":
        client(a.port, a.conns, a.size, a.duration, a.warmup)
    else:
        run(a)


if __name__ == "__main__":
    main()
