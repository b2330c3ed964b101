"""The callback runner of Deferreds.

Theory of operation
-------------------
A Deferred holds a flat list of callback entries. Each entry is a 4-tuple,
``(callback, args, how, (errback, args, how))``: the callback half inline (the hot
path unpacks it in the ``for`` statement itself), the errback half as a triple
(``_PASS`` for ``add_callback``, shared). When the Deferred fires, entries run in
order, each getting the current result, and whatever it returns (or raises, as a
``Failure``) becomes the result for the next entry. A ``Failure`` result selects
the errback half, anything else the callback half. ``how`` is ``None`` for the
common ``f(result)`` (no argument unpacking on the hot path), the keyword dict
for ``f(result, *args, **kwargs)``, or a sentinel: ``_SKIP`` for a half that does
nothing, ``_WAITER``/``_CHAINED`` for hand-offs.

Rules:

- A Deferred whose callback returned an unfired Deferred ("inner") pauses, keeps
  the inner one as its result, and appends a ``_WAITER`` hand-off entry to it;
  ``chain_deferred`` appends a ``_CHAINED`` one. When the runner reaches a
  hand-off, it gives the result to the other Deferred and switches to it on an
  explicit stack instead of calling into it, so that arbitrarily long chains
  neither recurse nor do more than constant work per link.
- Entries are consumed by a list iterator, kept in ``_iter`` while the Deferred
  runs or is paused half way (a list iterator also sees entries appended
  meanwhile), never by ``list.pop(0)``; the list is cleared once every entry has
  run.
- The loop does not test for ``pause()`` after each callback: ``pause()`` on a
  running Deferred moves the entries not run yet to a new list (the iterator tells
  how many are left), which ends the loop, and the end of the loop notices that
  ``_iter`` is no longer its iterator.
- ``_running`` is set on every Deferred whose entries are being run, including
  those suspended on the stack, so that re-entrant calls append instead of
  running out of order.
- Result types are tested with ``type(x) in _SPECIAL_TYPES`` (Deferred, Failure
  and their subclasses, which register themselves): one set lookup instead of two
  ``isinstance`` calls that are slow when they miss, as they almost always do.
- ``run_now`` runs a callback added to a fired, idle Deferred at once, without
  the list; a Deferred it returns goes through ``run_callbacks`` after all.
- A chain that ends on a Failure arms the Deferred's ``_DebugInfo`` (see
  ``_defer_errors``); any later result disarms it.
"""

from __future__ import annotations

import asyncio
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from plait.cluster._defer_errors import DeferredLoopError, _DebugInfo
from plait.cluster._failure import _SPECIAL_TYPES, Failure

if TYPE_CHECKING:
    from plait.cluster._defer import Deferred

__all__ = ["fire", "run_callbacks", "run_now"]

_AsyncioCancelledError = asyncio.CancelledError


def _passthru(result: object) -> object:
    return result


def _const(_result: object, value: object) -> object:
    return value


# The third item of an entry's triple says how to call its function: ``None``
# means ``f(result)``, a dict means ``f(result, *args, **kwargs)``, and the
# sentinels below mean no call at all.
_SKIP: Any = ("skip",)  # pass the result through unchanged
_WAITER: Any = ("waiter",)  # hand the result to ``args``, which waits on us
_CHAINED: Any = ("chained",)  # fire ``args`` with the result (chain_deferred)
_RESUME: Any = ("resume",)  # ``fire()`` without a result: go on with pending entries
_PASS = (_passthru, (), _SKIP)  # the errback half of an add_callback entry

_Entry = tuple[Any, Any, Any, tuple[Any, Any, Any]]

#: Deferred and every subclass of it (``Deferred.__init_subclass__`` adds them), so
#: ``type(x) in _DEFERRED_TYPES`` is exact and cheaper than ``isinstance`` on a miss.
_DEFERRED_TYPES: set[type] = set()


