"""RFC 4271 §8 session state machine for one peer connection, pure.

Inputs are events with the time passed in (`handle_event`, `handle_message`,
`handle_codec_error`, `handle_timer`); outputs are lists of actions for the driver to carry
out (send, connect, close, timers, established, down). The FSM keeps its own timer
deadlines and says when it next needs to be woken (`next_deadline`), so the asyncio driver
holds one timer and tests use a fake clock.

Every (state, event) pair the session handles is in one table, `TRANSITIONS`. A pair that is
not in it is the RFC's "any other event": ignored in Idle, otherwise the connection is
dropped (with an FSM-error NOTIFICATION once an OPEN has been sent). No exception escapes.

Not modelled: DelayOpen, peer oscillation damping, and the optional CollisionDetect
events; the driver detects collisions (`collision_survivor`) and sends OpenCollisionDump.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import IPv4Address

from herald.bgp.wire import (
    INITIAL,
    IPV4_UNICAST,
    AppliedTreatment,
    Capability,
    CodecError,
    Decoded,
    ErrorCode,
    FourOctetAs,
    Keepalive,
    Message,
    MultiProtocol,
    Negotiated,
    Notification,
    Open,
    RouteRefresh,
    SegmentType,
    Update,
    negotiate,
)
from herald.bgp.wire.errors import (
    CeaseSubcode,
    FsmSubcode,
    OpenError,
    OpenSubcode,
    UpdateError,
    UpdateSubcode,
)

OPEN_SENT_HOLD_TIME = 240.0
"""RFC 4271 §8.2.2: the "large value" the hold timer gets while waiting for the peer's OPEN."""

SUPPORTED_VERSION = 4


class State(Enum):
    IDLE = "Idle"
    CONNECT = "Connect"
    ACTIVE = "Active"
    OPEN_SENT = "OpenSent"
    OPEN_CONFIRM = "OpenConfirm"
    ESTABLISHED = "Established"


class Event(Enum):
    """RFC 4271 §8.1 events, numbered as there; ROUTE_REFRESH_MSG is RFC 2918's addition."""

    MANUAL_START = 1
    MANUAL_STOP = 2
    AUTOMATIC_START = 3
    MANUAL_START_PASSIVE = 4
    AUTOMATIC_START_PASSIVE = 5
    CONNECT_RETRY_TIMER_EXPIRES = 9
    HOLD_TIMER_EXPIRES = 10
    KEEPALIVE_TIMER_EXPIRES = 11
    TCP_CR_ACKED = 16
    TCP_CONNECTION_CONFIRMED = 17
    TCP_CONNECTION_FAILS = 18
    BGP_OPEN = 19
    BGP_HEADER_ERR = 21
    BGP_OPEN_MSG_ERR = 22
    OPEN_COLLISION_DUMP = 23
    NOTIF_MSG_VER_ERR = 24
    NOTIF_MSG = 25
    KEEPALIVE_MSG = 26
    UPDATE_MSG = 27
    UPDATE_MSG_ERR = 28
    ROUTE_REFRESH_MSG = 100


class Timer(Enum):
    CONNECT_RETRY = "ConnectRetry"
    HOLD = "Hold"
    KEEPALIVE = "Keepalive"


_TIMER_EVENTS = {
    Timer.CONNECT_RETRY: Event.CONNECT_RETRY_TIMER_EXPIRES,
    Timer.HOLD: Event.HOLD_TIMER_EXPIRES,
    Timer.KEEPALIVE: Event.KEEPALIVE_TIMER_EXPIRES,
}


# --- actions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Send:
    message: Message


@dataclass(frozen=True)
class Connect:
    """Open a TCP connection to the peer; answer with TCP_CR_ACKED or TCP_CONNECTION_FAILS."""


@dataclass(frozen=True)
class CloseConnection:
    pass


@dataclass(frozen=True)
class StartTimer:
    timer: Timer
    deadline: float


@dataclass(frozen=True)
class StopTimer:
    timer: Timer


@dataclass(frozen=True)
class SessionEstablished:
    peer_open: Open
    negotiated: Negotiated
    hold_time: int
    keepalive_time: float


