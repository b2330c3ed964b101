"""The Deferred core: callbacks, errbacks, chaining, pausing, bad input."""

from __future__ import annotations

from typing import Any

import pytest

from plait.cluster.defer import (
    AlreadyCalledError,
    Deferred,
    DeferredLoopError,
    fail,
    maybe_deferred,
    succeed,
)
from plait.cluster.failure import Failure


def collect(d: Deferred[Any]) -> list[Any]:
    """Record what reaches the end of ``d``'s chain (and handle it)."""
    out: list[Any] = []
    d.add_both(out.append)
    return out


def test_callbacks_run_in_order_each_getting_the_previous_result() -> None:
    d: Deferred[int] = Deferred()
    seen: list[int] = []
    d.add_callback(lambda x: x + 1).add_callback(lambda x: x * 10).add_callback(seen.append)
    assert seen == []
    d.callback(1)
    assert seen == [20]
    assert d.called


def test_callback_added_after_firing_runs_at_once() -> None:
    d = succeed(5)
    seen: list[int] = []
    d.add_callback(seen.append)
    assert seen == [5]


def test_extra_positional_and_keyword_arguments_reach_the_callback() -> None:
    d = succeed(1)
    seen: list[Any] = []

    def record(r: int, a: int, b: int = 0) -> None:
        seen.append((r, a, b))

    d.add_callback(record, 2, b=3)
    d.add_errback(lambda f, a: seen.append(a), "unused")
    assert seen == [(1, 2, 3)]


def test_raising_callback_switches_to_the_errback_path() -> None:
    d: Deferred[int] = Deferred()
    seen: list[Any] = []

    def boom(_: int) -> int:
        raise ValueError("boom")

    d.add_callback(boom).add_callback(seen.append).add_errback(lambda f: seen.append(f.value))
    d.callback(1)
    assert len(seen) == 1 and isinstance(seen[0], ValueError)


def test_errback_returning_a_value_recovers_the_chain() -> None:
    d = fail(KeyError("k"))
    out = collect(d.add_errback(lambda f: f.trap(KeyError) and "recovered"))
    assert out == ["recovered"]


def test_trap_passes_unexpected_errors_down_the_chain() -> None:
    d = fail(KeyError("k"))
    d.add_errback(lambda f: f.trap(ValueError))
    out = collect(d)
    assert isinstance(out[0], Failure) and out[0].check(KeyError)


def test_add_callbacks_takes_separate_argument_lists() -> None:
    seen: list[Any] = []
    succeed(1).add_callbacks(
        lambda r, x, y: seen.append(("ok", r, x, y)),
        lambda f, z: seen.append(("err", z)),
        callback_args=(2,),
        callback_kwargs={"y": 3},
        errback_args=(9,),
    )
    fail(ValueError()).add_callbacks(
        lambda r: seen.append("never"), lambda f, z, w: seen.append(("err", z, w)),
        errback_args=(4,), errback_kwargs={"w": 5},
    )
    assert seen == [("ok", 1, 2, 3), ("err", 4, 5)]


def test_callback_returning_an_unfired_deferred_pauses_the_chain() -> None:
    outer: Deferred[int] = Deferred()
    inner: Deferred[int] = Deferred()
    outer.add_callback(lambda _: inner)
    out = collect(outer)
    outer.callback(0)
    assert out == []
    inner.callback(7)
    assert out == [7]


def test_callback_returning_a_fired_deferred_takes_its_result() -> None:
    out = collect(succeed(1).add_callback(lambda x: succeed(x + 1)))
    assert out == [2]


def test_failure_of_a_returned_deferred_continues_as_failure_and_is_handled() -> None:
    inner = fail(ValueError("inner"))
    out = collect(succeed(1).add_callback(lambda _: inner))
    assert isinstance(out[0], Failure) and out[0].check(ValueError)
    assert inner._info is None or inner._info.failure is None


def test_pause_holds_callbacks_until_unpause() -> None:
    d: Deferred[int] = Deferred()
    d.pause()
    out = collect(d)
    d.callback(3)
    assert out == []
    d.unpause()
    assert out == [3]


def test_unpause_of_an_unpaused_deferred_raises() -> None:
    with pytest.raises(RuntimeError):
        Deferred().unpause()


def test_chain_deferred_fires_the_other_deferred() -> None:
    a: Deferred[int] = Deferred()
    b: Deferred[int] = Deferred()
    a.chain_deferred(b)
    out = collect(b)
    a.callback(4)
    assert out == [4]


def test_chain_deferred_rejects_a_non_deferred() -> None:
    with pytest.raises(TypeError):
        Deferred().chain_deferred(lambda: None)  # type: ignore[arg-type]


