"""The sans-IO HTTP/1.1 connection: bytes in, events out; events in, bytes out.

Theory of operation (h11's shape, Plait's limits). ``receive_data`` appends to one
buffer (compacting consumed bytes once per call); ``next_event`` runs the reader
for the peer's state: a head reader while the peer is between messages, a body
reader chosen from the head's framing while it sends a body. Each event it returns
has already moved the state machine (``_state.py``). When the peer's message is
complete (``DONE``) with more bytes buffered, ``next_event`` returns ``PAUSED``:
a pipelined request waits until ``start_next_cycle`` after the response, so
responses go out in request order. ``send`` checks the event against the state
machine, fixes up framing headers (chunked for HTTP/1.1 peers without a length,
close-delimited for HTTP/1.0 ones, ``Connection: close`` when the connection will
close) and returns the bytes to write.

Keep-alive (RFC 9112 section 9.3): HTTP/1.1 persists unless either side says
``Connection: close``; HTTP/1.0 persists only with ``Connection: keep-alive``.
Errors: a peer's garbage raises ``RemoteProtocolError`` (with a status hint); our
misuse raises ``LocalProtocolError``; either leaves that side in ``ERROR``.
"""

from __future__ import annotations

from ._errors import LocalProtocolError, ProtocolError, RemoteProtocolError
from ._events import (
    NEED_DATA,
    PAUSED,
    ConnectionClosed,
    Data,
    EndOfMessage,
    Event,
    InformationalResponse,
    NextEventSignal,
    Request,
    Response,
)
from ._headers import Headers
from ._readers import (
    BodyReader,
    ChunkedReader,
    ContentLengthReader,
    Framing,
    Limits,
    UntilCloseReader,
    find_head_end,
    parse_request_head,
    parse_response_head,
)
from ._state import CLIENT, SERVER, ConnectionState, Role, State, Switch
from ._writers import (
    BodyWriter,
    ChunkedWriter,
    ContentLengthWriter,
    NoBodyWriter,
    UntilCloseWriter,
    write_request_head,
    write_response_head,
)

__all__ = ["Connection"]

# A server bounds request bodies by default; a client asked for the response, so
# its body is unbounded unless the caller says otherwise.
_DEFAULT_LIMITS = {SERVER: Limits(), CLIENT: Limits(max_body=None)}
_NO_BODY_STATUSES = (204, 304)  # RFC 9112 section 6.3, item 1 (and every 1xx)


def _codings_framing(codings: list[bytes], is_request: bool) -> str:
    """Decide body framing from Transfer-Encoding codings: "chunked" or "close".

    Raises:
        RemoteProtocolError: framing that cannot be trusted (400) or a coding we
            cannot decode (501).
    """
    if codings == [b"chunked"]:
        return "chunked"
    if codings.count(b"chunked") > 1:
        # RFC 9112 section 7: chunked MUST NOT be applied more than once.
        raise RemoteProtocolError("chunked applied more than once")
    if not codings or codings[-1] != b"chunked":
        if is_request:
            # RFC 9112 section 6.3, item 4: chunked not final in a request -> 400.
            raise RemoteProtocolError("Transfer-Encoding without final chunked")
        return "close"  # RFC 9112 section 6.3, item 4: a response reads until close
    # chunked is final but other codings precede it: RFC 9112 section 6.1, a server
    # SHOULD answer 501 to a transfer coding it does not understand.
    raise RemoteProtocolError("unsupported transfer coding", 501)


