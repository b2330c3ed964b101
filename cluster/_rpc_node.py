"""The bus node: calls in flight, calls being served, remote Deferreds.

Theory of operation. A node speaks the wire format of ``_rpc_wire`` through a
link (``_rpc_link``); it never touches a socket. Its rules:

1. Peers introduce themselves. A node that opens a connection sends ``hello``
   and gets ``welcome``; both carry the name, the exposed methods and the
   subscribed topics. Anything else from a route that has not said hello is
   dropped. A hello under a name already known on another route replaces that
   route (the old one is lost: a restarted worker takes its name back).
2. A call gets an id unique within this node. Exactly one of these ends it,
   whichever comes first: its result, its error, its timeout (TimeoutError,
   and a ``cancel`` goes to the callee), the caller's ``cancel()`` (a ``cancel``
   goes to the callee), or the loss of the peer (PeerLost). Anything that
   arrives for an id that has ended is dropped and counted as ``unknown_call``.
3. A callee answers each call once, unless the caller cancelled it or its
   deadline passed: then the handler's Deferred is cancelled and no answer is
   sent (nobody waits for it). A peer may have at most ``max_serving`` calls
   running here at once (handlers whose Deferred has not fired); a call beyond
   that is not run but answered at once with ``Overloaded``, so a flood of calls
   from one peer costs memory only up to that bound.
4. A Deferred inside a value is sent as a reference; the receiver holds a remote
   Deferred. The sender forwards the original's outcome (``ref-result`` /
   ``ref-error``) after the message that carried the reference; the holder may
   cancel it (``ref-cancel``). The bus takes the original's result, as
   ``chain_deferred`` does. Losing a peer fails the remote Deferreds it owed.
5. Hostile input never raises out of ``link_received``: each bad message is
   dropped and counted under a reason (``_rpc_peer.DROP_REASONS``).
6. A node calls itself through a *loopback* peer, made at its first such call:
   an ordinary peer on the route ``_SELF`` (no link's route is empty) whose frames
   the node delivers to itself on a later turn of the clock instead of giving
   them to the link. Every rule above holds for it (values cross the codec,
   cancels and deadlines reach the handler, Deferreds travel as references); it
   is never listed among the peers, and a hello that claims this node's own name
   is dropped.
"""

from __future__ import annotations

import functools
import itertools
import logging
from collections.abc import Callable
from types import CoroutineType
from typing import Any

from plait.cluster._rpc_codec import Codec, exception_name
from plait.cluster._rpc_errors import (
    CodecError,
    NoSuchMethod,
    Overloaded,
    PeerLost,
    RemoteError,
    TimeoutError,
    WireError,
)
from plait.cluster._rpc_link import IBusLink
from plait.cluster._rpc_peer import BusStatistics, _new_counter, _OutCall, _Peer, _Serving
from plait.cluster._rpc_refs import References, error_info
from plait.cluster._rpc_wire import (
    DEFAULT_MAX_MESSAGE,
    VERSION,
    Bye,
    Call,
    Cancel,
    Error,
    ErrorInfo,
    Hello,
    Message,
    Notify,
    Publish,
    RefCancel,
    RefError,
    RefResult,
    Result,
    decode,
)
from plait.cluster.defer import CancelledError, Deferred, ensure_deferred, fail
from plait.cluster.failure import Failure
from plait.cluster.interfaces import IReactorTime

__all__ = ["DEFAULT_MAX_SERVING", "Node"]

log = logging.getLogger("plait.cluster.rpc")

_NO_SUCH_METHOD = exception_name(NoSuchMethod("", ""))
_OVERLOADED = exception_name(Overloaded("", 0))
DEFAULT_MAX_SERVING = 100_000
_SELF = b""  # the loopback peer's route