@dataclass(frozen=True)
class Deliver:
    """An UPDATE or ROUTE-REFRESH for the speaker, with the RFC 7606 treatments applied."""

    message: Update | RouteRefresh
    treatments: tuple[AppliedTreatment, ...] = ()


@dataclass(frozen=True)
class SessionDown:
    """The session went to Idle; the driver decides when to start again (with back-off)."""

    reason: str
    sent: Notification | None = None
    received: Notification | None = None


Action = (
    Send
    | Connect
    | CloseConnection
    | StartTimer
    | StopTimer
    | SessionEstablished
    | Deliver
    | SessionDown
)


# --- configuration and pure helpers ------------------------------------------------------


@dataclass(frozen=True)
class SessionConfig:
    local_as: int
    peer_as: int
    bgp_identifier: IPv4Address
    hold_time: int = 90
    connect_retry_time: float = 120.0
    # Only what the session can honour today: route refresh waits for the speaker.
    capabilities: tuple[Capability, ...] = (MultiProtocol(IPV4_UNICAST),)
    enforce_first_as: bool = True

    @property
    def ibgp(self) -> bool:
        return self.local_as == self.peer_as

    def open_message(self) -> Open:
        # The 4-octet AS capability is always sent: RFC 6793 speakers must advertise it.
        capabilities = self.capabilities
        if not any(isinstance(c, FourOctetAs) for c in capabilities):
            capabilities += (FourOctetAs(self.local_as),)
        return Open(self.local_as, self.hold_time, self.bgp_identifier, capabilities)


def validate_open(peer: Open, config: SessionConfig) -> OpenError | None:
    """RFC 4271 §6.2 checks of a received OPEN; None when it is acceptable."""
    if peer.version != SUPPORTED_VERSION:
        return OpenError(
            OpenSubcode.UNSUPPORTED_VERSION,
            SUPPORTED_VERSION.to_bytes(2, "big"),
            f"version {peer.version}",
        )
    if peer.asn != config.peer_as:
        return OpenError(OpenSubcode.BAD_PEER_AS, reason=f"peer AS {peer.asn}")
    zero = peer.bgp_identifier == IPv4Address(0)
    # RFC 6286 §2.2: only within one AS must the identifiers differ.
    same = config.ibgp and peer.bgp_identifier == config.bgp_identifier
    if zero or same:
        return OpenError(OpenSubcode.BAD_BGP_IDENTIFIER, reason=f"{peer.bgp_identifier}")
    if peer.hold_time in (1, 2):
        return OpenError(OpenSubcode.UNACCEPTABLE_HOLD_TIME, reason=f"hold {peer.hold_time}")
    return None


def validate_update(update: Update, config: SessionConfig) -> UpdateError | None:
    """RFC 4271 §6.3's optional first-AS check (FRR's enforce-first-as): an external peer's
    announcement must carry an AS_PATH whose first segment is a sequence starting with the
    peer's AS. None when it does, or when the check does not apply."""
    attributes = update.attributes
    announces = update.nlri or (attributes.mp_reach is not None and attributes.mp_reach.nlri)
    if not config.enforce_first_as or config.ibgp or not announces:
        return None
    # A treat-as-withdraw UPDATE has no NLRI left, and a missing AS_PATH was treated so.
    segments = attributes.as_path.segments if attributes.as_path is not None else ()
    first = segments[0] if segments else None
    if (
        first is not None
        and first.type == SegmentType.AS_SEQUENCE
        and first.asns[:1] == (config.peer_as,)
    ):
        return None
    shown = first.asns[0] if first is not None and first.asns else "none"
    return UpdateError(
        UpdateSubcode.MALFORMED_AS_PATH,
        reason=f"AS_PATH starts with {shown}, not with the peer's AS {config.peer_as} "
        "(enforce-first-as)",
    )


def negotiate_hold_time(local: int, peer: int) -> int:
    """The smaller of the two; 0 means no keepalives and no hold timer."""
    return min(local, peer)


