"""The heartbeat protocol with a fake clock: detection bounds, authentication, replays,
restarts. Agents are wired together in memory; a datagram arrives when it is sent."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.l2.heartbeat import (
    MAX_DATAGRAM,
    ClaimsChanged,
    Config,
    HeartbeatError,
    Message,
    PeerChanged,
    PeerState,
    Rejected,
    decode,
    encode,
)

from .memory import ADDRESSES, KEY, Network, agent

VIP = ip_address("203.0.113.10")
VIP6 = ip_address("2001:db8:113::10")


def three() -> Network:
    return Network({n: agent(n) for n in ADDRESSES})


def test_messages_round_trip_and_carry_owned_vips() -> None:
    message = Message("n1", 1_700_000_000_000, 7, 1_700_000_000_123, (VIP, VIP6))
    assert decode(encode(message, KEY), KEY) == message
    bare = replace(message, vips=None, leaving=True)
    assert decode(encode(bare, KEY), KEY) == bare


def test_peers_come_alive_and_a_silent_one_is_dead_within_the_detection_time() -> None:
    net = three()
    net.run_until(0.3)
    assert net.agents["n1"].live() == {"n1", "n2", "n3"}
    for stop in (1.0, 3.037, 5.099):
        net.run_until(stop)
        net.down.add("n3")
        net.run_until(stop + 1.0)
        dead_at = net.changed_at("n1", "n3", PeerState.DEAD)
        # From the last heartbeat n3 sent: interval x multiplier, to the ms.
        assert dead_at - net.heard[("n1", "n3")] == pytest.approx(0.5, abs=0.0015)
        # From the failure itself: within the 500 ms budget, and not before 400 ms.
        assert 0.4 - 0.0015 <= dead_at - stop <= 0.5 + 0.0015
        assert net.changed_at("n1", "n3", PeerState.SUSPECT) < dead_at
        assert net.agents["n1"].live() == {"n1", "n2"}
        net.down.discard("n3")
        net.run_until(net.now + 0.2)
        assert net.agents["n1"].live() == {"n1", "n2", "n3"}


def test_the_multiplier_and_interval_set_the_detection_time() -> None:
    net = Network({n: agent(n, interval=0.2, multiplier=4) for n in ("n1", "n2")})
    net.run_until(1.0)
    net.down.add("n2")
    net.run_until(3.0)
    dead_at = net.changed_at("n1", "n2", PeerState.DEAD)
    assert dead_at - net.heard[("n1", "n2")] == pytest.approx(0.8, abs=0.0015)
    assert 0.6 - 0.0015 <= dead_at - 1.0 <= 0.8 + 0.0015


def test_unheard_peers_are_unknown_during_the_start_grace_then_dead() -> None:
    net = Network({"n1": agent("n1")})
    net.run_until(0.49)
    beat = net.agents["n1"]
    assert beat.state_of("n2") is PeerState.UNKNOWN and not beat.settled(net.now)
    assert beat.live() == {"n1"}
    net.run_until(0.6)
    assert beat.state_of("n2") is PeerState.DEAD and beat.settled(net.now)
    assert net.changed_at("n1", "n2", PeerState.DEAD) == pytest.approx(0.5, abs=0.002)


def test_a_leaving_peer_is_dead_at_once_and_its_claims_are_dropped() -> None:
    net = three()
    net.agents["n2"].set_owned([VIP], 0.0)
    net.run_until(0.3)
    assert net.agents["n1"].claims()["n2"] == {VIP}
    net.agents["n2"].leave(net.now)
    net.deliver("n2")
    net.down.add("n2")
    assert net.agents["n1"].state_of("n2") is PeerState.DEAD
    assert "n2" not in net.agents["n1"].claims()


def test_a_quiet_node_says_it_leaves_then_sends_nothing_but_still_hears() -> None:
    net = three()
    net.agents["n2"].set_owned([VIP], 0.0)
    net.run_until(0.3)
    sent = net.heard[("n1", "n2")]
    net.agents["n2"].set_quiet(True, net.now)
    net.deliver("n2")
    assert net.agents["n1"].state_of("n2") is PeerState.DEAD, "told at once"
    assert net.agents["n1"].left() == {"n2"} and "n2" not in net.agents["n1"].claims()
    quiet = net.now
    net.run_until(1.5)
    assert net.heard[("n1", "n2")] == quiet > sent, "nothing after the goodbye"
    assert net.agents["n2"].heard() == {"n1", "n3"}, "it still hears its peers"
    net.agents["n2"].set_quiet(False, net.now)
    net.run_until(net.now + 0.01)
    assert net.agents["n1"].state_of("n2") is PeerState.ALIVE
    assert net.agents["n1"].left() == frozenset()
    view = net.agents["n1"].view(net.now)
    assert view.live == {"n1", "n2", "n3"} and view.settled and not view.left


def test_a_change_of_owned_vips_is_sent_at_once() -> None:
    net = three()
    net.run_until(0.25)
    net.agents["n3"].set_owned([VIP6], net.now)
    net.run_until(net.now + 0.001)
    assert net.agents["n1"].claims()["n3"] == {VIP6}
    assert ("n1", ClaimsChanged("n3", frozenset({VIP6}))) in net.events
    net.run_until(net.now + 0.3)
    assert [e for e in net.events if isinstance(e[1], ClaimsChanged)] == [
        (n, ClaimsChanged("n3", frozenset({VIP6}))) for n in ("n1", "n2")
    ], "told once per peer, not on every heartbeat"


def test_replayed_and_old_datagrams_are_rejected() -> None:
    sender, receiver = agent("n2"), agent("n1")
    sender.handle_timer(0.0)
    first = sender.datagrams_to_send()[0][0]
    sender.handle_timer(0.1)
    second = sender.datagrams_to_send()[0][0]
    assert receiver.handle_datagram(second, ADDRESSES["n2"], 0.1) == [
        PeerChanged("n2", PeerState.UNKNOWN, PeerState.ALIVE, 0.1)
    ]
    for data in (second, first):
        (event,) = receiver.handle_datagram(data, ADDRESSES["n2"], 0.2)
        assert isinstance(event, Rejected) and "replayed or old" in event.reason


def test_forged_altered_and_foreign_datagrams_are_rejected() -> None:
    receiver = agent("n1")
    genuine = encode(Message("n2", 1, 1, 0, (VIP,)), KEY)
    forged = encode(Message("n2", 1, 1, 0, (VIP,)), b"x" * 32)
    altered = genuine[:-40] + bytes([genuine[-40] ^ 1]) + genuine[-39:]
    stranger = encode(Message("intruder", 1, 1, 0), KEY)
    reasons = [
        receiver.handle_datagram(data, ADDRESSES["n2"], 0.0)[0]
        for data in (forged, altered, stranger, b"HRLD", b"GET / HTTP/1.1\r\n" * 4)
    ]
    assert all(isinstance(r, Rejected) for r in reasons)
    texts = [r.reason for r in reasons if isinstance(r, Rejected)]
    assert texts[:2] == ["bad HMAC (wrong key or altered)"] * 2
    assert "not a peer" in texts[2]
    assert texts[3:] == ["not a heartbeat"] * 2
    assert receiver.state_of("n2") is PeerState.UNKNOWN
    # The genuine one, delivered after all that, is accepted.
    assert receiver.handle_datagram(genuine, ADDRESSES["n2"], 0.0)[0] == PeerChanged(
        "n2", PeerState.UNKNOWN, PeerState.ALIVE, 0.0
    )


def test_a_restarted_peer_with_a_new_incarnation_is_accepted_its_old_life_is_not() -> None:
    receiver = agent("n1")
    old_life = agent("n2", incarnation=1_000)
    for t in (0.0, 0.1, 0.2):
        old_life.handle_timer(t)
    recorded = [data for data, _ in old_life.datagrams_to_send()[::3]]
    for data in recorded:
        receiver.handle_datagram(data, ADDRESSES["n2"], 0.2)
    new_life = agent("n2", now=5.0, incarnation=6_000)
    new_life.handle_timer(5.0)
    data = new_life.datagrams_to_send()[0][0]
    assert decode(data, KEY).sequence == 1
    assert not [
        e for e in receiver.handle_datagram(data, ADDRESSES["n2"], 5.0) if isinstance(e, Rejected)
    ]
    assert receiver.state_of("n2") is PeerState.ALIVE
    for data in recorded:
        (event,) = receiver.handle_datagram(data, ADDRESSES["n2"], 5.1)
        assert isinstance(event, Rejected)


def test_max_skew_rejects_stale_timestamps() -> None:
    receiver = agent("n1", max_skew=5.0, wall_offset=1_000.0)
    fresh = encode(Message("n2", 1, 1, 1_000_000), KEY)
    stale = encode(Message("n2", 1, 2, 900_000), KEY)
    assert receiver.handle_datagram(fresh, ADDRESSES["n2"], 0.0)[0] == PeerChanged(
        "n2", PeerState.UNKNOWN, PeerState.ALIVE, 0.0
    )
    (event,) = receiver.handle_datagram(stale, ADDRESSES["n2"], 0.0)
    assert isinstance(event, Rejected) and "timestamp" in event.reason


def test_decoding_refuses_oversized_and_truncated_input() -> None:
    with pytest.raises(HeartbeatError, match="over"):
        decode(b"HRLD" + bytes(MAX_DATAGRAM), KEY)
    good = encode(Message("n2", 1, 1, 0, (VIP,)), KEY)
    for cut in range(len(good)):
        with pytest.raises(HeartbeatError):
            decode(good[:cut], KEY)


def test_configuration_is_checked() -> None:
    with pytest.raises(ValueError, match="key"):
        Config("n1", b"short", 1)
    with pytest.raises(ValueError, match="multiplier"):
        Config("n1", KEY, 1, multiplier=1)
    assert Config("n1", KEY, 1).detection_time == pytest.approx(0.5)


@settings(derandomize=True, max_examples=300)
@given(st.binary(max_size=200), st.integers(0, 199), st.integers(1, 255))
def test_any_corruption_of_a_datagram_is_a_heartbeat_error(
    junk: bytes, position: int, flip: int
) -> None:
    good = encode(Message("n2", 9, 9, 9, (VIP, VIP6)), KEY)
    index = position % len(good)
    for data in (junk, good[:index] + bytes([good[index] ^ flip]) + good[index + 1 :]):
        with pytest.raises(HeartbeatError):
            decode(data, KEY)


def test_a_stalled_node_does_not_blame_its_peers_for_its_own_stall() -> None:
    # n1 is starved of CPU for 2 s: it neither runs its timer nor reads its socket. When it
    # runs again its timer comes first, before the heartbeats queued meanwhile.
    net = three()
    net.run_until(1.0)
    stalled = net.agents.pop("n1")
    net.run_until(3.0)
    net.agents["n1"] = stalled
    assert stalled.live() == {"n1", "n2", "n3"}
    events = stalled.handle_timer(3.0)
    assert not [e for e in events if isinstance(e, PeerChanged) and e.after is PeerState.DEAD]
    assert stalled.live() == {"n1", "n2", "n3"}
    net.run_until(3.3)
    assert stalled.heard() == {"n2", "n3"}


def test_a_peer_that_fails_during_a_stall_is_dead_within_the_detection_time_after_it() -> None:
    net = three()
    net.run_until(1.0)
    stalled = net.agents.pop("n1")
    net.down.add("n3")  # fails at 1.0, while n1 is stalled
    net.run_until(3.0)
    net.agents["n1"] = stalled
    stalled.handle_timer(3.0)
    net.run_until(3.0 + 0.5 + 0.0015)
    assert stalled.live() == {"n1", "n2"}
    assert 3.0 < net.changed_at("n1", "n3", PeerState.DEAD) <= 3.5 + 0.0015


def test_ordinary_timer_lateness_does_not_delay_detection() -> None:
    # A busy node's timer runs up to an interval late, unevenly: that is no stall, and a
    # peer silent since 1.0 is still dead at 1.5, not later.
    n1, n2 = agent("n1", now=1.0), agent("n2", now=1.0)
    n2.handle_timer(1.0)
    for data, _ in n2.datagrams_to_send()[:1]:
        n1.handle_datagram(data, ADDRESSES["n2"], 1.0)
    for now in (1.05, 1.2, 1.25, 1.4, 1.45, 1.5):
        n1.handle_timer(now)
    assert n1.state_of("n2") is PeerState.DEAD
