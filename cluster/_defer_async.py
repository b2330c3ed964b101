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

``Deferred.__await__`` yields the Deferred itself only to this driver, which it
recognises by ``_driver.depth`` (per thread); inside a plain asyncio Task it
awaits ``as_future()`` instead. Awaiting consumes a failure (the awaiter now owns
it) and leaves a success in the Deferred.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, ParamSpec, TypeVar

from plait.cluster._defer import CancelledError, Deferred, _driver
from plait.cluster._failure import Failure

__all__ = [
    "deferred_as_future",
    "deferred_from_future",
    "ensure_deferred",
    "inline_callbacks",
    "run_coroutine",
]

S = TypeVar("S")
P = ParamSpec("P")

logger = logging.getLogger("plait.defer")

_Driven = Generator[Any, Any, Any] | Coroutine[Any, Any, Any]


class _State:
    """What a driven coroutine or generator is waiting for right now."""

    __slots__ = ("is_coroutine", "waiting")

    def __init__(self, is_coroutine: bool) -> None:
        self.is_coroutine = is_coroutine
        self.waiting: Deferred[Any] | None = None

    def cancel(self, _outer: Deferred[Any]) -> None:
        waiting = self.waiting
        if waiting is not None:
            waiting.cancel()


def _start(gen: _Driven, is_coroutine: bool) -> Deferred[Any]:
    state = _State(is_coroutine)
    out: Deferred[Any] = Deferred(canceller=state.cancel)
    _drive(gen, out, state, None, None)
    return out


def _drive(
    gen: _Driven, out: Deferred[Any], state: _State, value: Any, failure: Failure | None
) -> None:
    driver = _driver
    while True:
        driver.depth += 1
        try:
            if failure is None:
                yielded = gen.send(value)
            else:
                yielded = gen.throw(failure.value.with_traceback(failure.tb))
        except StopIteration as stop:
            driver.depth -= 1
            result = stop.value
            if isinstance(result, Deferred):
                state.waiting = result
                result.chain_deferred(out)
            else:
                out.callback(result)
            return
        except (Exception, asyncio.CancelledError) as e:
            driver.depth -= 1
            out.errback(Failure(e))
            return
        except BaseException:
            driver.depth -= 1
            raise
        driver.depth -= 1
        failure = None
        if isinstance(yielded, Deferred):
            d: Deferred[Any] = yielded
        elif asyncio.isfuture(yielded):
            yielded._asyncio_future_blocking = False  # what asyncio.Task does on a yield
            d = deferred_from_future(yielded)
        elif not state.is_coroutine:
            if isinstance(yielded, Coroutine):
                d = run_coroutine(yielded)
            else:
                value = yielded  # inline_callbacks sends plain values straight back
                continue
        elif yielded is None and (loop := asyncio._get_running_loop()) is not None:
            # A bare yield (``asyncio.sleep(0)``): come back on the next loop turn.
            loop.call_soon(_drive, gen, out, state, None, None)
            return
        else:
            failure = Failure(
                TypeError(f"a coroutine run as a Deferred awaited {yielded!r}; "
                          "await Deferreds, coroutines or asyncio futures")
            )
            continue
        if d.called and not d._paused and not d._running and not isinstance(
            d._result, Deferred
        ):
            result = d._result
            if isinstance(result, Failure):
                d._take_result()
                failure = result
                value = None
            else:
                value = result
            continue
        state.waiting = d
        d.add_both(_resume, gen, out, state)
        return


def _resume(result: Any, gen: _Driven, out: Deferred[Any], state: _State) -> Any:
    state.waiting = None
    if isinstance(result, Failure):
        _drive(gen, out, state, None, result)
        return None
    _drive(gen, out, state, result, None)
    return result


def run_coroutine(coro: Coroutine[Any, Any, S]) -> Deferred[S]:
    """Drive ``coro`` to completion; a Deferred of what it returns or raises.

    Raises:
        TypeError: ``coro`` is not a coroutine.
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
    """
    if isinstance(coro_or_deferred, Deferred):
        return coro_or_deferred
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
    """
    if not inspect.isgeneratorfunction(f):
        raise TypeError(f"inline_callbacks needs a generator function, got {f!r}")

    @functools.wraps(f)
    def run(*args: P.args, **kwargs: P.kwargs) -> Deferred[S]:
        return _start(f(*args, **kwargs), False)

    return run


def deferred_as_future(d: Deferred[S], loop: asyncio.AbstractEventLoop) -> asyncio.Future[S]:
    """See ``Deferred.as_future``."""
    future: asyncio.Future[S] = loop.create_future()

    def fired(result: Any) -> Any:
        if future.done():
            return None if isinstance(result, Failure) else result
        if isinstance(result, Failure):
            if isinstance(result.value, asyncio.CancelledError):
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
    return future


def deferred_from_future(future: asyncio.Future[S]) -> Deferred[S]:
    """See ``Deferred.from_future``.

    Raises:
        TypeError: ``future`` is not an asyncio future.
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
