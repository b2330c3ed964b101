"""plait.protocols.http.wsgi: run a PEP 3333 application in the reactor's thread pool.

Theory of operation. The reactor thread reads the whole request body first (it is
bounded by ``Limits.max_body``), builds the environ (``_wsgi.build_environ``) with
``wsgi.input`` as a file over it, and hands the call to a pool thread. That thread
calls the application and iterates what it returns. Bytes reach the client through
the reactor thread:

- If the application returns a list or tuple (the usual case: Flask, Django) and
  called no ``write()``, the thread returns status, headers and the joined body at
  once, and the server sends a plain ``Response``.
- Otherwise the thread streams: each non-empty block is handed to the reactor
  thread, and the pool thread waits until the block has been written and the
  client's socket is not backed up. So a slow client slows the application
  down instead of filling memory, and no block waits for the next one (PEP 3333);
  the head goes out with the first block.

``start_response`` follows PEP 3333 (``_wsgi.StartResponse``). The result's
``close()`` is always called. An exception before the head was sent becomes a 500
(logged by the server); after, the connection is aborted, the only honest signal
left. If the client goes away, or the reactor shuts down, the application's next
(or current) write raises ``ConnectionError`` in its thread, so the pool can stop.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from plait.cluster.defer import Deferred, DeferredQueue
from plait.cluster.failure import Failure
from plait.cluster.threads import defer_to_thread_pool

from ._request import Request
from ._response import Response, StreamingResponse
from ._wsgi import StartResponse, build_environ, parse_status

__all__ = ["WSGIApp"]

WSGIApplication = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _Done:
    """End of a streamed WSGI body (``error`` set when the application failed)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


class _Call:
    """One WSGI call: the state shared by its pool thread and the reactor thread."""

    def __init__(self, app: WSGIApplication, environ: dict[str, Any], reactor: Any) -> None:
        self.app = app
        self.environ = environ
        self.reactor = reactor
        self.head = StartResponse()
        self.streaming = False
        self.head_ready: Deferred[bool] = Deferred()  # True: streaming begins
        self.queue: DeferredQueue[bytes | _Done] = DeferredQueue()
        self.room: Deferred[None] | None = None  # fires when the queue may take more
        self.abandoned = False  # the client went away: stop the application's output

    # -- the pool thread ----------------------------------------------------------------

    def start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> Callable[[bytes], None]:
        self.head(status, headers, exc_info)
        return self.write

    def write(self, data: bytes) -> None:
        """PEP 3333's ``write()`` callable: send ``data`` now."""
        if not isinstance(data, bytes):
            raise TypeError(f"WSGI write() takes bytes, not {type(data).__name__}")
        self._send(data)

    def _send(self, data: bytes) -> None:
        if self.head.status is None:
            raise AssertionError("the WSGI application wrote before start_response")
        self.streaming = True
        if not self.head.head_sent:
            self.head.head_sent = True
            self._handoff(self._give_head)
        if data:
            self._handoff(self._put, data)

    def _handoff(self, f: Callable[..., Deferred[None] | None], *args: Any) -> None:
        """Run ``f(*args)`` in the reactor's thread and wait until what it returns fires.

        Unlike ``blocking_call_from_thread`` this gives up once the call is
        abandoned (the client left, or the reactor is shutting down), so a pool
        thread never waits for a reactor that will not answer.

        Raises:
            ConnectionError: the call was abandoned.
        """
        done = threading.Event()
        failed: list[BaseException] = []

        def settle(result: Any) -> None:
            if isinstance(result, Failure):
                failed.append(result.value)
            done.set()

        def run() -> None:
            try:
                d = f(*args)
            except BaseException as exc:  # handed to the waiting pool thread
                failed.append(exc)
                done.set()
                return
            if d is None:
                done.set()
            else:
                d.add_both(settle)

        self.reactor.call_from_thread(run)
        while not done.wait(0.25):
            if self.abandoned:
                raise ConnectionError("the client went away, or the server is stopping")
        if failed:
            raise failed[0]

    def run(self) -> tuple[str, list[tuple[str, str]], bytes] | None:
        """Run the application in this (pool) thread; the whole answer, or None if streamed."""
        result = self.app(self.environ, self.start_response)
        try:
            if isinstance(result, list | tuple) and not self.streaming:
                body = b"".join(result)
                if self.head.status is None:
                    raise AssertionError("the WSGI application never called start_response")
                return self.head.status, self.head.headers, body
            for block in result:
                if not isinstance(block, bytes):
                    raise TypeError(f"a WSGI body yielded {type(block).__name__}, not bytes")
                if block:
                    self._send(block)
            self._send(b"")  # a head, even for an empty body
            return None
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()

    # -- the reactor thread ----------------------------------------------------------------

    def _give_head(self) -> None:
        if self.abandoned:
            raise ConnectionError("the client went away")
        if not self.head_ready.called:
            self.head_ready.callback(True)

    def _put(self, data: bytes) -> Deferred[None] | None:
        if self.abandoned:
            raise ConnectionError("the client went away")
        room = self.room = Deferred()  # before put: the consumer may take it at once
        self.queue.put(data)
        return room

    def _taken(self) -> None:
        room, self.room = self.room, None
        if room is not None:
            room.callback(None)

    def abandon(self) -> None:
        """Nobody will read more: make the application's next write raise."""
        self.abandoned = True
        self._taken()

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                item = await self.queue.get()
                if isinstance(item, _Done):
                    if item.error is not None:
                        raise item.error
                    return
                yield item
                self._taken()  # written, and the transport is not paused: ask for more
        finally:
            self.abandon()


