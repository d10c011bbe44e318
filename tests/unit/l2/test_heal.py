"""Partitions of the heartbeat path and their healing, with whole agents in memory (fake
clock, `segment.Segment`): after a heal the final owner of each VIP is the last node to
announce it, a node about to lose a VIP never announces it, and failover keeps its time."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from .segment import Segment, announcements, vips

NODES = ("x", "y", "z")
VIPS = vips(60)
# The directed heartbeat paths between the cut node and the others.
PATHS = (("z", "x"), ("y", "x"), ("x", "y"), ("x", "z"))


def settled_with_a_late_node() -> Segment:
    """x and z start first and share every VIP; y joins later and takes nothing (owners are
    sticky), so some of x's VIPs have a heavier candidate (y) than their owner."""
    segment = Segment(NODES, announcements(VIPS, NODES))
    segment.start("x")
    segment.start("z")
    segment.run_for(1.0)
    segment.start("y")
    # Past the announcements again that y's arrival caused (it was dead to x and z).
    segment.run_for(3.0)
    assert not segment.answering["y"], "a late node takes nothing"
    return segment


def assert_heal_ordered(segment: Segment, healed: float) -> None:
    final = {vip: segment.owner_of(vip) for vip in segment.announced_vips()}
    assert all(final.values()), f"unanswered: {[v for v, n in final.items() if n is None]}"
    late = [f for f in segment.announced_since(healed) if f.node != final[f.vip]]
    assert not late, f"announced after the heal by a node that then gave it up: {late[:5]}"
    wrong = {
        vip: (segment.last_announcer(vip), owner)
        for vip, owner in final.items()
        if segment.last_announcer(vip) not in (None, owner)
    }
    assert not wrong, f"the last announcement is not the final owner's (last, owner): {wrong}"


@pytest.mark.parametrize("order", list(itertools.permutations(PATHS)), ids=str)
def test_after_a_heal_in_any_order_the_final_owner_announces_last(
    order: tuple[tuple[str, str], ...],
) -> None:
    """The lab's case: heartbeats dropped both ways at a node that owns VIPs it is not the
    heaviest candidate for; when they flow again, the cut node may hear a third node before
    the one it must give VIPs up to, and be heard by nobody yet."""
    segment = settled_with_a_late_node()
    before = {n: segment.answering[n] for n in NODES}
    segment.cut(["x"], ["y", "z"])
    # Long enough for the takeovers' repeated announcements to be over, as in the lab's 10 s.
    segment.run_for(3.0)
    assert segment.answering["x"] == before["x"], "cut off, x keeps its own"
    duplicated = {v for v, nodes in segment.answers_per_vip().items() if len(nodes) > 1}
    assert duplicated == before["x"], "the others took x's VIPs"
    during = {n: segment.answering[n] for n in NODES}
    healed = segment.now
    for sender, receiver in order:
        segment.heal(sender, receiver)
        segment.run_for(0.03)
    segment.run_for(3.0)
    assert_heal_ordered(segment, healed)
    # Each duplicate went to one of its two claimants; nothing else moved, and x, whose view
    # was stale when it heard its first peer again, took nothing, not even for a moment.
    for node in NODES:
        assert segment.answered_since(node, healed) <= during[node]
    assert {v for v, n in segment.answers_per_vip().items() if n == ["y"]} >= before["y"]
    both = {v for v in duplicated if v in segment.answering["x"]}
    assert both and both != duplicated, "the heal gave some duplicates to each side"


@dataclass(frozen=True)
class Partition:
    nodes: tuple[str, ...]
    late: str | None  # starts after the others settled (owns nothing, sticky owners)
    cut_off: tuple[str, ...]
    rest: tuple[str, ...]
    duration: float
    # Directed heartbeat paths let through again, one by one, each followed by a gap.
    heal: tuple[tuple[tuple[str, str], float], ...]
    latency: float


