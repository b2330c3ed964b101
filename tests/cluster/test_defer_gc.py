"""Unhandled failures, debug mode, and chains too long for recursion."""

from __future__ import annotations

import gc
import itertools
import logging
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import pytest

from plait.cluster import _defer
from plait.cluster._defer import _unhandled_error_observers
from plait.cluster.defer import (
    AlreadyCalledError,
    Deferred,
    fail,
    get_debugging,
    set_debugging,
    succeed,
)
from plait.cluster.failure import Failure


def collect(d: Deferred[Any]) -> list[Any]:
    out: list[Any] = []
    d.add_both(out.append)
    return out


@pytest.fixture
def observed() -> Iterator[list[Failure]]:
    """Route unhandled-error reports here instead of the pytest plugin's observer."""
    saved = list(_unhandled_error_observers)
    seen: list[Failure] = []
    _unhandled_error_observers[:] = [seen.append]
    try:
        yield seen
    finally:
        _unhandled_error_observers[:] = saved


@pytest.fixture
def debugging() -> Iterator[None]:
    before = get_debugging()
    set_debugging(True)
    try:
        yield
    finally:
        set_debugging(before)


def _next(_: object, nxt: Deferred[Any]) -> Deferred[Any]:
    return nxt


def _lose_a_failure() -> None:
    d: Deferred[int] = Deferred()

    def broken(_: int) -> int:
        raise ValueError("nobody handled me")

    d.add_callback(broken)
    d.callback(1)


def test_unhandled_failure_is_logged_when_the_deferred_is_collected(
    observed: list[Failure], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="plait.defer"):
        _lose_a_failure()
        gc.collect()
    records = [r for r in caplog.records if r.name == "plait.defer"]
    assert len(records) == 1
    record = records[0]
    assert record.levelno == logging.ERROR
    assert record.getMessage().startswith("Unhandled error in Deferred")
    assert len(observed) == 1
    assert record.plait_failure is observed[0]  # type: ignore[attr-defined]
    assert observed[0].check(ValueError)
    assert "nobody handled me" in record.getMessage()
    assert "in broken" in record.getMessage()  # the traceback is in the message


def test_handled_failure_is_not_logged(
    observed: list[Failure], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="plait.defer"):
        d = fail(ValueError("handled"))
        d.add_errback(lambda f: None)
        del d
        gc.collect()
    assert observed == []
    assert not [r for r in caplog.records if r.name == "plait.defer"]


def test_failure_passed_to_a_waiting_deferred_is_reported_once(
    observed: list[Failure],
) -> None:
    def chain_and_fail() -> None:
        inner: Deferred[int] = Deferred()
        outer: Deferred[int] = Deferred()
        outer.add_callback(_next, inner)
        outer.callback(0)
        inner.errback(KeyError("moved"))

    chain_and_fail()
    gc.collect()
    assert len(observed) == 1 and observed[0].check(KeyError)


def test_observer_that_raises_is_logged_and_others_still_run(
    observed: list[Failure], caplog: pytest.LogCaptureFixture
) -> None:
    def broken_observer(failure: Failure) -> None:
        raise RuntimeError("observer broke")

    _unhandled_error_observers.insert(0, broken_observer)
    with caplog.at_level(logging.ERROR, logger="plait.defer"):
        fail(ValueError("x"))
        gc.collect()
    assert len(observed) == 1
    assert any("observer" in r.getMessage() and r.exc_info for r in caplog.records)


# ------------------------------------------------------------------- debug mode


def _fire_for_the_first_time(d: Deferred[int]) -> None:
    d.callback(1)


def test_debug_mode_names_where_an_already_called_deferred_was_first_fired(
    debugging: None,
) -> None:
    d: Deferred[int] = Deferred()
    _fire_for_the_first_time(d)
    with pytest.raises(AlreadyCalledError, match="_fire_for_the_first_time"):
        d.callback(2)


def test_already_called_without_debug_mode_says_how_to_find_out_more(
    debugging: None,
) -> None:
    set_debugging(False)  # the fixture restores the mode afterwards
    d = succeed(1)
    with pytest.raises(AlreadyCalledError, match="PLAIT_DEFER_DEBUG"):
        d.callback(2)


def _make_a_failing_deferred() -> None:
    fail(OSError("made here"))


def _create_one() -> Deferred[int]:
    return Deferred()


def _fail_it(d: Deferred[int]) -> None:
    d.errback(OSError("fired here"))


def test_debug_mode_logs_the_creation_stack_of_an_unhandled_failure(
    debugging: None, observed: list[Failure], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="plait.defer"):
        _make_a_failing_deferred()
        gc.collect()
    [record] = [r for r in caplog.records if r.name == "plait.defer"]
    assert "Deferred created at" in record.getMessage()
    assert "_make_a_failing_deferred" in record.getMessage()


