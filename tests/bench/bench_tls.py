"""TLS echo and handshakes: Plait's TLSTransport against Twisted's TLS (both pyOpenSSL).

Workloads, each against a server process running one implementation, the two
implementations interleaved round by round:

- ``echo64``: CONNS (50) TLS connections to 127.0.0.1; each sends a 64-byte
  message, waits for all of it to come back, then sends the next. Figure: round
  trips per second summed over connections.
- ``bulk16k``: the same with 16 KiB messages (MB/s echoed).
- ``handshakes``: PARALLEL (20) client tasks, each connecting, finishing the
  handshake, sending one byte, reading it back and closing, in a loop. Figure:
  connections served per second.

The client is one asyncio process using the stdlib ``ssl`` module,
the same for both servers. Certificates are P-256, made at start in a temporary
directory (tests/tls_certs.py). TLS 1.3, the default of both sides. On a shared
2-core machine client and server each want a core: the table shows both CPU
figures; a client near 100% means the figure is client-bound.

Run:  .venv/bin/python tests/bench/bench_tls.py [--runs 3] [--duration 4]
"""
import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

import _bench_common as bc

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

IMPLS = ("plait", "twisted")
WORKLOADS = ("echo64", "bulk16k", "handshakes")


def serve(impl, cert, key):
    import socket

    sock = bc.listen_sock()
    port = sock.getsockname()[1]
    if impl == "plait":
        from plait.cluster._tls_reactor import TLSServerFactory
        from plait.cluster.protocol import Protocol
        from plait.cluster.reactor import Reactor
        from plait.cluster.tls import server_options

        reactor = Reactor()

        class Echo(Protocol):
            def data_received(self, data):
                self.transport.write(data)

        options = server_options(cert, key)
        reactor.adopt_stream_port(sock.fileno(), socket.AF_INET,
                                  TLSServerFactory(reactor, Echo, options))
        sock.close()
        reactor.call_soon(bc.ready, port)
        reactor.run()
    else:
        from twisted.internet import epollreactor

        epollreactor.install()
        from OpenSSL import crypto
        from twisted.internet import protocol, reactor, ssl
        from twisted.protocols.tls import TLSMemoryBIOFactory

        class TEcho(protocol.Protocol):
            def dataReceived(self, data):
                self.transport.write(data)

        with open(cert, "rb") as f:
            x509 = crypto.load_certificate(crypto.FILETYPE_PEM, f.read())
        with open(key, "rb") as f:
            pkey = crypto.load_privatekey(crypto.FILETYPE_PEM, f.read())
        options = ssl.CertificateOptions(privateKey=pkey, certificate=x509)
        factory = TLSMemoryBIOFactory(options, False, protocol.Factory.forProtocol(TEcho))
        reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, factory)
        sock.close()
        reactor.callWhenRunning(bc.ready, port)
        reactor.run()


def client(port, workload, conns, duration, warmup, ca):
    import asyncio
    import ssl

    # Not uvloop: its SSL layer made this client the bottleneck (a third of the
    # stdlib loop's rate against either server).
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    ctx = ssl.create_default_context(cafile=ca)
    size = 16384 if workload == "bulk16k" else 64
    stats = {"count": 0, "running": True}
    pingpong = bc.pingpong_protocol(size, stats)

    async def one_connection():
        while stats["running"]:
            reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx,
                                                           server_hostname="localhost")
            writer.write(b"!")
            await reader.readexactly(1)
            stats["count"] += 1
            writer.transport.abort()

    async def main():
        ts = []
        if workload == "handshakes":
            tasks = [loop.create_task(one_connection()) for _ in range(conns)]
        else:
            for _ in range(conns):
                t, _ = await asyncio.wait_for(loop.create_connection(
                    pingpong, "127.0.0.1", port, ssl=ctx, server_hostname="localhost"), 10)
                ts.append(t)
        rate, cpu_pct = await bc.measure_window(stats, warmup, duration)
        for t in ts:
            t.abort()
        if workload == "handshakes":
            await asyncio.wait(tasks, timeout=5)
        return {"rate": rate, "mb_per_s": rate * size / 1e6, "client_cpu_pct": cpu_pct}

    result = loop.run_until_complete(asyncio.wait_for(main(), duration + warmup + 30))
    print(json.dumps(result), flush=True)


def run(args):
    from tests.tls_certs import make_certs

    with tempfile.TemporaryDirectory(prefix="plait-bench-tls-") as tmp:
        certs = make_certs(Path(tmp))
        results = {}
        for rnd in range(args.runs):
            for workload in args.workloads.split(","):
                conns = args.parallel if workload == "handshakes" else args.conns
                for impl in args.impls.split(","):
                    srv, port = bc.start_server(__file__, impl, certs.server_cert, certs.server_key)
                    rec, cpu_s, secs = bc.measure_round(
                        srv, [sys.executable, __file__, "client", "--port", str(port),
                              "--workload", workload, "--conns", str(conns),
                              "--duration", str(args.duration), "--ca", certs.ca], args.duration)
                    rec["server_cpu_pct"] = round(100 * cpu_s / secs, 1)
                    # Server CPU per operation: steadier than rates on a shared machine.
                    rec["server_us_per_op"] = 1e6 * cpu_s / secs / max(rec["rate"], 1)
                    results.setdefault((workload, impl), []).append(rec)
                    print(f"round {rnd} {workload} {impl}: {rec['rate']:,.0f}/s "
                          f"{rec['server_us_per_op']:.1f} us CPU/op "
                          f"({rec['mb_per_s']:.1f} MB/s) server {rec['server_cpu_pct']}% "
                          f"client {rec['client_cpu_pct']}%", flush=True)
    print()
    bc.table_header("workload", "server", f"per second, median of {args.runs}", "MB/s", "server CPU%",
                    "client CPU%", "server CPU us/op", "Plait / Twisted (rate; CPU/op)")
    for workload in args.workloads.split(","):
        medians, costs = {}, {}
        for impl in args.impls.split(","):
            rs = results[(workload, impl)]
            medians[impl] = statistics.median(r["rate"] for r in rs)
            costs[impl] = statistics.median(r["server_us_per_op"] for r in rs)
        for impl in args.impls.split(","):
            rs = results[(workload, impl)]
            ratio = ""
            if impl == "plait" and medians.get("twisted"):
                ratio = (f"{medians['plait'] / medians['twisted']:.2f}x; "
                         f"{costs['twisted'] / costs['plait']:.2f}x")
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
    p.add_argument("cert")
    p.add_argument("key")
    p = sub.add_parser("client")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--workload", choices=WORKLOADS, required=True)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--duration", type=float, default=4)
    p.add_argument("--warmup", type=float, default=1)
    p.add_argument("--ca", required=True)
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--parallel", type=int, default=20)
    ap.add_argument("--duration", type=float, default=4)
    a = ap.parse_args()
    if a.cmd == "serve":
        serve(a.impl, a.cert, a.key)
    elif a.cmd == "client":
        client(a.port, a.workload, a.conns, a.duration, a.warmup, a.ca)
    else:
        run(a)


if __name__ == "__main__":
    main()
