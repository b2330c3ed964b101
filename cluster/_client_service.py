"""ClientService: keep one connection to an endpoint up, reconnecting with backoff.

Theory of operation
-------------------
The service is a small state machine driven by three events: an attempt succeeded,
an attempt failed, the connection was lost; plus the user's ``start_service`` and
``stop_service``.

    IDLE --start--> CONNECTING --ok--> CONNECTED --lost--> WAITING --timer--> CONNECTING
                     |   ^                |                  ^
                     |   +----------------|------------------+  (failed: WAITING)
                     +-- stop: cancel --> STOPPED <-- lost -- DISCONNECTING <-- stop

* Each attempt calls ``endpoint.connect`` with a wrapped factory whose protocols are
  ``_ProtocolProxy`` objects: they forward every callback (and any other attribute,
  such as ``fds_received``) to the user's protocol and tell the service when the
  connection is lost. ``when_connected`` hands out the user's protocol, never the proxy.
* After a failed attempt number *n* (counted since the last success) the next attempt
  waits ``retry(n)`` seconds; a lost connection waits ``retry(1)``. The default policy
  is exponential backoff with *full jitter* (AWS architecture blog, "Exponential
  Backoff and Jitter"): a uniform draw in ``[0, min(30, 0.1 * 2 ** (n - 1))]``.
* ``when_connected(fail_after_failures=k)`` errbacks with the latest attempt's failure
  once ``k`` attempts failed after it was called; without ``k`` it waits for ever.
* ``stop_service`` cancels a pending timer or attempt, closes a live connection and
  fires its Deferred once ``connection_lost`` arrived; pending ``when_connected``
  Deferreds errback with ``CancelledError``, and so do later ones until the service
  is started again.
"""

from __future__ import annotations

import enum
import logging
import random as _random
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from plait.cluster.defer import CancelledError, Deferred, fail, succeed
from plait.cluster.failure import Failure
from plait.cluster.interfaces import IProtocol, IReactorTime, IStreamClientEndpoint

__all__ = ["ClientService", "backoff_policy"]

log = logging.getLogger(__name__)


def backoff_policy(
    initial: float = 0.1,
    maximum: float = 30.0,
    factor: float = 2.0,
    random: Callable[[], float] = _random.random,
) -> Callable[[int], float]:
    """Exponential backoff with full jitter: ``random() * min(maximum, initial * factor**(n-1))``.

    Args:
        initial: The ceiling of the first delay.
        maximum: The largest ceiling.
        factor: How much the ceiling grows per failed attempt.
        random: A function returning a float in ``[0, 1)``; inject a fixed one in tests.

    Returns:
        ``retry(attempt) -> seconds`` for attempt numbers from 1.

    Raises:
        ValueError: a negative ``initial``/``maximum`` or a ``factor`` below 1.
    """
    if initial < 0 or maximum < 0 or factor < 1:
        raise ValueError("initial and maximum must be >= 0 and factor >= 1")

    def retry(attempt: int) -> float:
        try:
            ceiling = min(maximum, initial * factor ** max(attempt - 1, 0))
        except OverflowError:
            ceiling = maximum
        return random() * ceiling

    return retry


class _State(enum.Enum):
    IDLE = "idle"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    WAITING = "waiting"
    DISCONNECTING = "disconnecting"
    STOPPED = "stopped"


class _Waiter:
    __slots__ = ("deferred", "fail_after", "failures")

    def __init__(self, deferred: Deferred[Any], fail_after: int | None) -> None:
        self.deferred = deferred
        self.fail_after = fail_after
        self.failures = 0


