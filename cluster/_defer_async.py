"""Coroutines, generators and asyncio futures, bridged to Deferreds.

Theory of operation: one driver, ``_drive``, runs both ``async def`` coroutines
(``ensure_deferred``) and ``inline_callbacks`` generators. It sends a value in (or
throws the failure's exception, with its traceback, so the frames of the
coroutine or generator stay in the traceback) and looks at what comes out:

- a Deferred that has settled: its result is taken at once and the loop goes on,
  so awaiting fired Deferreds neither recurses nor waits;
- a Deferred still pending: the driver adds one callback to it that re-enters
  the driver, remembers it as ``waiting`` (cancelling the outer Deferred cancels
  it), and returns;
- an asyncio future (a coroutine awaiting asyncio code under an asyncio loop):
  it is wrapped with ``deferred_from_future`` and waited for the same way;
- for generators only, any other value is sent straight back (Twisted's rule).

``Deferred.__await__`` returns at once when the Deferred has settled. Otherwise,
with no asyncio loop running in the thread, it yields the Deferred itself; with
one running, it awaits an ``_AwaitFuture`` (an asyncio Future that knows its
Deferred), which an asyncio Task waits on like any future and which this driver
unwraps to wait on the Deferred directly. Either way no per-thread "who drives
me" state is needed. Awaiting consumes a failure (the awaiter now owns it) and
leaves a success in the Deferred.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, ParamSpec, TypeVar, cast

from plait.cluster._defer import CancelledError, Deferred
from plait.cluster._defer_run import _DEFERRED_TYPES
from plait.cluster._failure import _SPECIAL_TYPES, Failure

__all__ = [
    "await_future",
    "deferred_as_future",
    "deferred_from_future",
    "ensure_deferred",
    "inline_callbacks",
    "run_coroutine",
]

S = TypeVar("S")
P = ParamSpec("P")

_Gen = Generator[Any, Any, Any] | Coroutine[Any, Any, Any]


class _DrivenDeferred(Deferred[Any]):
    """The Deferred of a driven coroutine or generator; knows what it waits for."""

    __slots__ = ("_waiting",)
    _waiting: Deferred[Any] | None

    def __repr__(self) -> str:
        return "<Deferred" + super().__repr__()[len("<_DrivenDeferred") :]


def _cancel_waiting(d: Deferred[Any]) -> None:
    waiting = cast(_DrivenDeferred, d)._waiting
    if waiting is not None:
        waiting.cancel()


class _AwaitFuture(asyncio.Future[Any]):
    """``as_future`` of a Deferred awaited inside an asyncio Task; knows the Deferred."""

    __slots__ = ("deferred",)
    deferred: Deferred[Any]


def _start(gen: _Gen, is_coroutine: bool) -> Deferred[Any]:
    out = _DrivenDeferred(_cancel_waiting)
    out._waiting = None
    _drive(gen, out, is_coroutine, None, None)
    return out


def _drive(
    gen: _Gen, out: _DrivenDeferred, is_coroutine: bool, value: Any, failure: Failure | None
) -> None:
    while True:
        try:
            if failure is None:
                yielded = gen.send(value)
            else:
                yielded = gen.throw(failure.value.with_traceback(failure.tb))
        except StopIteration as stop:
            result = stop.value
            if type(result) in _DEFERRED_TYPES:
                out._waiting = result
                result.chain_deferred(out)
            else:
                out.callback(result)
            return
        except (Exception, asyncio.CancelledError) as e:
            out.errback(Failure(e))
            return
        failure = None
        yielded_type = type(yielded)
        if yielded_type in _DEFERRED_TYPES:
            d: Deferred[Any] = yielded
        elif yielded_type is _AwaitFuture:
            # ``await d`` under a running asyncio loop: wait on ``d`` itself, so
            # the coroutine resumes as soon as ``d`` fires, not a loop turn later.
            yielded._asyncio_future_blocking = False
            d = yielded.deferred
        elif asyncio.isfuture(yielded):
            yielded._asyncio_future_blocking = False  # what asyncio.Task does on a yield
            d = deferred_from_future(yielded)
        elif not is_coroutine:
            if isinstance(yielded, Coroutine):
                d = run_coroutine(yielded)
            else:
                value = yielded  # inline_callbacks sends plain values straight back
                continue
        elif yielded is None and (loop := asyncio._get_running_loop()) is not None:
            # A bare yield (``asyncio.sleep(0)``): come back on the next loop turn.
            loop.call_soon(_drive, gen, out, is_coroutine, None, None)
            return
        else:
            failure = Failure(
                TypeError(f"a coroutine run as a Deferred awaited {yielded!r}; "
                          "await Deferreds, coroutines or asyncio futures")
            )
            continue
        if d.called and not d._paused and not d._running:
            result = d._result
            if type(result) in _SPECIAL_TYPES:  # a Failure: the awaiter takes it
                d._take_result()
                failure = result
                value = None
            else:
                value = result
            continue
        out._waiting = d
        d.add_both(_resume, gen, out, is_coroutine)
        return


def _resume(result: Any, gen: _Gen, out: _DrivenDeferred, is_coroutine: bool) -> Any:
    out._waiting = None
    if type(result) in _SPECIAL_TYPES:
        _drive(gen, out, is_coroutine, None, result)
        return None
    _drive(gen, out, is_coroutine, result, None)
    return result


def run_coroutine(coro: Coroutine[Any, Any, S]) -> Deferred[S]:
    """Drive ``coro`` to completion; a Deferred of what it returns or raises.

    Raises:
        TypeError: ``coro`` is not a coroutine.

    .. versionadded:: 0.1
    """
    if type(coro) is not types.CoroutineType and not isinstance(coro, Coroutine):
        raise TypeError(f"expected a coroutine, got {type(coro).__name__}")
    return _start(coro, True)


def ensure_deferred(
    coro_or_deferred: Deferred[S] | Coroutine[Any, Any, S] | Awaitable[S],
) -> Deferred[S]:
    """A Deferred for a coroutine, an asyncio future, any awaitable or a Deferred.

    A Deferred is returned as it is; a coroutine starts running at once, up to
    its first wait.

    Raises:
        TypeError: the argument is none of these.

    .. versionadded:: 0.1
    """
    if type(coro_or_deferred) in _DEFERRED_TYPES:
        return cast(Deferred[S], coro_or_deferred)
    if type(coro_or_deferred) is types.CoroutineType or isinstance(coro_or_deferred, Coroutine):
        return _start(coro_or_deferred, True)
    if asyncio.isfuture(coro_or_deferred):
        return deferred_from_future(coro_or_deferred)
    if inspect.isawaitable(coro_or_deferred):
        return _start(_await(coro_or_deferred), True)
    raise TypeError(
        "ensure_deferred() takes a coroutine, an awaitable or a Deferred, "
        f"not {type(coro_or_deferred).__name__}"
    )


async def _await(awaitable: Awaitable[S]) -> S:
    return await awaitable


def inline_callbacks(
    f: Callable[P, Generator[Any, Any, S]],
) -> Callable[P, Deferred[S]]:
    """Decorate a generator function so that it runs as a Deferred (Twisted style).

    Inside, ``result = yield d`` waits for the Deferred ``d`` (a failure is raised
    at the ``yield``) and ``return value`` fires the returned Deferred. Cancelling
    that Deferred cancels the one the generator is waiting for. A failure's
    traceback keeps the generator's own frames.

    Raises:
        TypeError: ``f`` is not a generator function (at decoration time).

    .. versionadded:: 0.1
    """
    if not inspect.isgeneratorfunction(f):
        raise TypeError(f"inline_callbacks needs a generator function, got {f!r}")

    @functools.wraps(f)
    def run(*args: P.args, **kwargs: P.kwargs) -> Deferred[S]:
        return _start(f(*args, **kwargs), False)

    return run


def deferred_as_future(d: Deferred[S], loop: asyncio.AbstractEventLoop) -> asyncio.Future[S]:
    """See ``Deferred.as_future``.

    .. versionadded:: 0.1
    """
    future: asyncio.Future[S] = loop.create_future()
    _link_future(d, future, cancel_future=True)
    return future


def await_future(d: Deferred[S], loop: asyncio.AbstractEventLoop) -> asyncio.Future[S]:
    """The future that ``await d`` waits on inside an asyncio Task.

    Unlike ``as_future``, a cancelled ``d`` sets Plait's ``CancelledError`` on the
    future (an ``asyncio.CancelledError`` too, so the Task is cancelled all the
    same), so that the awaiting code sees the same exception under any driver.

    .. versionadded:: 0.1
    """
    future = _AwaitFuture(loop=loop)
    future.deferred = d
    _link_future(d, future, cancel_future=False)
    return cast(asyncio.Future[S], future)


def _link_future(d: Deferred[S], future: asyncio.Future[S], cancel_future: bool) -> None:
    def fired(result: Any) -> Any:
        if future.done():
            return None if isinstance(result, Failure) else result
        if isinstance(result, Failure):
            if cancel_future and isinstance(result.value, asyncio.CancelledError):
                future.cancel()
            elif isinstance(result.value, StopIteration):  # futures refuse StopIteration
                error = RuntimeError(f"Deferred failed with {result.value!r}")
                error.__cause__ = result.value
                future.set_exception(error)
            else:
                future.set_exception(result.value)
            return None
        future.set_result(result)
        return result

    def future_done(f: asyncio.Future[S]) -> None:
        if f.cancelled():
            d.cancel()

    future.add_done_callback(future_done)
    d.add_both(fired)


def deferred_from_future(future: asyncio.Future[S]) -> Deferred[S]:
    """See ``Deferred.from_future``.

    Raises:
        TypeError: ``future`` is not an asyncio future.

    .. versionadded:: 0.1
    """
    if not asyncio.isfuture(future):
        raise TypeError(f"from_future() takes an asyncio future, not {type(future).__name__}")

    def cancel(_d: Deferred[S]) -> None:
        future.cancel()

    d: Deferred[S] = Deferred(canceller=cancel)

    def adapt(f: asyncio.Future[S]) -> None:
        if f.cancelled():
            if not d.called:
                d.errback(Failure(CancelledError("the asyncio future was cancelled")))
            return
        if d.called:  # cancelled from the Deferred's side meanwhile
            return
        exc = f.exception()
        if exc is not None:
            d.errback(Failure(exc))
        else:
            d.callback(f.result())

    future.add_done_callback(adapt)
    return d
