"""SWIM membership (`l2.swim`) with a fake clock: members wired in memory, with loss,
delay, partitions, crashes and restarts (`swim_network.SwimNetwork`); and what the network
can do to one member's input (forged, replayed, truncated datagrams, floods)."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.l2.heartbeat import (
    ClaimsChanged,
    HeartbeatError,
    PeerChanged,
    PeerState,
    Rejected,
    View,
    seal,
)
from herald.l2.heartbeat import Config as HeartbeatConfig
from herald.l2.heartbeat import Heartbeat as HeartbeatCore
from herald.l2.heartbeat import Message as HeartbeatMessage
from herald.l2.heartbeat import decode as decode_heartbeat
from herald.l2.heartbeat import encode as encode_heartbeat
from herald.l2.heartbeat_process import (
    MAX_REJECTING_HOSTS,
    REJECT_LOG_SECONDS,
    RejectionLog,
    core_for,
    view_of,
)
from herald.l2.liveness import start_config
from herald.l2.swim import (
    MAGIC,
    MAX_RELAYS,
    Config,
    Kind,
    Message,
    Status,
    Swim,
    Update,
    decode,
    encode,
)

from .swim_network import KEY, SwimNetwork

VIP = ip_address("203.0.113.10")
VIP6 = ip_address("2001:db8:113::10")
# What every test holds the protocol to with the defaults: a dead node declared DEAD by
# every live member within this (from its death), in every seeded run.
BOUND = 1.0


def warm(size: int, seed: int = 0, **kwargs: object) -> SwimNetwork:
    net = SwimNetwork(size, seed=seed, **kwargs)  # type: ignore[arg-type]
    net.warm()
    assert net.converged()
    return net


# -- the wire ------------------------------------------------------------------------------


def test_messages_round_trip_with_records_and_vips() -> None:
    update = Update(Status.ALIVE, "n2", 1_700_000_000_000, 3, vips=(VIP, VIP6))
    message = Message(
        Kind.PING_REQ, "n1", 1_700_000_000_001, 9, 1_700_000_000_123, 42, "n3", (update,), True
    )
    assert decode(encode(message, KEY), KEY) == message
    left = Update(Status.DEAD, "n1", 5, 6, "n1", left=True)
    gossip = replace(message, kind=Kind.GOSSIP, target="", updates=(left,), sync_request=False)
    assert decode(encode(gossip, KEY), KEY) == gossip


def test_a_heartbeat_and_a_swim_datagram_are_never_taken_for_each_other() -> None:
    # Rejected with the reason a user can act on: the sender runs the other mode.
    swim = encode(Message(Kind.PING, "n1", 1, 1, 0), KEY)
    with pytest.raises(HeartbeatError, match="a SWIM datagram, this node runs heartbeat: every"):
        decode_heartbeat(swim, KEY)
    beat = encode_heartbeat(HeartbeatMessage("n1", 1, 1, 0), KEY)
    with pytest.raises(HeartbeatError, match="a heartbeat datagram, this node runs swim: every"):
        decode(beat, KEY)
    with pytest.raises(HeartbeatError, match="not a heartbeat"):
        decode_heartbeat(b"XXXX" + swim[4:], KEY)


def test_a_sender_s_rejected_datagrams_are_logged_once_a_minute_with_the_count() -> None:
    rejections = RejectionLog()
    assert rejections.due("192.0.2.2", 100.0) == 0
    assert [rejections.due("192.0.2.2", 100.0 + i / 10) for i in range(1, 100)] == [None] * 99
    assert rejections.due("192.0.2.3", 101.0) == 0, "another sender is its own"
    assert rejections.due("192.0.2.2", 100.0 + REJECT_LOG_SECONDS) == 99
    # A flood from many addresses keeps memory bounded.
    for i in range(3 * MAX_REJECTING_HOSTS):
        rejections.due(f"10.0.{i // 256}.{i % 256}", 200.0)
    assert len(rejections._hosts) <= MAX_REJECTING_HOSTS


def member(node: str = "n1", peers: tuple[str, ...] = ("n1", "n2", "n3")) -> Swim:
    swim = Swim(Config(node, KEY, 1_000), started=0.0)
    swim.set_peers({p: (f"192.0.2.{i + 1}", 7946) for i, p in enumerate(peers)})
    return swim


def ping(sender: str, sequence: int, boot: int = 2_000, probe: int = 0) -> bytes:
    """A ping as a member sends it: its own record comes with it."""
    record = Update(Status.ALIVE, sender, boot, 0)
    return encode(Message(Kind.PING, sender, boot, sequence, 0, probe, updates=(record,)), KEY)


def test_forged_truncated_replayed_and_unknown_datagrams_are_rejected_without_effect() -> None:
    swim = member()
    good = ping("n2", 5, probe=7)
    assert not any(isinstance(e, Rejected) for e in swim.handle_datagram(good, ("x", 1), 0.01))
    swim.datagrams_to_send()
    cases = {
        "forged": encode(Message(Kind.PING, "n2", 2_000, 6, 0), b"x" * 32),
        "replayed": good,
        "unknown": ping("mallory", 1),
        "flipped": good[:20] + bytes([good[20] ^ 1]) + good[21:],
        "empty": b"",
        "magic only": MAGIC,
    }
    cases |= {f"truncated {n}": good[:n] for n in range(len(good))}
    for what, data in cases.items():
        events = swim.handle_datagram(data, ("198.51.100.9", 1), 0.02)
        assert [type(e) for e in events] == [Rejected], what
        assert swim.datagrams_to_send() == [], what
    assert swim.state_of("n2") is PeerState.ALIVE


def test_datagrams_reordered_within_the_window_count_once_and_older_ones_never() -> None:
    swim = member()
    accepted = [
        s
        for s in (10, 8, 9, 8, 10, 11, 3, 200, 138, 137, 137, 136, 100)
        if not any(
            isinstance(e, Rejected) for e in swim.handle_datagram(ping("n2", s), ("x", 1), 0.01)
        )
    ]
    # After 200 the 64-wide window holds 137..200: 136 and 100 have fallen out of it.
    assert accepted == [10, 8, 9, 11, 3, 200, 138, 137]
    restarted = swim.handle_datagram(ping("n2", 1, boot=2_001), ("x", 1), 0.02)
    assert not any(isinstance(e, Rejected) for e in restarted)
    old_life = swim.handle_datagram(ping("n2", 201, boot=2_000), ("x", 1), 0.03)
    assert [type(e) for e in old_life] == [Rejected]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_any_authenticated_body_is_decoded_or_rejected_never_raising_else(body: bytes) -> None:
    swim = member()
    for data in (seal(MAGIC + body, KEY), MAGIC + body, body):
        with contextlib.suppress(HeartbeatError):
            decode(data, KEY)
        assert all(
            isinstance(e, Rejected | PeerChanged | ClaimsChanged)
            for e in swim.handle_datagram(data, ("x", 1), 0.01)
        )


def test_a_flood_costs_bounded_memory() -> None:
    swim = member(peers=tuple(f"n{i}" for i in range(1, 6)))
    for sequence in range(1, 20_001):
        # Valid PING_REQs for members that never answer, valid pings, and junk.
        target = f"n{sequence % 4 + 2}"
        request = Message(Kind.PING_REQ, "n2", 2_000, 3 * sequence, 0, sequence, target)
        swim.handle_datagram(encode(request, KEY), ("x", 1), sequence * 1e-5)
        swim.handle_datagram(ping("n3", 3 * sequence + 1), ("x", 1), sequence * 1e-5)
        swim.handle_datagram(b"\0" * 1500, ("x", 1), sequence * 1e-5)
        assert swim.relays() <= MAX_RELAYS
        assert len(swim.datagrams_to_send()) <= 3
    assert swim.pending_broadcasts() <= len(swim.peers) + 1
    assert set(swim.peers) == {"n2", "n3", "n4", "n5"}


# -- detection -----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_a_killed_node_is_declared_dead_by_every_live_member_within_the_bound(
    seed: int,
) -> None:
    net = warm(24, seed=seed, jitter=0.002)
    net.run_until(net.now + 0.5 + seed * 0.0173)
    victim = net.names[seed % 24]
    net.kill(victim)
    killed = net.now
    net.run_until(killed + 2.0)
    dead = net.declared(victim, PeerState.DEAD, killed)
    assert set(dead) == set(net.live())
    assert max(dead.values()) - killed <= BOUND
    assert net.false_deaths(0.0, net.live()) == []
    for name in net.live():
        view = net.members[name].view(net.now)
        assert victim not in view.live and victim not in view.claims


def test_each_member_sends_a_constant_number_of_datagrams_whatever_the_cluster_size() -> None:
    rates = []
    for size in (8, 64):
        net = warm(size)
        before, start = sum(net.sent.values()), net.now
        net.run_until(start + 5.0)
        rates.append((sum(net.sent.values()) - before) / size / 5.0)
    interval = Config("x", KEY, 1).interval
    # A ping and an ack per interval each, a reconnect ping now and then: not n - 1.
    for rate in rates:
        assert rate <= 2.5 / interval
    assert rates[1] <= rates[0] * 1.1


# -- the slow, the lossy, the partitioned --------------------------------------------------


def test_a_lossy_node_is_not_declared_dead() -> None:
    """20% loss on everything one node sends and receives (36% of its round trips fail),
    over 16 seeded runs of 10 s each (bench/scale/liveness.py runs more): held to zero."""
    false = []
    for seed in range(16):
        net = warm(12, seed=seed, jitter=0.003)
        lossy = net.names[seed % 12]
        net.loss[lossy] = 0.2
        start = net.now
        net.run_until(start + 10.0)
        false += net.false_deaths(start, net.live())
    assert false == []


def test_a_slow_node_and_a_lossy_segment_cause_no_false_death() -> None:
    """One node answering 15 ms late (probe timeout 20 ms: its acks arrive around it) and
    5% loss everywhere, 6 seeded runs of 10 s."""
    false = []
    for seed in range(6):
        net = warm(16, seed=seed + 100, jitter=0.002)
        net.delay[net.names[seed]] = 0.0075
        for node in net.names:
            net.loss[node] = max(net.loss.get(node, 0.0), 0.05)
        start = net.now
        net.run_until(start + 10.0)
        false += net.false_deaths(start, net.live())
    assert false == []


def test_a_suspected_node_refutes_and_stays_alive() -> None:
    net = warm(10)
    victim = net.names[4]
    # Cut off for less than a suspicion: suspected by some, never declared dead.
    net.partition(set(net.names) - {victim}, {victim})
    cut = net.now
    net.run_until(cut + 0.15)
    net.heal()
    net.run_until(cut + 3.0)
    suspected = net.declared(victim, PeerState.SUSPECT, cut)
    assert suspected, "the cut was too short to be noticed: the test proves nothing"
    assert net.false_deaths(cut, net.live()) == []
    assert net.members[victim].incarnation > 0
    assert net.converged()


def test_a_partition_heals_and_every_member_sees_every_other_again() -> None:
    net = warm(16, seed=3)
    left, right = set(net.names[:10]), set(net.names[10:])
    net.partition(left, right)
    cut = net.now
    net.run_until(cut + 3.0)
    for name in left:
        assert net.members[name].live() == left
    for name in right:
        assert net.members[name].live() == right
    # An isolated side keeps hearing its own members (it is not cut off from everyone).
    assert net.members[net.names[0]].view(net.now).heard
    net.heal()
    healed = net.now
    for _ in range(50):
        net.run_until(net.now + 0.1)
        if net.converged():
            break
    assert net.converged(), "not healed within 5 s"
    assert net.now - healed <= 3.0


def test_an_isolated_node_hears_nobody_before_it_declares_anyone_dead() -> None:
    """Ownership takes nothing when it hears nobody (`owners.node_view`): that must be true
    before the isolated node's first DEAD, or it would take a peer's VIPs."""
    net = warm(10)
    alone = net.names[0]
    net.partition(set(net.names[1:]), {alone})
    cut = net.now
    first = None
    while first is None and net.now < cut + 20.0:
        net.run_until(net.now + 0.01)
        dead = [
            e for who, e in net.events if who == alone and e.after is PeerState.DEAD and e.at >= cut
        ]
        if dead:
            first = dead[0].at
            assert net.members[alone].heard(first) == frozenset()
    assert first is not None
    # Its own failed probes stretched its timers: slower to accuse than a healthy node.
    assert first - cut > BOUND


def test_a_restarted_node_rejoins_and_its_old_suspicion_is_refuted() -> None:
    net = warm(12, seed=5)
    node = net.names[7]
    net.kill(node)
    killed = net.now
    # Back after 100 ms, before anyone could declare it dead, as a new incarnation.
    net.run_until(killed + 0.1)
    net.start(node)
    net.run_until(killed + 3.0)
    assert net.false_deaths(killed, net.live()) == []
    assert net.converged()
    # And after a death: the new incarnation is ALIVE again everywhere.
    net.kill(node)
    killed = net.now
    net.run_until(killed + 2.0)
    assert set(net.declared(node, PeerState.DEAD, killed)) == set(net.live())
    net.start(node)
    back = net.now
    net.run_until(back + 1.0)
    assert set(net.declared(node, PeerState.ALIVE, back)) == set(net.live()) - {node}
    assert net.converged()
    restarted = net.members[node]
    assert restarted.live() == frozenset(net.live())


# -- what ownership reads ------------------------------------------------------------------


def test_owned_vips_reach_every_member_and_leaving_hands_them_over_at_once() -> None:
    net = warm(20)
    owner = net.names[2]
    net.set_owned(owner, [VIP, VIP6])
    changed = net.now
    net.run_until(changed + 0.5)
    for name in net.live():
        if name != owner:
            assert net.members[name].claims()[owner] == {VIP, VIP6}
    net.leave(owner)
    left = net.now
    # Told directly: the first delivery is enough.
    net.run_until(left + 0.005)
    for name in net.live():
        view = net.members[name].view(net.now)
        assert owner not in view.live and owner in view.left and owner not in view.claims
    assert net.members[net.names[0]].state_of(owner) is PeerState.DEAD


def test_a_quiet_node_is_left_then_rejoins_when_it_resumes() -> None:
    net = warm(8)
    node = net.names[1]
    net.members[node].set_quiet(True, net.now)
    net._flush(node)
    net.run_until(net.now + 1.5)
    assert all(node in net.members[n].left() for n in net.live() if n != node)
    net.members[node].set_quiet(False, net.now)
    net._flush(node)
    net.run_until(net.now + 1.0)
    assert net.converged()


def test_the_view_has_the_heartbeats_shape_and_a_start_grace() -> None:
    swim = member()
    assert swim.live() == {"n1"} and not swim.settled(0.1)
    grace = swim.config.detection_time
    swim.handle_timer(grace)
    assert swim.state_of("n2") is PeerState.DEAD and swim.settled(grace)
    view = swim.view(grace)
    assert isinstance(view, View) and view.peer_count == 2 and view.live == {"n1"}
    # Whatever the shell calls on a Heartbeat, a Swim answers too.
    for name in (
        "set_peers",
        "set_owned",
        "leave",
        "set_quiet",
        "handle_datagram",
        "handle_timer",
        "next_deadline",
        "datagrams_to_send",
        "state_of",
        "live",
        "heard",
        "settled",
        "claims",
        "left",
        "view",
    ):
        assert callable(getattr(swim, name)), name
    assert swim.config.interval > 0 and swim.config.detection_time > 0


def test_the_liveness_process_runs_the_protocol_its_config_names() -> None:
    swim = start_config("n1", KEY, "swim")
    assert isinstance(swim, Config) and isinstance(core_for(swim, 0.0), Swim)
    beat = start_config("n1", KEY, interval=0.2)
    assert isinstance(beat, HeartbeatConfig) and beat.interval == 0.2
    assert isinstance(core_for(beat, 0.0), HeartbeatCore)
    assert view_of(core_for(swim, 0.0))["live"] == {"n1"}
    with pytest.raises(ValueError, match="membership"):
        start_config("n1", KEY, "gossip")