@st.composite
def partitions(draw: st.DrawFn) -> Partition:
    size = draw(st.integers(3, 5))
    nodes = tuple(f"n{i}" for i in range(size))
    cut_off = draw(st.sets(st.sampled_from(nodes), min_size=1, max_size=size - 1))
    rest = tuple(n for n in nodes if n not in cut_off)
    paths = [(a, b) for a in cut_off for b in rest] + [(b, a) for a in cut_off for b in rest]
    order = draw(st.permutations(paths))
    gaps = draw(st.lists(st.sampled_from((0.0, 0.01, 0.04, 0.09, 0.15)), min_size=len(order)))
    return Partition(
        nodes=nodes,
        late=draw(st.sampled_from((None, *nodes))),
        cut_off=tuple(sorted(cut_off)),
        rest=rest,
        # Shorter and longer than the detection time (0.5 s), and past the repeats.
        duration=draw(st.sampled_from((0.3, 0.45, 0.55, 1.0, 3.0))),
        heal=tuple(zip(order, gaps, strict=False)),
        latency=draw(st.sampled_from((0.0002, 0.003))),
    )


@settings(derandomize=True, max_examples=60, deadline=None)
@given(partitions())
def test_any_partition_and_heal_ends_with_one_owner_announcing_last(case: Partition) -> None:
    segment = Segment(case.nodes, announcements(vips(24), case.nodes), latency=case.latency)
    for node in case.nodes:
        if node != case.late:
            segment.start(node)
        segment.run_for(0.037)
    segment.run_for(1.0)
    if case.late is not None:
        segment.start(case.late)
        segment.run_for(1.0)
    segment.cut(case.cut_off, case.rest)
    segment.run_for(case.duration)
    for (sender, receiver), gap in case.heal:
        segment.heal(sender, receiver)
        segment.run_for(gap)
    # A node may still declare a peer dead just after the heal (its first datagram was on
    # the way), take its VIPs and give them back: it could not know. From one detection time
    # on, it knows.
    healed = segment.now + 0.5
    segment.run_for(3.0)
    assert_heal_ordered(segment, healed)


def test_failover_keeps_its_time_and_only_the_heir_announces() -> None:
    segment = settled_with_a_late_node()
    lost = segment.answering["z"]
    crashed = segment.now
    segment.crash("z")
    segment.run_for(2.0)
    frames = segment.announced_since(crashed)
    first = {}
    for frame in frames:
        first.setdefault(frame.vip, frame)
    assert set(first) == lost, "the crashed node's VIPs, and only they, are announced"
    for vip, frame in first.items():
        assert segment.owner_of(vip) == frame.node
        assert 0.4 <= frame.at - crashed <= 0.5 + 0.002, "announced at the detection"


def test_a_takeover_while_a_peer_comes_back_is_announced_at_once() -> None:
    """A hold after a return defers announcing again, never a failover: z crashes just
    before cut-off y comes back; x and w take z's VIPs at the detection, and give none to y,
    which has just come back (it takes nothing itself until it has heard everyone, or for
    the hold)."""
    nodes = ("w", "x", "y", "z")
    segment = Segment(nodes, announcements(VIPS, nodes))
    for node in nodes:
        segment.start(node)
        segment.run_for(0.031)
    segment.run_for(1.5)
    segment.cut(["y"], ["w", "x", "z"])
    segment.run_for(2.0)
    lost = segment.answering["z"]
    crashed = segment.now
    segment.crash("z")
    segment.run_for(0.45)
    segment.dropped.clear()
    segment.run_for(2.0)
    first = {}
    for frame in segment.announced_since(crashed):
        first.setdefault(frame.vip, frame)
    assert lost <= set(first)
    assert max(first[vip].at for vip in lost) - crashed <= 0.5 + 0.002
    assert {first[vip].node for vip in lost} == {"w", "x"}
    assert_heal_ordered(segment, crashed + 0.5)


def test_a_node_not_heard_by_its_peers_gives_up_what_they_claim() -> None:
    """x's heartbeats are lost on the way out (it hears its peers): they take its VIPs,
    while x, the heavier claimant, waits for them to give them back. They never will (x is
    dead to them): after the detection time x yields, so each VIP has one owner."""
    segment = settled_with_a_late_node()
    before = segment.answering["x"]
    segment.dropped |= {("x", "y"), ("x", "z")}
    start = segment.now
    segment.run_for(0.5 + 0.5 + 0.1)
    assert not segment.answering["x"]
    assert all(len(n) == 1 for n in segment.answers_per_vip().values())
    assert set(segment.answers_per_vip()) == set(VIPS)
    assert not [f for f in segment.announced_since(start) if f.node == "x"]
    segment.dropped.clear()
    segment.run_for(2.0)
    assert not segment.answering["x"], "back, it takes nothing back"
    assert_heal_ordered(segment, start)
    assert before