@implementer(IProtocol)
class _ProtocolProxy:
    """Forwards to the user's protocol and reports ``connection_lost`` to the service."""

    def __init__(self, wrapped: Any, service: ClientService) -> None:
        self._wrapped = wrapped
        self._service = service
        self.transport: Any = None
        self.lost = False

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self._wrapped.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        self._wrapped.data_received(data)

    def eof_received(self) -> bool | None:
        result: bool | None = self._wrapped.eof_received()
        return result

    def pause_writing(self) -> None:
        self._wrapped.pause_writing()

    def resume_writing(self) -> None:
        self._wrapped.resume_writing()

    def connection_lost(self, exc: BaseException | None) -> None:
        # The service learns first, so that ``when_connected()`` called from the
        # user's ``connection_lost`` already waits for the next connection.
        # ``stop_service``'s Deferreds fire after the user's ``connection_lost``.
        self.lost = True
        stopped = self._service._lost(self)
        try:
            self._wrapped.connection_lost(exc)
        finally:
            for d in stopped:
                d.callback(None)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wrapped, name)


class _ServiceFactory:
    """The factory given to the endpoint: builds the user's protocol inside a proxy."""

    def __init__(self, factory: Callable[[], Any], service: ClientService) -> None:
        self._factory = factory
        self._service = service

    def build_protocol(self, addr: object) -> Any:
        build = getattr(self._factory, "build_protocol", None)
        proto = build(addr) if build is not None else self._factory()
        return None if proto is None else _ProtocolProxy(proto, self._service)

    def __call__(self) -> Any:
        return self.build_protocol(None)


