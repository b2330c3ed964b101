"""What the benchmark scripts beside this file share.

Each ``bench_*.py`` runs as ``.venv/bin/python tests/bench/bench_x.py``, so this
folder is first on ``sys.path`` and they import this module by its bare name
(``import _bench_common as bc``). It holds the parts written once for all of them:

- server side: a listening socket on 127.0.0.1 with an ephemeral port, the ``READY
  <port>`` line a server process prints once it serves, and a raw asyncio/uvloop
  server around an ``asyncio.Protocol`` class;
- driver side: starting a server process and reading its ``READY`` line, stopping it
  (SIGTERM, then SIGKILL after 5 s), a process's CPU seconds from ``/proc``, the
  measured window around a client process, and running a child that prints JSON;
- the echo ping-pong client's protocol and measurement window;
- markdown tables: header rows and ``min-max`` ranges.

Not collected by pytest (tests/bench is in ``norecursedirs``).
"""
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import time


def listen_sock():
    """A non-blocking TCP socket listening on 127.0.0.1 at an ephemeral port."""
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("127.0.0.1", 0))
    s.listen(1024)
    s.setblocking(False)
    return s


def ready(port):
    """Tell the driver that the server serves ``port`` (the line start_server reads)."""
    print(f"READY {port}", flush=True)


def new_asyncio_loop(use_uvloop):
    """A new uvloop loop if ``use_uvloop``, else a new default asyncio loop; set as current."""
    import asyncio

    if use_uvloop:
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    return loop


def serve_asyncio(sock, protocol_class, use_uvloop):
    """Serve ``protocol_class`` on ``sock`` on a raw asyncio (or uvloop) loop, forever.

    Prints the READY line once the server is up; SIGTERM ends the process at once.
    """
    loop = new_asyncio_loop(use_uvloop)
    port = sock.getsockname()[1]

    async def main():
        await loop.create_server(protocol_class, sock=sock)
        ready(port)

    loop.add_signal_handler(signal.SIGTERM, os._exit, 0)
    loop.run_until_complete(main())
    loop.run_forever()


def asyncio_echo_protocol():
    """An asyncio.Protocol class that writes back what it receives."""
    import asyncio

    class AEcho(asyncio.Protocol):
        def connection_made(self, transport):
            self.transport = transport

        def data_received(self, data):
            self.transport.write(data)

    return AEcho


def available(impl):
    """Whether the optional package that ``impl`` (twisted-epoll, raw-uvloop) needs imports."""
    mod = {"twisted-epoll": "twisted", "raw-uvloop": "uvloop"}.get(impl)
    if mod is None:
        return True
    try:
        __import__(mod)
    except ImportError:
        return False
    return True


def proc_cpu(pid):
    """User plus system CPU seconds that process ``pid`` has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def start_server(script, impl, *extra):
    """Run ``script serve impl *extra`` in its own session; return (process, port).

    The child must print ``READY <port>`` first; otherwise it is killed and
    RuntimeError is raised.
    """
    proc = subprocess.Popen([sys.executable, script, "serve", impl, *extra],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        proc.wait()
        raise RuntimeError(f"{impl} server did not start")
    return proc, int(line.split()[1])


def stop(proc):
    """SIGTERM ``proc``; SIGKILL it if it has not exited 5 s later; reap it."""
    proc.terminate()
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def measure_round(srv, client_argv, duration):
    """Run a client process against server ``srv``; measure the server's CPU meanwhile.

    The client warms up for 1 s and then measures for ``duration`` s; the server's
    CPU is read from 1.3 s after the client's start for ``duration - 0.6`` s, inside
    the client's window. Stops ``srv`` whatever happens. Returns (the client's last
    output line parsed as JSON, server CPU seconds, seconds of the server window).
    """
    try:
        cli = subprocess.Popen(client_argv, stdout=subprocess.PIPE, text=True)
        time.sleep(1.3)
        s0, t0 = proc_cpu(srv.pid), time.monotonic()
        time.sleep(duration - 0.6)
        s1, t1 = proc_cpu(srv.pid), time.monotonic()
        out, _ = cli.communicate(timeout=duration + 60)
    finally:
        stop(srv)
    return json.loads(out.strip().splitlines()[-1]), s1 - s0, t1 - t0


def run_child_json(script, *args, timeout, check=False):
    """Run ``script *args`` in a fresh interpreter; return its last stdout line as JSON."""
    out = subprocess.run([sys.executable, script, *args], stdout=subprocess.PIPE, text=True,
                         timeout=timeout, check=check).stdout
    return json.loads(out.strip().splitlines()[-1])


def pingpong_protocol(size, stats):
    """An asyncio.Protocol class that keeps one ``size``-byte message in flight.

    Each full echo adds one to ``stats["count"]`` and sends the next message while
    ``stats["running"]`` is true.
    """
    import asyncio

    msg = b"x" * size

    class PingPong(asyncio.Protocol):
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

    return PingPong


async def measure_window(stats, warmup, duration):
    """Sleep ``warmup``, then count ``stats["count"]`` and own CPU over ``duration`` s.

    Sets ``stats["running"]`` false at the end. Returns (operations per second,
    client CPU percent rounded to 0.1).
    """
    import asyncio

    await asyncio.sleep(warmup)
    c0, r0, t0 = stats["count"], resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    await asyncio.sleep(duration)
    c1, r1, t1 = stats["count"], resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    stats["running"] = False
    cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
    return (c1 - c0) / (t1 - t0), round(100 * cpu / (t1 - t0), 1)


def echo_client(port, conns, size, duration, warmup, loop):
    """The TCP echo client: ``conns`` ping-pong connections to 127.0.0.1:``port`` on ``loop``.

    Prints one JSON line: ``msgs_per_s`` (round trips per second, all connections)
    and ``client_cpu_pct``.
    """
    import asyncio

    stats = {"count": 0, "running": True}
    protocol_class = pingpong_protocol(size, stats)

    async def main():
        ts = []
        for _ in range(conns):
            t, _ = await asyncio.wait_for(loop.create_connection(protocol_class, "127.0.0.1", port), 5)
            ts.append(t)
        rate, cpu_pct = await measure_window(stats, warmup, duration)
        for t in ts:
            t.close()
        return {"msgs_per_s": rate, "client_cpu_pct": cpu_pct}

    print(json.dumps(loop.run_until_complete(asyncio.wait_for(main(), duration + warmup + 30))), flush=True)


def echo_client_argv(script, port, args):
    """The command line that runs ``script client`` (echo_client) with ``args``' settings."""
    return [sys.executable, script, "client", "--port", str(port), "--conns", str(args.conns),
            "--size", str(args.size), "--duration", str(args.duration)]


def add_echo_client_parser(sub, duration):
    """Add the ``client`` sub-command (echo_client's arguments) to ``sub``."""
    p = sub.add_parser("client")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--conns", type=int, default=50)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--duration", type=float, default=duration)
    p.add_argument("--warmup", type=float, default=1)
    return p


def table_header(*columns):
    """Print a markdown table's header and separator rows."""
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))


def span(values):
    """``min-max`` of ``values`` with thousands separators, no decimals."""
    return f"{min(values):,.0f}-{max(values):,.0f}"
