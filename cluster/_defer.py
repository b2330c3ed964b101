"""Deferred: a result that is not there yet, with a chain of callbacks.

Theory of operation
-------------------
A Deferred keeps a list of callback entries and a result. How entries are stored
and run (and why long chains neither recurse nor slow down) is told in
``_defer_run``, which holds the runner. The rules here, Twisted's except where noted:

- Callbacks added after firing run at once (``run_now``: without the list).
- A callback that returns a Deferred pauses this one until that one fires; its
  result then continues down this chain. If it has already fired, its result is
  taken at once.
- ``cancel()`` on a Deferred that has not fired calls its canceller and then, if
  it still has not fired, errbacks it with ``CancelledError``; afterwards any
  ``callback()``/``errback()`` from the cancelled operation is ignored. A
  canceller that raises is logged and the Deferred still errbacks (Twisted hangs
  there, its issue #9534). A Deferred waiting on another one cancels that one.
- A chain that ends on a ``Failure`` arms a ``_DebugInfo`` whose finaliser logs
  the failure when the Deferred is garbage collected unhandled, on the
  ``plait.defer`` logger, and tells ``_unhandled_error_observers``. Only failing
  Deferreds (or every one, in debug mode) carry that object, so the common case
  pays nothing for it.

The exceptions and the unhandled-error report live in ``_defer_errors``; the
asyncio bridges, coroutines and ``inline_callbacks`` in ``_defer_async``; the
combinators in ``_defer_list``; the locks and queues in ``_defer_sync``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import traceback
from collections.abc import Callable, Coroutine, Generator, Iterator
from typing import (
    TYPE_CHECKING,
    Any,
    Concatenate,
    Generic,
    NoReturn,
    ParamSpec,
    TypeVar,
    cast,
    overload,
)

from plait.cluster._defer_errors import (
    AlreadyCalledError,
    CancelledError,
    DeferredLoopError,
    TimeoutError,
    _DebugInfo,
)
from plait.cluster._defer_errors import (
    _unhandled_error_observers as _unhandled_error_observers,  # the pytest plugin's hook
)
from plait.cluster._defer_run import (
    _CHAINED,
    _DEFERRED_TYPES,
    _PASS,
    _SKIP,
    _Entry,
    _passthru,
)
from plait.cluster._defer_run import fire as _fire
from plait.cluster._defer_run import run_callbacks as _run
from plait.cluster._defer_run import run_now as _run_now
from plait.cluster._failure import _SPECIAL_TYPES, Failure

if TYPE_CHECKING:
    from plait.cluster.interfaces import IReactorTime

__all__ = [
    "AlreadyCalledError",
    "CancelledError",
    "Deferred",
    "DeferredLoopError",
    "TimeoutError",
    "fail",
    "get_debugging",
    "maybe_deferred",
    "set_debugging",
    "succeed",
]

T = TypeVar("T")
S = TypeVar("S")
P = ParamSpec("P")

_debugging = os.environ.get("PLAIT_DEFER_DEBUG", "") not in ("", "0")


def set_debugging(on: bool) -> None:
    """Turn debug mode on or off for Deferreds created from now on.

    In debug mode every Deferred records the stack where it was created and the
    stack where it was first fired; ``AlreadyCalledError`` and the log of an
    unhandled error include them. The environment variable ``PLAIT_DEFER_DEBUG=1``
    turns it on at import time.

    .. versionadded:: 0.1
    """
    global _debugging
    _debugging = bool(on)


def get_debugging() -> bool:
    """Whether Deferreds created now record their creation and firing stacks.

    .. versionadded:: 0.1
    """
    return _debugging


_AsyncioCancelledError = asyncio.CancelledError
_get_running_loop = asyncio._get_running_loop
logger = logging.getLogger("plait.defer")


def _not_callable(what: str, obj: object) -> TypeError:
    return TypeError(f"{what} must be callable, got {obj!r}")


class Deferred(Generic[T]):
    """A result, or a failure, that will arrive later, with a chain of callbacks.

    Example:
        >>> d = Deferred()
        >>> _ = d.add_callback(lambda x: x * 2).add_callback(print)
        >>> d.callback(21)
        42

    Args:
        canceller: Called with the Deferred by ``cancel()`` while it has not fired;
            it should stop the operation and may fire the Deferred itself.

    .. versionadded:: 0.1
    """

    __slots__ = (
        "_callbacks",
        "_canceller",
        "_info",
        "_paused",
        "_iter",
        "_result",
        "_running",
        "_suppress",
        "called",
        "__weakref__",
    )

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _DEFERRED_TYPES.add(cls)
        _SPECIAL_TYPES.add(cls)

    def __init__(self, canceller: Callable[[Deferred[Any]], None] | None = None) -> None:
        self._callbacks: list[_Entry] = []
        self._iter: Iterator[Any] | None = None
        self._result: Any = None
        self.called = self._running = self._suppress = False
        self._paused = 0
        self._canceller = canceller
        self._info: _DebugInfo | None = (
            _DebugInfo(traceback.format_stack()[:-1]) if _debugging else None
        )

    # ------------------------------------------------------------------ adding

    def add_callbacks(
        self,
        callback: Callable[..., Any],
        errback: Callable[..., Any] | None = None,
        callback_args: tuple[Any, ...] = (),
        callback_kwargs: dict[str, Any] | None = None,
        errback_args: tuple[Any, ...] = (),
        errback_kwargs: dict[str, Any] | None = None,
    ) -> Deferred[Any]:
        """Add a callback and an errback as one entry of the chain.

        Exactly one of the two runs, depending on the result when the entry is
        reached. ``errback=None`` passes failures through unchanged.

        Returns:
            This Deferred, so that calls can be chained.

        Raises:
            TypeError: ``callback`` or ``errback`` is not callable.
        """
        if not callable(callback):
            raise _not_callable("callback", callback)
        if errback is None:
            errback, eb_args, eb_how = _passthru, (), _SKIP
        elif not callable(errback):
            raise _not_callable("errback", errback)
        elif errback_args or errback_kwargs:
            eb_args, eb_how = tuple(errback_args), dict(errback_kwargs or ())
        else:
            eb_args, eb_how = (), None
        if callback_args or callback_kwargs:
            cb_args, cb_how = tuple(callback_args), dict(callback_kwargs or ())
        else:
            cb_args, cb_how = (), None
        self._callbacks.append((callback, cb_args, cb_how, (errback, eb_args, eb_how)))
        if self.called:
            _run(self)
        return self

    @overload
    def add_callback(
        self,
        callback: Callable[Concatenate[T, P], Deferred[S]],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Deferred[S]: ...

    @overload
    def add_callback(
        self,
        callback: Callable[Concatenate[T, P], S],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> Deferred[S]: ...

    def add_callback(
        self,
        callback: Callable[..., Any],
        *args: Any,
        **kwargs: Any,
    ) -> Deferred[Any]:
        """Add ``callback(result, *args, **kwargs)`` to the chain; failures skip it.

        Returns:
            This Deferred (typed with the callback's result), for chaining.

        Raises:
            TypeError: ``callback`` is not callable.
        """
        if not callable(callback):
            raise _not_callable("callback", callback)
        if self.called and not self._paused and not self._running:
            # Fired and idle: run it now, without the list and the runner.
            if type(self._result) not in _SPECIAL_TYPES:
                _run_now(self, callback, args, kwargs if args or kwargs else None)
            return self  # (a failure passes a callback by)
        self._callbacks.append((callback, args, kwargs if args or kwargs else None, _PASS))
        return self

    def add_errback(
        self, errback: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Deferred[T]:
        """Add ``errback(failure, *args, **kwargs)`` to the chain; successes skip it.

        An errback handles the failure by returning a value, and passes it on by
        raising (``failure.trap(...)`` does that for unexpected types) or returning
        a Failure.

        Raises:
            TypeError: ``errback`` is not callable.
        """
        if not callable(errback):
            raise _not_callable("errback", errback)
        if self.called and not self._paused and not self._running:
            if type(self._result) in _SPECIAL_TYPES:
                _run_now(self, errback, args, kwargs if args or kwargs else None)
            return self
        self._callbacks.append(
            (_passthru, (), _SKIP, (errback, args, kwargs if args or kwargs else None))
        )
        return self

    def add_both(
        self, callback: Callable[..., Any], *args: Any, **kwargs: Any
    ) -> Deferred[Any]:
        """Add ``callback(result_or_failure, *args, **kwargs)`` for both outcomes.

        Raises:
            TypeError: ``callback`` is not callable.
        """
        if not callable(callback):
            raise _not_callable("callback", callback)
        how = kwargs if args or kwargs else None
        if self.called and not self._paused and not self._running:
            _run_now(self, callback, args, how)
            return self
        self._callbacks.append((callback, args, how, (callback, args, how)))
        return self

    def chain_deferred(self, d: Deferred[Any]) -> Deferred[None]:
        """Fire ``d`` with this Deferred's result when it arrives.

        This Deferred's result becomes ``None`` afterwards (the result moved on to
        ``d``). Long chains of ``chain_deferred`` do not recurse.

        Returns:
            This Deferred.

        Raises:
            TypeError: ``d`` is not a Deferred.
        """
        if not isinstance(d, Deferred):
            raise TypeError(f"chain_deferred() takes a Deferred, not {type(d).__name__}")
        self._callbacks.append((_passthru, d, _CHAINED, (_passthru, d, _CHAINED)))
        if self.called:
            _run(self)
        return cast("Deferred[None]", self)

    # ------------------------------------------------------------------ firing

    if TYPE_CHECKING:

        def callback(self, result: T) -> None:
            """Fire the Deferred with a result (see ``_defer_run.fire``)."""

    else:
        # The runner's own entry point, so that firing costs no extra call.
        callback = _fire

    def _refuse_deferred_result(self) -> NoReturn:
        """Undo ``callback(a_deferred)``: checked off the hot path, then raised."""
        self.called = self._running = False
        self._result = self._iter = None
        raise TypeError("callback() takes a result, not a Deferred; use chain_deferred()")

    def errback(self, failure: Failure | BaseException | None = None) -> None:
        """Fire the Deferred with a failure: run the errback chain.

        Args:
            failure: A Failure or an exception instance; ``None`` means the exception
                being handled now (call it from an ``except`` block).

        Raises:
            AlreadyCalledError: it has fired already (ignored if it was cancelled).
            TypeError: ``failure`` is neither a Failure nor an exception.
            NoCurrentExceptionError: ``failure`` is ``None`` outside an ``except``.
        """
        if failure is None:
            failure = Failure()
        elif not isinstance(failure, Failure):
            if not isinstance(failure, BaseException):
                raise TypeError(
                    f"errback() takes a Failure or an exception, not {type(failure).__name__}"
                )
            failure = Failure(failure)
        _fire(self, failure)

    def _already_called(self) -> AlreadyCalledError:
        info = self._info
        message = f"{self!r} has already been fired"
        if info is not None and info.invoker:
            message += "; it was first fired at:\n" + "".join(info.invoker)
        else:
            message += " (set PLAIT_DEFER_DEBUG=1 to see where it was first fired)"
        return AlreadyCalledError(message)

    def _arm(self, failure: Failure) -> None:
        info = self._info
        if info is None:
            info = self._info = _DebugInfo(None)
        info.failure = failure

    def _take_result(self) -> Any:
        """Consume the settled result (a failure counts as handled); return it."""
        result = self._result
        self._result = None
        info = self._info
        if info is not None:
            info.failure = None
        return result

    # ------------------------------------------------------------ pause / cancel

    def pause(self) -> None:
        """Stop running callbacks until ``unpause()`` (calls nest).

        Called from a callback of this Deferred, it stops the chain before the
        next callback.
        """
        self._paused += 1
        it = self._iter
        if self._running and it is not None:
            # The runner is going through the entries (see _defer_run): move the
            # ones not run yet to a new list, which ends its loop there.
            entries = self._callbacks
            start = len(entries) - it.__length_hint__()  # type: ignore[attr-defined]
            self._callbacks = entries[start:]
            del entries[start:]
            self._iter = None

    def unpause(self) -> None:
        """Undo one ``pause()``; the chain resumes when none are left."""
        if self._paused <= 0:
            raise RuntimeError(f"{self!r} is not paused")
        self._paused -= 1
        if not self._paused and self.called:
            _run(self)

    def cancel(self) -> None:
        """Cancel the operation this Deferred waits for.

        If it has not fired, its canceller runs; then, unless the canceller fired
        it, it errbacks with ``CancelledError`` and ignores later ``callback()``
        and ``errback()`` calls. If it waits on another Deferred that a callback
        returned, that one is cancelled. Otherwise nothing happens.
        """
        if not self.called:
            self._suppress = True
            canceller = self._canceller
            cause: BaseException | None = None
            if canceller is not None:
                try:
                    canceller(self)
                except Exception as e:
                    logger.exception("canceller %r of %r raised", canceller, self)
                    cause = e
            if not self.called:
                error = CancelledError(f"{self!r} was cancelled")
                error.__cause__ = cause
                self.errback(Failure(error))
        elif self._paused and type(self._result) in _DEFERRED_TYPES:
            self._result.cancel()

    def add_timeout(
        self,
        seconds: float,
        clock: IReactorTime,
        on_timeout_cancel: Callable[[Any, float], Any] | None = None,
    ) -> Deferred[T]:
        """Cancel this Deferred if it has not fired after ``seconds`` on ``clock``.

        A timeout errbacks with ``TimeoutError`` instead of ``CancelledError``.

        Args:
            seconds: The delay.
            clock: An ``IReactorTime`` (a reactor or ``task.Clock``).
            on_timeout_cancel: If given, called with ``(result, seconds)`` when the
                timeout cancelled the Deferred; what it returns replaces the result.

        Returns:
            This Deferred.
        """
        timed_out = False

        def time_out() -> None:
            nonlocal timed_out
            timed_out = True
            self.cancel()

        delayed = clock.call_later(seconds, time_out)

        def convert(result: Any) -> Any:
            if timed_out:
                if on_timeout_cancel is not None:
                    return on_timeout_cancel(result, seconds)
                if isinstance(result, Failure) and result.check(CancelledError):
                    raise TimeoutError(f"Deferred timed out after {seconds} seconds")
            return result

        def stop_timer(result: Any) -> Any:
            if delayed.active():
                delayed.cancel()
            return result

        self.add_both(convert)
        self.add_both(stop_timer)
        return self

    # ------------------------------------------------------------- awaiting

    def __await__(self) -> Generator[Any, Any, T]:
        """``await d`` gives the result or raises the failure's exception.

        A settled Deferred gives its result at once. Otherwise, with no asyncio
        loop running, this yields the Deferred to the driver (``ensure_deferred``);
        with one running, it awaits a future of that loop linked to the Deferred,
        so Deferreds can be awaited from plain asyncio Tasks too (and
        ``ensure_deferred`` still resumes as soon as the Deferred fires).
        Awaiting a failed Deferred consumes the failure (its result becomes None).
        """
        if self.called and not self._paused and not self._running:
            result = self._result
            if type(result) in _SPECIAL_TYPES:  # a Failure: the awaiter takes it
                self._take_result()
                raise result.value.with_traceback(result.tb)
            return cast(T, result)
        loop = _get_running_loop()
        if loop is None:
            return cast(T, (yield self))
        from plait.cluster._defer_async import await_future

        return (yield from await_future(self, loop))

    def as_future(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[T]:
        """An asyncio Future on ``loop`` that completes as this Deferred fires.

        Cancelling the Future cancels this Deferred, and a cancelled Deferred
        cancels the Future. The Future takes over a failure (this Deferred's result
        becomes None); a success stays in this Deferred too.
        """
        from plait.cluster._defer_async import deferred_as_future

        return deferred_as_future(self, loop)

    @classmethod
    def from_future(cls, future: asyncio.Future[S]) -> Deferred[S]:
        """A Deferred that fires as the asyncio ``future`` completes.

        Cancelling the Deferred cancels the Future, and a cancelled Future cancels
        the Deferred (it errbacks with ``CancelledError``).
        """
        from plait.cluster._defer_async import deferred_from_future

        return deferred_from_future(future)

    @classmethod
    def from_coroutine(cls, coro: Coroutine[Any, Any, S]) -> Deferred[S]:
        """Run ``coro`` (which may ``await`` Deferreds); a Deferred of its result.

        Cancelling the Deferred cancels what the coroutine is awaiting.

        Raises:
            TypeError: ``coro`` is not a coroutine.
        """
        from plait.cluster._defer_async import run_coroutine

        return run_coroutine(coro)

    # ------------------------------------------------------------------ misc

    def __repr__(self) -> str:
        name = type(self).__name__
        if self._paused and type(self._result) in _DEFERRED_TYPES:
            inner = self._result
            state = f" waiting on {type(inner).__name__} at 0x{id(inner):x}"
        elif self.called:
            state = f" current result: {self._result!r}"
        else:
            state = ""
        return f"<{name} at 0x{id(self):x}{state}>"


_DEFERRED_TYPES.add(Deferred)
_SPECIAL_TYPES.add(Deferred)


def succeed(result: S) -> Deferred[S]:
    """A Deferred that has already fired with ``result``.

    .. versionadded:: 0.1
    """
    d: Deferred[S] = Deferred()
    d.called = True
    d._result = result
    return d


def fail(failure: Failure | BaseException | None = None) -> Deferred[Any]:
    """A Deferred that has already failed with ``failure`` (default: the current one).

    Raises:
        TypeError: ``failure`` is neither a Failure nor an exception.

    .. versionadded:: 0.1
    """
    d: Deferred[Any] = Deferred()
    d.errback(failure)
    return d


@overload
def maybe_deferred(
    f: Callable[P, Deferred[S]], *args: P.args, **kwargs: P.kwargs
) -> Deferred[S]: ...


@overload
def maybe_deferred(
    f: Callable[P, Coroutine[Any, Any, S]], *args: P.args, **kwargs: P.kwargs
) -> Deferred[S]: ...


@overload
def maybe_deferred(f: Callable[P, S], *args: P.args, **kwargs: P.kwargs) -> Deferred[S]: ...


def maybe_deferred(f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
    """Call ``f(*args, **kwargs)`` and always get a Deferred back.

    A returned Deferred is passed through, a coroutine is run with
    ``ensure_deferred``, an exception becomes a failed Deferred and any other value
    a fired one.

    .. versionadded:: 0.1
    """
    try:
        result = f(*args, **kwargs)
    except Exception:
        return fail()
    if isinstance(result, Deferred):
        return result
    if isinstance(result, Failure):
        return fail(result)
    if isinstance(result, Coroutine):
        return Deferred.from_coroutine(result)
    return succeed(result)
