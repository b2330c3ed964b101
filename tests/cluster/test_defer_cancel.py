"""Cancelling Deferreds and timing them out."""

from __future__ import annotations

import asyncio
import builtins
import logging
from typing import Any

import pytest

from plait.cluster.defer import CancelledError, Deferred, TimeoutError, succeed
from plait.cluster.failure import Failure
from plait.cluster.task import Clock


def collect(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.add_both(out.append)
    return out


def test_cancel_without_canceller_errbacks_with_cancelled_error() -> None:
    d: Deferred[int] = Deferred()
    out = collect(d)
    d.cancel()
    assert isinstance(out[0], Failure) and out[0].check(CancelledError)


def test_cancelled_deferred_ignores_a_later_callback_and_errback() -> None:
    d: Deferred[int] = Deferred()
    out = collect(d)
    d.cancel()
    d.callback(1)
    d.errback(ValueError("late"))
    d.callback(2)
    assert len(out) == 1


def test_canceller_is_called_with_the_deferred() -> None:
    seen: list[Deferred[Any]] = []
    d: Deferred[int] = Deferred(canceller=seen.append)
    out = collect(d)
    d.cancel()
    assert seen == [d]
    assert out[0].check(CancelledError)


def test_canceller_that_fires_the_deferred_wins_over_cancelled_error() -> None:
    d: Deferred[str] = Deferred(canceller=lambda d: d.callback("stopped cleanly"))
    out = collect(d)
    d.cancel()
    assert out == ["stopped cleanly"]


def test_canceller_that_raises_still_errbacks_with_cancelled_error_and_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(d: Deferred[Any]) -> None:
        raise OSError("canceller broke")

    d: Deferred[int] = Deferred(canceller=broken)
    out = collect(d)
    with caplog.at_level(logging.ERROR, logger="plait.defer"):
        d.cancel()
    assert out[0].check(CancelledError)
    assert isinstance(out[0].value.__cause__, OSError)
    assert any("canceller" in r.getMessage() and r.exc_info for r in caplog.records)


def test_cancel_of_a_fired_deferred_does_nothing() -> None:
    d = succeed(1)
    d.cancel()
    assert collect(d) == [1]


def test_cancel_twice_is_harmless() -> None:
    calls: list[object] = []
    d: Deferred[int] = Deferred(canceller=calls.append)
    out = collect(d)
    d.cancel()
    d.cancel()
    assert len(calls) == 1 and len(out) == 1


def test_cancel_of_a_deferred_waiting_on_another_cancels_that_one() -> None:
    inner_cancelled: list[object] = []
    inner: Deferred[int] = Deferred(canceller=inner_cancelled.append)
    outer: Deferred[int] = Deferred()
    outer.add_callback(lambda _: inner)
    out = collect(outer)
    outer.callback(0)
    outer.cancel()
    assert inner_cancelled == [inner]
    assert out[0].check(CancelledError)


def test_cancelled_error_is_an_exception_and_an_asyncio_cancelled_error() -> None:
    assert issubclass(CancelledError, Exception)
    assert issubclass(CancelledError, asyncio.CancelledError)
    assert issubclass(TimeoutError, builtins.TimeoutError)


# ---------------------------------------------------------------- add_timeout


def test_add_timeout_errbacks_with_timeout_error_when_time_runs_out() -> None:
    clock = Clock()
    cancelled: list[object] = []
    d: Deferred[int] = Deferred(canceller=cancelled.append)
    out = collect(d.add_timeout(5, clock))
    clock.advance(4.9)
    assert out == []
    clock.advance(0.1)
    assert cancelled == [d]
    assert out[0].check(TimeoutError)
    assert not out[0].check(CancelledError)


def test_add_timeout_is_disarmed_when_the_result_arrives_first() -> None:
    clock = Clock()
    d: Deferred[int] = Deferred()
    out = collect(d.add_timeout(5, clock))
    d.callback(7)
    assert clock.get_delayed_calls() == []
    clock.advance(10)
    assert out == [7]


def test_add_timeout_leaves_a_plain_cancel_as_cancelled_error() -> None:
    clock = Clock()
    d: Deferred[int] = Deferred()
    out = collect(d.add_timeout(5, clock))
    d.cancel()
    assert out[0].check(CancelledError)
    assert clock.get_delayed_calls() == []


def test_add_timeout_on_timeout_cancel_replaces_the_result() -> None:
    clock = Clock()
    d: Deferred[str] = Deferred()
    d.add_timeout(1, clock, on_timeout_cancel=lambda result, seconds: f"gave up after {seconds}")
    out = collect(d)
    clock.advance(1)
    assert out == ["gave up after 1"]


def test_add_timeout_returns_the_same_deferred() -> None:
    d: Deferred[int] = Deferred()
    assert d.add_timeout(1, Clock()) is d
    d.callback(1)
