"""plait.protocols.http.server_timeouts: the HTTP server's per-connection deadline.

Theory of operation. A connection is always waiting for at most one thing with a
deadline: the rest of a request head (*header*: from the connection, or the first
byte of a request, to the end of its head, so a slowloris client is cut off however
it dribbles), the rest of a body (*body*: from the end of the head to the end of the
body) or the next request on a kept-alive connection (*idle*). The application
itself has no deadline.

``Deadline`` keeps that one deadline as a float and a kind, with a single lazy
``DelayedCall``: setting a deadline costs one ``clock.seconds()``, and the timer only
moves when a new deadline is earlier than the one it is due at. When the timer fires
early (the deadline moved later since) it is scheduled again for the rest; when the
deadline has passed, the kind is cleared and handed to ``on_expired``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["BODY", "HEADER", "IDLE", "Deadline"]

HEADER, BODY, IDLE = "header", "body", "idle"


class Deadline:
    """One connection's current deadline (see the module docstring).

    Args:
        clock: What schedules (``seconds()``, ``call_later``): a reactor or a Clock.
        on_expired: Called with the kind (``HEADER``, ``BODY``, ``IDLE``) of a
            deadline that has passed.
    """

    __slots__ = ("_at", "_clock", "_now", "_on_expired", "_timer", "_timer_at", "kind")

    def __init__(self, clock: Any, on_expired: Callable[[str], None]) -> None:
        self._clock = clock
        self._now: Callable[[], float] = clock.seconds
        self._on_expired = on_expired
        self._at = 0.0
        self._timer: Any = None
        self._timer_at = 0.0  # when the timer is due
        self.kind: str | None = None
        """What is awaited (``HEADER``, ``BODY``, ``IDLE``), or None: no deadline."""

    def set(self, kind: str, seconds: float) -> None:
        """Wait for ``kind`` at most ``seconds`` from now (replacing any deadline)."""
        at = self._now() + seconds
        self.kind = kind
        self._at = at
        if self._timer is None:
            self._timer = self._clock.call_later(seconds, self._fire)
            self._timer_at = at
        elif at < self._timer_at:
            self._timer.reset(seconds)
            self._timer_at = at

    def stop(self) -> None:
        """No more deadlines: clear the kind and cancel the timer."""
        self.kind = None
        timer, self._timer = self._timer, None
        if timer is not None and timer.active():
            timer.cancel()

    def _fire(self) -> None:
        self._timer = None
        kind = self.kind
        if kind is None:
            return
        now = self._now()
        if now < self._at:
            self._timer = self._clock.call_later(self._at - now, self._fire)
            self._timer_at = self._at
            return
        self.kind = None
        self._on_expired(kind)
