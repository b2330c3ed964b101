"""Reactor scheduling throughput: Plait's native Reactor against asyncio and Twisted.

Run:  .venv/bin/python tests/bench/bench_reactor.py [--runs 5]

Cases (calls per second, one fresh process per measurement, interleaved rounds,
medians reported), following /work/shared/bench/deferred_micro.py Part B:
  chain  f() schedules f again: one call per loop iteration, for ~2 s (the cost of
         an iteration: one select with a zero timeout, plus the dispatch)
  batch  200,000 calls scheduled up front, then the loop runs them all
Implementations:
  plait call_soon / plait call_later(0)   plait.cluster.reactor.Reactor
  asyncio call_soon                        asyncio's default loop (the reference)
  twisted epoll callLater(0)               Twisted's epoll reactor
  uvloop call_soon                         when uvloop is installed
"""
import argparse
import json
import statistics
import time

import _bench_common as bc

BATCH_N = 200_000
CHAIN_SECONDS = 2.0


def child_plait(method, pattern):
    from plait.cluster.reactor import Reactor

    reactor = Reactor()
    if method == "call_soon":
        schedule = reactor.call_soon
    else:
        def schedule(f):
            return reactor.call_later(0, f)
    st = {"n": 0}
    if pattern == "chain":
        def f():
            st["n"] += 1
            if time.perf_counter() < st["end"]:
                schedule(f)
            else:
                st["t1"] = time.perf_counter()
                reactor.stop()

        def go():
            st["t0"] = time.perf_counter()
            st["end"] = st["t0"] + CHAIN_SECONDS
            schedule(f)

        reactor.call_when_running(go)
    else:
        def f():
            st["n"] += 1
            if st["n"] == BATCH_N:
                st["t1"] = time.perf_counter()
                reactor.stop()

        st["t0"] = time.perf_counter()
        for _ in range(BATCH_N):
            schedule(f)
    reactor.call_later(30, reactor.stop)
    reactor.run()
    return st["n"] / (st["t1"] - st["t0"])


def child_asyncio(kind, pattern):
    import asyncio

    if kind == "uvloop":
        import uvloop

        loop = uvloop.new_event_loop()
    else:
        loop = asyncio.new_event_loop()
    st = {"n": 0}
    if pattern == "chain":
        def f():
            st["n"] += 1
            if time.perf_counter() < st["end"]:
                loop.call_soon(f)
            else:
                st["t1"] = time.perf_counter()
                loop.stop()

        st["t0"] = time.perf_counter()
        st["end"] = st["t0"] + CHAIN_SECONDS
        loop.call_soon(f)
    else:
        def f():
            st["n"] += 1
            if st["n"] == BATCH_N:
                st["t1"] = time.perf_counter()
                loop.stop()

        st["t0"] = time.perf_counter()
        for _ in range(BATCH_N):
            loop.call_soon(f)
    loop.call_later(30, loop.stop)
    loop.run_forever()
    return st["n"] / (st["t1"] - st["t0"])


def child_twisted(pattern):
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor

    st = {"n": 0}
    if pattern == "chain":
        def f():
            st["n"] += 1
            if time.perf_counter() < st["end"]:
                reactor.callLater(0, f)
            else:
                st["t1"] = time.perf_counter()
                reactor.stop()

        def go():
            st["t0"] = time.perf_counter()
            st["end"] = st["t0"] + CHAIN_SECONDS
            reactor.callLater(0, f)

        reactor.callWhenRunning(go)
    else:
        def f():
            st["n"] += 1
            if st["n"] == BATCH_N:
                st["t1"] = time.perf_counter()
                reactor.stop()

        st["t0"] = time.perf_counter()
        for _ in range(BATCH_N):
            reactor.callLater(0, f)
    reactor.callLater(30, reactor.stop)
    reactor.run()
    return st["n"] / (st["t1"] - st["t0"])


CASES = [
    ("plait call_soon", "plait", "call_soon"),
    ("plait call_later(0)", "plait", "call_later"),
    ("asyncio call_soon", "asyncio", "default"),
    ("twisted epoll callLater(0)", "twisted", "epoll"),
    ("uvloop call_soon", "asyncio", "uvloop"),
]


def run_child(family, kind, pattern):
    if family == "plait":
        return child_plait(kind, pattern)
    if family == "asyncio":
        return child_asyncio(kind, pattern)
    return child_twisted(pattern)


def available(family, kind):
    try:
        if family == "twisted":
            import twisted  # noqa: F401
        if kind == "uvloop":
            import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps({"calls_per_s": run_child(*a.child)}))
        return
    rates = {}
    cases = [c for c in CASES if available(c[1], c[2])]
    for _ in range(a.runs):
        for name, family, kind in cases:
            for pattern in ("chain", "batch"):
                rec = bc.run_child_json(__file__, "--child", family, kind, pattern, timeout=90, check=True)
                rates.setdefault((name, pattern), []).append(rec["calls_per_s"])
    bc.table_header("case", "pattern", f"calls/s median of {a.runs}", "min-max")
    for (name, pattern), v in rates.items():
        print(f"| {name} | {pattern} | {statistics.median(v):,.0f} | {bc.span(v)} |")


if __name__ == "__main__":
    main()
