"""Remote Deferreds: Deferreds that cross the bus as values (rule 4 of ``_rpc_node``).

Theory of operation: the codec meets a Deferred while encoding a message for a peer
and calls ``export``, which numbers it (a *ref*) in that peer's ``exported`` table.
Once the message has left, ``watch_exports`` attaches the callbacks that forward
the outcome as ``ref-result``/``ref-error``; they are attached on a later turn, so
the outcome of a Deferred that already fired cannot overtake the message that
carries its reference. On the receiving side the codec meets the reference and
calls ``import_``, which makes a proxy Deferred in the sender's ``proxies`` table;
cancelling the proxy sends ``ref-cancel``, which cancels the original. Losing a
peer fails the proxies it owed with ``PeerLost`` and forgets what it held.
"""

from __future__ import annotations

import functools
import itertools
from typing import TYPE_CHECKING, Any

from plait.cluster._rpc_codec import Codec, exception_name
from plait.cluster._rpc_errors import CodecError, PeerLost, RemoteError
from plait.cluster._rpc_peer import _Peer
from plait.cluster._rpc_wire import ErrorInfo, RefCancel, RefError, RefResult
from plait.cluster.defer import Deferred
from plait.cluster.failure import Failure
from plait.cluster.interfaces import IReactorTime

if TYPE_CHECKING:
    from plait.cluster._rpc_node import Node

__all__ = ["References", "error_info"]


def error_info(failure: Failure, codec: Codec) -> ErrorInfo:
    """A failure as it crosses the bus (a nested call's RemoteError passes as it was)."""
    value = failure.value
    if isinstance(value, RemoteError):
        return ErrorInfo(
            type=value.remote_type, message=value.message, traceback=value.remote_traceback
        )
    return ErrorInfo(
        type=codec.exception_name(value), message=str(value), traceback=failure.get_traceback()
    )


class References:
    """The remote-Deferred bookkeeping of one node.

    Attributes:
        encoding_for: The peer the message being encoded goes to (None: none may
            carry a Deferred, e.g. a publication).
        decoding_from: The peer the message being decoded came from.
        exports: ``(peer, ref, deferred)`` met while encoding the current message.
        imports: ``(peer, ref)`` made while decoding the current message.
    """

    def __init__(self, node: Node) -> None:
        self._node = node
        self._refs = itertools.count(1)
        self.encoding_for: _Peer | None = None
        self.decoding_from: _Peer | None = None
        self.exports: list[tuple[_Peer, int, Deferred[Any]]] = []
        self.imports: list[tuple[_Peer, int]] = []

    # ------------------------------------------------------------ codec hooks

    def export(self, deferred: Deferred[Any]) -> int:
        """Codec hook: number ``deferred`` for ``encoding_for``."""
        peer = self.encoding_for
        if peer is None:
            raise CodecError("a Deferred can only be sent to one node (not published)")
        ref = next(self._refs)
        peer.exported[ref] = deferred
        self.exports.append((peer, ref, deferred))
        return ref

    def import_(self, ref: int) -> Deferred[Any]:
        """Codec hook: a proxy for ``decoding_from``'s Deferred ``ref``."""
        peer = self.decoding_from
        if peer is None:
            raise CodecError("a Deferred reference from a node that did not say hello")
        if ref in peer.proxies:
            raise CodecError(f"reference {ref} is already held")
        proxy: Deferred[Any] = Deferred(functools.partial(self._cancel_proxy, peer, ref))
        peer.proxies[ref] = proxy
        self.imports.append((peer, ref))
        return proxy

    def forget_exports(self) -> None:
        """The message failed to encode: its references never left."""
        for owner, ref, _ in self.exports:
            owner.exported.pop(ref, None)
        self.exports = []

    def forget_imports(self) -> None:
        """The message failed validation: drop the proxies its decoding made."""
        for owner, ref in self.imports:
            owner.proxies.pop(ref, None)
        self.imports = []

    def watch_exports(self, clock: IReactorTime) -> None:
        """Forward the outcomes of this message's Deferreds, from a later turn."""
        exports, self.exports = self.exports, []
        clock.call_later(0, self._watch, exports)

    def _watch(self, exports: list[tuple[_Peer, int, Deferred[Any]]]) -> None:
        for peer, ref, deferred in exports:
            deferred.add_callbacks(
                self._fired,
                self._failed,
                callback_args=(peer, ref),
                errback_args=(peer, ref),
            )

    # ------------------------------------------------------------ outcomes

    def _fired(self, value: Any, peer: _Peer, ref: int) -> None:
        if peer.exported.pop(ref, None) is None:
            return  # cancelled by the holder, or the holder is gone
        node = self._node
        try:
            data = node._encode(RefResult(ref=ref, value=value), peer)
        except CodecError as exc:
            info = ErrorInfo(type=exception_name(exc), message=str(exc))
            node._send_message(peer, RefError(ref=ref, error=info))
            return
        node._send(peer, data)

    def _failed(self, failure: Failure, peer: _Peer, ref: int) -> None:
        if peer.exported.pop(ref, None) is not None:
            info = error_info(failure, self._node.codec)
            self._node._send_message(peer, RefError(ref=ref, error=info))

    def _cancel_proxy(self, peer: _Peer, ref: int, proxy: Deferred[Any]) -> None:
        if peer.proxies.pop(ref, None) is not None and self._node._is_connected(peer):
            self._node._send_message(peer, RefCancel(ref=ref))

    # ------------------------------------------------------------ messages

    def on_result(self, peer: _Peer, msg: RefResult) -> None:
        """``ref-result``: fire the proxy."""
        proxy = peer.proxies.pop(msg.ref, None)
        if proxy is None:
            self._node._drop("unknown_ref", peer.route, f"ref-result {msg.ref}")
            return
        proxy.callback(msg.value)

    def on_error(self, peer: _Peer, msg: RefError) -> None:
        """``ref-error``: fail the proxy."""
        proxy = peer.proxies.pop(msg.ref, None)
        if proxy is None:
            self._node._drop("unknown_ref", peer.route, f"ref-error {msg.ref}")
            return
        proxy.errback(self._node._exception(peer, msg.error))

    def on_cancel(self, peer: _Peer, msg: RefCancel) -> None:
        """``ref-cancel``: cancel the original."""
        deferred = peer.exported.pop(msg.ref, None)
        if deferred is None:
            self._node._drop("unknown_ref", peer.route, f"ref-cancel {msg.ref}")
            return
        deferred.cancel()

    def lose(self, peer: _Peer, reason: str) -> None:
        """``peer`` is gone: fail what it owed, forget what it held."""
        peer.exported.clear()
        proxies, peer.proxies = peer.proxies, {}
        for proxy in proxies.values():
            proxy.errback(PeerLost(peer.name, reason))
