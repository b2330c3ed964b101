"""The HTTP/1.1 connection state machine, as tables of data (after h11's _state.py).

Theory of operation. Each side (``CLIENT`` and ``SERVER``) has its own state; an
event sent or received moves its sender along ``EVENT_TRIGGERED``. Some events move
the *other* side too (a client's ``Request`` wakes the server from ``IDLE`` into
``SEND_RESPONSE``); those are keyed ``(event type, sender role)``. After every
event, the state-triggered rules run to a fixed point:

- without keep-alive, a side that is ``DONE`` must close (``MUST_CLOSE``);
- a side that finished while the other closed or failed must close too;
- a client that proposed a protocol switch (``Upgrade`` or ``CONNECT``) and is
  ``DONE`` waits in ``MIGHT_SWITCH_PROTOCOL`` until the server accepts (both go to
  ``SWITCHED_PROTOCOL``) or answers normally (the proposal is dropped).

``start_next_cycle`` moves both sides from ``DONE`` back to ``IDLE`` for the next
request on a kept-alive connection. Any error puts the failing side into ``ERROR``.
Unsatisfying, as in h11: a server that answers before the whole request body has
arrived has to drain or close; the machine only says so (client not ``DONE``).
"""

from __future__ import annotations

import enum

from ._errors import LocalProtocolError
from ._events import ConnectionClosed, Data, EndOfMessage, InformationalResponse, Request, Response

__all__ = [
    "CLIENT",
    "EVENT_TRIGGERED",
    "SERVER",
    "STATE_TRIGGERED",
    "ConnectionState",
    "Role",
    "State",
    "Switch",
]


class Role(enum.Enum):
    """Which end of the connection."""

    # Members are singletons compared by identity: hash them by identity too, in C
    # (Enum's own __hash__ is Python code, and the state tables hash on every event).
    __hash__ = object.__hash__

    CLIENT = "client"
    SERVER = "server"


CLIENT = Role.CLIENT
SERVER = Role.SERVER


class State(enum.Enum):
    """Where one side stands in the request/response cycle."""

    # Members are singletons compared by identity: hash them by identity too, in C
    # (Enum's own __hash__ is Python code, and the state tables hash on every event).
    __hash__ = object.__hash__

    IDLE = "idle"
    SEND_RESPONSE = "send response"
    SEND_BODY = "send body"
    DONE = "done"
    MUST_CLOSE = "must close"
    CLOSED = "closed"
    ERROR = "error"
    MIGHT_SWITCH_PROTOCOL = "might switch protocol"
    SWITCHED_PROTOCOL = "switched protocol"


class Switch(enum.Enum):
    """A pending proposal to leave HTTP on this connection."""

    # Members are singletons compared by identity: hash them by identity too, in C
    # (Enum's own __hash__ is Python code, and the state tables hash on every event).
    __hash__ = object.__hash__

    UPGRADE = "upgrade"  # RFC 9110 section 7.8; accepted by a 101
    CONNECT = "connect"  # RFC 9110 section 9.3.6; accepted by a 2xx


IDLE, SEND_RESPONSE, SEND_BODY, DONE = (
    State.IDLE,
    State.SEND_RESPONSE,
    State.SEND_BODY,
    State.DONE,
)
MUST_CLOSE, CLOSED, ERROR = State.MUST_CLOSE, State.CLOSED, State.ERROR
MIGHT_SWITCH_PROTOCOL, SWITCHED_PROTOCOL = State.MIGHT_SWITCH_PROTOCOL, State.SWITCHED_PROTOCOL

# (role whose state moves) -> state -> (event type, sender role) -> new state.
# A key with the sender equal to the role itself is "an event this side sent".
_Key = tuple[type, Role] | tuple[type, Role, Switch]
EVENT_TRIGGERED: dict[Role, dict[State, dict[_Key, State]]] = {
    CLIENT: {
        IDLE: {(Request, CLIENT): SEND_BODY, (ConnectionClosed, CLIENT): CLOSED},
        SEND_BODY: {(Data, CLIENT): SEND_BODY, (EndOfMessage, CLIENT): DONE},
        DONE: {(ConnectionClosed, CLIENT): CLOSED},
        MUST_CLOSE: {(ConnectionClosed, CLIENT): CLOSED},
        CLOSED: {(ConnectionClosed, CLIENT): CLOSED},
        MIGHT_SWITCH_PROTOCOL: {},
        SWITCHED_PROTOCOL: {},
        ERROR: {},
    },
    SERVER: {
        IDLE: {
            (Request, CLIENT): SEND_RESPONSE,
            # A server may answer (with an error) before any request was parsed.
            (Response, SERVER): SEND_BODY,
            (ConnectionClosed, SERVER): CLOSED,
        },
        SEND_RESPONSE: {
            (InformationalResponse, SERVER): SEND_RESPONSE,
            (Response, SERVER): SEND_BODY,
            (InformationalResponse, SERVER, Switch.UPGRADE): SWITCHED_PROTOCOL,
            (Response, SERVER, Switch.CONNECT): SWITCHED_PROTOCOL,
        },
        SEND_BODY: {(Data, SERVER): SEND_BODY, (EndOfMessage, SERVER): DONE},
        DONE: {(ConnectionClosed, SERVER): CLOSED},
        MUST_CLOSE: {(ConnectionClosed, SERVER): CLOSED},
        CLOSED: {(ConnectionClosed, SERVER): CLOSED},
        SWITCHED_PROTOCOL: {},
        ERROR: {},
    },
}