class Connection:
    """One side of an HTTP/1.1 connection, without I/O.

    Args:
        our_role: ``CLIENT`` or ``SERVER``.
        limits: Size limits on what the peer sends; by default ``Limits()`` for a
            server and ``Limits(max_body=None)`` for a client.

    Example:
        >>> server = Connection(SERVER)
        >>> server.receive_data(b"GET / HTTP/1.1\\r\\nHost: example.com\\r\\n\\r\\n")
        >>> server.next_event()
        Request(method=b'GET', target=b'/', headers=Headers([(b'Host', b'example.com')]), \
http_version=b'1.1')
        >>> server.next_event()
        EndOfMessage(headers=Headers([]))
        >>> server.send(Response(status_code=200, headers=Headers([("Content-Length", "2")])))
        b'HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\n'
        >>> server.send(Data(data=b"hi")) + server.send(EndOfMessage())
        b'hi'
        >>> server.start_next_cycle()

    .. versionadded:: 0.1.0
    """

    def __init__(self, our_role: Role, limits: Limits | None = None) -> None:
        if our_role not in (CLIENT, SERVER):
            raise ValueError(f"our_role must be CLIENT or SERVER, not {our_role!r}")
        self.our_role = our_role
        self.their_role = SERVER if our_role is CLIENT else CLIENT
        self.limits = limits if limits is not None else _DEFAULT_LIMITS[our_role]
        self._cstate = ConnectionState()
        self._buf = bytearray()
        self._pos = 0
        self._scan_from = 0
        self._eof = False
        self._reader: BodyReader | None = None
        self._writer: BodyWriter | None = None
        self._request_method: bytes | None = None
        #: The peer's HTTP version (``b"1.0"``/``b"1.1"``), once a head was received.
        self.their_http_version: bytes | None = None
        #: The client sent ``Expect: 100-continue`` and waits for a 100 or a response.
        self.client_is_waiting_for_100_continue = False

    # -- state -----------------------------------------------------------------------

    @property
    def states(self) -> dict[Role, State]:
        """A copy of both sides' states."""
        return dict(self._cstate.states)

    @property
    def our_state(self) -> State:
        """Our side's state."""
        return self._cstate.states[self.our_role]

    @property
    def their_state(self) -> State:
        """The peer's state."""
        return self._cstate.states[self.their_role]

    @property
    def keep_alive(self) -> bool:
        """Whether this connection may carry another request after the current one."""
        return self._cstate.keep_alive

    @property
    def they_are_waiting_for_100_continue(self) -> bool:
        """The peer (a client) waits for ``100 Continue`` before sending its body."""
        return self.their_role is CLIENT and self.client_is_waiting_for_100_continue

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        """Bytes received but not parsed, and whether the peer closed.

        After a protocol switch these belong to the new protocol.
        """
        return bytes(self._buf[self._pos :]), self._eof

    def start_next_cycle(self) -> None:
        """Reset for the next request/response on a kept-alive connection.

        Raises:
            LocalProtocolError: the exchange is not complete on both sides, or the
                connection will not be kept alive.
        """
        self._cstate.start_next_cycle()
        self._request_method = None
        self._reader = None
        self._writer = None
        self.client_is_waiting_for_100_continue = False
        self.their_http_version = None if self.our_role is SERVER else self.their_http_version

    def send_failed(self) -> None:
        """Note that writing failed; our side goes to ``ERROR``."""
        self._cstate.process_error(self.our_role)

    # -- receiving ---------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed its side.

        Raises:
            LocalProtocolError: data after the peer closed.
        """
        if data:
            if self._eof:
                raise LocalProtocolError("received data after end of file")
            if self._pos:
                del self._buf[: self._pos]  # one compaction per call
                self._scan_from = max(0, self._scan_from - self._pos)
                self._pos = 0
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> Event | NextEventSignal:
        """Return the next event from the peer, ``NEED_DATA`` or ``PAUSED``.

        Raises:
            RemoteProtocolError: the peer broke HTTP/1.1; ``status_hint`` says how
                a server should answer. Every later call raises again.
        """
        if self.their_state is State.ERROR:
            raise RemoteProtocolError("can't receive data when the peer state is ERROR")
        try:
            event = self._extract_next()
            if not isinstance(event, NextEventSignal):
                self._process(self.their_role, event)
            return event
        except ProtocolError as exc:
            self._cstate.process_error(self.their_role)
            if isinstance(exc, RemoteProtocolError):
                raise
            raise RemoteProtocolError(exc.msg, exc.status_hint) from exc

    def _extract_next(self) -> Event | NextEventSignal:
        state = self.their_state
        buf = self._buf
        if state is State.DONE or state is State.MUST_CLOSE:
            if self._pos < len(buf):
                return PAUSED
        elif state is State.MIGHT_SWITCH_PROTOCOL or state is State.SWITCHED_PROTOCOL:
            return PAUSED
        elif state is State.SEND_BODY:
            assert self._reader is not None
            event, self._pos = self._reader.read(buf, self._pos)
            if event is not None:
                return event
            if self._eof:
                return self._reader.read_eof()
            return NEED_DATA
        elif state is State.IDLE or state is State.SEND_RESPONSE:
            head = self._read_head()
            if head is not None:
                return head
            if self._eof and self._pos < len(buf):
                raise RemoteProtocolError("peer closed the connection in a message head")
        if self._eof:
            return ConnectionClosed()
        return NEED_DATA

    def _read_head(self) -> Event | None:
        buf = self._buf
        pos = self._pos
        if self.their_role is CLIENT:
            # RFC 9112 section 2.2: ignore empty lines before a request-line.
            while buf.startswith(b"\r\n", pos):
                pos += 2
            self._pos = pos
        end = find_head_end(buf, pos, self._scan_from, self.limits)
        if end < 0:
            self._scan_from = max(pos, len(buf) - 3)
            return None
        head = bytes(buf[pos:end])
        self._pos = end + 4
        self._scan_from = self._pos
        if self.their_role is CLIENT:
            return self._received_request(*parse_request_head(head, self.limits))
        return self._received_response(*parse_response_head(head, self.limits))

    def _received_request(self, request: Request, framing: Framing) -> Request:
        version = request.http_version
        if version != b"1.0" and framing.host_count != 1:
            # RFC 9112 section 3.2: no Host, or more than one, in HTTP/1.1 -> 400.
            raise RemoteProtocolError("HTTP/1.1 request without exactly one Host header")
        codings = framing.transfer_codings
        if codings is not None:
            if framing.content_length is not None:
                # RFC 9112 section 6.3 item 3, section 11.2: both -> reject (smuggling).
                raise RemoteProtocolError("both Content-Length and Transfer-Encoding")
            if version == b"1.0":
                # RFC 9112 section 6.1: Transfer-Encoding in HTTP/1.0 is faulty framing.
                raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 request")
            _codings_framing(codings, is_request=True)
            self._reader = ChunkedReader(self.limits)
        else:
            length = framing.content_length or 0  # RFC 9112 6.3 item 7: no body
            max_body = self.limits.max_body
            if max_body is not None and length > max_body:
                raise RemoteProtocolError("request body too large", 413)  # RFC 9110 15.5.14
            self._reader = ContentLengthReader(length)
        self._request_method = request.method
        self.their_http_version = version
        self._note_keep_alive(version, framing)
        # Upgrade (RFC 9110 section 7.8) and CONNECT (section 9.3.6) propose a switch.
        if framing.upgrade:
            self._cstate.process_client_switch_proposal(Switch.UPGRADE)
        if request.method == b"CONNECT":
            self._cstate.process_client_switch_proposal(Switch.CONNECT)
        if framing.expect_continue and version != b"1.0":
            self.client_is_waiting_for_100_continue = True
        return request

    def _received_response(
        self, response: InformationalResponse | Response, framing: Framing
    ) -> InformationalResponse | Response:
        self.their_http_version = response.http_version
        code = response.status_code
        if isinstance(response, InformationalResponse):
            if code == 100:
                self.client_is_waiting_for_100_continue = False
            return response
        self.client_is_waiting_for_100_continue = False
        method = self._request_method
        if method == b"HEAD" or code in _NO_BODY_STATUSES:
            self._reader = ContentLengthReader(0)  # RFC 9112 section 6.3, item 1
        elif method == b"CONNECT" and 200 <= code < 300:
            self._reader = None  # RFC 9112 section 6.3, item 2: a tunnel follows
        else:
            self._reader = self._response_body_reader(framing)
        self._note_keep_alive(response.http_version, framing)
        return response

    def _response_body_reader(self, framing: Framing) -> BodyReader:
        codings = framing.transfer_codings
        if codings is not None:
            if framing.content_length is not None:
                # RFC 9112 section 6.3 item 3 and 11.2: treat as an error, not a guess.
                raise RemoteProtocolError("both Content-Length and Transfer-Encoding")
            if _codings_framing(codings, is_request=False) == "chunked":
                return ChunkedReader(self.limits)
            self._cstate.process_keep_alive_disabled()
            return UntilCloseReader()
        length = framing.content_length
        if length is None:
            self._cstate.process_keep_alive_disabled()  # RFC 9112 6.3 item 8
            return UntilCloseReader()
        max_body = self.limits.max_body
        if max_body is not None and length > max_body:
            raise RemoteProtocolError("response body too large", 413)
        return ContentLengthReader(length)

    def _note_keep_alive(self, version: bytes, framing: Framing) -> None:
        # RFC 9112 section 9.3: persistence by version and Connection options.
        if framing.close or (version == b"1.0" and not framing.keep_alive):
            self._cstate.process_keep_alive_disabled()

    # -- sending -----------------------------------------------------------------------

    def send(self, event: Event) -> bytes:
        """Return the bytes that carry ``event`` to the peer (``b""`` for ConnectionClosed).

        Raises:
            LocalProtocolError: the event is not allowed now, or cannot be
                serialized; our side is then in ``ERROR``.
        """
        if self.our_state is State.ERROR:
            raise LocalProtocolError("can't send data when our state is ERROR")
        try:
            return self._send(event)
        except ProtocolError:
            self._cstate.process_error(self.our_role)
            raise

    def _send(self, event: Event) -> bytes:
        if isinstance(event, Data):
            self._process(self.our_role, event)
            assert self._writer is not None
            return self._writer.data(event.data)
        if isinstance(event, EndOfMessage):
            writer = self._writer
            self._process(self.our_role, event)
            assert writer is not None
            return writer.end(event.headers)
        if isinstance(event, Response):
            event = self._prepare_response(event)
            self._process(self.our_role, event)
            return write_response_head(
                event.status_code, event.reason, event.http_version, event.headers
            )
        if isinstance(event, InformationalResponse):
            if not 100 <= event.status_code < 200:
                raise LocalProtocolError("an InformationalResponse needs a 1xx status")
            self._process(self.our_role, event)
            return write_response_head(
                event.status_code, event.reason, event.http_version, event.headers
            )
        if isinstance(event, Request):
            head = self._prepare_request(event)
            self._process(self.our_role, event)
            return head
        self._process(self.our_role, event)
        return b""

    def _prepare_request(self, request: Request) -> bytes:
        if self.our_role is not CLIENT:
            raise LocalProtocolError("only a client sends requests")
        headers = request.headers
        if request.http_version == b"1.1" and len(headers.get_all(b"host")) != 1:
            raise LocalProtocolError("an HTTP/1.1 request needs exactly one Host header")
        head = write_request_head(request.method, request.target, request.http_version, headers)
        if b"transfer-encoding" in headers:
            if headers.get_list(b"transfer-encoding") != [b"chunked"]:
                raise LocalProtocolError("only Transfer-Encoding: chunked can be sent")
            if b"content-length" in headers:
                raise LocalProtocolError("both Content-Length and Transfer-Encoding")
            self._writer = ChunkedWriter()
        elif b"content-length" in headers:
            self._writer = ContentLengthWriter(_outgoing_length(headers))
        else:
            self._writer = NoBodyWriter(discard=False)
        self._request_method = request.method
        options = [o.lower() for o in headers.get_list(b"connection")]
        if b"close" in options or (request.http_version == b"1.0" and b"keep-alive" not in options):
            self._cstate.process_keep_alive_disabled()
        if b"upgrade" in headers:
            self._cstate.process_client_switch_proposal(Switch.UPGRADE)
        if request.method == b"CONNECT":
            self._cstate.process_client_switch_proposal(Switch.CONNECT)
        if (headers.get(b"expect") or b"").lower() == b"100-continue":
            self.client_is_waiting_for_100_continue = True
        return head

    def _prepare_response(self, response: Response) -> Response:
        """Fix framing headers for this peer; choose the body writer."""
        if self.our_role is not SERVER:
            raise LocalProtocolError("only a server sends responses")
        if not 200 <= response.status_code <= 999:
            raise LocalProtocolError("a Response needs a status of 200 or more")
        headers = response.headers
        changed = False
        method = self._request_method
        code = response.status_code
        peer_11 = self.their_http_version == b"1.1"
        names = headers.lower_names()
        options = (
            [o.lower() for o in headers.get_list(b"connection")] if b"connection" in names else []
        )
        if (
            b"close" in options
            or self.their_http_version is None
            or self.their_state is State.ERROR
        ):
            # Asked to, or the request was not (fully) understood: close afterwards.
            self._cstate.process_keep_alive_disabled()
        has_te = b"transfer-encoding" in names
        has_cl = b"content-length" in names
        if has_te and headers.get_list(b"transfer-encoding") != [b"chunked"]:
            # We apply no transfer coding but chunked (RFC 9112 section 6.1).
            raise LocalProtocolError("only Transfer-Encoding: chunked can be sent")
        if method == b"HEAD" or code in _NO_BODY_STATUSES:
            self._writer = NoBodyWriter(discard=method == b"HEAD")
        elif method == b"CONNECT" and 200 <= code < 300:
            self._writer = None
        elif peer_11 and (has_te or not has_cl):
            if has_cl or not has_te:
                # RFC 9112 section 6.2: no Content-Length alongside Transfer-Encoding.
                headers, changed = headers.copy(), True
                headers.remove(b"content-length")
                headers.set(b"Transfer-Encoding", b"chunked")
            self._writer = ChunkedWriter()
        elif has_cl:
            if has_te:  # an HTTP/1.0 peer cannot read chunked; the length will do
                headers, changed = headers.copy(), True
                headers.remove(b"transfer-encoding")
            self._writer = ContentLengthWriter(_outgoing_length(headers))
        else:
            # An HTTP/1.0 (or unknown) peer cannot read chunked: delimit by closing.
            if has_te:
                headers, changed = headers.copy(), True
                headers.remove(b"transfer-encoding")
            self._cstate.process_keep_alive_disabled()
            self._writer = UntilCloseWriter()
        if not self._cstate.keep_alive and b"close" not in options:
            if not changed:
                headers, changed = headers.copy(), True
            headers.set(b"Connection", b"close")
        elif self._cstate.keep_alive and not peer_11 and b"keep-alive" not in options:
            # RFC 9112 section 9.3: an HTTP/1.0 peer needs the keep-alive option echoed.
            if not changed:
                headers, changed = headers.copy(), True
            headers.set(b"Connection", b"keep-alive")
        if changed:
            response = Response(
                status_code=code,
                headers=headers,
                reason=response.reason,
                http_version=response.http_version,
            )
        return response

    # -- the state machine ---------------------------------------------------------------

    def _process(self, role: Role, event: Event) -> None:
        event_type = type(event)
        if event_type is Data or event_type is EndOfMessage:
            if role is CLIENT:
                self.client_is_waiting_for_100_continue = False
            self._cstate.process_event(role, event_type)
            return
        switch: Switch | None = None
        if role is SERVER:
            pending = self._cstate.pending_switches
            if event_type is InformationalResponse:
                assert isinstance(event, InformationalResponse)
                if event.status_code == 101:
                    if Switch.UPGRADE not in pending:
                        raise LocalProtocolError("101 Switching Protocols without an Upgrade")
                    switch = Switch.UPGRADE
            elif event_type is Response:
                assert isinstance(event, Response)
                if Switch.CONNECT in pending and 200 <= event.status_code < 300:
                    switch = Switch.CONNECT
            if event_type is InformationalResponse or event_type is Response:
                self.client_is_waiting_for_100_continue = False
        self._cstate.process_event(role, event_type, switch)


def _outgoing_length(headers: Headers) -> int:
    values = headers.get_all(b"content-length")
    if len(values) == 1 and values[0].isdigit():
        return int(values[0])  # the common case
    values = headers.get_list(b"content-length")
    if not values or any(not v.isdigit() for v in values) or len(set(values)) != 1:
        raise LocalProtocolError(f"invalid Content-Length {headers.get_all(b'content-length')}")
    return int(values[0])
