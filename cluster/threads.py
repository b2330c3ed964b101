"""Threads: run blocking code off the reactor's thread, and call back into it.

``defer_to_thread(f, *args)`` runs ``f`` in the global reactor's ``ThreadPool`` and
returns a Deferred that fires in the reactor's thread. ``blocking_call_from_thread``
goes the other way: a worker thread runs a function in the reactor's thread and
waits for its result.
"""

from plait.cluster._threads import (
    ThreadPool,
    ThreadPoolStatistics,
    blocking_call_from_thread,
    defer_to_thread,
    defer_to_thread_pool,
)

__all__ = [
    "ThreadPool",
    "ThreadPoolStatistics",
    "blocking_call_from_thread",
    "defer_to_thread",
    "defer_to_thread_pool",
]