# The same table flattened for one lookup per move: (role, state, key) -> new state.
_FLAT: dict[tuple[Role, State, _Key], State] = {
    (role, state, key): new
    for role, by_state in EVENT_TRIGGERED.items()
    for state, by_key in by_state.items()
    for key, new in by_key.items()
}

# (client state, server state) -> the states that change.
STATE_TRIGGERED: dict[tuple[State, State], dict[Role, State]] = {
    (MIGHT_SWITCH_PROTOCOL, SWITCHED_PROTOCOL): {CLIENT: SWITCHED_PROTOCOL},
    (CLOSED, DONE): {SERVER: MUST_CLOSE},
    (CLOSED, IDLE): {SERVER: MUST_CLOSE},
    (ERROR, DONE): {SERVER: MUST_CLOSE},
    (DONE, CLOSED): {CLIENT: MUST_CLOSE},
    (IDLE, CLOSED): {CLIENT: MUST_CLOSE},
    (DONE, ERROR): {CLIENT: MUST_CLOSE},
}


class ConnectionState:
    """Both sides' states, the keep-alive flag and pending switch proposals."""

    __slots__ = ("keep_alive", "pending_switches", "states")

    def __init__(self) -> None:
        self.keep_alive = True
        self.pending_switches: set[Switch] = set()
        self.states: dict[Role, State] = {CLIENT: IDLE, SERVER: IDLE}

    def process_error(self, role: Role) -> None:
        """Put ``role`` into ``ERROR``."""
        self.states[role] = ERROR
        self._fire_state_triggered()

    def process_keep_alive_disabled(self) -> None:
        """Note that this connection closes after the current cycle."""
        self.keep_alive = False
        self._fire_state_triggered()

    def process_client_switch_proposal(self, switch: Switch) -> None:
        """Note that the client's request proposes leaving HTTP."""
        self.pending_switches.add(switch)
        self._fire_state_triggered()

    def process_event(
        self, role: Role, event_type: type, server_switch: Switch | None = None
    ) -> None:
        """Move the states for an event of ``event_type`` sent by ``role``.

        Args:
            role: The side that sent the event.
            event_type: The event's class.
            server_switch: The proposal a server's response accepts, if any.

        Raises:
            LocalProtocolError: the event is not allowed in the current states.
        """
        if server_switch is not None:
            if role is not SERVER or server_switch not in self.pending_switches:
                raise LocalProtocolError(f"no pending {server_switch.value} to accept")
            key: _Key = (event_type, role, server_switch)
        else:
            key = (event_type, role)
        if role is SERVER and event_type is Response and server_switch is None:
            # Any normal final response declines every pending switch.
            self.pending_switches.clear()
        self._move(role, key)
        if role is CLIENT and event_type is Request:
            self._move(SERVER, key)
        self._fire_state_triggered()

    def _move(self, role: Role, key: _Key) -> None:
        state = self.states[role]
        new = _FLAT.get((role, state, key))
        if new is None:
            raise LocalProtocolError(
                f"can't handle {key[0].__name__} sent by {key[1].value}"
                f" when {role.value} is {state.value}"
            )
        self.states[role] = new

    def _fire_state_triggered(self) -> None:
        states = self.states
        while True:
            client = old_client = states[CLIENT]
            server = old_server = states[SERVER]
            if self.pending_switches:
                if client is DONE:
                    client = MIGHT_SWITCH_PROTOCOL
            elif client is MIGHT_SWITCH_PROTOCOL:
                client = DONE
            if not self.keep_alive:
                if client is DONE:
                    client = MUST_CLOSE
                if server is DONE:
                    server = MUST_CLOSE
            changes = STATE_TRIGGERED.get((client, server))
            if changes:
                client = changes.get(CLIENT, client)
                server = changes.get(SERVER, server)
            if client is old_client and server is old_server:
                return
            states[CLIENT] = client
            states[SERVER] = server

    def start_next_cycle(self) -> None:
        """Reset both sides to ``IDLE`` after a completed, kept-alive exchange.

        Raises:
            LocalProtocolError: either side is not ``DONE``.
        """
        if self.states != {CLIENT: DONE, SERVER: DONE}:
            raise LocalProtocolError(
                "not in a reusable state: client "
                f"{self.states[CLIENT].value}, server {self.states[SERVER].value}"
            )
        assert self.keep_alive and not self.pending_switches
        self.states = {CLIENT: IDLE, SERVER: IDLE}
