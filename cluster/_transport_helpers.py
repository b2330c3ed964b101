"""Small pieces of logic that several transports (and the in-memory fake) share.

- ``call_hook``: transports call hooks such as ``pause_writing``/``resume_writing``
  that a protocol may leave out; one that raises must not break the transport, so
  the error is logged on the caller's logger, in the caller's words, and swallowed.
- ``WriteFlowControl``: a stream transport's write buffer crossed a water mark, so
  tell the protocol (``pause_writing``/``resume_writing``) and pause or resume a
  streaming producer.
- ``write_buffer_limits``: asyncio's rule for ``set_write_buffer_limits`` arguments
  (a missing high water mark is 64 KiB, or four times ``low``; a missing low one is a
  quarter of ``high``), checked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

__all__ = ["DEFAULT_HIGH_WATER", "WriteFlowControl", "call_hook", "write_buffer_limits"]

_log = logging.getLogger("plait.reactor")

#: asyncio's default high water mark for a transport's write buffer.
DEFAULT_HIGH_WATER = 64 * 1024


def call_hook(target: object, name: str, logger: logging.Logger, message: str,
              *message_args: object) -> None:
    """Call ``target.<name>()`` if ``target`` has it; log what it raises.

    Args:
        target: The protocol or producer.
        name: The hook's name, e.g. ``"pause_writing"``.
        logger: Where a failure is logged (``logger.exception``).
        message: The log message's format, with ``message_args``.
        *message_args: Its arguments.
    """
    method = getattr(target, name, None)
    if method is None:
        return
    try:
        method()
    except Exception:
        logger.exception(message, *message_args)


def write_buffer_limits(high: int | None, low: int | None) -> tuple[int, int]:
    """The (high, low) water marks that ``set_write_buffer_limits(high, low)`` means.

    Returns:
        ``high`` (default: 64 KiB, or ``4 * low`` when only ``low`` is given) and
        ``low`` (default: ``high // 4``).

    Raises:
        ValueError: unless ``high >= low >= 0``.
    """
    if high is None:
        high = DEFAULT_HIGH_WATER if low is None else 4 * low
    if low is None:
        low = high // 4
    if not high >= low >= 0:
        raise ValueError(f"high ({high!r}) must be >= low ({low!r}) must be >= 0")
    return high, low


class WriteFlowControl:
    """Pausing and resuming the writer side of a stream transport, and its producer (a mixin).

    The transport keeps ``_protocol``, ``_producer``, ``_streaming``, the two flags,
    ``_lost`` and ``_reactor``, and defines ``_pull`` (ask a pull producer for more)
    and ``_may_pull`` (whether to ask at once when one registers); it calls
    ``_pause_protocol`` when its buffer goes over the high water mark and
    ``_resume_protocol`` when it drains under the low one.
    """

    _protocol: Any
    _producer: Any
    _streaming: bool
    _protocol_paused: bool
    _producer_paused: bool
    _lost: bool
    _reactor: Any
    _pull: Callable[[], None]
    _may_pull: Callable[[], bool]

    def register_producer(self, producer: Any, streaming: bool) -> None:
        """Attach a push (``streaming=True``) or pull producer.

        Raises:
            RuntimeError: a producer is registered already.
        """
        if self._producer is not None:
            raise RuntimeError(f"{self!r} has a producer already: {self._producer!r}")
        if self._lost:
            producer.stop_producing()
            return
        self._producer = producer
        self._streaming = bool(streaming)
        self._producer_paused = False
        if self._streaming:
            if self._protocol_paused:
                self._producer_paused = True
                producer.pause_producing()
        elif self._may_pull():
            self._reactor.call_soon(self._pull)

    def unregister_producer(self) -> None:
        """Detach the producer."""
        self._producer = None
        self._producer_paused = False

    def _stop_producer(self) -> None:
        """The connection is gone: tell the producer to stop, and forget it."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.stop_producing()
            except Exception:
                _log.exception("stop_producing of %r failed", producer)

    def _pause_protocol(self) -> None:
        if self._protocol_paused:
            return
        self._protocol_paused = True
        try:
            self._protocol.pause_writing()
        except Exception:
            _log.exception("pause_writing of %r failed", self._protocol)
        if self._producer is not None and self._streaming and not self._producer_paused:
            self._producer_paused = True
            try:
                self._producer.pause_producing()
            except Exception:
                _log.exception("pause_producing of %r failed", self._producer)

    def _resume_protocol(self) -> None:
        self._protocol_paused = False
        try:
            self._protocol.resume_writing()
        except Exception:
            _log.exception("resume_writing of %r failed", self._protocol)
        if self._producer is not None and self._producer_paused:
            self._producer_paused = False
            try:
                self._producer.resume_producing()
            except Exception:
                _log.exception("resume_producing of %r failed", self._producer)
