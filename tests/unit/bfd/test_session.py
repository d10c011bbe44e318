"""Two BFD sessions on a fake clock, joined by an in-memory link that can be cut."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from herald.bfd.packet import ControlPacket, Diag, State
from herald.bfd.session import Session, StateChange, Timers


@dataclass
class Pair:
    a: Session
    b: Session
    now: float = 0.0
    link_up: bool = True
    changes: list[tuple[float, str, StateChange]] = field(default_factory=list)
    sent: list[tuple[float, str, ControlPacket]] = field(default_factory=list)

    def run_until(self, end: float, steps: int = 10_000) -> None:
        for _ in range(steps):
            deadlines = [d for d in (self.a.deadline(), self.b.deadline()) if d is not None]
            if not deadlines or min(deadlines) > end:
                self.now = end
                return
            self.now = max(self.now, min(deadlines))
            for name, session, other in (("a", self.a, self.b), ("b", self.b, self.a)):
                self._record(name, session.expire(self.now))
                packet = session.due(self.now)
                if packet is not None:
                    self.sent.append((self.now, name, packet))
                    if self.link_up:
                        self._record("b" if name == "a" else "a", other.receive(packet, self.now))
        raise AssertionError("did not reach the end time in the step budget")

    def _record(self, name: str, changes: list[StateChange]) -> None:
        self.changes += [(self.now, name, change) for change in changes]


DEFAULT = Timers()


def pair(a: Timers = DEFAULT, b: Timers = DEFAULT) -> Pair:
    return Pair(Session(1, a, 0.0, jitter=lambda: 1.0), Session(2, b, 0.0, jitter=lambda: 1.0))


def test_three_way_handshake_brings_both_up() -> None:
    p = pair()
    p.run_until(0.01)
    assert p.a.state is State.UP and p.b.state is State.UP
    # b hears Down (-> Init), a hears Init (-> Up), b hears Up (-> Up).
    assert [(n, c.old, c.new) for _, n, c in p.changes] == [
        ("b", State.DOWN, State.INIT),
        ("a", State.DOWN, State.UP),
        ("b", State.INIT, State.UP),
    ]
    assert p.a.remote_discriminator == 2 and p.b.remote_discriminator == 1


def test_up_sessions_poll_then_send_at_the_configured_interval() -> None:
    p = pair()
    p.run_until(3.0)
    polls = [pkt for _, _, pkt in p.sent if pkt.poll]
    finals = [pkt for _, _, pkt in p.sent if pkt.final]
    assert polls and finals
    # After the poll sequence, no packet asks for a poll any more.
    assert not any(pkt.poll for t, _, pkt in p.sent if t > 1.0)
    times = [t for t, name, _ in p.sent if name == "a" and t > 1.0]
    gaps = {round(b - a, 6) for a, b in itertools.pairwise(times)}
    assert gaps == {0.3}  # jitter pinned to 100 %
    assert all(pkt.desired_min_tx == 300_000 for t, _, pkt in p.sent if t > 1.0)


def test_sessions_not_up_send_at_most_once_a_second() -> None:
    p = pair()
    p.link_up = False
    p.run_until(5.0)
    times = [t for t, name, _ in p.sent if name == "a"]
    assert len(times) == 6  # 0, 1, 2, 3, 4, 5
    assert all(pkt.desired_min_tx == 1_000_000 for _, _, pkt in p.sent)


def test_silence_is_detected_after_multiplier_times_interval() -> None:
    p = pair()
    p.run_until(2.0)
    last_heard = max(t for t, name, _ in p.sent if name == "b")
    p.link_up = False
    p.run_until(5.0)
    (down,) = [(t, c) for t, n, c in p.changes if n == "a" and c.new is State.DOWN]
    assert down[1].diag is Diag.DETECTION_EXPIRED
    assert down[0] == pytest.approx(last_heard + 0.9)
    assert p.a.remote_discriminator == 0


def test_detection_uses_the_slower_of_our_rx_and_the_peers_tx() -> None:
    p = pair(b=Timers(desired_min_tx=500_000, required_min_rx=500_000, detect_mult=4))
    p.run_until(3.0)
    # a's detection: b's multiplier 4 x max(a's rx 300 ms, b's tx 500 ms).
    assert p.a.detection_time == pytest.approx(2.0)
    # b's: a's multiplier 3 x max(500, 300); a sends at b's required rx of 500 ms.
    assert p.b.detection_time == pytest.approx(1.5)
    times = [t for t, name, _ in p.sent if name == "a" and t > 1.5]
    assert {round(y - x, 6) for x, y in itertools.pairwise(times)} == {0.5}


def test_peer_going_down_or_admin_down_takes_the_session_down() -> None:
    for state in (State.DOWN, State.ADMIN_DOWN):
        p = pair()
        p.run_until(1.0)
        packet = ControlPacket(state, 3, 2, 1, 1_000_000, 300_000)
        (change,) = p.a.receive(packet, p.now)
        assert (change.old, change.new, change.diag) == (State.UP, State.DOWN, Diag.NEIGHBOR_DOWN)
        # Only AdminDown is the peer's decision, which clients must not take for a failure.
        assert change.by_peer_admin is (state is State.ADMIN_DOWN)


def test_a_poll_is_answered_at_once_with_final() -> None:
    p = pair()
    p.run_until(2.0)
    packet = ControlPacket(State.UP, 3, 2, 1, 300_000, 300_000, poll=True)
    assert p.a.receive(packet, 2.0) == []
    answer = p.a.due(2.0)
    assert answer is not None and answer.final and not answer.poll


def test_passive_session_waits_for_the_peer() -> None:
    p = pair(a=Timers(passive=True))
    p.link_up = False
    p.run_until(3.0)
    assert [name for _, name, _ in p.sent] == ["b", "b", "b", "b"]
    p.link_up = True
    p.run_until(5.0)
    assert p.a.state is State.UP and p.b.state is State.UP


def test_peer_asking_for_no_packets_gets_none_until_it_goes_silent() -> None:
    p = pair()
    p.run_until(2.0)
    quiet = ControlPacket(State.UP, 3, 2, 1, 300_000, 0)
    p.a.receive(quiet, 2.0)
    assert p.a.due(2.0) is None
    assert p.a.due(2.5) is None
    # The peer is gone: what it asked for is stale, and the session speaks again (a mute
    # session would never come back up with a passive peer).
    (change,) = p.a.expire(3.0)
    assert change.new is State.DOWN
    assert p.a.deadline() == 3.0
    assert p.a.due(3.0) is not None


def test_demand_mode_peer_gets_no_periodic_packets_once_both_are_up() -> None:
    p = pair()
    p.run_until(2.0)
    demand = ControlPacket(State.UP, 3, 2, 1, 300_000, 300_000, demand=True)
    p.a.receive(demand, 2.0)
    p.a.due(2.4)  # the one already scheduled, if it was
    assert p.a.due(5.0) is None
    poll = ControlPacket(State.UP, 3, 2, 1, 300_000, 300_000, demand=True, poll=True)
    p.a.receive(poll, 5.0)
    answer = p.a.due(5.0)
    assert answer is not None and answer.final


def test_packets_for_another_discriminator_change_nothing() -> None:
    p = pair()
    stray = ControlPacket(State.DOWN, 3, 9, 77, 1_000_000, 300_000)
    assert p.a.receive(stray, 0.0) == []
    assert p.a.remote_discriminator == 0 and p.a.state is State.DOWN


def test_the_c_bit_is_in_every_packet_of_a_control_plane_independent_session() -> None:
    """A session apart from the routing protocol (the BFD process) says so in every packet,
    Poll, Final and AdminDown included; one in the speaker's process never does."""
    p = Pair(
        Session(1, DEFAULT, 0.0, jitter=lambda: 1.0, control_plane_independent=True),
        Session(2, DEFAULT, 0.0, jitter=lambda: 1.0),
    )
    p.run_until(5.0)
    assert p.a.state is p.b.state is State.UP
    by_a = [packet for _, name, packet in p.sent if name == "a"]
    by_b = [packet for _, name, packet in p.sent if name == "b"]
    assert any(packet.poll for packet in by_a) and any(packet.final for packet in by_a)
    assert all(packet.control_plane_independent for packet in by_a)
    assert not any(packet.control_plane_independent for packet in by_b)
    assert p.a.admin_down().control_plane_independent
    # On the wire: flags byte, bit 0x08 (RFC 5880 §4.1).
    assert by_a[-1].encode()[1] & 0x08 and not by_b[-1].encode()[1] & 0x08