class Initiator(Enum):
    LOCAL = "local"
    REMOTE = "remote"


def collision_survivor(local_id: IPv4Address, remote_id: IPv4Address) -> Initiator:
    """RFC 4271 §6.8: of two connections between the same pair, the one initiated by the
    speaker with the higher BGP identifier (compared as unsigned integers) survives."""
    return Initiator.LOCAL if int(local_id) > int(remote_id) else Initiator.REMOTE


# --- the machine -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Input:
    now: float
    message: Message | None = None
    treatments: tuple[AppliedTreatment, ...] = ()
    error: CodecError | None = None


@dataclass
class Fsm:
    """One connection's session state. Mutable, but only through the handle_* methods."""

    config: SessionConfig
    state: State = State.IDLE
    negotiated: Negotiated = INITIAL
    peer_open: Open | None = None
    connect_retry_counter: int = 0
    hold_time: int = 0
    _deadlines: dict[Timer, float] = field(default_factory=dict, init=False, repr=False)
    _actions: list[Action] = field(default_factory=list, init=False, repr=False)

    # inputs

    def handle_event(
        self,
        event: Event,
        now: float,
        message: Message | None = None,
        treatments: tuple[AppliedTreatment, ...] = (),
        error: CodecError | None = None,
    ) -> list[Action]:
        handler = TRANSITIONS.get((self.state, event), _any_other_event)
        self._actions = []
        try:
            self.state = handler(self, _Input(now, message, treatments, error))
        except Exception as e:  # an FSM bug must cost one session, not the speaker
            self._actions = []
            notification = Notification(ErrorCode.FSM, FsmSubcode.UNSPECIFIED)
            self.state = self._to_idle(f"internal error on {event.name}: {e!r}", notification)
        return self._actions

    def handle_message(self, decoded: Decoded, now: float) -> list[Action]:
        message = decoded.message
        if isinstance(message, Notification):
            version = (message.code, message.subcode) == (
                ErrorCode.OPEN_MESSAGE,
                OpenSubcode.UNSUPPORTED_VERSION,
            )
            event = Event.NOTIF_MSG_VER_ERR if version else Event.NOTIF_MSG
        else:
            event = _MESSAGE_EVENTS[type(message)]
        return self.handle_event(event, now, message, decoded.treatments)

    def handle_codec_error(self, error: CodecError, now: float) -> list[Action]:
        event = _ERROR_EVENTS.get(error.code, Event.UPDATE_MSG_ERR)
        return self.handle_event(event, now, error=error)

    def handle_timer(self, now: float) -> list[Action]:
        """Fire every timer due by `now`, earliest first."""
        actions: list[Action] = []
        while (due := self._due(now)) is not None:
            del self._deadlines[due]
            actions += self.handle_event(_TIMER_EVENTS[due], now)
        return actions

    def next_deadline(self) -> float | None:
        return min(self._deadlines.values(), default=None)

    def deadline(self, timer: Timer) -> float | None:
        return self._deadlines.get(timer)

    def _due(self, now: float) -> Timer | None:
        due = [t for t, deadline in self._deadlines.items() if deadline <= now]
        return min(due, key=self._deadlines.__getitem__) if due else None

    # building blocks for the handlers

    def _emit(self, action: Action) -> None:
        self._actions.append(action)

    def _start(self, timer: Timer, seconds: float, now: float) -> None:
        self._deadlines[timer] = now + seconds
        self._emit(StartTimer(timer, now + seconds))

    def _stop(self, timer: Timer) -> None:
        if self._deadlines.pop(timer, None) is not None:
            self._emit(StopTimer(timer))

    def _send(self, message: Message) -> None:
        self._emit(Send(message))

    def _keepalive_interval(self) -> float:
        return self.hold_time / 3

    def _to_idle(
        self,
        reason: str,
        notification: Notification | None = None,
        received: Notification | None = None,
    ) -> State:
        """Every way down: optional NOTIFICATION, close, timers off, counter up."""
        if notification is not None:
            self._send(notification)
        self._emit(CloseConnection())
        for timer in list(self._deadlines):
            self._stop(timer)
        self.connect_retry_counter += 1
        self.negotiated = INITIAL
        self.peer_open = None
        self._emit(SessionDown(reason, notification, received))
        return State.IDLE


