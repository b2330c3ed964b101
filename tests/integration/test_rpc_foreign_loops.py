"""The bus on AsyncioReactor (asyncio's loop and uvloop): ZeroMQ driven through the loop.

The link registers ZeroMQ's edge-triggered ``zmq.FD`` with the loop's ``add_reader``;
these tests check that nothing is lost that way: calls both ways, thousands in flight,
cancellation and remote Deferreds, and a peer in another process on the native reactor
that is killed mid-call.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from plait.cluster.defer import CancelledError, Deferred, ensure_deferred, gather
from plait.cluster.reactor import AsyncioReactor
from plait.cluster.rpc import Bus, PeerLost
from plait.cluster.task import defer_later
from tests.reactor_support import run_deferred

CHILD = Path(__file__).with_name("rpc_child.py")
_LOOPS: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
    "asyncio": asyncio.new_event_loop,
    "uvloop": uvloop.new_event_loop,
}


@pytest.fixture(params=sorted(_LOOPS))
def reactor(request: pytest.FixtureRequest) -> Iterator[AsyncioReactor]:
    loop = _LOOPS[request.param]()
    r = AsyncioReactor(loop)
    yield r
    r.close()
    loop.close()


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    path = tmp_path / "run"
    path.mkdir(mode=0o700)
    return path


def run_main(reactor: AsyncioReactor, main: Callable[[], Any], limit: float = 10.0) -> Any:
    """Run the coroutine ``main()`` on the reactor; its result (or raise its error)."""
    return run_deferred(reactor, lambda: ensure_deferred(main()), limit)


async def wait_for(reactor: AsyncioReactor, condition: Callable[[], bool]) -> None:
    while not condition():
        await defer_later(reactor, 0.005)


def test_calls_both_ways_and_thousands_in_flight_are_all_answered(
    reactor: AsyncioReactor, run_dir: Path
) -> None:
    address = f"ipc://{run_dir}/bus.sock"
    server = Bus("server", reactor, bind=address)
    client = Bus("client", reactor, connect=[address])
    server.expose("add", lambda a, b: a + b)
    client.expose("name", lambda: "client")

    async def main() -> tuple[Any, ...]:
        await server.start()
        await client.start()
        try:
            there = await client.call("server", "add", 2, 3)
            back = await server.call("client", "name")
            many = await gather([client.call("server", "add", i, i) for i in range(3000)])
            return there, back, many == [2 * i for i in range(3000)], server.statistics()
        finally:
            client.stop()
            server.stop()

    there, back, all_right, stats = run_main(reactor, main)
    assert (there, back, all_right) == (5, "client", True)
    assert stats.dropped == 0 and stats.calls_received == 3001


def test_cancels_and_remote_deferreds_cross_the_loop(
    reactor: AsyncioReactor, run_dir: Path
) -> None:
    address = f"ipc://{run_dir}/bus.sock"
    server = Bus("server", reactor, bind=address)
    client = Bus("client", reactor, connect=[address])
    cancelled: list[bool] = []
    server.expose("slow", lambda: Deferred(lambda d: cancelled.append(True)))

    def later() -> dict[str, Deferred[str]]:
        done: Deferred[str] = Deferred()
        reactor.call_later(0.01, done.callback, "later")
        return {"done": done}

    server.expose("later", later)

    async def main() -> tuple[Any, ...]:
        await server.start()
        await client.start()
        try:
            slow = client.call("server", "slow")
            await wait_for(reactor, lambda: server.statistics().calls_serving == 1)
            slow.cancel()
            await wait_for(reactor, lambda: cancelled == [True])
            with pytest.raises(CancelledError):
                await slow
            value = await client.call("server", "later")
            return tuple(cancelled), await value["done"]
        finally:
            client.stop()
            server.stop()

    assert run_main(reactor, main) == ((True,), "later")


def test_a_native_reactor_process_killed_mid_call_is_lost(
    reactor: AsyncioReactor, run_dir: Path
) -> None:
    address = f"ipc://{run_dir}/child.sock"
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "child", address], stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("READY ")
        bus = Bus("parent", reactor, connect=[address])

        async def main() -> tuple[Any, ...]:
            await bus.start()
            try:
                answer = await bus.call("child", "add", 20, 22)
                pending = bus.call("child", "never")
                await defer_later(reactor, 0.05)
                os.kill(proc.pid, signal.SIGKILL)
                try:
                    await pending
                except PeerLost as exc:
                    return answer, exc.node
                return answer, None
            finally:
                bus.stop()

        assert run_main(reactor, main) == (42, "child")
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