class Node:
    """The call logic of a bus node (``Bus`` adds its construction and lifecycle).

    Args:
        name: This node's name on the bus.
        clock: Schedules timeouts, deadlines and deferred deliveries.
        link: Carries the frames.
        max_message: Received messages longer than this are dropped (``oversize``).
        max_serving: How many calls from one peer may run here at once.
    """

    def __init__(
        self,
        name: str,
        clock: IReactorTime,
        link: IBusLink,
        *,
        max_message: int,
        max_serving: int = DEFAULT_MAX_SERVING,
    ) -> None:
        if max_serving < 1:
            raise ValueError("max_serving must be at least 1")
        if not name or not isinstance(name, str):
            raise ValueError("a bus node needs a non-empty str name")
        self.name = name
        self._clock = clock
        self._link = link
        self._max_message = max_message or DEFAULT_MAX_MESSAGE
        self._max_serving = max_serving
        self._refused = 0
        self._references = References(self)
        self._codec = Codec(
            encode_deferred=self._references.export,
            decode_reference=self._references.import_,
            deferred_type=Deferred,
        )
        self._methods: dict[str, Callable[..., Any]] = {}
        self._subscribers: dict[str, list[Callable[[Any], object]]] = {}
        self._routes: dict[bytes, _Peer] = {}
        self._names: dict[str, _Peer] = {}
        self._calls: dict[int, _OutCall] = {}
        self._ids = itertools.count(1)
        self._rotation = 0
        self._dropped = _new_counter()
        self._sent = 0
        self._received = 0
        self._lost = 0
        self._pack = self._codec.packb
        self._link_send = link.send
        self._dispatch: dict[type, Callable[[_Peer, Any], None]] = {
            Call: self._on_call,
            Result: self._on_result,
            Error: self._on_error,
            Cancel: self._on_cancel,
            Notify: self._on_notify,
            Publish: self._on_publish,
            RefResult: self._references.on_result,
            RefError: self._references.on_error,
            RefCancel: self._references.on_cancel,
            Bye: lambda peer, msg: self._lose(peer, "left the bus"),
        }

    @property
    def codec(self) -> Codec:
        """The codec: register exception classes and extension types on it."""
        return self._codec

    # ------------------------------------------------------------ exposing

    def expose(self, name: str, fn: Callable[..., Any]) -> None:
        """Serve ``fn`` as method ``name``.

        ``fn(*args, **kwargs)`` may return a value, a Deferred or a coroutine; a
        Deferred or coroutine is cancelled when the caller cancels or the call's
        deadline passes. Peers learn of the new method at once.
        """
        if not callable(fn):
            raise TypeError(f"{fn!r} is not callable")
        self._methods[name] = fn
        self._announce()

    def method(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """Decorator form of ``expose``: ``@bus.method("add")``."""

        def register(fn: Callable[..., Any]) -> Callable[..., Any]:
            self.expose(name, fn)
            return fn

        return register

    def _announce(self) -> None:
        """Overridden by Bus to tell peers about new methods and topics."""

    def _hello(self, *, welcome: bool) -> Hello:
        return Hello(
            node=self.name,
            methods=tuple(sorted(self._methods)),
            topics=tuple(sorted(self._subscribers)),
            welcome=welcome,
        )

    # ------------------------------------------------------------ calling

    def call(
        self, node: str, method: str, *args: Any, timeout: float | None = None, **kwargs: Any
    ) -> Deferred[Any]:
        """Call ``method`` on ``node``; a remote Deferred of its result.

        Cancelling the Deferred cancels the callee's work. ``timeout`` (seconds)
        also travels with the call as its deadline, after which the callee stops.

        Returns:
            A Deferred that fires with the result, or errbacks with
            ``RemoteError`` (the handler failed), ``NoSuchMethod``,
            ``TimeoutError``, ``PeerLost`` (unknown, dead or departed node),
            ``CodecError`` (an argument has no encoding) or ``CancelledError``.
        """
        peer = self._names.get(node)
        if peer is None:
            peer = self._loopback() if node == self.name else None
            if peer is None:
                return fail(PeerLost(node, "no such node on the bus"))
        return self._call_peer(peer, method, args, kwargs, timeout)

    def _call_peer(
        self,
        peer: _Peer,
        method: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        timeout: float | None,
    ) -> Deferred[Any]:
        call_id = next(self._ids)
        # The layout of wire.Call.to_map, spelled out, and _encode_map inlined: this
        # is the hot path (a call costs a few microseconds of Python in all).
        references = self._references
        references.encoding_for = peer
        try:
            data = self._pack(
                {
                    "v": VERSION,
                    "t": "call",
                    "id": call_id,
                    "method": method,
                    "args": args,
                    "kwargs": kwargs,
                    "timeout": timeout,
                }
            )
        except CodecError as exc:
            references.forget_exports()
            return fail(exc)
        finally:
            references.encoding_for = None
        if references.exports:
            references.watch_exports(self._clock)
        deferred: Deferred[Any] = Deferred(functools.partial(self._cancel_call, call_id))
        entry = _OutCall(deferred, peer)
        self._calls[call_id] = entry
        peer.outstanding += 1
        if timeout is not None:
            entry.timer = self._clock.call_later(timeout, self._time_out, call_id)
        self._sent += 1
        self._link_send(peer.route, data)
        return deferred

    def notify(self, node: str, method: str, *args: Any, **kwargs: Any) -> None:
        """Call ``method`` on ``node`` one way: no result, no error comes back.

        An unknown node or an argument without an encoding is logged and dropped.
        """
        peer = self._names.get(node) or (self._loopback() if node == self.name else None)
        if peer is None:
            log.warning("notify %s on unknown node %r dropped", method, node)
            return
        try:
            data = self._encode(Notify(method=method, args=list(args), kwargs=kwargs), peer)
        except CodecError:
            log.warning("notify %s on %r has no encoding; dropped", method, node, exc_info=True)
            return
        self._sent += 1
        self._send(peer, data)

    def _end_call(self, call_id: int) -> _OutCall | None:
        entry = self._calls.pop(call_id, None)
        if entry is not None:
            entry.peer.outstanding -= 1
            if entry.timer is not None and entry.timer.active():
                entry.timer.cancel()
        return entry

    def _cancel_call(self, call_id: int, deferred: Deferred[Any]) -> None:
        entry = self._end_call(call_id)
        if entry is not None and entry.peer.route in self._routes:
            self._send_message(entry.peer, Cancel(id=call_id))
        # The Deferred errbacks with CancelledError once this returns.

    def _time_out(self, call_id: int) -> None:
        entry = self._calls.get(call_id)
        if entry is None:
            return
        entry.timer = None
        self._end_call(call_id)
        if entry.peer.route in self._routes:
            self._send_message(entry.peer, Cancel(id=call_id))
        entry.deferred.errback(TimeoutError(f"call {call_id} to {entry.peer.name} timed out"))

    # ------------------------------------------------------------ receiving

    def link_received(self, route: bytes, data: bytes) -> None:
        """Handle one frame from ``route`` (the link calls this)."""
        peer = self._routes.get(route)
        references = self._references
        references.decoding_from = peer
        try:
            message = decode(data, self._codec, max_size=self._max_message)
        except WireError as exc:
            references.forget_imports()  # remote Deferreds made before the fault
            self._drop(exc.reason, route, exc.detail)
            return
        finally:
            references.decoding_from = None
            if references.imports:
                references.imports = []
        kind = type(message)
        if kind is Hello:
            self._on_hello(route, message)  # type: ignore[arg-type]
        elif peer is None:
            self._drop("unknown_peer", route, kind.__name__)
        else:
            self._dispatch[kind](peer, message)

    def _drop(self, reason: str, route: bytes, detail: str) -> None:
        self._dropped[reason] += 1
        log.debug("dropped a message from %r (%s): %s", route, reason, detail)

    def _on_hello(self, route: bytes, hello: Hello) -> None:
        if hello.node == self.name and route != _SELF:
            log.warning("%r: a peer says hello under this node's own name; dropped", route)
            self._drop("invalid", route, "a hello under this node's own name")
            return
        peer = self._routes.get(route)
        if peer is None or peer.name != hello.node:
            if peer is not None:
                self._lose(peer, f"renamed itself {hello.node!r}")
            previous = self._names.get(hello.node)
            if previous is not None:
                self._lose(previous, "reconnected on another route")
            peer = _Peer(hello.node, route)
            self._routes[route] = peer
            self._names[hello.node] = peer
        peer.methods = frozenset(hello.methods)
        peer.topics = frozenset(hello.topics)
        if not hello.welcome:
            self._send_message(peer, self._hello(welcome=True))
        self._peer_ready(peer)

    def _peer_ready(self, peer: _Peer) -> None:
        """Overridden by Bus: ``start()`` waits for the peers it connected to."""

    # ------------------------------------------------------------ serving

    def _on_call(self, peer: _Peer, msg: Call) -> None:
        self._received += 1
        if msg.id in peer.serving:
            self._drop("duplicate_call", peer.route, str(msg.id))
            return
        fn = self._methods.get(msg.method)
        if fn is None:
            info = ErrorInfo(type=_NO_SUCH_METHOD, message=msg.method)
            self._send_message(peer, Error(id=msg.id, error=info))
            return
        if len(peer.serving) >= self._max_serving:
            self._refused += 1
            info = ErrorInfo(type=_OVERLOADED, message=str(self._max_serving))
            self._send_message(peer, Error(id=msg.id, error=info))
            return
        try:
            result = fn(*msg.args, **msg.kwargs)
            if type(result) is CoroutineType:  # inspect.iscoroutine, without the call
                result = ensure_deferred(result)
        except Exception:
            self._send_message(peer, Error(id=msg.id, error=error_info(Failure(), self._codec)))
            return
        if not isinstance(result, Deferred):
            self._answer(peer, msg.id, result)
            return
        entry = _Serving(result)
        peer.serving[msg.id] = entry
        if msg.timeout is not None:
            entry.timer = self._clock.call_later(msg.timeout, self._deadline, peer, msg.id)
        result.add_callbacks(
            self._served,
            self._serve_failed,
            callback_args=(peer, msg.id),
            errback_args=(peer, msg.id),
        )

    def _finish_serving(self, peer: _Peer, call_id: int) -> bool:
        entry = peer.serving.pop(call_id, None)
        if entry is None:
            return False  # cancelled, past its deadline, or the peer is gone
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        return True

    def _served(self, value: Any, peer: _Peer, call_id: int) -> None:
        if self._finish_serving(peer, call_id):
            self._answer(peer, call_id, value)

    def _serve_failed(self, failure: Failure, peer: _Peer, call_id: int) -> None:
        if self._finish_serving(peer, call_id):
            self._send_message(peer, Error(id=call_id, error=error_info(failure, self._codec)))
        elif not failure.check(CancelledError):
            log.info("call %d from %s failed after it was abandoned: %s", call_id, peer.name,
                     failure.get_error_message())

    def _answer(self, peer: _Peer, call_id: int, value: Any) -> None:
        references = self._references
        references.encoding_for = peer
        try:  # _encode_map inlined: the hot path
            data = self._pack({"v": VERSION, "t": "result", "id": call_id, "value": value})
        except CodecError as exc:
            references.forget_exports()
            info = ErrorInfo(type=exception_name(exc), message=str(exc))
            self._send_message(peer, Error(id=call_id, error=info))
            return
        finally:
            references.encoding_for = None
        if references.exports:
            references.watch_exports(self._clock)
        self._link_send(peer.route, data)

    def _deadline(self, peer: _Peer, call_id: int) -> None:
        entry = peer.serving.pop(call_id, None)
        if entry is not None:
            entry.timer = None
            log.debug("call %d from %s passed its deadline; cancelling it", call_id, peer.name)
            entry.deferred.cancel()

    def _on_cancel(self, peer: _Peer, msg: Cancel) -> None:
        entry = peer.serving.pop(msg.id, None)
        if entry is None:
            self._drop("unknown_call", peer.route, f"cancel {msg.id}")
            return
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        entry.deferred.cancel()

    def _on_notify(self, peer: _Peer, msg: Notify) -> None:
        self._received += 1
        fn = self._methods.get(msg.method)
        if fn is None:
            log.warning("notification of unknown method %r from %s", msg.method, peer.name)
            return
        try:
            result = fn(*msg.args, **msg.kwargs)
            if type(result) is CoroutineType:
                result = ensure_deferred(result)
        except Exception:
            log.exception("notification %s from %s failed", msg.method, peer.name)
            return
        if isinstance(result, Deferred):
            result.add_errback(self._log_failure, f"notification {msg.method} from {peer.name}")

    @staticmethod
    def _log_failure(failure: Failure, what: str) -> None:
        log.error("%s failed:\n%s", what, failure.get_traceback())

    # ------------------------------------------------------------ answers

    def _on_result(self, peer: _Peer, msg: Result) -> None:
        entry = self._calls.pop(msg.id, None)
        if entry is None or entry.peer is not peer:
            if entry is not None:  # someone else's call: leave it be
                self._calls[msg.id] = entry
            self._drop("unknown_call", peer.route, f"result {msg.id}")
            return
        peer.outstanding -= 1
        if entry.timer is not None and entry.timer.active():
            entry.timer.cancel()
        entry.deferred.callback(msg.value)

    def _on_error(self, peer: _Peer, msg: Error) -> None:
        entry = self._calls.get(msg.id)
        if entry is None or entry.peer is not peer:
            self._drop("unknown_call", peer.route, f"error {msg.id}")
            return
        self._end_call(msg.id)
        entry.deferred.errback(self._exception(peer, msg.error))

    def _exception(self, peer: _Peer, info: ErrorInfo) -> Exception:
        if info.type == _NO_SUCH_METHOD:
            return NoSuchMethod(peer.name, info.message)
        if info.type == _OVERLOADED:
            limit = int(info.message) if info.message.isdigit() else 0
            return Overloaded(peer.name, limit)
        local: BaseException | None = None
        cls = self._codec.exception_type(info.type)
        if cls is not None:
            try:
                local = cls(info.message)
            except Exception:  # a class whose constructor wants other arguments
                log.debug("cannot rebuild %s locally", info.type, exc_info=True)
        return RemoteError(info.type, info.message, info.traceback, local)

    # ------------------------------------------------------------ publish/subscribe

    def _on_publish(self, peer: _Peer, msg: Publish) -> None:
        self._deliver(msg.topic, msg.msg)

    def _deliver(self, topic: str, msg: Any) -> None:
        for subscriber in list(self._subscribers.get(topic, ())):
            try:
                subscriber(msg)
            except Exception:
                log.exception("subscriber %r of topic %r failed", subscriber, topic)

    # ------------------------------------------------------------ sending

    def _encode(self, message: Message, peer: _Peer) -> bytes:
        return self._encode_map(message.to_map(), peer)

    def _encode_map(self, fields: dict[str, Any], peer: _Peer) -> bytes:
        references = self._references
        references.encoding_for = peer
        try:
            data = self._pack(fields)
        except CodecError:
            references.forget_exports()
            raise
        finally:
            references.encoding_for = None
        if references.exports:
            references.watch_exports(self._clock)
        return data

    def _send_message(self, peer: _Peer, message: Message) -> None:
        try:
            data = self._encode(message, peer)
        except CodecError:
            log.exception("cannot encode %s for %s", type(message).__name__, peer.name)
            return
        self._send(peer, data)

    def _send(self, peer: _Peer, data: bytes) -> None:
        self._link_send(peer.route, data)

    # ------------------------------------------------------------ calling oneself

    def _loopback(self) -> _Peer | None:
        """The peer that stands for this node itself (made on first use); None once stopped."""
        peer = self._routes.get(_SELF)
        if peer is None:
            if not self._may_loop_back():
                return None
            peer = _Peer(self.name, _SELF)
            self._routes[_SELF] = peer
            self._link_send = self._send_or_loop_back  # only nodes that call themselves pay
        return peer

    def _may_loop_back(self) -> bool:
        """Overridden by Bus: not once it has stopped."""
        return True

    def _send_or_loop_back(self, route: bytes, data: bytes) -> None:
        if route == _SELF:
            self._clock.call_later(0, self._looped_back, data)
        else:
            self._link.send(route, data)

    def _looped_back(self, data: bytes) -> None:
        if _SELF in self._routes:  # not after the loopback peer was lost (the bus stopped)
            self.link_received(_SELF, data)

    def _is_connected(self, peer: _Peer) -> bool:
        return self._routes.get(peer.route) is peer

    # ------------------------------------------------------------ losing peers

    def link_lost(self, route: bytes, reason: str) -> None:
        """The link lost the connection behind ``route`` (the link calls this)."""
        peer = self._routes.get(route)
        if peer is not None:
            self._lose(peer, reason)

    def peer_lost(self, node: str, reason: str = "reported lost") -> bool:
        """Declare ``node`` dead (the supervisor calls this when a worker exits).

        Its calls in flight errback with ``PeerLost``, the calls it made are
        cancelled, and the remote Deferreds it owed errback with ``PeerLost``.

        Returns:
            True when the node was known.
        """
        peer = self._names.get(node)
        if peer is None:
            return False
        self._lose(peer, reason)
        return True

    def _lose(self, peer: _Peer, reason: str) -> None:
        if self._routes.get(peer.route) is not peer:
            return
        del self._routes[peer.route]
        if self._names.get(peer.name) is peer:
            del self._names[peer.name]
        if peer.route != _SELF:
            self._lost += 1
            log.info("peer %s lost: %s", peer.name, reason)
        error = PeerLost(peer.name, reason)
        serving, peer.serving = peer.serving, {}
        for entry in serving.values():
            if entry.timer is not None and entry.timer.active():
                entry.timer.cancel()
            entry.deferred.cancel()
        self._references.lose(peer, reason)
        for call_id in [cid for cid, out in self._calls.items() if out.peer is peer]:
            ended = self._end_call(call_id)
            if ended is not None:
                ended.deferred.errback(error)

    # ------------------------------------------------------------ statistics

    def statistics(self) -> BusStatistics:
        """A snapshot of this node's counters."""
        return BusStatistics(
            name=self.name,
            peers=tuple(sorted(self._names)),
            calls_in_flight=len(self._calls),
            calls_serving=sum(len(p.serving) for p in self._routes.values()),
            calls_sent=self._sent,
            calls_received=self._received,
            calls_refused=self._refused,
            peers_lost=self._lost,
            dropped=sum(self._dropped.values()),
            dropped_by_reason=dict(self._dropped),
        )