def fire(self: Deferred[Any], result: Any = _RESUME) -> None:
    """Fire the Deferred with a result: run the callback chain (``Deferred.callback``).

    A ``Failure`` result runs the errback chain, as ``errback()`` does.

    Raises:
        AlreadyCalledError: it has fired already (unless it was cancelled, in
            which case the call is ignored).
        TypeError: ``result`` is a Deferred (chain it with ``chain_deferred``).
    """
    # Without a result (``run_callbacks``) this resumes a fired Deferred instead:
    # one function for both, so that ``callback()`` costs one call, not two.
    if result is not _RESUME:
        if self.called:
            if self._suppress:
                return
            raise self._already_called()
        if self._info is not None:
            self._info.invoker = traceback.format_stack()[:-1]
        self.called = True
        self._result = result
        if not self._callbacks or self._paused:
            if type(result) in _SPECIAL_TYPES:
                if type(result) in _DEFERRED_TYPES:
                    self._refuse_deferred_result()
                if not self._callbacks:
                    self._arm(result)
            return
    elif self._running or self._paused:
        return
    current: Deferred[Any] = self
    stack: list[Deferred[Any]] | None = None
    special = _SPECIAL_TYPES
    while True:
        it = current._iter
        if it is None:
            it = current._iter = iter(current._callbacks)
        result = current._result
        current._running = True
        failed = type(result) in special
        if failed and type(result) in _DEFERRED_TYPES:
            current._refuse_deferred_result()  # only callback(a_deferred) gets here
        for f, args, kwargs, errback_half in it:
            if failed:
                f, args, kwargs = errback_half
            if kwargs is None:
                try:
                    result = f(result)
                except (Exception, _AsyncioCancelledError) as e:
                    result = Failure(e)
                    failed = True
                    continue
            elif kwargs is _SKIP:
                continue
            elif type(kwargs) is dict:
                try:
                    result = f(result, *args, **kwargs)
                except (Exception, _AsyncioCancelledError) as e:
                    result = Failure(e)
                    failed = True
                    continue
            else:
                # Hand the result to ``args``: the Deferred waiting on this one
                # (_WAITER) or chained to it (_CHAINED); run that one next.
                other: Deferred[Any] = args
                if kwargs is _WAITER:
                    other._paused -= 1
                elif other.called:
                    if not other._suppress:
                        result = Failure(other._already_called())
                        failed = True
                    continue
                else:
                    other.called = True
                    if other._info is not None:
                        other._info.invoker = traceback.format_stack()
                other._result = result
                result = None
                failed = False
                if other._paused or other._running:
                    continue
                current._iter = it
                current._result = None
                if stack is None:
                    stack = [current, other]
                else:
                    stack.append(current)
                    stack.append(other)
                break
            if type(result) in special:
                if type(result) in _DEFERRED_TYPES:
                    inner: Deferred[Any] = result
                    if inner is current:
                        result = Failure(
                            DeferredLoopError(
                                f"callback {f!r} returned the Deferred it was added to"
                            )
                        )
                        failed = True
                        continue
                    if inner.called and not inner._paused and not inner._running:
                        result = inner._result  # take it over
                        inner._result = None
                        if inner._info is not None:
                            inner._info.failure = None
                        failed = type(result) in special
                    else:
                        # Wait for ``inner``: it hands its result back to us.
                        current._paused += 1
                        current._iter = it
                        current._result = inner
                        current._running = False
                        inner._callbacks.append(
                            (_passthru, current, _WAITER, (_passthru, current, _WAITER))
                        )
                        break
                else:
                    failed = True
            else:
                failed = False
        else:
            if current._iter is not it:
                # A callback called pause(), which moved the entries not run yet
                # to a new list and so ended this loop.
                current._result = result
                current._running = False
                if not current._paused:
                    continue  # unpaused meanwhile: go on with the new list
            else:
                # Every entry has run.
                current._callbacks.clear()
                current._iter = None
                current._result = result
                current._running = False
                info = current._info
                if failed:
                    if info is None:
                        info = current._info = _DebugInfo(None)
                    info.failure = result
                elif info is not None:
                    info.failure = None
        if not stack:
            return
        current = stack.pop()
        while current._paused:  # paused by a callback while it was suspended
            current._running = False
            if not stack:
                return
            current = stack.pop()


#: ``run_callbacks(d)``: run the pending entries of a fired Deferred (and of those
#: it hands results to); ``fire`` without a result.
run_callbacks: Callable[[Deferred[Any]], None] = fire


def run_now(self: Deferred[Any], f: Callable[..., Any], args: tuple[Any, ...], how: Any) -> None:
    """Run one new entry at once on a fired, idle Deferred (nothing is queued)."""
    self._running = True
    try:
        result = f(self._result) if how is None else f(self._result, *args, **how)
    except (Exception, _AsyncioCancelledError) as e:
        result = Failure(e)
    self._running = False
    if type(result) in _SPECIAL_TYPES:
        if type(result) in _DEFERRED_TYPES:
            # Rare: let the runner chain it, through an entry that returns it
            # (ahead of anything ``f`` added to this Deferred meanwhile).
            entry: _Entry = (_const, (result,), {}, (_const, (result,), {}))
            self._callbacks.insert(0, entry)
            run_callbacks(self)
            return
        self._result = result
        self._arm(result)
    else:
        self._result = result
        if self._info is not None:
            self._info.failure = None
    if self._callbacks:  # ``f`` added callbacks to this Deferred
        run_callbacks(self)
