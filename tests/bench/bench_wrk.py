"""A minimal request/response protocol under wrk: Plait's Reactor against Twisted and asyncio.

The protocol is the same on every loop and does no HTTP parsing worth the name: it
counts the blank lines that end requests (wrk sends one GET at a time per connection,
no bodies) and answers each with a fixed 200 response with keep-alive. What is
measured is the loop and the transport: accept, read, write, per request.

Run:  .venv/bin/python tests/bench/bench_wrk.py [--runs 3] [--duration 5]
      (needs wrk: /usr/bin/wrk; runs `wrk -t1 -c50 -dDURATIONs`)
"""
import argparse
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

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
    sock = listen_sock()
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
        reactor.call_soon(ready, port)
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
        reactor.callWhenRunning(ready, port)
        reactor.run()
    else:
        import asyncio

        if impl == "raw-uvloop":
            import uvloop

            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)

        class AHello(asyncio.Protocol):
            buf = b""

            def connection_made(self, transport):
                self.transport = transport

            def data_received(self, data):
                self.buf = answer(self.buf, data, self.transport.write)

        async def main():
            await loop.create_server(AHello, sock=sock)
            ready(port)

        loop.add_signal_handler(signal.SIGTERM, os._exit, 0)
        loop.run_until_complete(main())
        loop.run_forever()


def available(impl):
    mod = {"twisted-epoll": "twisted", "raw-uvloop": "uvloop"}.get(impl)
    if mod is None:
        return True
    try:
        __import__(mod)
    except ImportError:
        return False
    return True


def run(args):
    wrk = shutil.which("wrk") or "/usr/bin/wrk"
    impls = [i for i in args.impls.split(",") if available(i)]
    results = {}
    for rnd in range(args.runs):
        for impl in impls:
            srv = subprocess.Popen([sys.executable, __file__, "serve", impl], stdout=subprocess.PIPE,
                                   text=True, start_new_session=True)
            try:
                line = srv.stdout.readline()
                if not line.startswith("READY"):
                    raise RuntimeError(f"{impl} server did not start")
                port = int(line.split()[1])
                out = subprocess.run([wrk, "-t1", f"-c{args.conns}", f"-d{args.duration}s",
                                      f"http://127.0.0.1:{port}/"], stdout=subprocess.PIPE, text=True,
                                     timeout=args.duration + 30).stdout
            finally:
                srv.terminate()
                try:
                    srv.wait(5)
                except subprocess.TimeoutExpired:
                    srv.kill()
                    srv.wait()
            m = re.search(r"Requests/sec:\s+([\d.]+)", out)
            errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)", out)
            rate = float(m.group(1)) if m else 0.0
            results.setdefault(impl, []).append(rate)
            print(f"round {rnd} {impl}: {rate:,.0f} req/s" + (f" ({errors.group(0)})" if errors else ""),
                  flush=True)
        time.sleep(0.2)
    print(f"\n| server | req/s median of {args.runs} | min-max |\n|---|---|---|")
    for impl, v in results.items():
        print(f"| {impl} | {statistics.median(v):,.0f} | {min(v):,.0f}-{max(v):,.0f} |")


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
