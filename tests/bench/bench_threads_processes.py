"""Thread-pool round trips and child-process spawns: Plait against Twisted and asyncio.

Run:  .venv/bin/python tests/bench/bench_threads_processes.py [--runs 5]

Cases (one fresh process per measurement, interleaved rounds, medians reported):
  threads  20,000 calls of a trivial function queued at once in the reactor's pool
           (10 threads), until every result is back in the loop thread: round trips/s
           (plait defer_to_thread, twisted deferToThread, asyncio.to_thread)
  spawn    200 children of /bin/true, 20 running at a time, each reaped and its
           pipes closed: spawns/s (plait spawn_process, twisted spawnProcess,
           asyncio create_subprocess_exec)
"""
import argparse
import json
import statistics
import sys
import time

import _bench_common as bc

THREAD_CALLS = 20_000
CHILDREN = 200
AT_ONCE = 20


def plait_threads():
    from plait.cluster.defer import gather
    from plait.cluster.reactor import Reactor

    reactor = Reactor()

    def go():
        ds = [reactor.defer_to_thread(int) for _ in range(THREAD_CALLS)]
        gather(ds).add_both(lambda _: reactor.stop())

    t0 = time.perf_counter()
    reactor.call_soon(go)
    reactor.run(install_signal_handlers=False)
    return THREAD_CALLS / (time.perf_counter() - t0)


def twisted_threads():
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import reactor
    from twisted.internet.defer import gatherResults
    from twisted.internet.threads import deferToThread

    def go():
        ds = [deferToThread(int) for _ in range(THREAD_CALLS)]
        gatherResults(ds).addBoth(lambda _: reactor.stop())

    t0 = time.perf_counter()
    reactor.callWhenRunning(go)
    reactor.run(installSignalHandlers=False)
    return THREAD_CALLS / (time.perf_counter() - t0)


def asyncio_threads():
    import asyncio

    async def main():
        await asyncio.gather(*[asyncio.to_thread(int) for _ in range(THREAD_CALLS)])

    t0 = time.perf_counter()
    asyncio.run(main())
    return THREAD_CALLS / (time.perf_counter() - t0)


def plait_spawn():
    from plait.cluster.protocol import ProcessProtocol
    from plait.cluster.reactor import Reactor

    reactor = Reactor()
    st = {"started": 0, "left": CHILDREN}

    class Child(ProcessProtocol):
        def process_exited(self):
            st["left"] -= 1
            if st["started"] < CHILDREN:
                start()
            elif not st["left"]:
                reactor.stop()

    def start():
        st["started"] += 1
        reactor.spawn_process(Child(), ["/bin/true"])

    t0 = time.perf_counter()
    reactor.call_soon(lambda: [start() for _ in range(AT_ONCE)])
    reactor.run(install_signal_handlers=False)
    return CHILDREN / (time.perf_counter() - t0)


def twisted_spawn():
    from twisted.internet import epollreactor

    epollreactor.install()
    from twisted.internet import protocol, reactor

    st = {"started": 0, "left": CHILDREN}

    class Child(protocol.ProcessProtocol):
        def processEnded(self, reason):
            st["left"] -= 1
            if st["started"] < CHILDREN:
                start()
            elif not st["left"]:
                reactor.stop()

    def start():
        st["started"] += 1
        reactor.spawnProcess(Child(), "/bin/true", ["/bin/true"], env=None)

    t0 = time.perf_counter()
    reactor.callWhenRunning(lambda: [start() for _ in range(AT_ONCE)])
    reactor.run(installSignalHandlers=True)  # Twisted reaps on SIGCHLD
    return CHILDREN / (time.perf_counter() - t0)


def asyncio_spawn():
    import asyncio

    async def one(sem):
        async with sem:
            proc = await asyncio.create_subprocess_exec("/bin/true")
            await proc.wait()

    async def main():
        sem = asyncio.Semaphore(AT_ONCE)
        await asyncio.gather(*[one(sem) for _ in range(CHILDREN)])

    t0 = time.perf_counter()
    asyncio.run(main())
    return CHILDREN / (time.perf_counter() - t0)


CASES = {
    "threads": ["plait_threads", "twisted_threads", "asyncio_threads"],
    "spawn": ["plait_spawn", "twisted_spawn", "asyncio_spawn"],
}


def main():
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(globals()[sys.argv[2]]()))
        return
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    for case, impls in CASES.items():
        got = {impl: [] for impl in impls}
        for _ in range(args.runs):
            for impl in impls:
                got[impl].append(bc.run_child_json(__file__, "--child", impl, timeout=120))
        unit = "round trips/s" if case == "threads" else "spawns/s"
        for impl in impls:
            print(f"{case:8} {impl:18} {statistics.median(got[impl]):>10,.0f} {unit} "
                  f"(min {min(got[impl]):,.0f}, max {max(got[impl]):,.0f})")


if __name__ == "__main__":
    main()