def test_maybe_deferred_wraps_values_exceptions_and_deferreds() -> None:
    assert collect(maybe_deferred(lambda: 3)) == [3]
    d = succeed(4)
    assert maybe_deferred(lambda: d) is d

    def boom() -> None:
        raise OSError("x")

    out = collect(maybe_deferred(boom))
    assert isinstance(out[0], Failure) and out[0].check(OSError)


# ----------------------------------------------------------------- bad input


def test_callback_twice_raises_already_called() -> None:
    d = succeed(1)
    with pytest.raises(AlreadyCalledError):
        d.callback(2)
    with pytest.raises(AlreadyCalledError):
        d.errback(ValueError())


@pytest.mark.parametrize("method", ["add_callback", "add_errback", "add_both"])
def test_non_callable_is_rejected_when_added_not_when_fired(method: str) -> None:
    d: Deferred[int] = Deferred()
    with pytest.raises(TypeError, match="callable"):
        getattr(d, method)(42)
    assert d._callbacks == []
    d.callback(1)
    assert collect(d) == [1]  # the chain never held the bad entry


@pytest.mark.parametrize("method", ["add_callback", "add_errback", "add_both", "add_callbacks"])
@pytest.mark.parametrize("fired", [succeed, lambda v: fail(ValueError(v))])
def test_non_callable_added_to_a_fired_deferred_is_rejected_and_leaves_its_result(
    method: str, fired: Any
) -> None:
    d: Deferred[Any] = fired(7)
    with pytest.raises(TypeError, match="callable"):
        getattr(d, method)("not a function")
    [result] = collect(d)
    assert result == 7 or (isinstance(result, Failure) and result.check(ValueError))


def test_add_callbacks_rejects_non_callable_callback_or_errback() -> None:
    d: Deferred[int] = Deferred()
    with pytest.raises(TypeError):
        d.add_callbacks("nope")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        d.add_callbacks(print, 3)  # type: ignore[arg-type]
    assert d._callbacks == []


@pytest.mark.parametrize("bad", ["oops", ValueError, 42])
def test_errback_with_something_not_an_exception_raises_type_error(bad: Any) -> None:
    d: Deferred[int] = Deferred()
    with pytest.raises(TypeError, match="Failure or an exception"):
        d.errback(bad)
    assert not d.called
    d.callback(1)  # still usable: the bad errback() did not fire it
    assert collect(d) == [1]


def test_fail_with_something_not_an_exception_raises_type_error() -> None:
    with pytest.raises(TypeError, match="Failure or an exception"):
        fail("oops")  # type: ignore[arg-type]


def test_callback_with_a_deferred_raises_type_error() -> None:
    with pytest.raises(TypeError):
        Deferred().callback(Deferred())  # type: ignore[arg-type]


def test_callback_returning_its_own_deferred_errbacks_with_a_clear_error() -> None:
    d: Deferred[Any] = Deferred()
    d.add_callback(lambda _: d)
    out = collect(d)
    d.callback(1)
    assert isinstance(out[0], Failure)
    assert out[0].check(DeferredLoopError)
    assert "returned the Deferred it was added to" in out[0].get_error_message()


def test_deferred_is_generic_and_subscriptable() -> None:
    d = Deferred[int]()
    d.callback(1)
    assert collect(d) == [1]


def test_repr_shows_state() -> None:
    d: Deferred[int] = Deferred()
    assert "current result" not in repr(d)
    inner: Deferred[int] = Deferred()
    d.add_callback(lambda _: inner)
    d.callback(1)
    assert "waiting on Deferred" in repr(d)
    inner.callback(2)
    assert "current result: 2" in repr(d)


def test_pause_from_inside_a_callback_stops_the_chain_there() -> None:
    d: Deferred[int] = Deferred()
    seen: list[int] = []

    def first(x: int) -> int:
        d.pause()
        return x + 1

    d.add_callback(first).add_callback(seen.append)
    d.callback(1)
    assert seen == []
    d.unpause()
    assert seen == [2]


def test_callback_may_add_callbacks_to_its_own_deferred() -> None:
    d: Deferred[int] = Deferred()
    seen: list[str] = []

    def first(x: int) -> int:
        d.add_callback(lambda y: seen.append(f"added later saw {y}"))
        return x * 3

    d.add_callback(first).add_callback(lambda y: y + 1)
    d.callback(2)
    assert seen == ["added later saw 7"]


def test_errback_without_argument_uses_the_exception_being_handled() -> None:
    d: Deferred[int] = Deferred()
    try:
        raise LookupError("current")
    except LookupError:
        d.errback()
    out = collect(d)
    assert out[0].check(LookupError)


def test_errback_without_argument_outside_except_raises() -> None:
    from plait.cluster.failure import NoCurrentExceptionError

    with pytest.raises(NoCurrentExceptionError):
        Deferred().errback()


def test_callback_with_a_failure_takes_the_errback_path() -> None:
    d: Deferred[int] = Deferred()
    out = collect(d)
    d.callback(Failure(KeyError()))  # type: ignore[arg-type]
    assert out[0].check(KeyError)