class ClientService:
    """Keep one connection to ``endpoint`` up, reconnecting with jittered backoff.

    Args:
        endpoint: An ``IStreamClientEndpoint``.
        factory: The protocol factory for each connection.
        retry: ``retry(attempt) -> seconds`` before attempt ``attempt + 1``; the default
            is ``backoff_policy()``.
        clock: The ``IReactorTime`` for the delays; defaults to the process's reactor.

    Example:
        >>> from plait.cluster.task import Clock
        >>> service = ClientService(endpoint, MyProtocol, clock=Clock())  # doctest: +SKIP
        >>> service.start_service()  # doctest: +SKIP
        >>> service.when_connected().add_callback(lambda proto: proto.hello())  # doctest: +SKIP
    """

    def __init__(
        self,
        endpoint: IStreamClientEndpoint,
        factory: Callable[[], Any],
        retry: Callable[[int], float] | None = None,
        clock: IReactorTime | None = None,
    ) -> None:
        if clock is None:
            from plait.cluster.reactor import get_reactor

            clock = get_reactor()
        self._endpoint = endpoint
        self._factory = _ServiceFactory(factory, self)
        self._retry = retry if retry is not None else backoff_policy()
        self._clock = clock
        self._state = _State.IDLE
        self._failures = 0
        self._attempt: Deferred[Any] | None = None
        self._timer: Any = None
        self._proxy: _ProtocolProxy | None = None
        self._waiters: list[_Waiter] = []
        self._stopping: list[Deferred[None]] = []

    @property
    def running(self) -> bool:
        """True between ``start_service`` and ``stop_service``."""
        return self._state not in (_State.IDLE, _State.STOPPED)

    # ----------------------------------------------------------------- user API

    def start_service(self) -> None:
        """Start connecting; a no-op when already running."""
        if not self.running:
            self._failures = 0
            self._connect()

    def stop_service(self) -> Deferred[None]:
        """Stop: cancel what is pending and close the connection.

        Returns:
            A Deferred that fires with ``None`` once the connection (if any) is closed.
        """
        state = self._state
        if state in (_State.IDLE, _State.STOPPED):
            self._state = _State.STOPPED
            return succeed(None)
        self._cancel_waiters()
        if state is _State.DISCONNECTING or state is _State.CONNECTED:
            d: Deferred[None] = Deferred()
            self._stopping.append(d)
            if state is _State.CONNECTED:
                self._state = _State.DISCONNECTING
                assert self._proxy is not None
                self._proxy.transport.close()
            return d
        self._state = _State.STOPPED
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._attempt is not None:
            attempt, self._attempt = self._attempt, None
            attempt.cancel()
        return succeed(None)

    def when_connected(self, fail_after_failures: int | None = None) -> Deferred[Any]:
        """A Deferred of the connected protocol: at once if connected, else on the next
        connection.

        Args:
            fail_after_failures: Errback with the last attempt's failure after this many
                failed attempts (counted from this call); ``None`` waits for ever.

        Returns:
            A Deferred that errbacks with ``CancelledError`` if the service stops first
            (or is stopped already), or with the connection failure.

        Raises:
            ValueError: ``fail_after_failures`` is not a positive integer.
        """
        if fail_after_failures is not None and (
            isinstance(fail_after_failures, bool)
            or not isinstance(fail_after_failures, int)
            or fail_after_failures < 1
        ):
            raise ValueError(
                f"fail_after_failures must be a positive int, not {fail_after_failures!r}"
            )
        if self._state is _State.CONNECTED:
            assert self._proxy is not None
            return succeed(self._proxy._wrapped)
        if self._state is _State.STOPPED or self._state is _State.DISCONNECTING:
            return fail(CancelledError("the ClientService is stopped"))
        waiter: _Waiter

        def cancel(d: Deferred[Any]) -> None:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

        waiter = _Waiter(Deferred(cancel), fail_after_failures)
        self._waiters.append(waiter)
        return waiter.deferred

    # ---------------------------------------------------------------- machinery

    def _connect(self) -> None:
        self._timer = None
        self._state = _State.CONNECTING
        try:
            attempt: Deferred[Any] = self._endpoint.connect(self._factory)
        except Exception as exc:
            attempt = fail(exc)
        self._attempt = attempt
        attempt.add_callbacks(self._connected, self._failed, errback_args=(attempt,),
                              callback_args=(attempt,))

    def _connected(self, proxy: Any, attempt: Deferred[Any]) -> None:
        if attempt is not self._attempt:
            # Stopped while connecting and the endpoint could not cancel in time.
            log.debug("ClientService: closing a connection made after stop_service")
            if proxy is not None and proxy.transport is not None:
                proxy.transport.close()
            return
        self._attempt = None
        self._failures = 0
        if proxy.lost:  # lost before the endpoint's Deferred fired
            self._wait(1)
            return
        self._state = _State.CONNECTED
        self._proxy = proxy
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.deferred.callback(proxy._wrapped)

    def _failed(self, failure: Failure, attempt: Deferred[Any]) -> None:
        if attempt is not self._attempt:
            return None  # our own cancellation in stop_service: consumed
        self._attempt = None
        self._failures += 1
        log.debug("ClientService: attempt %d failed: %s", self._failures, failure.value)
        for waiter in list(self._waiters):
            waiter.failures += 1
            if waiter.fail_after is not None and waiter.failures >= waiter.fail_after:
                self._waiters.remove(waiter)
                waiter.deferred.errback(failure)
        self._wait(self._failures)
        return None

    def _lost(self, proxy: _ProtocolProxy) -> list[Deferred[None]]:
        """The connection of ``proxy`` ended; returns the stop Deferreds to fire."""
        if proxy is not self._proxy:
            return []
        self._proxy = None
        if self._state is _State.DISCONNECTING:
            self._state = _State.STOPPED
            stopping, self._stopping = self._stopping, []
            return stopping
        self._failures = 1  # as Twisted counts it: the next failure is attempt 2
        self._wait(1)
        return []

    def _wait(self, attempt: int) -> None:
        self._state = _State.WAITING
        delay = max(0.0, float(self._retry(attempt)))
        self._timer = self._clock.call_later(delay, self._connect)

    def _cancel_waiters(self) -> None:
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.deferred.errback(Failure(CancelledError("the ClientService stopped")))

    def __repr__(self) -> str:
        return f"<ClientService {self._endpoint!r} {self._state.value}>"
