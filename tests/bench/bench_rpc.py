"""RPC round trips between two processes on loopback: Plait's bus against its peers.

The workload of /work/shared/bench/rpc_bench.py (``add(1, 2) -> 3``), self-contained:

  seq   one call in flight; calls/s and the median latency per call
  pipe  INFLIGHT (100) calls in flight, each completion issuing the next; calls/s

Systems (server and client are separate fresh processes for every run):
  plait       plait.cluster.rpc.Bus over tcp:// on the native Reactor  (seq, pipe)
              (the policy of ZeroMQ's I/O thread adaptive: the default)
  plait-sched-other, plait-sched-batch  the same with PLAIT_BUS_IO_SCHED=other or
              =batch: the I/O thread always under SCHED_OTHER or SCHED_BATCH
              (only when named in --systems)                          (seq, pipe)
  zmq-req     pyzmq REQ -> REP, msgpack [method, args]                 (seq)
  zmq-dealer  pyzmq DEALER -> ROUTER, msgpack [id, method, args]        (pipe)
  amp         Twisted AMP callRemote on the epoll reactor, TCP_NODELAY  (seq, pipe)
  mp-pipe     multiprocessing.Pipe to a forked child                    (seq)

Rounds interleave the systems (the machine is noisy); the table gives medians and
Plait's ratio to raw pyzmq (seq: to REQ/REP; pipe: to DEALER/ROUTER). The issue's
targets: seq >= 0.8x REQ/REP, pipe >= 60k calls/s. Not collected by pytest.

One call at a time, the figures swing with where the kernel puts the two processes
(the same CPU: every wake-up a cheap switch; two CPUs: every hop between them wakes
an idle CPU, slow in a virtual machine); ``--pin apart`` / ``--pin together`` fix
the placement, so the two cases can be measured apart.

Run:  .venv/bin/python tests/bench/bench_rpc.py [--runs 3] [--duration 3] [--pin apart]
      .venv/bin/python tests/bench/bench_rpc.py --systems plait,zmq-req --runs 5
"""

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time

MATRIX = [("zmq-req", "seq"), ("plait", "seq"), ("mp-pipe", "seq"), ("amp", "seq"),
          ("zmq-dealer", "pipe"), ("plait", "pipe"), ("amp", "pipe")]
PIN_VARIABLE = "PLAIT_BENCH_CPU"
OPT_IN = [(f"plait-sched-{policy}", mode) for policy in ("other", "batch")
          for mode in ("seq", "pipe")]


def plait_bus(system, *args, **kwargs):
    """A Bus; plait-sched-POLICY fixes the policy of ZeroMQ's I/O thread."""
    from plait.cluster.rpc import Bus

    policy = system.removeprefix("plait-sched-") if system != "plait" else "adaptive"
    os.environ["PLAIT_BUS_IO_SCHED"] = policy
    return Bus(*args, **kwargs)


def add(a, b):
    return a + b


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def ready():
    print("READY", flush=True)


# ------------------------------------------------------------------ servers
def serve(system, port):
    if system.startswith("plait"):
        from plait.cluster.reactor import Reactor

        reactor = Reactor()
        bus = plait_bus(system, "server", reactor, bind=f"tcp://127.0.0.1:{port}")
        bus.expose("add", add)
        bus.start().add_callback(lambda _: ready())
        reactor.run()
    elif system in ("zmq-req", "zmq-dealer"):
        import msgpack
        import zmq

        s = zmq.Context().socket(zmq.REP if system == "zmq-req" else zmq.ROUTER)
        s.bind(f"tcp://127.0.0.1:{port}")
        ready()
        while True:
            if system == "zmq-req":
                _method, args = msgpack.unpackb(s.recv())
                s.send(msgpack.packb(add(*args)))
            else:
                ident, msg = s.recv_multipart()
                cid, _method, args = msgpack.unpackb(msg)
                s.send_multipart([ident, msgpack.packb([cid, add(*args)])])
    elif system == "amp":
        from twisted.internet import epollreactor

        epollreactor.install()
        from twisted.internet import protocol, reactor
        from twisted.protocols import amp

        Add = amp_add()

        class Server(amp.AMP):
            def connectionMade(self):
                self.transport.setTcpNoDelay(True)
                super().connectionMade()

            @Add.responder
            def add(self, a, b):
                return {"total": a + b}

        reactor.listenTCP(port, protocol.Factory.forProtocol(Server), interface="127.0.0.1")
        reactor.callWhenRunning(ready)
        reactor.run()


