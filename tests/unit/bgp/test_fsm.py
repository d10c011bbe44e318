"""Two session FSMs wired together in memory through the real codec, on a fake clock."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.bgp import fsm as fsm_module
from herald.bgp.fsm import (
    OPEN_SENT_HOLD_TIME,
    Action,
    CloseConnection,
    Connect,
    Deliver,
    Event,
    Fsm,
    Initiator,
    Send,
    SessionConfig,
    SessionDown,
    SessionEstablished,
    State,
    Timer,
    collision_survivor,
)
from herald.bgp.wire import (
    AsPath,
    AsPathSegment,
    CodecError,
    Decoded,
    Framer,
    Keepalive,
    Message,
    Notification,
    Open,
    Origin,
    PathAttributes,
    Prefix,
    SegmentType,
    Update,
    decode_message,
)
from herald.bgp.wire.errors import UpdateError, UpdateSubcode

A_ID = IPv4Address("192.0.2.21")
B_ID = IPv4Address("192.0.2.1")
A_AS, B_AS = 4200000000, 64512


def config_a(**changes: object) -> SessionConfig:
    return replace(SessionConfig(A_AS, B_AS, A_ID, hold_time=90), **changes)  # type: ignore[arg-type]


def config_b(**changes: object) -> SessionConfig:
    return replace(SessionConfig(B_AS, A_AS, B_ID, hold_time=30), **changes)  # type: ignore[arg-type]


@dataclass
class Side:
    fsm: Fsm
    framer: Framer = field(default_factory=Framer)
    actions: list[Action] = field(default_factory=list)

    def sent(self) -> list[Message]:
        return [a.message for a in self.actions if isinstance(a, Send)]

    def downs(self) -> list[SessionDown]:
        return [a for a in self.actions if isinstance(a, SessionDown)]


@dataclass
class Link:
    """An in-memory TCP connection between two FSMs, and the clock they share.

    Sends are encoded with the sender's negotiated state and decoded by the receiver through
    a Framer, as on a socket. `block` holds back matching messages until `release()`.
    """

    a: Side
    b: Side
    now: float = 0.0
    connected: bool = False
    block: Callable[[Message], bool] = lambda m: False
    held: list[tuple[Side, bytes]] = field(default_factory=list)
    queue: list[tuple[Side, list[Action]]] = field(default_factory=list)

    def other(self, side: Side) -> Side:
        return self.b if side is self.a else self.a

    def event(self, side: Side, event: Event, **kw: object) -> None:
        self.run(side, side.fsm.handle_event(event, self.now, **kw))  # type: ignore[arg-type]

    def run(self, side: Side, actions: list[Action]) -> None:
        self.queue.append((side, actions))
        while self.queue:
            who, batch = self.queue.pop(0)
            who.actions += batch
            for action in batch:
                self._carry_out(who, action)

    def _carry_out(self, side: Side, action: Action) -> None:
        peer = self.other(side)
        if isinstance(action, Connect):
            if peer.fsm.state in (State.CONNECT, State.ACTIVE):
                self.connected = True
                self.queue.append((side, side.fsm.handle_event(Event.TCP_CR_ACKED, self.now)))
                confirmed = peer.fsm.handle_event(Event.TCP_CONNECTION_CONFIRMED, self.now)
                self.queue.append((peer, confirmed))
            else:
                failed = side.fsm.handle_event(Event.TCP_CONNECTION_FAILS, self.now)
                self.queue.append((side, failed))
        elif isinstance(action, CloseConnection) and self.connected:
            self.connected = False
            self.queue.append((peer, peer.fsm.handle_event(Event.TCP_CONNECTION_FAILS, self.now)))
        elif isinstance(action, Send) and self.connected:
            data = action.message.encode(side.fsm.negotiated)
            if self.block(action.message):
                self.held.append((peer, data))
            else:
                self._deliver(peer, data)

    def _deliver(self, peer: Side, data: bytes) -> None:
        peer.framer.feed(data)
        try:
            for frame in peer.framer.frames():
                decoded = decode_message(frame, peer.fsm.negotiated)
                self.queue.append((peer, peer.fsm.handle_message(decoded, self.now)))
                peer.framer.max_message_size = peer.fsm.negotiated.max_message_size
        except CodecError as e:
            self.queue.append((peer, peer.fsm.handle_codec_error(e, self.now)))

    def release(self) -> None:
        self.block = lambda m: False
        held, self.held = self.held, []
        for peer, data in held:
            if self.connected:
                self._deliver(peer, data)
        self.run(self.a, [])

    def advance(self, seconds: float) -> None:
        """Move the clock, firing each timer at its own deadline."""
        end = self.now + seconds
        while True:
            deadlines = [
                (d, s) for s in (self.a, self.b) if (d := s.fsm.next_deadline()) is not None
            ]
            due = [(d, s) for d, s in deadlines if d <= end]
            if not due:
                break
            deadline, side = min(due, key=lambda item: item[0])
            self.now = deadline
            self.run(side, side.fsm.handle_timer(self.now))
        self.now = end


def established_link(a: SessionConfig | None = None, b: SessionConfig | None = None) -> Link:
    link = Link(Side(Fsm(a or config_a())), Side(Fsm(b or config_b())))
    link.event(link.b, Event.MANUAL_START_PASSIVE)
    link.event(link.a, Event.MANUAL_START)
    return link


def test_open_to_established() -> None:
    link = established_link()
    assert link.a.fsm.state is State.ESTABLISHED
    assert link.b.fsm.state is State.ESTABLISHED
    (up,) = [x for x in link.a.actions if isinstance(x, SessionEstablished)]
    assert up.peer_open.asn == B_AS
    assert up.hold_time == 30 and up.keepalive_time == 10
    assert up.negotiated.four_octet_as
    # A's OPEN carried AS_TRANS on the wire and the real AS in the capability.
    first = link.a.sent()[0]
    assert isinstance(first, Open) and first.encode()[20:22] == (23456).to_bytes(2, "big")
    assert link.b.fsm.peer_open is not None and link.b.fsm.peer_open.asn == A_AS
    assert [type(m) for m in link.a.sent()] == [Open, Keepalive]


def test_keepalives_keep_the_session_up() -> None:
    link = established_link()
    link.advance(300)
    assert link.a.fsm.state is link.b.fsm.state is State.ESTABLISHED
    keepalives = sum(isinstance(m, Keepalive) for m in link.a.sent())
    assert 29 <= keepalives <= 32  # one every hold/3 = 10 s, plus the one confirming OPEN
    hold = link.a.fsm.deadline(Timer.HOLD)
    assert hold is not None and hold > link.now


def test_hold_timer_expiry_sends_code_4() -> None:
    link = established_link()
    link.block = lambda m: True  # B's keepalives stop reaching A, and A's reaching B
    link.advance(31)
    assert link.a.fsm.state is State.IDLE
    (down,) = link.a.downs()
    assert down.sent == Notification(4, 0)
    assert down.reason == "hold timer expired"
    assert link.a.fsm.next_deadline() is None


def test_hold_time_zero_means_no_keepalives_and_no_hold_timer() -> None:
    link = established_link(b=config_b(hold_time=0))
    assert link.a.fsm.state is State.ESTABLISHED
    assert link.a.fsm.hold_time == link.b.fsm.hold_time == 0
    assert link.a.fsm.next_deadline() is None
    link.advance(10_000)
    assert link.a.fsm.state is State.ESTABLISHED
    assert sum(isinstance(m, Keepalive) for m in link.a.sent()) == 1


def test_update_is_delivered_in_established() -> None:
    link = established_link()
    update = Update(
        attributes=PathAttributes(origin=Origin.IGP, as_path=AsPath.sequence(A_AS), next_hop=A_ID),
        nlri=(Prefix(IPv4Network("203.0.113.10/32")),),
    )
    link.run(link.a, [Send(update)])
    (delivered,) = [x for x in link.b.actions if isinstance(x, Deliver)]
    assert delivered.message == update


def announcement(*segments: AsPathSegment) -> Update:
    return Update(
        attributes=PathAttributes(origin=Origin.IGP, as_path=AsPath(segments), next_hop=A_ID),
        nlri=(Prefix(IPv4Network("203.0.113.10/32")),),
    )


@pytest.mark.parametrize(
    "update",
    [
        announcement(AsPathSegment(SegmentType.AS_SEQUENCE, (65001, A_AS))),  # not first
        announcement(),  # empty AS_PATH from an eBGP peer
        announcement(AsPathSegment(SegmentType.AS_SET, (A_AS,))),  # a set is no origin order
    ],
    ids=["other-first-as", "empty", "as-set-first"],
)
def test_ebgp_update_not_starting_with_the_peer_as_ends_the_session(update: Update) -> None:
    link = established_link()
    link.run(link.a, [Send(update)])
    assert link.b.fsm.state is link.a.fsm.state is State.IDLE
    assert not [x for x in link.b.actions if isinstance(x, Deliver)]
    (down,) = link.b.downs()
    assert down.sent == Notification(3, 11)  # UPDATE Message Error / Malformed AS_PATH
    assert "enforce-first-as" in down.reason
    assert link.a.downs()[0].received == Notification(3, 11)


def test_first_as_check_spares_withdrawals_ibgp_and_can_be_turned_off() -> None:
    wrong = announcement(AsPathSegment(SegmentType.AS_SEQUENCE, (65001,)))
    withdrawal = Update(withdrawn=(Prefix(IPv4Network("203.0.113.10/32")),))
    off = established_link(b=config_b(enforce_first_as=False))
    off.run(off.a, [Send(wrong)])
    ibgp = established_link(config_a(local_as=B_AS), config_b(peer_as=B_AS))
    ibgp.run(ibgp.a, [Send(wrong)])
    on = established_link()
    on.run(on.a, [Send(withdrawal)])
    for link, message in ((off, wrong), (ibgp, wrong), (on, withdrawal)):
        assert link.b.fsm.state is State.ESTABLISHED
        (delivered,) = [x for x in link.b.actions if isinstance(x, Deliver)]
        assert delivered.message == message


def test_manual_stop_sends_cease_and_the_peer_records_it() -> None:
    link = established_link()
    link.event(link.a, Event.MANUAL_STOP)
    assert link.a.fsm.state is link.b.fsm.state is State.IDLE
    (down,) = link.b.downs()
    assert down.received == Notification(6, 2)
    assert link.a.fsm.connect_retry_counter == 0


@pytest.mark.parametrize(
    ("b_config", "subcode"),
    [
        (config_b(peer_as=65000), 2),  # B expects another AS
        (config_b(local_as=A_AS, bgp_identifier=A_ID), 3),  # iBGP, same identifier
    ],
)
def test_bad_open_is_refused_with_open_error(b_config: SessionConfig, subcode: int) -> None:
    a_config = config_a(peer_as=b_config.local_as)
    link = established_link(a_config, b_config)
    assert link.a.fsm.state is link.b.fsm.state is State.IDLE
    (refused,) = link.b.downs()
    assert refused.sent == Notification(2, subcode)
    # With equal identifiers A refuses B's OPEN too, so A may have sent rather than received it.
    (down,) = link.a.downs()
    assert Notification(2, subcode) in (down.received, down.sent)


def open_sent() -> Fsm:
    fsm = Fsm(config_a())
    fsm.handle_event(Event.MANUAL_START, 0)
    fsm.handle_event(Event.TCP_CR_ACKED, 0)
    assert fsm.state is State.OPEN_SENT
    assert fsm.deadline(Timer.HOLD) == OPEN_SENT_HOLD_TIME
    return fsm


def first_sent(actions: list[Action]) -> Message:
    return next(a.message for a in actions if isinstance(a, Send))


@pytest.mark.parametrize(
    ("peer", "notification"),
    [
        (Open(B_AS, 90, B_ID, version=3), Notification(2, 1, b"\x00\x04")),
        (Open(B_AS, 1, B_ID), Notification(2, 6)),
        (Open(B_AS, 2, B_ID), Notification(2, 6)),
        (Open(B_AS, 90, IPv4Address(0)), Notification(2, 3)),
        (Open(B_AS + 1, 90, B_ID), Notification(2, 2)),
    ],
)
def test_open_validation(peer: Open, notification: Notification) -> None:
    fsm = open_sent()
    actions = fsm.handle_message(Decoded(peer), 1)
    assert first_sent(actions) == notification
    assert fsm.state is State.IDLE


def test_hold_time_three_is_accepted() -> None:
    fsm = open_sent()
    fsm.handle_message(Decoded(Open(B_AS, 3, B_ID)), 1)
    assert fsm.state is State.OPEN_CONFIRM and fsm.hold_time == 3
    assert fsm.deadline(Timer.KEEPALIVE) == 2


@pytest.mark.parametrize(
    ("setup", "message", "subcode"),
    [
        ("open_sent", Keepalive(), 1),
        ("open_sent", Update(), 1),
        ("open_confirm", Update(), 2),
        ("open_confirm", Open(B_AS, 90, B_ID), 2),
        ("established", Open(B_AS, 90, B_ID), 3),
    ],
)
def test_unexpected_message_is_an_fsm_error(setup: str, message: Message, subcode: int) -> None:
    fsm = open_sent()
    if setup != "open_sent":
        fsm.handle_message(Decoded(Open(B_AS, 90, B_ID)), 1)
    if setup == "established":
        fsm.handle_message(Decoded(Keepalive()), 1)
    actions = fsm.handle_message(Decoded(message), 2)
    assert first_sent(actions) == Notification(5, subcode)
    assert fsm.state is State.IDLE


def test_codec_error_in_established_sends_its_notification() -> None:
    link = established_link()
    error = UpdateError(UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, reason="test")
    link.run(link.b, link.b.fsm.handle_codec_error(error, link.now))
    assert link.b.downs()[0].sent == Notification(3, 1)
    assert link.a.downs()[0].received == Notification(3, 1)


def test_connection_refused_goes_idle_and_counts() -> None:
    link = Link(Side(Fsm(config_a())), Side(Fsm(config_b())))  # B never started
    link.event(link.a, Event.MANUAL_START)
    assert link.a.fsm.state is State.IDLE
    assert link.a.fsm.connect_retry_counter == 1
    assert link.a.downs()[0].reason.startswith("TCP connection failed")


def test_connect_retry_timer_tries_again() -> None:
    fsm = Fsm(config_a(connect_retry_time=5))
    assert isinstance(fsm.handle_event(Event.MANUAL_START, 0)[-1], Connect)
    assert fsm.next_deadline() == 5
    actions = fsm.handle_timer(5)
    assert fsm.state is State.CONNECT
    assert [type(a) for a in actions if isinstance(a, Connect | CloseConnection)] == [
        CloseConnection,
        Connect,
    ]
    assert fsm.next_deadline() == 10


def test_tcp_failure_in_open_sent_falls_back_to_active() -> None:
    fsm = open_sent()
    fsm.handle_event(Event.TCP_CONNECTION_FAILS, 3)
    assert fsm.state is State.ACTIVE
    assert fsm.deadline(Timer.CONNECT_RETRY) == 3 + fsm.config.connect_retry_time
    assert fsm.deadline(Timer.HOLD) is None


def test_collision_keeps_the_connection_of_the_higher_identifier() -> None:
    """A (192.0.2.21) and B (192.0.2.1) connect to each other at once: two connections.

    Each speaker, seeing two connections to the same peer, dumps the one the lower
    identifier initiated, so the connection A initiated survives on both sides.
    """
    a_out, a_in = Side(Fsm(config_a())), Side(Fsm(config_a()))
    b_out, b_in = Side(Fsm(config_b())), Side(Fsm(config_b()))

    def not_keepalive(m: Message) -> bool:
        return isinstance(m, Keepalive)

    first = Link(a_out, b_in, block=not_keepalive)  # initiated by A
    second = Link(b_out, a_in, block=not_keepalive)  # initiated by B
    first.event(b_in, Event.AUTOMATIC_START_PASSIVE)
    second.event(a_in, Event.AUTOMATIC_START_PASSIVE)
    first.event(a_out, Event.MANUAL_START)
    second.event(b_out, Event.MANUAL_START)
    for side in (a_out, a_in, b_out, b_in):
        assert side.fsm.state is State.OPEN_CONFIRM

    assert collision_survivor(A_ID, B_ID) is Initiator.LOCAL
    assert collision_survivor(B_ID, A_ID) is Initiator.REMOTE
    # A keeps its own (first), dumps second; B keeps the remote-initiated (first).
    second.event(a_in, Event.OPEN_COLLISION_DUMP)
    second.event(b_out, Event.OPEN_COLLISION_DUMP)  # already Idle: ignored
    first.release()

    assert a_out.fsm.state is b_in.fsm.state is State.ESTABLISHED
    assert a_in.fsm.state is b_out.fsm.state is State.IDLE
    assert a_in.downs()[0].sent == Notification(6, 7)
    assert b_out.downs()[0].received == Notification(6, 7)


def test_collision_compares_identifiers_as_unsigned_integers() -> None:
    high, low = IPv4Address("200.0.0.1"), IPv4Address("10.255.255.255")
    assert collision_survivor(high, low) is Initiator.LOCAL
    assert collision_survivor(low, high) is Initiator.REMOTE


def test_a_handler_bug_costs_the_session_not_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(fsm: Fsm, i: object) -> State:
        raise RuntimeError("bug")

    monkeypatch.setitem(fsm_module.TRANSITIONS, (State.OPEN_SENT, Event.KEEPALIVE_MSG), broken)
    fsm = open_sent()
    actions = fsm.handle_message(Decoded(Keepalive()), 1)
    assert first_sent(actions) == Notification(5, 0)
    assert fsm.state is State.IDLE


INPUTS = st.one_of(
    st.sampled_from(list(Event)).map(lambda e: ("event", e)),
    st.sampled_from(
        [Open(B_AS, 90, B_ID), Open(B_AS, 0, B_ID), Keepalive(), Update(), Notification(6, 2)]
    ).map(lambda m: ("message", m)),
    st.floats(0, 500).map(lambda dt: ("time", dt)),
)


@settings(derandomize=True, max_examples=200, deadline=None)
@given(st.lists(INPUTS, max_size=30))
def test_any_input_sequence_is_handled_without_exceptions(
    inputs: list[tuple[str, object]],
) -> None:
    fsm = Fsm(config_a())
    now = 0.0
    for kind, value in inputs:
        if kind == "event":
            assert isinstance(value, Event)
            message = None
            if value in (Event.BGP_HEADER_ERR, Event.BGP_OPEN_MSG_ERR, Event.UPDATE_MSG_ERR):
                actions = fsm.handle_codec_error(CodecError(value.value % 4, 1), now)
            else:
                actions = fsm.handle_event(value, now, message)
        elif kind == "message":
            assert isinstance(value, Open | Keepalive | Update | Notification)
            actions = fsm.handle_message(Decoded(value), now)
        else:
            assert isinstance(value, float)
            now += value
            actions = fsm.handle_timer(now)
        assert isinstance(fsm.state, State)
        if fsm.state is State.IDLE:
            assert fsm.next_deadline() is None
        if any(isinstance(a, SessionDown) for a in actions):
            assert fsm.state is State.IDLE
        deadline = fsm.next_deadline()
        assert deadline is None or deadline > now or kind != "time"
