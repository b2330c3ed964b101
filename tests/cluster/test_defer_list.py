"""gather, DeferredList and race."""

from __future__ import annotations

from typing import Any

import pytest

from plait.cluster.defer import (
    CancelledError,
    Deferred,
    DeferredList,
    FirstError,
    fail,
    gather,
    race,
    succeed,
)
from plait.cluster.failure import Failure


def collect(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.add_both(out.append)
    return out


# ----------------------------------------------------------------------- gather


def test_gather_fires_with_results_in_input_order() -> None:
    a: Deferred[int] = Deferred()
    b: Deferred[int] = Deferred()
    out = collect(gather([a, succeed(2), b]))
    b.callback(3)
    assert out == []
    a.callback(1)
    assert out == [[1, 2, 3]]


def test_gather_of_fired_deferreds_fires_at_once_and_leaves_their_results() -> None:
    ds = [succeed(i) for i in range(5)]
    assert collect(gather(ds)) == [[0, 1, 2, 3, 4]]
    assert collect(ds[3]) == [3]


def test_gather_of_nothing_is_an_empty_list() -> None:
    assert collect(gather([])) == [[]]


def test_gather_errbacks_with_the_first_failure_itself() -> None:
    a: Deferred[int] = Deferred()
    b: Deferred[int] = Deferred()
    out = collect(gather([a, b]))
    b.errback(KeyError("b"))
    assert isinstance(out[0], Failure) and out[0].check(KeyError)
    a.errback(ValueError("later, consumed"))
    assert len(out) == 1


def test_gather_consumes_input_failures_by_default() -> None:
    d = fail(ValueError())
    collect(gather([d]))
    assert collect(d) == [None]


def test_gather_without_consume_errors_leaves_the_failure_in_the_input() -> None:
    d: Deferred[int] = Deferred()
    collect(gather([d], consume_errors=False))
    d.errback(ValueError("kept"))
    out = collect(d)
    assert out[0].check(ValueError)


def test_cancelling_gather_cancels_pending_inputs() -> None:
    cancelled: list[object] = []
    pending: Deferred[int] = Deferred(canceller=cancelled.append)
    g = gather([succeed(1), pending])
    out = collect(g)
    g.cancel()
    assert cancelled == [pending]
    assert out[0].check(CancelledError)


# ----------------------------------------------------------------- DeferredList


def test_deferred_list_reports_success_and_failure_per_input() -> None:
    a: Deferred[int] = Deferred()
    dl = DeferredList([a, fail(KeyError("x"))], consume_errors=True)
    out = collect(dl)
    a.callback(1)
    [[first, second]] = out
    assert first == (True, 1)
    assert second[0] is False and second[1].check(KeyError)


def test_deferred_list_of_nothing_fires_with_an_empty_list() -> None:
    assert collect(DeferredList([])) == [[]]


def test_deferred_list_fire_on_one_callback_gives_result_and_index() -> None:
    a: Deferred[int] = Deferred()
    b: Deferred[int] = Deferred()
    out = collect(DeferredList([a, b], fire_on_one_callback=True))
    b.callback(9)
    assert out == [(9, 1)]
    a.callback(1)
    assert out == [(9, 1)]


def test_deferred_list_fire_on_one_errback_gives_first_error() -> None:
    a: Deferred[int] = Deferred()
    out = collect(DeferredList([a, succeed(1)], fire_on_one_errback=True, consume_errors=True))
    a.errback(OSError("a"))
    error = out[0].value
    assert isinstance(error, FirstError)
    assert error.index == 0 and error.failure.check(OSError)
    assert "#0" in str(error)


def test_deferred_list_leaves_failures_unhandled_unless_asked() -> None:
    d = fail(KeyError())
    collect(DeferredList([d]))
    assert collect(d)[0].check(KeyError)


def test_cancelling_a_deferred_list_cancels_pending_inputs() -> None:
    cancelled: list[object] = []
    pending: Deferred[int] = Deferred(canceller=cancelled.append)
    dl = DeferredList([pending], consume_errors=True)
    out = collect(dl)
    dl.cancel()
    assert cancelled == [pending]
    assert out[0][0][0] is False


# ------------------------------------------------------------------------- race


def test_race_fires_with_index_and_result_of_the_first_success() -> None:
    cancelled: list[object] = []
    a: Deferred[int] = Deferred(canceller=cancelled.append)
    b: Deferred[int] = Deferred()
    out = collect(race([a, b]))
    b.callback(5)
    assert out == [(1, 5)]
    assert cancelled == [a]


def test_race_ignores_failures_while_one_may_still_succeed() -> None:
    a: Deferred[int] = Deferred()
    b: Deferred[int] = Deferred()
    out = collect(race([a, b]))
    a.errback(ValueError("a"))
    assert out == []
    b.callback(2)
    assert out == [(1, 2)]


def test_race_errbacks_with_an_exception_group_when_all_fail() -> None:
    out = collect(race([fail(ValueError("a")), fail(KeyError("b"))]))
    group = out[0].value
    assert isinstance(group, ExceptionGroup)
    assert [type(e) for e in group.exceptions] == [ValueError, KeyError]


def test_race_of_nothing_errbacks_with_value_error() -> None:
    assert collect(race([]))[0].check(ValueError)


def test_cancelling_race_cancels_every_input() -> None:
    cancelled: list[object] = []
    ds: list[Deferred[int]] = [Deferred(canceller=cancelled.append) for _ in range(3)]
    r = race(ds)
    out = collect(r)
    r.cancel()
    assert cancelled == ds
    assert out[0].check(CancelledError)


@pytest.mark.parametrize("n", [1, 1000])
def test_gather_of_many_unfired_deferreds(n: int) -> None:
    ds: list[Deferred[int]] = [Deferred() for _ in range(n)]
    out = collect(gather(ds))
    for i, d in enumerate(reversed(ds)):
        d.callback(n - 1 - i)
    assert out == [list(range(n))]
