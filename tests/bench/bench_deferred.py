"""Plait's Deferred against Twisted's, in the same process, in interleaved rounds.

Cases (each run on both implementations, alternating, round after round):

- create+3cb+fire: ``d = Deferred(); d.add_callback(f)`` three times; ``d.callback(1)``
- fired+3cb: three callbacks added to an already fired Deferred (``succeed``)
- chain: a callback returning an already fired Deferred, then one more callback
- nested-1000: 1,000 Deferreds, each one's callback returning the next (unfired)
  one, all fired, then the innermost: the result travels back through 1,000 waits
- gather-1000: ``gather`` (Twisted: ``gatherResults``) of 1,000 fired Deferreds
- await-fired: ``ensure_deferred`` of a coroutine that awaits a fired Deferred
  (Twisted: ``ensureDeferred``)

For each: the best per-operation time of ``--repeat`` timeit runs per round, the
median over ``--rounds`` rounds, printed as ops/s, and the ratio twisted time / plait
time (> 1 means Plait is faster). Not collected by pytest.

Run:  .venv/bin/python tests/bench/bench_deferred.py [--rounds 5] [--repeat 3] [--scale 1.0]
"""

import argparse
import platform
import statistics
import sys
import timeit

COMMON = """
def f(r):
    return r
def ret_fired(r):
    return S(r)
def nested(n):
    ds = [D() for _ in range(n)]
    for d, nxt in zip(ds, ds[1:]):
        d.{ac}(lambda _, nxt=nxt: nxt)
    for d in ds[:-1]:
        d.callback(None)
    ds[-1].callback(1)
    return ds[0]
async def await_fired(d):
    return await d
fired = S(1)
"""

SETUP = {
    "twisted": (
        "from twisted.internet.defer import Deferred as D, succeed as S, "
        "gatherResults as G, ensureDeferred as E\n"
    ),
    "plait": (
        "from plait.cluster.defer import Deferred as D, succeed as S, gather as G, "
        "ensure_deferred as E\n"
    ),
}
ADD = {"twisted": "addCallback", "plait": "add_callback"}

# name: (statement, timeit number at scale 1, operations per statement)
CASES = {
    "create+3cb+fire": ("d = D(); d.{ac}(f); d.{ac}(f); d.{ac}(f); d.callback(1)", 20000),
    "fired+3cb": ("d = S(1); d.{ac}(f); d.{ac}(f); d.{ac}(f)", 20000),
    "chain": ("d1 = D(); d1.{ac}(ret_fired); d1.{ac}(f); d1.callback(1)", 20000),
    "nested-1000": ("nested(1000)", 20),
    "gather-1000": ("G([S(i) for i in range(1000)])", 50),
    "await-fired": ("E(await_fired(fired))", 20000),
}


def per_op(impl, stmt, number, repeat):
    setup = SETUP[impl] + COMMON.format(ac=ADD[impl])
    timer = timeit.Timer(stmt.format(ac=ADD[impl]), setup=setup)
    return min(timer.repeat(repeat=repeat, number=number)) / number


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--scale", type=float, default=1.0, help="multiply timeit numbers")
    args = ap.parse_args()
    import twisted

    print(f"Python {platform.python_version()}, Twisted {twisted.__version__}, "
          f"{args.rounds} rounds (median), best of {args.repeat} per round\n")
    print("| case | Twisted ops/s | Plait ops/s | Twisted µs | Plait µs | ratio (Twisted time / Plait time) | worst round |")
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    slower = []
    for name, (stmt, number) in CASES.items():
        number = max(1, int(number * args.scale))
        tw, pl, ratios = [], [], []
        for _ in range(args.rounds):
            t = per_op("twisted", stmt, number, args.repeat)
            p = per_op("plait", stmt, number, args.repeat)
            tw.append(t)
            pl.append(p)
            ratios.append(t / p)
        t, p, r = statistics.median(tw), statistics.median(pl), statistics.median(ratios)
        print(f"| {name} | {1 / t:,.0f} | {1 / p:,.0f} | {t * 1e6:.2f} | {p * 1e6:.2f} | "
              f"{r:.2f}x | {min(ratios):.2f}x |")
        if r < 1.0:
            slower.append(name)
    if slower:
        print(f"\nslower than Twisted: {', '.join(slower)}")
    sys.exit(1 if slower else 0)


if __name__ == "__main__":
    main()
