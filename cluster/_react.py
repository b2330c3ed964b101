"""The process's reactor (``get_reactor``) and ``react``, Twisted's way to run a main."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from plait.cluster._defer import maybe_deferred
from plait.cluster._failure import Failure
from plait.cluster._reactor_select import Reactor

__all__ = ["get_reactor", "react", "set_reactor"]

_log = logging.getLogger("plait.reactor")
_lock = threading.Lock()
_reactor: Any = None


def get_reactor() -> Any:
    """The process's reactor: the one ``set_reactor`` named, else a ``Reactor`` made now."""
    global _reactor
    with _lock:
        if _reactor is None:
            _reactor = Reactor()
        return _reactor


def set_reactor(reactor: Any) -> None:
    """Make ``reactor`` the process's reactor (before anything called ``get_reactor``).

    Raises:
        RuntimeError: another reactor is the process's reactor already.
    """
    global _reactor
    with _lock:
        if _reactor is not None and _reactor is not reactor:
            raise RuntimeError(f"the process's reactor is {_reactor!r} already")
        _reactor = reactor


def _exit_code(failure: Failure) -> int:
    code = failure.value.code if isinstance(failure.value, SystemExit) else 1
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def react(main: Callable[..., Any], argv: Sequence[Any] = (), reactor: Any = None) -> NoReturn:
    """Run ``main(reactor, *argv)`` in a running reactor, then exit the process.

    ``main`` returns a Deferred, a coroutine, or a plain value. When that finishes
    the reactor stops and the process exits with status 0, or 1 if it failed (a
    ``SystemExit`` keeps its own code). If the reactor is stopped first (SIGINT,
    SIGTERM, ``reactor.stop()``), the status is 0, as with Twisted's ``react``.

    Args:
        main: ``main(reactor, *argv)``.
        argv: Extra arguments for ``main``.
        reactor: The reactor to run; default ``get_reactor()``.

    Raises:
        SystemExit: always, at the end.
    """
    if reactor is None:
        reactor = get_reactor()
    code = [0]
    stopping = [False]

    def on_shutdown() -> None:
        stopping[0] = True

    def finished(result: object) -> None:
        if isinstance(result, Failure):
            if not result.check(SystemExit):
                _log.error("main %r failed:\n%s", main, result.get_traceback())
            code[0] = _exit_code(result)
        if not stopping[0]:
            reactor.stop()

    def start() -> None:
        maybe_deferred(_call_main, main, reactor, argv).add_both(finished)

    reactor.add_system_event_trigger("before", "shutdown", on_shutdown)
    reactor.call_when_running(start)
    reactor.run()
    sys.exit(code[0])


def _call_main(main: Callable[..., Any], reactor: Any, argv: Sequence[Any]) -> Any:
    try:
        return main(reactor, *argv)
    except SystemExit as exc:  # maybe_deferred only turns Exceptions into failures
        return Failure(exc)
