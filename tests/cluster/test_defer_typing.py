"""``Deferred`` is ``Generic[T]``: static types, checked by ``make lint`` (mypy --strict).

The checks in this file happen when mypy reads it, not when pytest runs it:

- ``assert_type(expr, T)`` is an error for mypy unless ``expr`` has exactly type ``T``,
  so each one pins an inferred type (a Deferred that lost its parameter, or an
  ``add_callback`` that stopped inferring the callback's result, fails lint);
- each ``# type: ignore[code]`` marks a line mypy must reject: mypy --strict reports
  an ignore that silences nothing (``warn_unused_ignores``), so if one of these
  mistakes stopped being an error, lint would fail.

At run time the same lines also run, so each test checks the values as well.
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import Any, assert_type

from plait.cluster.defer import (
    Deferred,
    DeferredList,
    ensure_deferred,
    fail,
    gather,
    inline_callbacks,
    maybe_deferred,
    succeed,
)
from plait.cluster.failure import Failure


def _length(text: str) -> int:
    return len(text)


def _repeat(text: str, times: int, *, sep: str = "") -> str:
    return sep.join([text] * times)


def _later_float(n: int) -> Deferred[float]:
    return succeed(n / 2)


def _collect(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.add_both(out.append)
    return out


def test_add_callback_infers_the_next_result_type_from_the_callback() -> None:
    d: Deferred[str] = Deferred()
    lengths = d.add_callback(_length)
    assert_type(lengths, Deferred[int])
    halves = lengths.add_callback(_later_float)  # a Deferred[S] result gives Deferred[S]
    assert_type(halves, Deferred[float])
    out = _collect(halves)
    d.callback("abcd")
    assert out == [2.0]


def test_add_callback_checks_extra_arguments_against_the_callback() -> None:
    d = succeed("ab")
    assert_type(d, Deferred[str])
    repeated = d.add_callback(_repeat, 3, sep="-")
    assert_type(repeated, Deferred[str])
    assert _collect(repeated) == ["ab-ab-ab"]
    # Each of these is a mypy error; the ignores would be "unused" if it were not.
    with_bad_arg = succeed("ab").add_callback(_repeat, "3")  # type: ignore[call-overload]
    assert isinstance(_collect(with_bad_arg)[0], Failure)
    missing_arg = succeed("ab").add_callback(_repeat)  # type: ignore[call-overload]
    assert isinstance(_collect(missing_arg)[0], Failure)


def test_a_callback_that_takes_another_type_is_a_type_error() -> None:
    d: Deferred[int] = Deferred()
    d.add_callback(_length)  # type: ignore[call-overload]
    d.add_errback(lambda f: 0)
    d.callback(5)


def test_callback_checks_the_result_type() -> None:
    d: Deferred[int] = Deferred()
    d.callback("five")  # type: ignore[arg-type]
    assert _collect(d) == ["five"]


def test_a_deferred_of_one_type_is_not_a_deferred_of_another() -> None:
    ints: Deferred[int] = succeed(1)
    strs: Deferred[str] = ints  # type: ignore[assignment]
    assert _collect(strs) == [1]


def test_helpers_keep_the_type_parameter() -> None:
    assert_type(succeed(1), Deferred[int])
    assert_type(fail(ValueError()).add_errback(lambda f: None), Deferred[Any])
    assert_type(maybe_deferred(_length, "abc"), Deferred[int])
    assert_type(maybe_deferred(_later_float, 4), Deferred[float])
    assert_type(gather([succeed(1), succeed(2)]), Deferred[list[int]])
    assert_type(DeferredList([succeed("a")]), DeferredList)


def test_awaiting_a_deferred_gives_its_type() -> None:
    async def double(d: Deferred[int]) -> int:
        value = await d
        assert_type(value, int)
        return value * 2

    doubled = ensure_deferred(double(succeed(21)))
    assert_type(doubled, Deferred[int])
    assert _collect(doubled) == [42]
    from_coroutine = Deferred.from_coroutine(double(succeed(1)))
    assert_type(from_coroutine, Deferred[int])


def test_inline_callbacks_and_future_bridges_keep_the_type() -> None:
    @inline_callbacks
    def fetch(n: int) -> Generator[Deferred[int], int, str]:
        value = yield succeed(n)
        return str(value)

    fetched = fetch(3)
    assert_type(fetched, Deferred[str])
    assert _collect(fetched) == ["3"]

    async def bridge() -> str:
        loop = asyncio.get_running_loop()
        future = succeed("x").as_future(loop)
        assert_type(future, asyncio.Future[str])
        back = Deferred.from_future(future)
        assert_type(back, Deferred[str])
        return await back

    assert asyncio.run(bridge()) == "x"
