"""Combinators over many Deferreds: ``gather``, ``DeferredList`` and ``race``.

Theory of operation: each combinator returns one Deferred and attaches one
callback/errback entry per input. An input that has already settled with a
success is read directly instead (its result passes through it unchanged, so
skipping the callback is invisible), which makes gathering fired Deferreds a
plain loop. Cancelling the combined Deferred cancels every input still pending.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeVar

from plait.cluster._defer import Deferred
from plait.cluster._failure import Failure

__all__ = ["DeferredList", "FirstError", "gather", "race"]

T = TypeVar("T")


class FirstError(Exception):
    """A ``DeferredList(fire_on_one_errback=True)`` input failed.

    Attributes:
        failure: That input's Failure.
        index: Its position in the list.

    .. versionadded:: 0.1
    """

    def __init__(self, failure: Failure, index: int) -> None:
        super().__init__(failure, index)
        self.failure = failure
        self.index = index

    def __str__(self) -> str:
        return f"Deferred #{self.index} failed: {self.failure.get_error_message()}"


def _settled_success(d: Deferred[Any]) -> bool:
    return (
        d.called
        and not d._paused
        and not d._running
        and not isinstance(d._result, (Failure, Deferred))
    )


def _cancel_all(ds: list[Deferred[Any]]) -> None:
    for d in ds:
        if not d.called:
            d.cancel()


class _Gather:
    __slots__ = ("consume", "out", "remaining", "results")

    def __init__(self, out: Deferred[list[Any]], results: list[Any], consume: bool) -> None:
        self.out = out
        self.results = results
        self.consume = consume
        self.remaining = 0

    def ok(self, result: Any, index: int) -> Any:
        self.results[index] = result
        self.remaining -= 1
        if not self.remaining and not self.out.called:
            self.out.callback(self.results)
        return result

    def err(self, failure: Failure, index: int) -> Failure | None:
        if not self.out.called:
            self.out.errback(failure)
        return None if self.consume else failure


def gather(ds: Iterable[Deferred[T]], consume_errors: bool = True) -> Deferred[list[T]]:
    """A Deferred of the list of results of ``ds``, in their order.

    Errbacks with the first input failure (its own exception, not a wrapper)
    as soon as it happens; Twisted's ``gatherResults`` wraps it in ``FirstError``.
    Cancelling it cancels every input still pending.

    Args:
        ds: The Deferreds.
        consume_errors: Whether input failures are handled here (their Deferreds'
            results become ``None``) rather than left in the inputs.

    .. versionadded:: 0.1
    """
    pending = list(ds)
    results: list[Any] = [None] * len(pending)
    out: Deferred[list[T]] = Deferred(canceller=lambda _d: _cancel_all(pending))
    state = _Gather(out, results, consume_errors)
    waiting: list[int] = []
    for index, d in enumerate(pending):
        if _settled_success(d):
            results[index] = d._result
        else:
            waiting.append(index)
    if not waiting:
        out.callback(results)
        return out
    state.remaining = len(waiting)
    for index in waiting:
        pending[index].add_callbacks(state.ok, state.err, (index,), None, (index,), None)
    return out


class DeferredList(Deferred[Any]):
    """A Deferred that fires when all (or, optionally, one) of ``ds`` have fired.

    By default it fires with a list of ``(success, result_or_failure)`` pairs in
    the order of ``ds``.

    Args:
        ds: The Deferreds.
        fire_on_one_callback: Fire with ``(result, index)`` of the first success.
        fire_on_one_errback: Errback with ``FirstError`` on the first failure.
        consume_errors: Handle input failures here (their results become
            ``None``) rather than leave them unhandled in the inputs.

    .. versionadded:: 0.1
    """

    __slots__ = ("_consume", "_count", "_on_one_callback", "_on_one_errback", "results")

    def __init__(
        self,
        ds: Iterable[Deferred[Any]],
        fire_on_one_callback: bool = False,
        fire_on_one_errback: bool = False,
        consume_errors: bool = False,
    ) -> None:
        pending = list(ds)
        super().__init__(canceller=lambda _d: _cancel_all(pending))
        self.results: list[tuple[bool, Any] | None] = [None] * len(pending)
        self._count = 0
        self._on_one_callback = fire_on_one_callback
        self._on_one_errback = fire_on_one_errback
        self._consume = consume_errors
        if not pending:
            self.callback([])
            return
        for index, d in enumerate(pending):
            d.add_callbacks(
                self._input_fired, self._input_fired, (index, True), None, (index, False), None
            )

    def _input_fired(self, result: Any, index: int, succeeded: bool) -> Any:
        self.results[index] = (succeeded, result)
        self._count += 1
        if not self.called:
            if succeeded and self._on_one_callback:
                self.callback((result, index))
            elif not succeeded and self._on_one_errback:
                self.errback(Failure(FirstError(result, index)))
            elif self._count == len(self.results):
                self.callback(self.results)
        if not succeeded and self._consume:
            return None
        return result


def race(ds: Iterable[Deferred[T]]) -> Deferred[tuple[int, T]]:
    """A Deferred of ``(index, result)`` for the first of ``ds`` to succeed.

    The others are cancelled as soon as one succeeds (their failures are
    consumed). If every input fails, it errbacks with an ``ExceptionGroup`` (a
    ``BaseExceptionGroup`` if one of them is not an ``Exception``) of their
    exceptions, in input order. An empty ``ds`` errbacks with ``ValueError``.
    Cancelling it cancels every input and errbacks with ``CancelledError``.

    .. versionadded:: 0.1
    """
    pending = list(ds)
    cancelling = False

    def cancel(_d: Deferred[tuple[int, T]]) -> None:
        nonlocal cancelling
        cancelling = True  # ``out`` errbacks with CancelledError, not the group
        _cancel_all(pending)

    out: Deferred[tuple[int, T]] = Deferred(canceller=cancel)
    if not pending:
        out.errback(ValueError("race() of no Deferreds"))
        return out
    failures: list[Failure | None] = [None] * len(pending)
    failed = 0

    def won(result: T, index: int) -> T:
        if not out.called:
            out.callback((index, result))
            for other_index, other in enumerate(pending):
                if other_index != index and not other.called:
                    other.cancel()
        return result

    def lost(failure: Failure, index: int) -> None:
        nonlocal failed
        failures[index] = failure
        failed += 1
        if failed == len(pending) and not out.called and not cancelling:
            errors = [f.value for f in failures if f is not None]
            out.errback(BaseExceptionGroup("every Deferred of race() failed", errors))

    for index, d in enumerate(pending):
        d.add_callbacks(won, lost, (index,), None, (index,), None)
    return out
