"""TCP echo ping-pong: Plait's native Reactor against Twisted (epoll) and asyncio.

Workload (the one of /work/shared/bench/echo_bench.py): CONNS (50) client connections
to 127.0.0.1; each sends a 64-byte message, waits until all 64 bytes have come back,
then sends the next (one message in flight per connection). The figure is round
trips per second summed over connections, counted for DURATION seconds after a 1 s
warm-up. The client is the same for every server: one uvloop (else asyncio) process.
On a 2-core machine client and server each need about a core; the table shows both
CPU figures, and a client near 100% means the figure is client-bound.

Run:  .venv/bin/python tests/bench/bench_echo.py [--runs 3] [--duration 5]
"""
import argparse
import socket
import statistics

import _bench_common as bc

IMPLS = ("plait", "twisted-epoll", "raw-asyncio", "raw-uvloop")


def serve(impl):
    sock = bc.listen_sock()
    port = sock.getsockname()[1]
    if impl == "plait":
        from plait.cluster.protocol import Protocol
        from plait.cluster.reactor import Reactor

        reactor = Reactor()

        class Echo(Protocol):
            def data_received(self, data):
                self.transport.write(data)

        reactor.adopt_stream_port(sock.fileno(), socket.AF_INET, Echo)
        sock.close()
        reactor.call_soon(bc.ready, port)
        reactor.run()
    elif impl == "twisted-epoll":
        from twisted.internet import epollreactor

        epollreactor.install()
        from twisted.internet import protocol, reactor

        class TEcho(protocol.Protocol):
            def dataReceived(self, data):
                self.transport.write(data)

        reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, protocol.Factory.forProtocol(TEcho))
        sock.close()
        reactor.callWhenRunning(bc.ready, port)
        reactor.run()
    else:
        bc.serve_asyncio(sock, bc.asyncio_echo_protocol(), impl == "raw-uvloop")


def client(port, conns, size, duration, warmup):
    try:
        loop = bc.new_asyncio_loop(use_uvloop=True)
    except ImportError:
        loop = bc.new_asyncio_loop(use_uvloop=False)
    bc.echo_client(port, conns, size, duration, warmup, loop)


def run(args):
    impls = [i for i in args.impls.split(",") if bc.available(i)]
    results = {}
    for rnd in range(args.runs):
        for impl in impls:
            srv, port = bc.start_server(__file__, impl)
            rec, cpu_s, secs = bc.measure_round(srv, bc.echo_client_argv(__file__, port, args), args.duration)
            rec["server_cpu_pct"] = round(100 * cpu_s / secs, 1)
            results.setdefault(impl, []).append(rec)
            print(f"round {rnd} {impl}: {rec['msgs_per_s']:,.0f} msgs/s server {rec['server_cpu_pct']}% "
                  f"client {rec['client_cpu_pct']}%", flush=True)
    print()
    bc.table_header("server", f"msgs/s median of {args.runs}", "min-max", "server CPU%", "client CPU%")
    for impl, rs in results.items():
        v = [r["msgs_per_s"] for r in rs]
        print(f"| {impl} | {statistics.median(v):,.0f} | {bc.span(v)} "
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