def amp_add():
    from twisted.protocols import amp

    class Add(amp.Command):
        arguments = [(b"a", amp.Integer()), (b"b", amp.Integer())]
        response = [(b"total", amp.Integer())]

    return Add


# ------------------------------------------------------------------ clients
class Meter:
    """Warm-up, then a measured window of ``duration`` seconds."""

    def __init__(self, warmup, duration, latency):
        self.latency = latency
        now = time.perf_counter()
        self.start, self.end = now + warmup, now + warmup + duration
        self.count, self.lat = 0, []

    def done(self, t0, t1):
        """Record a call that took t0..t1; False once the window is over."""
        if t1 >= self.end:
            return False
        if t1 >= self.start:
            self.count += 1
            if self.latency:
                self.lat.append(t1 - t0)
        return True

    def result(self):
        out = {"calls_per_s": self.count / (self.end - self.start)}
        if self.lat:
            out["lat_med_us"] = statistics.median(self.lat) * 1e6
        return out


def blocking(meter, call):
    assert call() == 3
    pc = time.perf_counter
    while True:
        t0 = pc()
        call()
        if not meter.done(t0, pc()):
            return


def client(system, port, mode, inflight, meter):
    if system == "zmq-req":
        import msgpack
        import zmq

        s = zmq.Context().socket(zmq.REQ)
        s.connect(f"tcp://127.0.0.1:{port}")
        blocking(meter, lambda: (s.send(msgpack.packb(["add", [1, 2]])),
                                 msgpack.unpackb(s.recv()))[1])
    elif system == "mp-pipe":
        import multiprocessing as mp

        a, b = mp.Pipe()
        child = mp.Process(target=mp_serve, args=(b,), daemon=True)
        child.start()
        blocking(meter, lambda: (a.send(("add", (1, 2))), a.recv())[1])
        child.kill()
    elif system == "zmq-dealer":
        import msgpack
        import zmq

        s = zmq.Context().socket(zmq.DEALER)
        s.connect(f"tcp://127.0.0.1:{port}")
        for i in range(inflight):
            s.send(msgpack.packb([i, "add", [1, 2]]))
        outstanding, pc = inflight, time.perf_counter
        while outstanding:
            _cid, res = msgpack.unpackb(s.recv())
            assert res == 3
            outstanding -= 1
            if meter.done(0, pc()):
                s.send(msgpack.packb([0, "add", [1, 2]]))
                outstanding += 1
    elif system.startswith("plait"):
        from plait.cluster.reactor import Reactor

        reactor = Reactor()
        bus = plait_bus(system, "client", reactor, connect=[f"tcp://127.0.0.1:{port}"])
        async_loop(reactor, lambda: bus.call("server", "add", 1, 2), mode, inflight, meter,
                   bus.start())
    elif system == "amp":
        from twisted.internet import epollreactor

        epollreactor.install()
        from twisted.internet import protocol, reactor
        from twisted.protocols import amp

        Add = amp_add()
        connected = protocol.ClientCreator(reactor, amp.AMP).connectTCP("127.0.0.1", port)

        def begin(remote):
            remote.transport.setTcpNoDelay(True)
            return remote

        connected.addCallback(begin)
        holder = {}

        def keep(remote):
            holder["remote"] = remote
            return remote

        connected.addCallback(keep)
        twisted_loop(reactor, lambda: holder["remote"].callRemote(Add, a=1, b=2)
                     .addCallback(lambda r: r["total"]), mode, inflight, meter, connected)
    print(json.dumps(meter.result()), flush=True)


def mp_serve(conn):
    while True:
        _method, args = conn.recv()
        conn.send(add(*args))


def async_loop(reactor, call, mode, inflight, meter, started):
    pc, state = time.perf_counter, {"out": 0}

    def issue(_=None):
        state["out"] += 1
        t0 = pc()  # before the call: its send is part of the round trip, as in blocking()
        call().add_callbacks(done, failed, callback_args=(t0,))

    def done(result, t0):
        assert result == 3
        state["out"] -= 1
        if meter.done(t0, pc()):
            issue()
        elif state["out"] == 0:
            reactor.stop()

    def failed(f):
        print(f.get_traceback(), file=sys.stderr)
        reactor.stop()

    started.add_callbacks(lambda _: [issue() for _ in range(inflight if mode == "pipe" else 1)],
                          failed)
    reactor.call_later(meter.end - pc() + 30, reactor.stop)
    reactor.run()