_MESSAGE_EVENTS: dict[type, Event] = {
    Open: Event.BGP_OPEN,
    Keepalive: Event.KEEPALIVE_MSG,
    Update: Event.UPDATE_MSG,
    RouteRefresh: Event.ROUTE_REFRESH_MSG,
}

_ERROR_EVENTS: dict[int, Event] = {
    ErrorCode.MESSAGE_HEADER: Event.BGP_HEADER_ERR,
    ErrorCode.OPEN_MESSAGE: Event.BGP_OPEN_MSG_ERR,
    ErrorCode.UPDATE_MESSAGE: Event.UPDATE_MSG_ERR,
}

_FSM_ERROR_SUBCODE = {
    State.OPEN_SENT: FsmSubcode.UNEXPECTED_IN_OPEN_SENT,
    State.OPEN_CONFIRM: FsmSubcode.UNEXPECTED_IN_OPEN_CONFIRM,
    State.ESTABLISHED: FsmSubcode.UNEXPECTED_IN_ESTABLISHED,
}


# --- handlers: each does the RFC's steps for one (state, event) and returns the next state


def _start_active(fsm: Fsm, i: _Input) -> State:
    fsm.connect_retry_counter = 0
    fsm._start(Timer.CONNECT_RETRY, fsm.config.connect_retry_time, i.now)
    fsm._emit(Connect())
    return State.CONNECT


def _start_passive(fsm: Fsm, i: _Input) -> State:
    fsm.connect_retry_counter = 0
    fsm._start(Timer.CONNECT_RETRY, fsm.config.connect_retry_time, i.now)
    return State.ACTIVE


def _retry_connect(fsm: Fsm, i: _Input) -> State:
    fsm._emit(CloseConnection())
    fsm._start(Timer.CONNECT_RETRY, fsm.config.connect_retry_time, i.now)
    fsm._emit(Connect())
    return State.CONNECT


def _connected(fsm: Fsm, i: _Input) -> State:
    fsm._stop(Timer.CONNECT_RETRY)
    fsm._send(fsm.config.open_message())
    fsm._start(Timer.HOLD, OPEN_SENT_HOLD_TIME, i.now)
    return State.OPEN_SENT


def _manual_stop(fsm: Fsm, i: _Input) -> State:
    """ManualStop, and the speaker's own stops (RFC 4271 AutomaticStop, e.g. a prefix limit):
    those pass their Cease as `error`, which replaces administrative shutdown."""
    # A NOTIFICATION goes out only once the peer has our OPEN; before that there is no session.
    notification = None
    reason = "stopped by operator"
    if fsm.state in (State.OPEN_SENT, State.OPEN_CONFIRM, State.ESTABLISHED):
        notification = Notification(ErrorCode.CEASE, CeaseSubcode.ADMINISTRATIVE_SHUTDOWN)
        if i.error is not None:
            notification = Notification.from_error(i.error)
    if i.error is not None:
        reason = i.error.reason
    state = fsm._to_idle(reason, notification)
    fsm.connect_retry_counter = 0
    return state


def _connection_failed(fsm: Fsm, i: _Input) -> State:
    return fsm._to_idle("TCP connection failed or closed")


def _connection_failed_open_sent(fsm: Fsm, i: _Input) -> State:
    # RFC 4271 §8.2.2: in OpenSent the peer may still connect to us, so listen on (Active).
    fsm._emit(CloseConnection())
    fsm._stop(Timer.HOLD)
    fsm._start(Timer.CONNECT_RETRY, fsm.config.connect_retry_time, i.now)
    return State.ACTIVE


def _hold_expired(fsm: Fsm, i: _Input) -> State:
    return fsm._to_idle("hold timer expired", Notification(ErrorCode.HOLD_TIMER_EXPIRED, 0))


