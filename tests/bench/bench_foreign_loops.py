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
import socket
import statistics

import _bench_common as bc

IMPLS = ("plait-uvloop", "raw-uvloop", "plait-asyncio", "raw-asyncio", "plait")


def serve(impl):
    import asyncio

    sock = bc.listen_sock()
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
        reactor.call_soon(bc.ready, port)
        reactor.run()
        return
    bc.serve_asyncio(sock, bc.asyncio_echo_protocol(), impl == "raw-uvloop")


def client(port, conns, size, duration, warmup):
    bc.echo_client(port, conns, size, duration, warmup, bc.new_asyncio_loop(use_uvloop=True))


def run(args):
    impls = args.impls.split(",")
    results = {}
    for rnd in range(args.runs):
        for impl in impls:
            srv, port = bc.start_server(__file__, impl)
            rec, cpu_s, secs = bc.measure_round(srv, bc.echo_client_argv(__file__, port, args), args.duration)
            rec["server_cpu_pct"] = round(100 * cpu_s / secs, 1)
            results.setdefault(impl, []).append(rec)
            print(f"round {rnd} {impl}: {rec['msgs_per_s']:,.0f} msgs/s server {rec['server_cpu_pct']}% "
                  f"client {rec['client_cpu_pct']}%", flush=True)
    base = statistics.median(r["msgs_per_s"] for r in results["raw-uvloop"]) if "raw-uvloop" in results else None
    # Server CPU microseconds per round trip: steadier than msgs/s on a shared machine.
    def cost(r):
        return 1e6 * r["server_cpu_pct"] / 100 / r["msgs_per_s"]

    base_cost = statistics.median(map(cost, results["raw-uvloop"])) if "raw-uvloop" in results else None
    print()
    bc.table_header("server", f"msgs/s median of {args.runs}", "min-max", "x raw-uvloop", "server CPU us/msg",
                    "x raw-uvloop (CPU)", "server CPU%", "client CPU%")
    for impl, rs in results.items():
        v = [r["msgs_per_s"] for r in rs]
        c = statistics.median(map(cost, rs))
        ratio = f"{statistics.median(v) / base:.2f}" if base else "-"
        cpu_ratio = f"{base_cost / c:.2f}" if base_cost else "-"
        print(f"| {impl} | {statistics.median(v):,.0f} | {bc.span(v)} | {ratio} "
              f"| {c:.2f} | {cpu_ratio} "
              f"| {statistics.median(r['server_cpu_pct'] for r in rs):.0f} "
              f"| {statistics.median(r['client_cpu_pct'] for r in rs):.0f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    p = sub.add_parser("serve")
    p.add_argument("impl", choices=IMPLS)
    bc.add_echo_client_parser(sub, duration=5)
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
