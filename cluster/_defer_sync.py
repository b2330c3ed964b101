"""Deferred-based synchronisation: ``DeferredLock``, ``DeferredSemaphore``, ``DeferredQueue``.

Theory of operation: nothing here blocks. ``acquire()`` and ``get()`` return a
Deferred that fires when the lock, token or item is available; waiters are served
first come, first served from a deque. Cancelling a waiting Deferred removes it
from the queue (it errbacks with ``CancelledError``). Releasing hands the lock or
token straight to the next waiter, so a waiter can never be overtaken.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, TypeVar

from plait.cluster._defer import Deferred, maybe_deferred, succeed

__all__ = [
    "DeferredLock",
    "DeferredQueue",
    "DeferredSemaphore",
    "QueueOverflow",
    "QueueUnderflow",
]

T = TypeVar("T")
_Self = TypeVar("_Self", bound="_Primitive")


class QueueOverflow(Exception):
    """``DeferredQueue.put`` on a queue that holds ``size`` items already.

    .. versionadded:: 0.1
    """


class QueueUnderflow(Exception):
    """``DeferredQueue.get`` on a queue that has ``backlog`` waiters already.

    .. versionadded:: 0.1
    """


class _Primitive:
    """What the lock and the semaphore share: waiters, ``run`` and ``async with``."""

    def __init__(self) -> None:
        self.waiting: deque[Deferred[Any]] = deque()

    def acquire(self: _Self) -> Deferred[_Self]:  # pragma: no cover - overridden
        raise AssertionError("subclasses define acquire()")

    def release(self) -> None:  # pragma: no cover - overridden
        raise AssertionError("subclasses define release()")

    def _cancel_acquire(self, d: Deferred[Any]) -> None:
        self.waiting.remove(d)

    def run(self, f: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred[Any]:
        """Acquire, run ``f(*args, **kwargs)`` (it may return a Deferred or coroutine),
        release when its result arrives; a Deferred of that result.

        Raises:
            TypeError: ``f`` is not callable.
        """
        if not callable(f):
            raise TypeError(f"run() needs a callable, got {f!r}")

        def release(result: Any) -> Any:
            self.release()
            return result

        def execute(_ignored: object) -> Deferred[Any]:
            return maybe_deferred(f, *args, **kwargs).add_both(release)

        return self.acquire().add_callback(execute)

    async def __aenter__(self: _Self) -> _Self:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()


class DeferredLock(_Primitive):
    """A lock for Deferred-based code: ``acquire()`` returns a Deferred of the lock.

    Example:
        >>> lock = DeferredLock()
        >>> _ = lock.acquire()
        >>> second = lock.acquire()
        >>> second.called
        False
        >>> lock.release()
        >>> second.called
        True

    .. versionadded:: 0.1
    """

    def __init__(self) -> None:
        super().__init__()
        self.locked = False

    def acquire(self) -> Deferred[DeferredLock]:
        """A Deferred that fires with the lock once this caller holds it."""
        d: Deferred[DeferredLock] = Deferred(canceller=self._cancel_acquire)
        if self.locked:
            self.waiting.append(d)
        else:
            self.locked = True
            d.callback(self)
        return d

    def release(self) -> None:
        """Release the lock, handing it to the next waiter if there is one.

        Raises:
            RuntimeError: the lock is not held.
        """
        if not self.locked:
            raise RuntimeError("release() of a DeferredLock that is not locked")
        if self.waiting:
            self.waiting.popleft().callback(self)
        else:
            self.locked = False

    def statistics(self) -> dict[str, Any]:
        """``locked`` and the number of ``waiting`` callers."""
        return {"locked": self.locked, "waiting": len(self.waiting)}


class DeferredSemaphore(_Primitive):
    """At most ``tokens`` holders at once; ``acquire()`` returns a Deferred.

    Raises:
        ValueError: ``tokens`` is smaller than 1.

    .. versionadded:: 0.1
    """

    def __init__(self, tokens: int) -> None:
        if tokens < 1:
            raise ValueError(f"DeferredSemaphore needs at least one token, got {tokens}")
        super().__init__()
        self.tokens = tokens
        self.limit = tokens

    def acquire(self) -> Deferred[DeferredSemaphore]:
        """A Deferred that fires with the semaphore once a token is this caller's."""
        d: Deferred[DeferredSemaphore] = Deferred(canceller=self._cancel_acquire)
        if self.tokens:
            self.tokens -= 1
            d.callback(self)
        else:
            self.waiting.append(d)
        return d

    def release(self) -> None:
        """Give a token back (to the next waiter if there is one).

        Raises:
            RuntimeError: more releases than acquires.
        """
        if self.tokens >= self.limit:
            raise RuntimeError("release() of a DeferredSemaphore with every token free")
        if self.waiting:
            self.waiting.popleft().callback(self)
        else:
            self.tokens += 1

    def statistics(self) -> dict[str, Any]:
        """Free ``tokens``, the ``limit`` and the number of ``waiting`` callers."""
        return {"tokens": self.tokens, "limit": self.limit, "waiting": len(self.waiting)}


class DeferredQueue(Generic[T]):
    """A queue whose ``get()`` returns a Deferred that fires when an item arrives.

    Args:
        size: Most items held before ``put`` raises ``QueueOverflow`` (None: no limit).
        backlog: Most waiting ``get`` calls before ``get`` raises ``QueueUnderflow``
            (None: no limit).

    .. versionadded:: 0.1
    """

    def __init__(self, size: int | None = None, backlog: int | None = None) -> None:
        self.size = size
        self.backlog = backlog
        self.pending: deque[T] = deque()
        self.waiting: deque[Deferred[T]] = deque()

    def put(self, obj: T) -> None:
        """Hand ``obj`` to the oldest waiting ``get``, or keep it.

        Raises:
            QueueOverflow: no one is waiting and ``size`` items are held already.
        """
        if self.waiting:
            self.waiting.popleft().callback(obj)
        elif self.size is None or len(self.pending) < self.size:
            self.pending.append(obj)
        else:
            raise QueueOverflow(f"DeferredQueue already holds {self.size} items")

    def get(self) -> Deferred[T]:
        """A Deferred of the next item (fired already if one is held).

        Cancelling the Deferred withdraws this ``get``.

        Raises:
            QueueUnderflow: ``backlog`` callers are waiting already.
        """
        if self.pending:
            return succeed(self.pending.popleft())
        if self.backlog is not None and len(self.waiting) >= self.backlog:
            raise QueueUnderflow(f"DeferredQueue already has {self.backlog} waiting gets")
        d: Deferred[T] = Deferred(canceller=self.waiting.remove)
        self.waiting.append(d)
        return d

    def statistics(self) -> dict[str, Any]:
        """Number of ``pending`` items and ``waiting`` gets."""
        return {"pending": len(self.pending), "waiting": len(self.waiting)}