def test_debug_mode_logs_the_creation_and_firing_stacks_apart(
    debugging: None, observed: list[Failure], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR, logger="plait.defer"):
        _fail_it(_create_one())
        gc.collect()
    [record] = [r for r in caplog.records if r.name == "plait.defer"]
    message = record.getMessage()
    created, _, fired = message.partition("Deferred first fired at")
    assert "Deferred created at" in created and "in _create_one" in created
    assert "in _fail_it" not in created
    assert "in _fail_it" in fired and "in _create_one" not in fired
    assert "OSError: fired here" in message


def test_without_debug_mode_no_stack_is_recorded(
    debugging: None, observed: list[Failure], caplog: pytest.LogCaptureFixture
) -> None:
    set_debugging(False)
    with caplog.at_level(logging.ERROR, logger="plait.defer"):
        _fail_it(_create_one())
        gc.collect()
    [record] = [r for r in caplog.records if r.name == "plait.defer"]
    assert "Deferred created at" not in record.getMessage()
    assert "PLAIT_DEFER_DEBUG=1" in record.getMessage()


def test_set_debugging_is_read_back_by_get_debugging(debugging: None) -> None:
    assert get_debugging() is True
    set_debugging(False)
    assert get_debugging() is False


def test_environment_variable_turns_debug_mode_on_at_import() -> None:
    code = "from plait.cluster.defer import get_debugging; print(get_debugging())"
    env = dict(os.environ, PLAIT_DEFER_DEBUG="1")
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "True", done.stderr


# ------------------------------------------------------------------- long chains


@pytest.fixture
def default_recursion_limit() -> Iterator[None]:
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(1000)
    try:
        yield
    finally:
        sys.setrecursionlimit(before)


N = 100_000


def test_chain_of_100000_nested_waiting_deferreds_does_not_recurse(
    default_recursion_limit: None,
) -> None:
    ds: list[Deferred[Any]] = [Deferred() for _ in range(N)]
    for d, nxt in itertools.pairwise(ds):
        d.add_callback(_next, nxt)
    out = collect(ds[0])
    for d in ds[:-1]:
        d.callback(None)  # each now waits on the next one
    assert out == []
    ds[-1].callback("end")
    assert out == ["end"]


def test_chain_of_100000_already_fired_returned_deferreds_does_not_recurse(
    default_recursion_limit: None,
) -> None:
    d: Deferred[int] = Deferred()
    for _ in range(N):
        d.add_callback(lambda x: succeed(x + 1))
    out = collect(d)
    d.callback(0)
    assert out == [N]


def test_chain_deferred_100000_deep_does_not_recurse(default_recursion_limit: None) -> None:
    ds: list[Deferred[Any]] = [Deferred() for _ in range(N)]
    for d, nxt in itertools.pairwise(ds):
        d.chain_deferred(nxt)
    out = collect(ds[-1])
    ds[0].callback("through")
    assert out == ["through"]


def _count_runner_steps(run: Callable[[], None]) -> int:
    """Lines executed inside plait's ``_defer*`` modules while ``run()`` runs."""
    steps = 0
    defer_dir = os.path.dirname(_defer.__file__)

    def local(frame: FrameType, event: str, arg: object) -> Any:
        nonlocal steps
        if event == "line":
            steps += 1
        return local

    def tracer(frame: FrameType, event: str, arg: object) -> Any:
        filename = frame.f_code.co_filename
        in_defer = os.path.dirname(filename) == defer_dir and "_defer" in filename
        return local if in_defer else None

    sys.settrace(tracer)
    try:
        run()
    finally:
        sys.settrace(None)
    return steps


def _nested_chain(n: int) -> Callable[[], None]:
    ds: list[Deferred[Any]] = [Deferred() for _ in range(n)]
    for d, nxt in itertools.pairwise(ds):
        d.add_callback(_next, nxt)
    collect(ds[0])
    for d in ds[:-1]:
        d.callback(None)
    return lambda: ds[-1].callback("end")


def _chained(n: int) -> Callable[[], None]:
    ds: list[Deferred[Any]] = [Deferred() for _ in range(n)]
    for d, nxt in itertools.pairwise(ds):
        d.chain_deferred(nxt)
    collect(ds[-1])
    return lambda: ds[0].callback(1)


def _many_callbacks(n: int) -> Callable[[], None]:
    d: Deferred[int] = Deferred()
    for _ in range(n):
        d.add_callback(lambda x: succeed(x))
    collect(d)
    return lambda: d.callback(0)


@pytest.mark.parametrize("build", [_nested_chain, _chained, _many_callbacks])
def test_work_to_fire_a_chain_grows_linearly_with_its_length(
    build: Callable[[int], Callable[[], None]],
) -> None:
    """Counts executed lines, not time: doubling the chain doubles the work."""
    small, medium, large = (_count_runner_steps(build(n)) for n in (1000, 2000, 4000))
    first_step, second_step = medium - small, large - medium
    assert first_step > 0
    assert second_step <= 2 * first_step * 1.05  # quadratic work would give 4x
