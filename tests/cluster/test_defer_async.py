"""Coroutines and generators as Deferreds, and the bridges to asyncio."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Generator
from typing import Any

import pytest

from plait.cluster.defer import (
    CancelledError,
    Deferred,
    ensure_deferred,
    fail,
    inline_callbacks,
    succeed,
)
from plait.cluster.failure import Failure


def collect(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.add_both(out.append)
    return out


# ------------------------------------------------------------ ensure_deferred


def test_coroutine_awaiting_a_fired_deferred_finishes_at_once() -> None:
    async def main() -> int:
        return await succeed(20) + 1

    assert collect(ensure_deferred(main())) == [21]


def test_coroutine_resumes_when_the_awaited_deferred_fires() -> None:
    d: Deferred[int] = Deferred()

    async def main() -> int:
        return await d * 2

    out = collect(ensure_deferred(main()))
    assert out == []
    d.callback(4)
    assert out == [8]


def test_failed_deferred_raises_inside_the_coroutine_and_can_be_caught() -> None:
    d: Deferred[int] = Deferred()

    async def main() -> str:
        try:
            await d
        except KeyError as e:
            return f"caught {e.args[0]}"
        return "not reached"

    out = collect(ensure_deferred(main()))
    d.errback(KeyError("k"))
    assert out == ["caught k"]


def test_exception_in_coroutine_errbacks_with_its_failure() -> None:
    async def main() -> None:
        await succeed(None)
        raise ValueError("from the coroutine")

    out = collect(ensure_deferred(main()))
    assert isinstance(out[0], Failure) and out[0].check(ValueError)
    assert "main" in out[0].get_traceback()


def test_awaiting_a_failed_deferred_consumes_its_failure() -> None:
    d = fail(ValueError("x"))

    async def main() -> None:
        try:
            await d
        except ValueError:
            pass

    ensure_deferred(main())
    assert collect(d) == [None]


def test_cancelling_the_coroutine_deferred_cancels_what_it_awaits() -> None:
    cancelled: list[object] = []
    inner: Deferred[int] = Deferred(canceller=cancelled.append)
    seen: list[str] = []

    async def main() -> int:
        try:
            return await inner
        except CancelledError:
            seen.append("coroutine saw the cancellation")
            raise

    outer = ensure_deferred(main())
    out = collect(outer)
    outer.cancel()
    assert cancelled == [inner]
    assert seen == ["coroutine saw the cancellation"]
    assert out[0].check(CancelledError)


def test_coroutine_returning_a_deferred_fires_with_its_result() -> None:
    inner: Deferred[int] = Deferred()

    async def main() -> Deferred[int]:
        return inner

    out = collect(ensure_deferred(main()))
    inner.callback(3)
    assert out == [3]


def test_ensure_deferred_returns_a_deferred_unchanged() -> None:
    d = succeed(1)
    assert ensure_deferred(d) is d


def test_ensure_deferred_runs_any_awaitable() -> None:
    class Awaitable:
        def __await__(self) -> Generator[Any, Any, int]:
            return (yield from succeed(9).__await__())

    assert collect(ensure_deferred(Awaitable())) == [9]


def test_ensure_deferred_rejects_a_non_awaitable() -> None:
    with pytest.raises(TypeError):
        ensure_deferred(42)  # type: ignore[arg-type]


def test_from_coroutine_rejects_a_non_coroutine() -> None:
    with pytest.raises(TypeError):
        Deferred.from_coroutine(lambda: None)  # type: ignore[arg-type]


def test_from_coroutine_runs_the_coroutine() -> None:
    async def main() -> str:
        return "done"

    assert collect(Deferred.from_coroutine(main())) == ["done"]


def test_awaiting_something_that_is_not_a_deferred_fails_the_coroutine() -> None:
    class Odd:
        def __await__(self) -> Generator[Any, Any, None]:
            yield "not a deferred"

    async def main() -> None:
        await Odd()

    out = collect(ensure_deferred(main()))
    assert out[0].check(TypeError)


def test_many_awaits_of_fired_deferreds_do_not_recurse() -> None:
    async def main() -> int:
        total = 0
        for i in range(20_000):
            total += await succeed(i)
        return total

    assert collect(ensure_deferred(main())) == [sum(range(20_000))]


# ------------------------------------------------------------- inline_callbacks


def test_inline_callbacks_sends_results_and_returns_the_value() -> None:
    d: Deferred[int] = Deferred()

    @inline_callbacks
    def work(x: int) -> Generator[Any, Any, int]:
        a = yield succeed(x)
        b = yield d
        c = yield 5  # plain values come straight back
        return int(a + b + c)

    out = collect(work(1))
    d.callback(10)
    assert out == [16]


def test_inline_callbacks_raises_failures_at_the_yield() -> None:
    @inline_callbacks
    def work() -> Generator[Any, Any, str]:
        try:
            yield fail(KeyError("missing"))
        except KeyError:
            return "handled"
        return "not reached"

    assert collect(work()) == ["handled"]


def test_inline_callbacks_failure_traceback_names_the_generator_frame_and_line() -> None:
    @inline_callbacks
    def fetch_user() -> Generator[Any, Any, None]:
        yield succeed(None)
        raise LookupError("no such user")

    raise_line = inspect.getsourcelines(fetch_user.__wrapped__)[1] + 3  # type: ignore[attr-defined]
    out = collect(fetch_user())
    failure = out[0]
    assert failure.check(LookupError)
    text = failure.get_traceback()
    assert f'line {raise_line}, in fetch_user' in text
    frames = [(f.name, f.lineno) for f in __import__("traceback").extract_tb(failure.tb)]
    assert ("fetch_user", raise_line) in frames


def test_inline_callbacks_keeps_the_frame_of_a_failure_thrown_into_the_generator() -> None:
    d: Deferred[int] = Deferred()

    @inline_callbacks
    def waiter() -> Generator[Any, Any, int]:
        value = yield d
        return int(value)

    out = collect(waiter())
    try:
        raise OSError("disk on fire")
    except OSError:
        d.errback()
    text = out[0].get_traceback()
    assert "in waiter" in text and "disk on fire" in text


def test_inline_callbacks_rejects_a_function_that_is_not_a_generator() -> None:
    with pytest.raises(TypeError):
        inline_callbacks(lambda: None)  # type: ignore[arg-type,return-value]


def test_inline_callbacks_cancellation_cancels_the_awaited_deferred() -> None:
    cancelled: list[object] = []
    inner: Deferred[int] = Deferred(canceller=cancelled.append)

    @inline_callbacks
    def work() -> Generator[Any, Any, int]:
        value = yield inner
        return int(value)

    outer = work()
    out = collect(outer)
    outer.cancel()
    assert cancelled == [inner]
    assert out[0].check(CancelledError)


# ---------------------------------------------------------------------- asyncio


def test_await_deferred_inside_a_plain_asyncio_task() -> None:
    async def main() -> int:
        d: Deferred[int] = Deferred()
        asyncio.get_running_loop().call_soon(d.callback, 41)
        return await d + 1

    assert asyncio.run(main()) == 42


def test_await_failed_deferred_inside_asyncio_raises_its_exception() -> None:
    async def main() -> None:
        d: Deferred[int] = Deferred()
        asyncio.get_running_loop().call_soon(d.errback, ValueError("bad"))
        await d

    with pytest.raises(ValueError, match="bad"):
        asyncio.run(main())


def test_cancelling_an_asyncio_task_cancels_the_awaited_deferred() -> None:
    cancelled: list[object] = []

    async def main() -> bool:
        d: Deferred[int] = Deferred(canceller=cancelled.append)
        task = asyncio.ensure_future(_await(d))
        await asyncio.sleep(0)
        task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(main()) is True
    assert len(cancelled) == 1


def test_cancelled_deferred_cancels_the_asyncio_task_awaiting_it() -> None:
    async def main() -> bool:
        d: Deferred[int] = Deferred()
        task = asyncio.ensure_future(_await(d))
        await asyncio.sleep(0)
        d.cancel()
        try:
            await task
        except asyncio.CancelledError:
            return task.cancelled()
        return False

    assert asyncio.run(main()) is True


async def _await(d: Deferred[int]) -> int:
    return await d


def test_ensure_deferred_under_a_running_loop_resumes_synchronously() -> None:
    async def main() -> list[Any]:
        d: Deferred[int] = Deferred()

        async def inner() -> int:
            return await d

        out = collect(ensure_deferred(inner()))
        d.callback(5)
        return out  # no loop turn was needed

    assert asyncio.run(main()) == [5]


def test_ensure_deferred_coroutine_may_await_asyncio_futures() -> None:
    async def main() -> Any:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[str] = loop.create_future()

        async def inner() -> str:
            await asyncio.sleep(0)
            return await fut + "!"

        d = ensure_deferred(inner())
        loop.call_soon(fut.set_result, "hi")
        return await d

    assert asyncio.run(main()) == "hi!"


def test_from_future_fires_with_the_future_result_or_exception() -> None:
    async def main() -> tuple[list[Any], list[Any], list[Any]]:
        loop = asyncio.get_running_loop()
        ok: asyncio.Future[int] = loop.create_future()
        bad: asyncio.Future[int] = loop.create_future()
        ok_out, bad_out = collect(Deferred.from_future(ok)), collect(Deferred.from_future(bad))
        ok.set_result(3)
        bad.set_exception(KeyError("k"))
        before = list(ok_out)
        await asyncio.sleep(0)
        return before, ok_out, bad_out

    before, ok_out, bad_out = asyncio.run(main())
    assert before == []  # asyncio runs done callbacks on the next loop turn
    assert ok_out == [3]
    assert bad_out[0].check(KeyError)


def test_cancelling_the_future_cancels_the_deferred_from_it() -> None:
    async def main() -> list[Any]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        out = collect(Deferred.from_future(fut))
        fut.cancel()
        await asyncio.sleep(0)
        return out

    out = asyncio.run(main())
    assert out[0].check(CancelledError)


def test_cancelling_the_deferred_from_a_future_cancels_the_future() -> None:
    async def main() -> tuple[bool, list[Any]]:
        fut: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        d = Deferred.from_future(fut)
        out = collect(d)
        d.cancel()
        await asyncio.sleep(0)
        return fut.cancelled(), out

    cancelled, out = asyncio.run(main())
    assert cancelled and len(out) == 1 and out[0].check(CancelledError)


def test_from_future_rejects_a_non_future() -> None:
    with pytest.raises(TypeError):
        Deferred.from_future(succeed(1))  # type: ignore[arg-type]


def test_as_future_completes_with_the_result_and_keeps_it_in_the_deferred() -> None:
    async def main() -> tuple[int, list[Any]]:
        d: Deferred[int] = Deferred()
        fut = d.as_future(asyncio.get_running_loop())
        d.callback(8)
        return await fut, collect(d)

    assert asyncio.run(main()) == (8, [8])


def test_as_future_takes_over_the_failure() -> None:
    async def main() -> tuple[BaseException | None, list[Any]]:
        d: Deferred[int] = Deferred()
        fut = d.as_future(asyncio.get_running_loop())
        d.errback(ValueError("v"))
        await asyncio.sleep(0)
        return fut.exception(), collect(d)

    exc, out = asyncio.run(main())
    assert isinstance(exc, ValueError)
    assert out == [None]


def test_cancelling_the_future_of_as_future_cancels_the_deferred() -> None:
    cancelled: list[object] = []

    async def main() -> list[Any]:
        d: Deferred[int] = Deferred(canceller=cancelled.append)
        fut = d.as_future(asyncio.get_running_loop())
        out = collect(d)
        fut.cancel()
        await asyncio.sleep(0)
        return out

    out = asyncio.run(main())
    assert len(cancelled) == 1
    assert out == [None]  # the CancelledError went to the (cancelled) future


def test_cancelling_the_deferred_cancels_the_future_of_as_future() -> None:
    async def main() -> bool:
        d: Deferred[int] = Deferred()
        fut = d.as_future(asyncio.get_running_loop())
        d.cancel()
        return fut.cancelled()

    assert asyncio.run(main()) is True


def test_cancelling_a_coroutine_deferred_under_a_running_loop_reaches_its_await() -> None:
    async def main() -> tuple[list[object], list[str], list[Any]]:
        cancelled: list[object] = []
        inner: Deferred[int] = Deferred(canceller=cancelled.append)
        seen: list[str] = []

        async def work() -> int:
            try:
                return await inner
            except CancelledError:
                seen.append("work saw the cancellation")
                raise

        outer = ensure_deferred(work())
        out = collect(outer)
        outer.cancel()  # no loop turn needed
        return cancelled, seen, out

    cancelled, seen, out = asyncio.run(main())
    assert len(cancelled) == 1
    assert seen == ["work saw the cancellation"]
    assert out[0].check(CancelledError)


def test_failed_deferred_under_a_running_loop_raises_in_the_driven_coroutine() -> None:
    async def main() -> list[Any]:
        inner: Deferred[int] = Deferred()

        async def work() -> str:
            try:
                await inner
            except KeyError:
                return "caught"
            return "not reached"

        out = collect(ensure_deferred(work()))
        inner.errback(KeyError("k"))
        return out

    assert asyncio.run(main()) == ["caught"]


def test_the_deferred_of_a_coroutine_reads_as_a_deferred() -> None:
    async def main() -> int:
        return 1

    d = ensure_deferred(main())
    assert isinstance(d, Deferred)
    assert repr(d).startswith("<Deferred at 0x") and "current result: 1" in repr(d)


def test_inline_callbacks_yielding_many_fired_deferreds_does_not_recurse() -> None:
    @inline_callbacks
    def count() -> Generator[Any, Any, int]:
        total = 0
        for i in range(20_000):
            total += yield succeed(i)
        return total

    assert collect(count()) == [sum(range(20_000))]
