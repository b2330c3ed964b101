"""Run every Plait benchmark, one after the other, and keep what they print.

Each ``bench_*.py`` beside this file compares Plait with its peers (Twisted, asyncio,
uvloop, aiohttp, raw pyzmq, ...) on the same workload in the same run and prints a
markdown table with ratios. This driver runs them in turn with their default settings
(or the shorter ``--quick`` ones), prints each table, and writes the whole output to
``tests/bench/results/<UTC date-time>.md`` (ignored by git: copy figures you want to keep
into docs/benchmarks.md by hand).

Run:  make bench                       (all, default settings; about 10 minutes)
      .venv/bin/python tests/bench/run_all.py --quick
      .venv/bin/python tests/bench/run_all.py --only echo,deferred
"""

from __future__ import annotations

import argparse
import datetime
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# name -> (script, quick arguments); default arguments are each script's own.
BENCHES: dict[str, tuple[str, list[str]]] = {
    "deferred": ("bench_deferred.py", ["--rounds", "3"]),
    "reactor": ("bench_reactor.py", ["--runs", "2"]),
    "echo": ("bench_echo.py", ["--runs", "1", "--duration", "3"]),
    "wrk": ("bench_wrk.py", ["--runs", "1", "--duration", "3"]),
    "threads-processes": ("bench_threads_processes.py", ["--runs", "2"]),
    "tls": ("bench_tls.py", ["--runs", "1", "--duration", "3"]),
    "foreign-loops": ("bench_foreign_loops.py", ["--runs", "1", "--duration", "3"]),
    "http-parser": ("bench_http_parser.py", ["--n", "20000", "--repeat", "3"]),
    "http": ("bench_http.py", ["--rounds", "1", "--secs", "3"]),
    "http-client": ("bench_http_client.py", ["--runs", "1", "--duration", "2"]),
    "websocket": ("bench_websocket.py", ["--runs", "1", "--duration", "2"]),
    "rpc": ("bench_rpc.py", ["--runs", "1", "--duration", "2"]),
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer, shorter rounds")
    parser.add_argument("--only", help=f"comma-separated subset of: {', '.join(BENCHES)}")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per benchmark")
    args = parser.parse_args()
    names = list(BENCHES) if not args.only else [n.strip() for n in args.only.split(",")]
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        parser.error(f"unknown benchmarks: {', '.join(unknown)}")
    results = os.path.join(HERE, "results")
    os.makedirs(results, exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = os.path.join(results, f"{stamp}.md")
    failed: list[str] = []
    with open(path, "w") as out:
        for name in names:
            script, quick = BENCHES[name]
            argv = [sys.executable, os.path.join(HERE, script), *(quick if args.quick else [])]
            header = f"\n## {name}\n\n`{' '.join(argv[1:])}`\n"
            print(header, flush=True)
            out.write(header + "\n")
            started = time.monotonic()
            try:
                proc = subprocess.run(
                    argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                    timeout=args.timeout, check=False,
                )
                text, code = proc.stdout, proc.returncode
            except subprocess.TimeoutExpired as exc:
                partial = exc.stdout or ""
                text = partial if isinstance(partial, str) else partial.decode()
                code = -1
            took = time.monotonic() - started
            footer = f"\n({name}: exit {code}, {took:.0f} s)\n"
            print(text + footer, flush=True)
            out.write(text + footer)
            if code != 0:
                failed.append(name)
    print(f"\nwritten: {path}")
    if failed:
        print(f"benchmarks that did not finish cleanly: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
