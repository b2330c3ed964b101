"""Failure: exceptions kept as values."""

from __future__ import annotations

import io
import traceback
from typing import Any

import pytest

from plait.cluster.defer import Deferred, fail
from plait.cluster.failure import Failure, NoCurrentExceptionError


def _raise_here() -> None:
    raise KeyError("where")


def caught() -> Failure:
    try:
        _raise_here()
    except KeyError:
        return Failure()
    raise AssertionError("not reached")


def test_failure_in_an_except_block_captures_the_current_exception() -> None:
    f = caught()
    assert isinstance(f.value, KeyError)
    assert f.type is KeyError
    assert f.tb is f.value.__traceback__


def test_failure_of_an_exception_instance_wraps_it() -> None:
    error = ValueError("v")
    f = Failure(error)
    assert f.value is error and f.type is ValueError and f.tb is None


def test_failure_with_no_exception_at_all_raises() -> None:
    with pytest.raises(NoCurrentExceptionError):
        Failure()


@pytest.mark.parametrize("bad", ["a string", ValueError, 42])
def test_failure_of_something_not_an_exception_instance_raises_type_error(bad: Any) -> None:
    with pytest.raises(TypeError):
        Failure(bad)


def test_check_returns_the_matching_type_or_none() -> None:
    f = Failure(KeyError("k"))
    assert f.check(ValueError, LookupError) is LookupError
    assert f.check(ValueError) is None


def test_check_accepts_fully_qualified_names() -> None:
    f = Failure(KeyError("k"))
    assert f.check("builtins.LookupError") == "builtins.LookupError"
    assert f.check("builtins.ValueError") is None


def test_trap_returns_the_match_and_reraises_otherwise() -> None:
    f = Failure(KeyError("k"))
    assert f.trap(KeyError) is KeyError
    with pytest.raises(KeyError):
        f.trap(ValueError)


def test_raise_exception_keeps_the_original_traceback() -> None:
    f = caught()
    with pytest.raises(KeyError) as info:
        f.raise_exception()
    names = [frame.name for frame in traceback.extract_tb(info.value.__traceback__)]
    assert "_raise_here" in names


def test_get_traceback_names_the_raising_function_and_the_error() -> None:
    text = caught().get_traceback()
    assert "in _raise_here" in text
    assert text.rstrip().endswith("KeyError: 'where'")


def test_print_traceback_writes_the_traceback() -> None:
    out = io.StringIO()
    caught().print_traceback(out)
    assert "_raise_here" in out.getvalue()


def test_get_error_message_falls_back_to_repr() -> None:
    assert Failure(ValueError("text")).get_error_message() == "text"
    assert Failure(ValueError()).get_error_message() == "ValueError()"


def test_repr_names_type_and_message() -> None:
    assert repr(Failure(OSError("disk"))) == "<Failure OSError: disk>"


def test_failure_subclass_still_takes_the_errback_path() -> None:
    class RemoteFailure(Failure):
        pass

    d: Deferred[int] = Deferred()
    seen: list[str] = []
    d.add_callbacks(lambda r: seen.append("callback"), lambda f: seen.append("errback"))
    d.callback(RemoteFailure(ValueError()))  # type: ignore[arg-type]
    assert seen == ["errback"]


def test_errback_takes_an_exception_and_wraps_it() -> None:
    d = fail(ValueError("plain"))
    out: list[Any] = []
    d.add_errback(out.append)
    assert isinstance(out[0], Failure) and out[0].check(ValueError)


@pytest.mark.parametrize(
    "module", ["plait.cluster._defer", "plait.cluster._failure", "plait.cluster._defer_sync"]
)
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0
    assert result.failed == 0
