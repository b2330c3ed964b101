"""HTTP keep-alive under wrk: Plait's Site against twisted.web and aiohttp, same run.

Two workloads: "hello" (GET / -> 13-byte body) and "16k" (GET / -> 16 KiB body).
For each round and workload, each server in turn (interleaved, so machine noise
hits all of them alike): a fresh server process on a free port, a 1 s wrk warm-up,
then `wrk -t1 -c50 -d{secs}s`. Ratios are taken round by round; the medians are
printed last. Access logs are off everywhere.

Run:  .venv/bin/python tests/bench/bench_http.py [--rounds 3] [--secs 5]
      (needs wrk; twisted and aiohttp: .venv/bin/pip install -e '.[test,bench]')

Last run (2026-11-25, shared 2-core machine under load 2-4, 3 rounds, -d5s):
    round 0 hello: plait 74,027  twisted 14,853  aiohttp 26,182 req/s
    round 0 16k  : plait 71,589  twisted 13,599  aiohttp 23,221 req/s
    round 1 hello: plait 65,348  twisted 10,563  aiohttp 23,066 req/s
    round 1 16k  : plait 52,282  twisted 14,425  aiohttp 22,246 req/s
    round 2 hello: plait 51,984  twisted 7,723  aiohttp 10,283 req/s
    round 2 16k  : plait 49,218  twisted 11,323  aiohttp 11,650 req/s
    hello: plait/twisted x6.19  plait/aiohttp x2.83  (medians of 3 rounds)
    16k: plait/twisted x4.35  plait/aiohttp x3.08  (medians of 3 rounds)
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
IMPLS = ("plait", "twisted", "aiohttp")


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


def serve_plait(sock, body):
    from plait.cluster.reactor import Reactor
    from plait.protocols.http import Response, Site

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
        {"plait": serve_plait, "twisted": serve_twisted, "aiohttp": serve_aiohttp}[a.serve](
            sock, BODIES[a.workload])
        return
    workloads = a.workloads.split(",")
    ratios = {w: {"twisted": [], "aiohttp": []} for w in workloads}
    for r in range(a.rounds):
        for w in workloads:
            got = {impl: measure(impl, w, a.secs) for impl in IMPLS}
            print(f"round {r} {w:5}: " + "  ".join(f"{k} {v:,.0f}" for k, v in got.items())
                  + " req/s", flush=True)
            for other in ("twisted", "aiohttp"):
                ratios[w][other].append(got["plait"] / got[other] if got[other] else 0.0)
    for w in workloads:
        t = statistics.median(ratios[w]["twisted"])
        x = statistics.median(ratios[w]["aiohttp"])
        print(f"{w}: plait/twisted x{t:.2f}  plait/aiohttp x{x:.2f}  (medians of {a.rounds} rounds)")


if __name__ == "__main__":
    main()