def test_chain_deferred_to_an_already_fired_deferred_fails_the_chain() -> None:
    a: Deferred[int] = Deferred()
    a.chain_deferred(succeed(1))
    out = collect(a)
    a.callback(2)
    assert out[0].check(AlreadyCalledError)


def test_maybe_deferred_runs_a_coroutine_function() -> None:
    async def compute(x: int) -> int:
        return await succeed(x) * 2

    assert collect(maybe_deferred(compute, 4)) == [8]


def test_maybe_deferred_turns_a_returned_failure_into_a_failed_deferred() -> None:
    out = collect(maybe_deferred(lambda: Failure(OSError())))
    assert out[0].check(OSError)


def test_callbacks_with_extra_args_may_raise_and_fail_the_chain() -> None:
    def divide(x: int, by: int) -> float:
        return x / by

    out = collect(succeed(1).add_callback(divide, by=0))
    assert out[0].check(ZeroDivisionError)


# ------------------------------------------- callbacks added to a fired Deferred


def test_callback_added_to_fired_deferred_may_return_an_unfired_one() -> None:
    inner: Deferred[int] = Deferred()
    d = succeed(1).add_callback(lambda _: inner)
    out = collect(d)
    assert out == []
    inner.callback(2)
    assert out == [2]


def test_callback_added_to_fired_deferred_returning_it_is_a_loop_error() -> None:
    d = succeed(1)
    d.add_callback(lambda _: d)
    out = collect(d)
    assert out[0].check(DeferredLoopError)


def test_callback_added_later_may_add_more_and_order_is_kept() -> None:
    d = succeed(1)
    seen: list[Any] = []

    def first(x: int) -> Deferred[int]:
        d.add_callback(lambda y: seen.append(("added inside", y)))
        return succeed(x + 10)

    d.add_callback(first)
    assert seen == [("added inside", 11)]


def test_errback_added_to_failed_deferred_recovers_it() -> None:
    d = fail(KeyError())
    d.add_callback(lambda _: "skipped")
    d.add_errback(lambda f: "recovered")
    d.add_errback(lambda f: "skipped too")
    assert collect(d) == ["recovered"]


def test_errback_added_to_succeeded_deferred_is_skipped() -> None:
    d = succeed(3)
    d.add_errback(lambda f: "never")
    assert collect(d) == [3]


def test_callback_added_to_fired_deferred_that_raises_fails_it() -> None:
    d = succeed(0)
    d.add_callback(lambda x: 1 / x)
    assert collect(d)[0].check(ZeroDivisionError)


def test_callbacks_added_while_paused_after_firing_wait_for_unpause() -> None:
    d = succeed(1)
    d.pause()
    out = collect(d.add_callback(lambda x: x + 1))
    assert out == []
    d.unpause()
    assert out == [2]


def test_pause_and_unpause_inside_one_callback_keeps_going() -> None:
    d: Deferred[int] = Deferred()
    seen: list[int] = []

    def first(x: int) -> int:
        d.pause()
        d.unpause()
        return x + 1

    d.add_callback(first).add_callback(seen.append)
    d.callback(1)
    assert seen == [2]


def test_callbacks_added_after_a_pause_inside_a_callback_run_after_the_rest() -> None:
    d: Deferred[int] = Deferred()
    seen: list[str] = []

    def first(x: int) -> int:
        d.pause()
        d.add_callback(lambda y: seen.append(f"added {y}"))
        return x

    def second(y: int) -> int:
        seen.append(f"second {y}")
        return y

    d.add_callback(first).add_callback(second)
    d.callback(5)
    assert seen == []
    d.unpause()
    assert seen == ["second 5", "added 5"]


def test_pausing_a_deferred_suspended_on_the_runner_stack_holds_its_rest() -> None:
    a: Deferred[int] = Deferred()
    b: Deferred[int] = Deferred()
    seen: list[str] = []
    a.chain_deferred(b)
    a.add_callback(lambda r: seen.append(f"a saw {r}"))
    b.add_callback(lambda r: a.pause())
    a.callback(1)
    assert seen == []
    a.unpause()
    assert seen == ["a saw None"]


def test_pause_inside_a_callback_run_on_a_fired_deferred() -> None:
    d = succeed(1)
    seen: list[int] = []

    def pausing(x: int) -> int:
        d.pause()
        return x + 1

    d.add_callback(pausing)
    d.add_callback(seen.append)
    assert seen == []
    d.unpause()
    assert seen == [2]


def test_a_refused_deferred_result_leaves_the_deferred_usable() -> None:
    d: Deferred[int] = Deferred()
    out = collect(d)
    with pytest.raises(TypeError):
        d.callback(Deferred())  # type: ignore[arg-type]
    assert not d.called
    d.callback(3)
    assert out == [3]
