"""The exceptions of Deferreds, and the report of failures nobody handled.

Theory of operation: a Deferred whose chain ends on a Failure gets a ``_DebugInfo``
holding that Failure (a Deferred in debug mode has one from birth, holding its
creation and firing stacks too). Whoever handles the failure later clears it. The
``_DebugInfo`` has a finaliser, the Deferred has none: only failing Deferreds pay for
finalisation, and when one is garbage collected with the failure still there,
``_report_unhandled`` logs it at ERROR on the ``plait.defer`` logger (message
starting "Unhandled error in Deferred", the Failure in the record's
``plait_failure``) and calls each of ``_unhandled_error_observers`` with it.
"""

from __future__ import annotations

import asyncio
import builtins
import logging
from collections.abc import Callable

from plait.cluster._failure import Failure

__all__ = ["AlreadyCalledError", "CancelledError", "DeferredLoopError", "TimeoutError"]

logger = logging.getLogger("plait.defer")

#: Called with the Failure of every Deferred garbage collected with an unhandled
#: error, after it is logged. The pytest plugin appends to this list.
_unhandled_error_observers: list[Callable[[Failure], None]] = []


class CancelledError(asyncio.CancelledError, Exception):
    """The Deferred was cancelled.

    It is an ``Exception`` (``except Exception`` catches it, as in Twisted) and also
    an ``asyncio.CancelledError``, so that awaiting a cancelled Deferred inside an
    asyncio Task cancels that Task.

    .. versionadded:: 0.1
    """


class TimeoutError(builtins.TimeoutError):
    """``add_timeout`` cancelled the Deferred (also a builtin ``TimeoutError``).

    .. versionadded:: 0.1
    """


class AlreadyCalledError(Exception):
    """``callback()`` or ``errback()`` on a Deferred that has fired already.

    .. versionadded:: 0.1
    """


class DeferredLoopError(Exception):
    """A callback returned the very Deferred it was attached to.

    .. versionadded:: 0.1
    """


class _DebugInfo:
    """Per-Deferred record: debug stacks, and the failure to log if it is dropped.

    ``live`` counts the records alive: while it is 0 no Deferred anywhere can still
    report an unhandled failure, so the pytest plugin skips its garbage collection.
    """

    __slots__ = ("creator", "failure", "invoker")
    live = 0

    def __init__(self, creator: list[str] | None) -> None:
        _DebugInfo.live += 1
        self.creator = creator
        self.invoker: list[str] | None = None
        self.failure: Failure | None = None

    def describe(self) -> str:
        parts = []
        if self.creator:
            parts.append("Deferred created at:\n" + "".join(self.creator))
        if self.invoker:
            parts.append("Deferred first fired at:\n" + "".join(self.invoker))
        return "\n".join(parts)

    def __del__(self) -> None:
        _DebugInfo.live -= 1
        failure = self.failure
        if failure is not None:
            self.failure = None
            _report_unhandled(failure, self.describe())


def _report_unhandled(failure: Failure, debug: str) -> None:
    text = failure.get_traceback()
    if debug:
        text += debug
    else:
        text += "(set PLAIT_DEFER_DEBUG=1 to see where the Deferred was created and fired)"
    logger.error(
        "Unhandled error in Deferred:\n%s", text, extra={"plait_failure": failure}
    )
    for observer in list(_unhandled_error_observers):
        try:
            observer(failure)
        except Exception:
            logger.exception("unhandled-error observer %r raised", observer)
