"""Deferreds: results that arrive later, with callback chains (public names).

See docs/deferreds.md for a guide and docs/porting-from-twisted.md for the names
Twisted users know. The implementation lives in ``_defer`` (the Deferred),
``_defer_list`` (gather, DeferredList, race), ``_defer_async`` (coroutines,
asyncio, inline_callbacks) and ``_defer_sync`` (locks and queues).
"""

from plait.cluster._defer import (
    AlreadyCalledError,
    CancelledError,
    Deferred,
    DeferredLoopError,
    TimeoutError,
    fail,
    get_debugging,
    maybe_deferred,
    set_debugging,
    succeed,
)
from plait.cluster._defer_async import ensure_deferred, inline_callbacks
from plait.cluster._defer_list import DeferredList, FirstError, gather, race
from plait.cluster._defer_sync import (
    DeferredLock,
    DeferredQueue,
    DeferredSemaphore,
    QueueOverflow,
    QueueUnderflow,
)

__all__ = [
    "AlreadyCalledError",
    "CancelledError",
    "Deferred",
    "DeferredList",
    "DeferredLock",
    "DeferredLoopError",
    "DeferredQueue",
    "DeferredSemaphore",
    "FirstError",
    "QueueOverflow",
    "QueueUnderflow",
    "TimeoutError",
    "ensure_deferred",
    "fail",
    "gather",
    "get_debugging",
    "inline_callbacks",
    "maybe_deferred",
    "race",
    "set_debugging",
    "succeed",
]