class WSGIApp:
    """Serve a WSGI (PEP 3333) application, such as Flask's, from a ``Site``.

    Args:
        application: The WSGI callable.
        reactor: The reactor whose thread pool runs it; default: the reactor of
            the request (``request.reactor``).
        pool: A ``ThreadPool`` to use instead of the reactor's.
        script_name: ``SCRIPT_NAME``, where the application is mounted.
        multiprocess: ``wsgi.multiprocess`` (True when served by a cluster).

    Example:
        >>> def hello(environ, start_response):
        ...     start_response("200 OK", [("Content-Type", "text/plain")])
        ...     return [b"hello"]
        >>> app = WSGIApp(hello)  # Site(app) serves it
    """

    def __init__(
        self,
        application: WSGIApplication,
        *,
        reactor: Any = None,
        pool: Any = None,
        script_name: str = "",
        multiprocess: bool = False,
    ) -> None:
        self.application = application
        self.reactor = reactor
        self.pool = pool
        self.script_name = script_name
        self.multiprocess = multiprocess
        self._calls: weakref.WeakSet[_Call] = weakref.WeakSet()
        self._watched: weakref.WeakSet[Any] = weakref.WeakSet()  # reactors with a trigger

    def _abandon_all(self) -> None:
        # The reactor is shutting down: let every pool thread that streams give up,
        # so stopping the pool does not wait for answers that will never come.
        for call in list(self._calls):
            call.abandon()

    def _watch(self, reactor: Any) -> None:
        try:
            if reactor in self._watched:
                return
            self._watched.add(reactor)
        except TypeError:  # a reactor that cannot be weakly referenced: watch it anyway
            pass
        reactor.add_system_event_trigger("before", "shutdown", self._abandon_all)

    async def __call__(self, request: Request) -> Response | StreamingResponse:
        """Run the application for ``request``; its response.

        Raises:
            RuntimeError: no reactor (neither given nor on the request).
            BaseException: what the application raised before its head was sent.
        """
        body = await request.body()
        reactor = self.reactor or request.reactor
        if reactor is None:
            raise RuntimeError("WSGIApp needs a reactor (pass reactor= or serve it from a Site)")
        pool = self.pool or reactor.get_thread_pool()
        environ = build_environ(
            request, body, script_name=self.script_name, multiprocess=self.multiprocess
        )
        call = _Call(self.application, environ, reactor)
        self._calls.add(call)
        self._watch(reactor)
        done = defer_to_thread_pool(reactor, pool, call.run)
        outcome: list[Any] = []

        def finished(result: Any) -> None:
            outcome.append(result)
            if not call.head_ready.called:
                call.head_ready.callback(False)  # not streaming: the answer is whole
            else:
                error = result.value if isinstance(result, Failure) else None
                call.queue.put(_Done(error))

        done.add_both(finished)
        try:
            streaming = await call.head_ready
        except BaseException:
            call.abandon()  # cancelled (the client left) before the head
            raise
        status = call.head.status
        assert status is not None or not streaming
        if not streaming:
            result = outcome[0]
            if isinstance(result, Failure):
                result.raise_exception()
            status, headers, data = result
            code, reason = parse_status(status)
            return Response(code, data, headers, reason=reason)
        assert status is not None
        code, reason = parse_status(status)
        return StreamingResponse(code, call.head.headers, call.chunks(), reason=reason)
