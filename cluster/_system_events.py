"""System event triggers (Twisted's ``addSystemEventTrigger``), for the reactors.

Theory of operation: an event (``startup``, ``shutdown``, or a name of the user's) has
three ordered phases, ``before``, ``during`` and ``after``. Firing it runs every
``before`` trigger; those that return a Deferred (anything with ``add_both``) are
waited for, their failures logged; then every ``during`` and ``after`` trigger runs,
and finally the ``on_done`` callback the reactor passed (``shutdown``'s leaves the
loop). Triggers stay registered after firing, so an event can fire again (a reactor
that runs twice fires ``startup`` twice). A trigger added to a phase while that phase
is running runs in the same pass. A trigger that raises is logged and the others run.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from typing import Any

__all__ = ["PHASES", "SystemEvents"]

_log = logging.getLogger("plait.reactor")

PHASES = ("before", "during", "after")

_Trigger = tuple[int, Callable[..., object], tuple[Any, ...], dict[str, Any]]


class SystemEvents:
    """The triggers of every system event of one reactor."""

    def __init__(self) -> None:
        self._events: dict[str, dict[str, list[_Trigger]]] = {}
        self._ids = itertools.count(1)

    def add(self, phase: str, event_type: str, f: Callable[..., object], args: tuple[Any, ...],
            kwargs: dict[str, Any]) -> tuple[str, str, int]:
        """Register ``f(*args, **kwargs)``; returns the trigger id.

        Raises:
            ValueError: unknown phase.
            TypeError: ``f`` is not callable, or ``event_type`` is not a string.
        """
        if phase not in PHASES:
            raise ValueError(f"phase must be one of {PHASES}, not {phase!r}")
        if not isinstance(event_type, str):
            raise TypeError(f"event type must be a string, not {event_type!r}")
        if not callable(f):
            raise TypeError(f"{f!r} is not callable")
        number = next(self._ids)
        phases = self._events.setdefault(event_type, {p: [] for p in PHASES})
        phases[phase].append((number, f, args, kwargs))
        return (phase, event_type, number)

    def remove(self, trigger_id: Any) -> None:
        """Unregister a trigger.

        Raises:
            ValueError: ``trigger_id`` is not the id of a registered trigger.
        """
        try:
            phase, event_type, number = trigger_id
            entries = self._events[event_type][phase]
        except (TypeError, ValueError, KeyError):
            raise ValueError(f"not a system event trigger id: {trigger_id!r}") from None
        for i, entry in enumerate(entries):
            if entry[0] == number:
                del entries[i]
                return
        raise ValueError(f"no such system event trigger: {trigger_id!r}")

    def fire(self, event_type: str, on_done: Callable[[], object]) -> None:
        """Fire ``event_type``; ``on_done()`` runs after its ``after`` phase."""
        phases = self._events.get(event_type)
        if phases is None:
            on_done()
            return
        pending: list[Any] = [r for r in _run_phase(phases, "before")
                              if callable(getattr(r, "add_both", None))]
        if not pending:
            _finish(phases, on_done)
            return
        left = [len(pending)]

        def one_done(result: object) -> None:
            _log_if_failure(result)
            left[0] -= 1
            if left[0] == 0:
                _finish(phases, on_done)

        for d in pending:
            d.add_both(one_done)


def _finish(phases: dict[str, list[_Trigger]], on_done: Callable[[], object]) -> None:
    try:
        _run_phase(phases, "during")
        _run_phase(phases, "after")
    finally:
        on_done()


def _run_phase(phases: dict[str, list[_Trigger]], phase: str) -> list[object]:
    results = []
    entries = phases[phase]
    i = 0
    while i < len(entries):  # by index: a trigger added while firing runs too
        _, f, args, kwargs = entries[i]
        i += 1
        try:
            results.append(f(*args, **kwargs))
        except (Exception, asyncio.CancelledError):
            _log.exception("system event trigger %r (%s) failed", f, phase)
    return results


def _log_if_failure(result: object) -> None:
    value = getattr(result, "value", None)
    get_traceback = getattr(result, "get_traceback", None)
    if isinstance(value, BaseException) and callable(get_traceback):
        _log.error("a 'before' system event trigger failed:\n%s", get_traceback())