def _open_received(fsm: Fsm, i: _Input) -> State:
    assert isinstance(i.message, Open)
    peer = i.message
    error = validate_open(peer, fsm.config)
    if error is not None:
        return fsm._to_idle(f"bad OPEN: {error.reason}", Notification.from_error(error))
    fsm._stop(Timer.CONNECT_RETRY)
    fsm.peer_open = peer
    fsm.negotiated = negotiate(fsm.config.open_message().capabilities, peer.capabilities)
    fsm.hold_time = negotiate_hold_time(fsm.config.hold_time, peer.hold_time)
    fsm._send(Keepalive())
    if fsm.hold_time:
        fsm._start(Timer.KEEPALIVE, fsm._keepalive_interval(), i.now)
        fsm._start(Timer.HOLD, fsm.hold_time, i.now)
    else:
        fsm._stop(Timer.HOLD)
    return State.OPEN_CONFIRM


def _message_error(fsm: Fsm, i: _Input) -> State:
    assert i.error is not None
    return fsm._to_idle(f"bad message: {i.error.reason}", Notification.from_error(i.error))


def _collision_dump(fsm: Fsm, i: _Input) -> State:
    cease = Notification(ErrorCode.CEASE, CeaseSubcode.CONNECTION_COLLISION_RESOLUTION)
    return fsm._to_idle("connection collision: this connection lost", cease)


def _notification_received(fsm: Fsm, i: _Input) -> State:
    assert isinstance(i.message, Notification)
    n = i.message
    return fsm._to_idle(f"NOTIFICATION received: code {n.code} subcode {n.subcode}", received=n)


def _send_keepalive(fsm: Fsm, i: _Input) -> State:
    fsm._send(Keepalive())
    fsm._start(Timer.KEEPALIVE, fsm._keepalive_interval(), i.now)
    return fsm.state


def _restart_hold(fsm: Fsm, now: float) -> None:
    if fsm.hold_time:
        fsm._start(Timer.HOLD, fsm.hold_time, now)


def _keepalive_confirms(fsm: Fsm, i: _Input) -> State:
    assert fsm.peer_open is not None
    _restart_hold(fsm, i.now)
    keepalive = fsm._keepalive_interval() if fsm.hold_time else 0.0
    fsm._emit(SessionEstablished(fsm.peer_open, fsm.negotiated, fsm.hold_time, keepalive))
    return State.ESTABLISHED


def _keepalive_received(fsm: Fsm, i: _Input) -> State:
    _restart_hold(fsm, i.now)
    return State.ESTABLISHED


def _update_received(fsm: Fsm, i: _Input) -> State:
    assert isinstance(i.message, Update)
    error = validate_update(i.message, fsm.config)
    if error is not None:
        return fsm._to_idle(f"bad UPDATE: {error.reason}", Notification.from_error(error))
    _restart_hold(fsm, i.now)
    fsm._emit(Deliver(i.message, i.treatments))
    return State.ESTABLISHED


def _route_refresh_received(fsm: Fsm, i: _Input) -> State:
    assert isinstance(i.message, RouteRefresh)
    fsm._emit(Deliver(i.message))
    return State.ESTABLISHED


def _any_other_event(fsm: Fsm, i: _Input) -> State:
    """RFC 4271 §8.2.2 "any other event": ignored in Idle, fatal to the connection elsewhere."""
    if fsm.state is State.IDLE:
        return State.IDLE
    notification = None
    if fsm.state in _FSM_ERROR_SUBCODE:
        notification = Notification(ErrorCode.FSM, _FSM_ERROR_SUBCODE[fsm.state])
    return fsm._to_idle(f"unexpected event in {fsm.state.value}", notification)


Handler = Callable[[Fsm, _Input], State]

