"""A minimal request/response protocol under wrk: Plait's Reactor against Twisted and asyncio.

The protocol is the same on every loop and does no HTTP parsing worth the name: it
counts the blank lines that end requests (wrk sends one GET at a time per connection,
no bodies) and answers each with a fixed 200 response with keep-alive. What is
measured is the loop and the transport: accept, read, write, per request.

Run:  .venv/bin/python tests/bench/bench_wrk.py [--runs 3] [--duration 5]
      (needs wrk: /usr/bin/wrk; runs `wrk -t1 -c50 -dDURATIONs`)
"""
import argparse
import re
import shutil
import socket
import statistics
import subprocess
import time

import _bench_common as bc

IMPLS = ("plait", "twisted-epoll", "raw-asyncio", "raw-uvloop")
RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n"
            b"Connection: keep-alive\r\n\r\nHello, world!")
END = b"\r\n\r\n"


def answer(state, data, write):
    """Count complete requests in ``data`` (``state`` keeps a partial tail); write answers."""
    buf = state + data
    n = buf.count(END)
    if n:
        write(RESPONSE * n)
        buf = buf[buf.rfind(END) + 4:]
    return buf


def serve(impl):
    sock = bc.listen_sock()
    port = sock.getsockname()[1]
    if impl == "plait":
        from plait.cluster.protocol import Protocol
        from plait.cluster.reactor import Reactor

        reactor = Reactor()

        class Hello(Protocol):
            buf = b""

            def data_received(self, data):
                self.buf = answer(self.buf, data, self.transport.write)

        reactor.adopt_stream_port(sock.fileno(), socket.AF_INET, Hello)
        sock.close()
        reactor.call_soon(bc.ready, port)
        reactor.run()
    elif impl == "twisted-epoll":
        from twisted.internet import epollreactor

        epollreactor.install()
        from twisted.internet import protocol, reactor

        class THello(protocol.Protocol):
            buf = b""

            def dataReceived(self, data):
                self.buf = answer(self.buf, data, self.transport.write)

        reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, protocol.Factory.forProtocol(THello))
        sock.close()
        reactor.callWhenRunning(bc.ready, port)
        reactor.run()
    else:
        import asyncio

        class AHello(asyncio.Protocol):
            buf = b""

            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                self.buf = answer(self.buf, data, self.transport.write)

        bc.serve_asyncio(sock, AHello, impl == "raw-uvloop")


def run(args):
    wrk = shutil.which("wrk") or "/usr/bin/wrk"
    impls = [i for i in args.impls.split(",") if bc.available(i)]
    results = {}
    for rnd in range(args.runs):
        for impl in impls:
            srv, port = bc.start_server(__file__, impl)
            try:
                out = subprocess.run([wrk, "-t1", f"-c{args.conns}", f"-d{args.duration}s",
                                      f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, text=True,
                                     timeout=args.duration + 30).stdout
            finally:
                bc.stop(srv)
            m = re.search(r"Requests/sec:\s+([\d.]+)", out)
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
            rate = float(m.group(1)) if m else 0.0
            results.setdefault(impl, []).append(rate)
            print(f"round {rnd} {impl}: {rate:,.0f} req/s" + (f" ({errors.group(0)})" if errors else ""),
                  flush=True)
        time.sleep(0.2)
    print()
    bc.table_header("server", f"req/s median of {args.runs}", "min-max")
    for impl, v in results.items():
        print(f"| {impl} | {statistics.median(v):,.0f} | {bc.span(v)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("cmd", nargs="?", default="run", choices=("run", "serve"))
    ap.add_argument("impl", nargs="?", choices=IMPLS)
    ap.add_argument("--impls", default=",".join(IMPLS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--conns", type=int, default=50)
    ap.add_argument("--duration", type=int, default=5)
    a = ap.parse_args()
    if a.cmd == "serve":
        serve(a.impl)
    else:
        run(a)


if __name__ == "__main__":
    main()
