"""HTTP keep-alive under wrk: Plait's Site against twisted.web and aiohttp, same run.

Two workloads: "hello" (GET / -> 13-byte body) and "16k" (GET / -> 16 KiB body).
Plait runs twice: on its native reactor ("plait") and on AsyncioReactor over a
uvloop loop ("plait-uvloop"); twisted.web and aiohttp run on their default loops.
For each round and workload, each server in turn (interleaved, so machine noise
hits all of them alike): a fresh server process on a free port, a 1 s wrk warm-up,
then `wrk -t1 -c50 -d{secs}s`. Ratios are taken round by round; the medians are
printed last. Access logs are off everywhere.

Run:  .venv/bin/python tests/bench/bench_http.py [--rounds 3] [--secs 5]
      (needs wrk; twisted and aiohttp: .venv/bin/pip install -e '.[test,bench]')

Last run (2026-11-25 13:44 UTC, shared 2-core machine, load 2.8-3.7, 3 rounds, -d5s;
every request parsed in full, no parse reuse):
    round 0 hello: plait 58,813  plait-uvloop 60,215  twisted 15,989  aiohttp 24,978 req/s
    round 0 16k  : plait 50,259  plait-uvloop 50,985  twisted 14,644  aiohttp 23,640 req/s
    round 1 hello: plait 58,678  plait-uvloop 59,387  twisted 15,927  aiohttp 24,985 req/s
    round 1 16k  : plait 50,579  plait-uvloop 62,446  twisted 15,866  aiohttp 22,786 req/s
    round 2 hello: plait 80,244  plait-uvloop 0 (did not start in time)  twisted 16,729  aiohttp 25,583 req/s
    round 2 16k  : plait 58,912  plait-uvloop 56,058  twisted 16,055  aiohttp 23,822 req/s
    hello: plait/twisted x3.68  plait/aiohttp x2.35  (medians of 3 rounds)
    hello: plait-uvloop/twisted x3.73  plait-uvloop/aiohttp x2.38  (that run counted the 0)
    16k: plait/twisted x3.43  plait/aiohttp x2.22  (medians of 3 rounds)
    16k: plait-uvloop/twisted x3.49  plait-uvloop/aiohttp x2.35  (medians of 3 rounds)
"""
import argparse
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time

BODIES = {"hello": b"Hello, World!", "16k": bytes(range(256)) * 64}
IMPLS = ("plait", "plait-uvloop", "twisted", "aiohttp")
PLAITS = ("plait", "plait-uvloop")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listening_socket(port):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", port))
    s.listen(1024)
    s.setblocking(False)
    return s


def ready():
    sys.stdout.write("READY\n")
    sys.stdout.flush()


def serve_plait(sock, body, uvloop=False):
    from plait.protocols.http import Response, Site

    if uvloop:
        import asyncio

        import uvloop as uv

        from plait.cluster.reactor import AsyncioReactor

        loop = uv.new_event_loop()
        asyncio.set_event_loop(loop)
        reactor = AsyncioReactor(loop)
    else:
        from plait.cluster.reactor import Reactor

        reactor = Reactor()

    def hello(request):
        return Response(200, body=body, headers=[("Content-Type", "text/plain")])

    reactor.adopt_stream_port(sock.fileno(), socket.AF_INET, Site(hello))
    sock.close()
    reactor.call_soon(ready)
    reactor.run()


def serve_twisted(sock, body):
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.web import resource, server

    class Hello(resource.Resource):
        isLeaf = True

        def render_GET(self, request):
            request.setHeader(b"content-type", b"text/plain")
            return body

    class QuietSite(server.Site):
        def log(self, request):
            pass

    reactor.adoptStreamPort(sock.fileno(), socket.AF_INET, QuietSite(Hello()))
    sock.close()
    reactor.callWhenRunning(ready)
    reactor.run()


def serve_aiohttp(sock, body):
    import asyncio

    from aiohttp import web

    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)

    async def hello(request):
        return web.Response(body=body, content_type="text/plain")

    async def main():
        app = web.Application()
        app.router.add_get("/", hello)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.SockSite(runner, sock).start()
        ready()
        await asyncio.Event().wait()

    task = loop.create_task(main())
    loop.run_forever()
    del task


def measure(impl, workload, secs):
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve", impl, "--workload", workload, "--port", str(port)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 20
        line = b""
        while time.monotonic() < deadline and not line.startswith(b"READY"):
            line = proc.stdout.readline()
            if not line and proc.poll() is not None:
                return 0.0
        url = f"http://127.0.0.1:{port}/"
        subprocess.run(["wrk", "-t1", "-c50", "-d1s", url], capture_output=True, timeout=30)
        out = subprocess.run(["wrk", "-t1", "-c50", f"-d{secs}s", url], capture_output=True,
                             text=True, timeout=secs + 30).stdout
        bad = re.search(r"Non-2xx or 3xx responses: \d+|Socket errors: .*", out)
        if bad:
            print(f"  {impl} {workload}: {bad.group(0)}", file=sys.stderr)
        m = re.search(r"Requests/sec:\s+([\d.]+)", out)
        return float(m.group(1)) if m else 0.0
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--secs", type=int, default=5)
    ap.add_argument("--workloads", default="hello,16k")
    ap.add_argument("--serve", choices=IMPLS, help=argparse.SUPPRESS)
    ap.add_argument("--workload", default="hello", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.serve:
        sock = listening_socket(a.port)
        if a.serve == "plait-uvloop":
            serve_plait(sock, BODIES[a.workload], uvloop=True)
        else:
            {"plait": serve_plait, "twisted": serve_twisted, "aiohttp": serve_aiohttp}[a.serve](
                sock, BODIES[a.workload])
        return
    workloads = a.workloads.split(",")
    ratios = {(w, p): {"twisted": [], "aiohttp": []} for w in workloads for p in PLAITS}
    for r in range(a.rounds):
        for w in workloads:
            got = {impl: measure(impl, w, a.secs) for impl in IMPLS}
            print(f"round {r} {w:5}: " + "  ".join(f"{k} {v:,.0f}" for k, v in got.items())
                  + " req/s", flush=True)
            for p in PLAITS:
                for other in ("twisted", "aiohttp"):
                    if got[p] and got[other]:  # a server that failed to start: no ratio
                        ratios[w, p][other].append(got[p] / got[other])
    for w in workloads:
        for p in PLAITS:
            t = statistics.median(ratios[w, p]["twisted"] or [0.0])
            x = statistics.median(ratios[w, p]["aiohttp"] or [0.0])
            print(f"{w}: {p}/twisted x{t:.2f}  {p}/aiohttp x{x:.2f}  (medians of {a.rounds} rounds)")


if __name__ == "__main__":
    main()