S, E = State, Event
TRANSITIONS: dict[tuple[State, Event], Handler] = {
    (S.IDLE, E.MANUAL_START): _start_active,
    (S.IDLE, E.AUTOMATIC_START): _start_active,
    (S.IDLE, E.MANUAL_START_PASSIVE): _start_passive,
    (S.IDLE, E.AUTOMATIC_START_PASSIVE): _start_passive,
    (S.CONNECT, E.MANUAL_STOP): _manual_stop,
    (S.CONNECT, E.CONNECT_RETRY_TIMER_EXPIRES): _retry_connect,
    (S.CONNECT, E.TCP_CR_ACKED): _connected,
    (S.CONNECT, E.TCP_CONNECTION_CONFIRMED): _connected,
    (S.CONNECT, E.TCP_CONNECTION_FAILS): _connection_failed,
    (S.ACTIVE, E.MANUAL_STOP): _manual_stop,
    (S.ACTIVE, E.CONNECT_RETRY_TIMER_EXPIRES): _retry_connect,
    (S.ACTIVE, E.TCP_CR_ACKED): _connected,
    (S.ACTIVE, E.TCP_CONNECTION_CONFIRMED): _connected,
    (S.ACTIVE, E.TCP_CONNECTION_FAILS): _connection_failed,
    (S.OPEN_SENT, E.MANUAL_STOP): _manual_stop,
    (S.OPEN_SENT, E.HOLD_TIMER_EXPIRES): _hold_expired,
    (S.OPEN_SENT, E.TCP_CONNECTION_FAILS): _connection_failed_open_sent,
    (S.OPEN_SENT, E.BGP_OPEN): _open_received,
    (S.OPEN_SENT, E.BGP_HEADER_ERR): _message_error,
    (S.OPEN_SENT, E.BGP_OPEN_MSG_ERR): _message_error,
    (S.OPEN_SENT, E.OPEN_COLLISION_DUMP): _collision_dump,
    (S.OPEN_SENT, E.NOTIF_MSG_VER_ERR): _notification_received,
    # RFC 4271 answers any other NOTIFICATION in OpenSent with an FSM error; answering a
    # NOTIFICATION with one helps nobody, so the peer's reason is recorded instead.
    (S.OPEN_SENT, E.NOTIF_MSG): _notification_received,
    (S.OPEN_CONFIRM, E.MANUAL_STOP): _manual_stop,
    (S.OPEN_CONFIRM, E.HOLD_TIMER_EXPIRES): _hold_expired,
    (S.OPEN_CONFIRM, E.KEEPALIVE_TIMER_EXPIRES): _send_keepalive,
    (S.OPEN_CONFIRM, E.TCP_CONNECTION_FAILS): _connection_failed,
    (S.OPEN_CONFIRM, E.BGP_HEADER_ERR): _message_error,
    (S.OPEN_CONFIRM, E.BGP_OPEN_MSG_ERR): _message_error,
    (S.OPEN_CONFIRM, E.OPEN_COLLISION_DUMP): _collision_dump,
    (S.OPEN_CONFIRM, E.NOTIF_MSG_VER_ERR): _notification_received,
    (S.OPEN_CONFIRM, E.NOTIF_MSG): _notification_received,
    (S.OPEN_CONFIRM, E.KEEPALIVE_MSG): _keepalive_confirms,
    (S.ESTABLISHED, E.MANUAL_STOP): _manual_stop,
    (S.ESTABLISHED, E.HOLD_TIMER_EXPIRES): _hold_expired,
    (S.ESTABLISHED, E.KEEPALIVE_TIMER_EXPIRES): _send_keepalive,
    (S.ESTABLISHED, E.TCP_CONNECTION_FAILS): _connection_failed,
    (S.ESTABLISHED, E.BGP_HEADER_ERR): _message_error,
    (S.ESTABLISHED, E.UPDATE_MSG_ERR): _message_error,
    (S.ESTABLISHED, E.OPEN_COLLISION_DUMP): _collision_dump,
    (S.ESTABLISHED, E.NOTIF_MSG_VER_ERR): _notification_received,
    (S.ESTABLISHED, E.NOTIF_MSG): _notification_received,
    (S.ESTABLISHED, E.KEEPALIVE_MSG): _keepalive_received,
    (S.ESTABLISHED, E.UPDATE_MSG): _update_received,
    (S.ESTABLISHED, E.ROUTE_REFRESH_MSG): _route_refresh_received,
}
del S, E