def twisted_loop(reactor, call, mode, inflight, meter, started):
    pc, state = time.perf_counter, {"out": 0}

    def issue(_=None):
        state["out"] += 1
        t0 = pc()
        call().addCallbacks(done, failed, callbackArgs=(t0,))

    def done(result, t0):
        state["out"] -= 1
        if meter.done(t0, pc()):
            issue()
        elif state["out"] == 0:
            reactor.stop()

    def failed(f):
        print(f.getTraceback(), file=sys.stderr)
        reactor.stop()

    started.addCallback(lambda _: [issue() for _ in range(inflight if mode == "pipe" else 1)])
    reactor.callLater(meter.end - pc() + 30, reactor.stop)
    reactor.run()


# ------------------------------------------------------------------ driver
def placement(pin):
    """The CPUs (server, client) for --pin, or (None, None) to leave them to the kernel."""
    cpus = sorted(os.sched_getaffinity(0))
    if pin == "apart" and len(cpus) >= 2:
        return str(cpus[0]), str(cpus[1])
    if pin == "together":
        return str(cpus[0]), str(cpus[0])
    return None, None


def child_env(cpu):
    env = dict(os.environ)
    env.pop(PIN_VARIABLE, None)
    if cpu is not None:
        env[PIN_VARIABLE] = cpu
    return env


def run_case(system, mode, args):
    port, server = free_port(), None
    server_cpu, client_cpu = placement(args.pin)
    if system != "mp-pipe":
        server = subprocess.Popen([sys.executable, __file__, "serve", system, str(port)],
                                  stdout=subprocess.PIPE, text=True, env=child_env(server_cpu))
        line = server.stdout.readline()
        assert line.startswith("READY"), f"{system} server did not start"
    try:
        out = subprocess.run([sys.executable, __file__, "client", system, str(port), mode,
                              str(args.inflight), str(args.duration)],
                             stdout=subprocess.PIPE, text=True, timeout=args.duration + 60,
                             env=child_env(client_cpu))
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        if server is not None:
            server.kill()
            server.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0)
    ap.add_argument("--inflight", type=int, default=100)
    ap.add_argument("--systems", default="")
    ap.add_argument("--pin", choices=["none", "apart", "together"], default="none",
                    help="server and client on two fixed CPUs, on one, or where the kernel "
                         "puts them (threads included; mp-pipe's child follows the client)")
    if os.environ.get(PIN_VARIABLE):
        os.sched_setaffinity(0, {int(os.environ[PIN_VARIABLE])})  # before any thread starts
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(sys.argv[2], int(sys.argv[3]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "client":
        system, port, mode, inflight, duration = sys.argv[2:7]
        client(system, int(port), mode, int(inflight), Meter(1.0, float(duration), mode == "seq"))
        return
    args = ap.parse_args()
    wanted = set(args.systems.split(",")) if args.systems else None
    cases = [(s, m) for s, m in MATRIX if wanted is None or s in wanted]
    cases += [(s, m) for s, m in OPT_IN if wanted is not None and s in wanted]
    results = {case: [] for case in cases}
    for rnd in range(args.runs):
        for system, mode in cases:
            try:
                rec = run_case(system, mode, args)
            except Exception as exc:  # a peer system that is not installed
                print(f"round {rnd} {system} {mode}: failed ({exc})", flush=True)
                continue
            results[(system, mode)].append(rec)
            lat = f" median {rec['lat_med_us']:.0f} us" if "lat_med_us" in rec else ""
            print(f"round {rnd} {system} {mode}: {rec['calls_per_s']:,.0f} calls/s{lat}",
                  flush=True)
    print(f"\n{platform_line()}, --pin {args.pin}\n")
    print("| system | mode | calls/s (median) | latency median us | Plait ratio |")
    print("|---|---|---|---|---|")
    med = {c: statistics.median(r["calls_per_s"] for r in rs) for c, rs in results.items() if rs}
    base = {"seq": med.get(("zmq-req", "seq")), "pipe": med.get(("zmq-dealer", "pipe"))}
    for (system, mode), rs in results.items():
        if not rs:
            continue
        lats = [r["lat_med_us"] for r in rs if "lat_med_us" in r]
        lat = f"{statistics.median(lats):.0f}" if lats else "-"
        ratio = ""
        if system.startswith("plait") and base[mode]:
            ratio = f"{med[(system, mode)] / base[mode]:.2f}x raw pyzmq"
        print(f"| {system} | {mode} | {med[(system, mode)]:,.0f} | {lat} | {ratio} |")


def platform_line():
    return (f"{platform.python_implementation()} {platform.python_version()}, "
            f"{os.cpu_count()} CPUs, {time.strftime('%Y-%m-%d %H:%M')}")


if __name__ == "__main__":
    main()
