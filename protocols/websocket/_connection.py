"""The sans-IO WebSocket connection: bytes in, events out; events in, bytes out.

Theory of operation. A ``Connection`` starts ``OPEN`` (the opening handshake is
done by then: ``_handshake.py``). ``receive_data`` feeds the ``FrameReader`` and
turns its frames into whole messages and control events:

- Fragments (RFC 6455 section 5.4): a data frame with FIN clear starts a message,
  continuation frames extend it; a continuation with no message started, or a new
  data frame inside one, is 1002. Control frames may come between fragments.
- Text is validated as UTF-8 as it arrives (section 8.1), across fragments, with
  an incremental decoder: an invalid sequence fails the connection (1007) at the
  fragment that contains it, without waiting for the end of the message.
- A message over ``max_message_size`` (counted after decompression) is 1009, also
  as it grows.
- permessage-deflate (RFC 7692): RSV1 on a message's first frame means the
  message is compressed; RSV1 on a continuation is 1002 (section 6.1).
- Close frames (section 5.5.1, 7.4): no payload means code 1005; a 1-byte payload,
  a code that may not be sent (999, 1004-1006, 1015, 1016-2999, 5000+) is 1002;
  a reason that is not UTF-8 is 1007.

Closing handshake states (section 7): ``OPEN``; we sent a close and wait for theirs
(``LOCAL_CLOSING``); they sent one and we owe ours (``REMOTE_CLOSING``); both sent
(``CLOSED``). Bytes after the peer's close frame are ignored. After the peer
breaks the protocol, ``RemoteProtocolError`` carries the close frame to send
(section 7.1.7) and the connection is in ``ERROR``, refusing further use.
"""

from __future__ import annotations

import codecs
import enum
from collections.abc import Callable

from ._deflate import DeflateCodec, DeflateParams
from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import BytesMessage, CloseConnection, Event, Ping, Pong, TextMessage
from ._frames import MAX_CONTROL_PAYLOAD, FrameReader, Opcode, random_mask, serialize_frame

__all__ = ["CLIENT", "SERVER", "Connection", "Role", "State", "valid_close_code"]

_TEXT, _BINARY, _CONT = Opcode.TEXT.value, Opcode.BINARY.value, Opcode.CONTINUATION.value
_CLOSE, _PING, _PONG = Opcode.CLOSE.value, Opcode.PING.value, Opcode.PONG.value
_utf8_decoder = codecs.getincrementaldecoder("utf-8")


class Role(enum.Enum):
    """Which end of the connection (a client masks its frames, section 5.3)."""

    CLIENT = "client"
    SERVER = "server"


CLIENT = Role.CLIENT
SERVER = Role.SERVER


class State(enum.Enum):
    """The closing handshake's states (RFC 6455 section 7)."""

    OPEN = "open"
    LOCAL_CLOSING = "local closing"
    REMOTE_CLOSING = "remote closing"
    CLOSED = "closed"
    ERROR = "error"


def valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame (RFC 6455 section 7.4.1, 7.4.2).

    1000-1003 and 1007-1014 are defined (1012-1014 registered with IANA, section
    11.7); 3000-4999 are for libraries and applications. 1004 is reserved, and
    1005, 1006 and 1015 must never be sent.
    """
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class Connection:
    """One side of a WebSocket connection, without I/O.

    Args:
        role: ``CLIENT`` (masks what it sends) or ``SERVER``.
        deflate: permessage-deflate settings if it was negotiated, else None.
        max_message_size: The largest message accepted, after decompression
            (1009 beyond it).
        mask_source: Makes each client frame's 4-byte masking key (tests inject
            a fixed one; the default is ``os.urandom``).

    Example:
        >>> client, server = Connection(CLIENT), Connection(SERVER)
        >>> server.receive_data(client.send(TextMessage(data="hi")))
        [TextMessage(data='hi')]
        >>> client.receive_data(server.send(CloseConnection(code=1000)))
        [CloseConnection(code=1000, reason='')]
        >>> client.state
        <State.REMOTE_CLOSING: 'remote closing'>

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        role: Role,
        *,
        deflate: DeflateParams | None = None,
        max_message_size: int = 1 << 20,
        mask_source: Callable[[], bytes] = random_mask,
    ) -> None:
        if role not in (CLIENT, SERVER):
            raise ValueError(f"role must be CLIENT or SERVER, not {role!r}")
        if max_message_size < 1:
            raise ValueError("max_message_size must be positive")
        self.role = role
        self.max_message_size = max_message_size
        self._client = role is CLIENT
        self._mask_source = mask_source
        self._codec = DeflateCodec(deflate) if deflate is not None else None
        # A compressed frame may be a little larger than what it inflates to.
        slack = 1024 if deflate is not None else 0
        self._reader = FrameReader(
            expect_masked=not self._client,
            max_payload=max_message_size + slack,
            allow_rsv1=deflate is not None,
        )
        self._state = State.OPEN
        self._msg_opcode = 0  # 0: no message in progress
        self._msg_compressed = False
        self._msg_size = 0
        self._parts: list[bytes] = []
        self._text_parts: list[str] = []
        self._decoder = _utf8_decoder()
        #: The peer's close frame, once received.
        self.received_close: CloseConnection | None = None

    @property
    def state(self) -> State:
        """Where the closing handshake stands."""
        return self._state

    @property
    def compression(self) -> bool:
        """Whether permessage-deflate was negotiated."""
        return self._codec is not None

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; return the events they complete.

        ``b""`` means the peer closed the transport: a peer that leaves without the
        closing handshake yields ``CloseConnection(code=1006)`` (section 7.1.5).

        Raises:
            RemoteProtocolError: the peer broke the protocol (``code`` says how);
                write ``data_to_send`` and close the transport.
            LocalProtocolError: the connection already failed.
        """
        state = self._state
        if state is State.ERROR:
            raise LocalProtocolError("the connection has failed")
        if not data:
            if state is State.OPEN or state is State.LOCAL_CLOSING:
                self._state = State.CLOSED
                return [CloseConnection(code=1006)]
            self._state = State.CLOSED
            return []
        if state is State.REMOTE_CLOSING or state is State.CLOSED:
            return []  # section 5.5.1: nothing may follow a close frame
        reader = self._reader
        reader.receive_data(data)
        next_parts = reader.next_parts
        events: list[Event] = []
        try:
            while True:
                parts = next_parts()
                if parts is None:
                    return events
                opcode, payload, fin, rsv1 = parts
                if opcode <= _BINARY and opcode and fin and not rsv1 and not self._msg_opcode:
                    # The common case: one unfragmented, uncompressed data frame.
                    if len(payload) > self.max_message_size:
                        raise RemoteProtocolError("message too big", 1009)  # 7.4.1
                    if opcode == _BINARY:
                        events.append(BytesMessage(data=payload))
                        continue
                    try:
                        events.append(TextMessage(data=payload.decode("utf-8")))
                    except UnicodeDecodeError as exc:
                        raise RemoteProtocolError("invalid UTF-8 in a text message", 1007) from exc
                elif opcode < 0x8:
                    event = self._data_frame(opcode, payload, fin, rsv1)
                    if event is not None:
                        events.append(event)
                elif opcode == _PING:
                    events.append(Ping(payload=payload))
                elif opcode == _PONG:
                    events.append(Pong(payload=payload))
                else:
                    events.append(self._close_frame(payload))
                    return events  # section 5.5.1: the peer sends nothing after it
        except RemoteProtocolError as exc:
            exc.data_to_send = self._fail(exc.code)
            raise

    def _data_frame(
        self, opcode: int, payload: bytes, fin: bool, rsv1: bool
    ) -> TextMessage | BytesMessage | None:
        if opcode == _CONT:
            if not self._msg_opcode:
                raise RemoteProtocolError("a continuation frame with no message started")  # 5.4
            if rsv1:
                raise RemoteProtocolError("RSV1 set on a continuation frame")  # RFC 7692 6.1
        else:
            if self._msg_opcode:
                raise RemoteProtocolError("a new message inside a fragmented one")  # 5.4
            self._msg_opcode = opcode
            self._msg_compressed = rsv1
            self._msg_size = 0
        limit = self.max_message_size - self._msg_size
        if self._msg_compressed:
            assert self._codec is not None  # the reader refuses RSV1 without deflate
            payload = self._codec.decompress(payload, limit, final=fin)
        elif len(payload) > limit:
            raise RemoteProtocolError("message too big", 1009)  # 7.4.1
        self._msg_size += len(payload)
        if self._msg_opcode == _TEXT:
            try:
                text = self._decoder.decode(payload, fin)  # section 8.1, fail fast
            except UnicodeDecodeError as exc:
                raise RemoteProtocolError("invalid UTF-8 in a text message", 1007) from exc
            if not fin:
                self._text_parts.append(text)
                return None
            parts, self._text_parts = self._text_parts, []
            self._msg_opcode = 0
            self._decoder.reset()
            parts.append(text)
            return TextMessage(data="".join(parts))
        if not fin:
            self._parts.append(payload)
            return None
        chunks, self._parts = self._parts, []
        self._msg_opcode = 0
        chunks.append(payload)
        return BytesMessage(data=b"".join(chunks))

    def _close_frame(self, payload: bytes) -> CloseConnection:
        if not payload:
            event = CloseConnection(code=1005)  # section 7.1.5: no status code received
        elif len(payload) == 1:
            raise RemoteProtocolError("a close frame with a 1-byte payload")  # 5.5.1
        else:
            code = int.from_bytes(payload[:2], "big")
            if not valid_close_code(code):
                raise RemoteProtocolError(f"invalid close code {code}")  # 7.4.1, 7.4.2
            try:
                reason = payload[2:].decode("utf-8")
            except UnicodeDecodeError as exc:
                # Section 5.5.1: the reason is UTF-8 text.
                raise RemoteProtocolError("a close reason that is not UTF-8", 1007) from exc
            event = CloseConnection(code=code, reason=reason)
        self.received_close = event
        self._state = State.CLOSED if self._state is State.LOCAL_CLOSING else State.REMOTE_CLOSING
        return event

    def _fail(self, code: int) -> bytes:
        # Section 7.1.7: send a close frame unless one is out already, then close.
        send_close = self._state is State.OPEN or self._state is State.REMOTE_CLOSING
        self._state = State.ERROR
        if not send_close:
            return b""
        return self._frame(_CLOSE, code.to_bytes(2, "big"))

    # -- sending -----------------------------------------------------------------------

    def _frame(self, opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False) -> bytes:
        mask = self._mask_source() if self._client else None
        return serialize_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask)

    def send(self, event: Event, *, fragment_size: int | None = None) -> bytes:
        """Return the bytes that carry ``event`` to the peer.

        Args:
            event: A message, ping, pong or close.
            fragment_size: Split a message into frames of at most this many
                payload bytes (section 5.4); None sends one frame.

        Raises:
            LocalProtocolError: the state forbids it (a message after our close,
                anything after ``CLOSED``/``ERROR``), a control payload over 125
                bytes, or a close code that may not be sent.
        """
        state = self._state
        kind = type(event)
        if kind is TextMessage or kind is BytesMessage:
            if state is not State.OPEN:
                raise LocalProtocolError(f"cannot send a message in state {state.name}")
            if kind is TextMessage:
                assert isinstance(event, TextMessage)
                return self._message(_TEXT, event.data.encode("utf-8"), fragment_size)
            assert isinstance(event, BytesMessage)
            return self._message(_BINARY, bytes(event.data), fragment_size)
        if kind is Ping or kind is Pong:
            assert isinstance(event, Ping | Pong)
            if state is not State.OPEN and state is not State.REMOTE_CLOSING:
                raise LocalProtocolError(f"cannot send a {kind.__name__} in state {state.name}")
            if len(event.payload) > MAX_CONTROL_PAYLOAD:
                raise LocalProtocolError("a control payload is at most 125 bytes")  # 5.5
            return self._frame(_PING if kind is Ping else _PONG, bytes(event.payload))
        if kind is CloseConnection:
            assert isinstance(event, CloseConnection)
            return self._send_close(event)
        raise LocalProtocolError(f"cannot send {event!r}")

    def send_data(
        self, data: str | bytes | bytearray | memoryview, *, fragment_size: int | None = None
    ) -> bytes:
        """Return the bytes of one message: text for ``str``, binary for bytes-like data.

        The same as ``send(TextMessage(data=data))`` or ``send(BytesMessage(data=data))``
        without building the event: an adapter's hot path.

        Args:
            data: The message.
            fragment_size: As for ``send``.

        Raises:
            LocalProtocolError: as ``send``.
            TypeError: ``data`` is neither ``str`` nor bytes-like.
        """
        if isinstance(data, str):
            opcode, payload = _TEXT, data.encode("utf-8")
        elif isinstance(data, bytes | bytearray | memoryview):
            opcode, payload = _BINARY, bytes(data)
        else:
            raise TypeError(f"a WebSocket message is str or bytes, not {type(data).__name__}")
        state = self._state
        if state is not State.OPEN:
            raise LocalProtocolError(f"cannot send a message in state {state.name}")
        if fragment_size is None and self._codec is None and not self._client:
            return serialize_frame(opcode, payload)  # the server's common case
        return self._message(opcode, payload, fragment_size)

    def _message(self, opcode: int, payload: bytes, fragment_size: int | None) -> bytes:
        rsv1 = False
        if self._codec is not None:
            payload = self._codec.compress(payload)
            rsv1 = True
        if fragment_size is None or len(payload) <= fragment_size:
            return self._frame(opcode, payload, rsv1=rsv1)
        if fragment_size < 1:
            raise LocalProtocolError("fragment_size must be positive")
        out = []
        for start in range(0, len(payload), fragment_size):
            last = start + fragment_size >= len(payload)
            out.append(
                self._frame(
                    opcode if start == 0 else _CONT,
                    payload[start : start + fragment_size],
                    fin=last,
                    rsv1=rsv1 and start == 0,
                )
            )
        return b"".join(out)

    def _send_close(self, event: CloseConnection) -> bytes:
        state = self._state
        if state is State.OPEN:
            new_state = State.LOCAL_CLOSING
        elif state is State.REMOTE_CLOSING:
            new_state = State.CLOSED
        else:
            raise LocalProtocolError(f"cannot send a close frame in state {state.name}")
        if event.code == 1005:
            payload = b""  # section 7.1.5: the close frame had no status code
        else:
            if not valid_close_code(event.code):
                raise LocalProtocolError(f"close code {event.code} may not be sent")  # 7.4
            payload = event.code.to_bytes(2, "big") + event.reason.encode("utf-8")
            if len(payload) > MAX_CONTROL_PAYLOAD:
                raise LocalProtocolError("a close reason is at most 123 bytes of UTF-8")  # 5.5
        self._state = new_state
        return self._frame(_CLOSE, payload)
