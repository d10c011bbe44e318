"""Flapping links, with whole agents in memory (fake clock): a flapping node looks dead to
everyone, itself included (it answers for nothing and goes quiet until its link has been
steady for a while), a peer seen coming back again and again is given no VIP, and two nodes
that cannot tell which of them flaps keep serving."""

from __future__ import annotations

from herald.l2.ownership import Damping

from .segment import Segment, announcements, vips

VIPS = vips(60)
NODES = ("a", "b", "c", "f")
PEERS = ("a", "b", "c")
STABLE_FOR = Damping().stable_for


def started(nodes: tuple[str, ...] = NODES) -> Segment:
    segment = Segment(nodes, announcements(VIPS, nodes))
    for node in nodes:
        segment.start(node)
        segment.run_for(0.031)
    segment.run_for(1.0)
    assert all(segment.answering[n] for n in nodes)
    return segment


def flap(
    segment: Segment,
    node: str,
    peers: tuple[str, ...],
    seconds: float,
    down: float = 0.3,
    up: float = 0.3,
    sends_when_up: bool = False,
    check: bool = False,
) -> None:
    """`node`'s link goes down for `down` seconds and up for `up`, for `seconds`. Up, it
    hears its peers; its own heartbeats get out only with `sends_when_up` (in the lab they
    did not: its neighbour entries for the peers were flushed at every down, and the next
    ARP retry came after the next down). With `check`, every VIP has one owner throughout
    (sampled every 10 ms) once the first 2 s are over."""
    start = segment.now
    while segment.now < start + seconds:
        segment.cut([node], peers)
        until = min(segment.now + down, start + seconds)
        while segment.now < until:
            segment.run_for(0.01)
            if check and segment.now > start + 2.0:
                assert_one_owner_each(segment)
        for peer in peers:
            segment.heal(peer, node)
            if sends_when_up:
                segment.heal(node, peer)
        until = min(segment.now + up, start + seconds)
        while segment.now < until:
            segment.run_for(0.01)
            if check and segment.now > start + 2.0:
                assert_one_owner_each(segment)
    segment.dropped.clear()


def assert_one_owner_each(segment: Segment) -> None:
    answers = segment.answers_per_vip()
    assert set(answers) == set(VIPS), "every VIP answered"
    assert all(len(nodes) == 1 for nodes in answers.values()), f"at {segment.now}: {answers}"


def assert_final_owner_announced_last(segment: Segment) -> None:
    for vip in VIPS:
        owner = segment.owner_of(vip)
        assert segment.last_announcer(vip) == owner, f"{vip}: last {segment.last_announcer(vip)}"


def test_a_node_whose_link_flaps_looks_dead_and_goes_quiet() -> None:
    """The lab's case: f's link flaps every 300 ms for 10 s, its heartbeats never get out
    while it hears its peers when up. It gives every VIP up within a second, goes quiet at
    its third return, answers nothing while it flaps, and comes back only after its link
    has been steady for `stable_for`, taking nothing back."""
    segment = started()
    start = segment.now
    flap(segment, "f", PEERS, 10.0, check=True)
    assert segment.quiet["f"]
    quiet_at = segment.cores["f"]
    assert quiet_at.quiet
    assert not segment.answering["f"]
    assert not [fr for fr in segment.announced_since(start + 1.0) if fr.node == "f"]
    assert_final_owner_announced_last(segment)
    # Its returns were all seen while it was deaf itself: it blames no peer. Its peers never
    # heard it back: nothing to count.
    assert all(not segment.cores[n].damped_peers() for n in NODES)
    steady = segment.now
    segment.run_for(STABLE_FOR - 1.0)
    assert segment.quiet["f"], "not before its link has been steady for stable_for"
    segment.run_for(1.5)
    assert not segment.quiet["f"], "steady long enough: it speaks again"
    assert steady + STABLE_FOR - 1.0 < segment.now
    assert not segment.answering["f"], "and takes nothing back"
    assert_one_owner_each(segment)
    # It is a candidate like any other again: a failure may give it VIPs.
    segment.crash("a")
    segment.run_for(1.0)
    assert segment.answering["f"]
    assert all(len(n) == 1 for n in segment.answers_per_vip().values())


def test_a_flapping_node_heard_between_its_downs_still_gives_everything_up() -> None:
    """Down 300 ms at a time is shorter than the detection time: its peers would never
    declare it dead. It declares itself flapping (it heard none of them three times) and
    says it leaves: they take its VIPs at once."""
    segment = started()
    lost = segment.answering["f"]
    start = segment.now
    flap(segment, "f", PEERS, 4.0, sends_when_up=True)
    assert segment.quiet["f"] and not segment.answering["f"]
    took = [fr for fr in segment.announced_since(start) if fr.vip in lost and fr.node != "f"]
    assert took and min(fr.at for fr in took) - start < 2.0, "taken at its third return"
    assert_one_owner_each(segment)
    assert_final_owner_announced_last(segment)


def test_a_peer_that_keeps_coming_back_is_given_no_vip_until_it_is_steady() -> None:
    """Only f's outgoing heartbeats flap (700 ms lost, 700 ms through): f never stops
    hearing its peers, so it cannot tell it flaps, but they see it come back again and
    again. From its third return they give it nothing and do not count its claims; f sees
    them claim its VIPs and yields. A failure meanwhile sends nothing to f."""
    segment = started()
    start = segment.now

    def one_way(seconds: float) -> None:
        end = segment.now + seconds
        while segment.now < end:
            segment.dropped |= {("f", p) for p in PEERS}
            segment.run_for(0.7)
            segment.dropped.clear()
            segment.run_for(0.7)

    one_way(4.2)
    assert all("f" in segment.cores[p].damped_peers() for p in PEERS)
    assert not segment.quiet["f"], "f hears everyone: it has no reason to think it flaps"
    assert not segment.answering["f"]
    segment.crash("b")
    one_way(2.8)
    assert not segment.answering["f"]
    assert_one_owner_each(segment)
    assert_final_owner_announced_last(segment)
    # Up without a break for stable_for: eligible again.
    segment.run_for(STABLE_FOR + 0.5)
    assert not any(segment.cores[p].damped_peers() for p in ("a", "c"))
    segment.crash("c")
    segment.run_for(1.0)
    assert segment.answering["f"], "f may be given VIPs again"
    assert segment.now - start > 0


def test_two_nodes_cannot_tell_who_flaps_and_both_keep_serving() -> None:
    """With one peer, hearing it no more is the same whether this node's link or the
    peer's flaps: no damping, and every VIP is answered throughout (by both during cuts)."""
    segment = started(("f", "a"))
    start = segment.now
    while segment.now < start + 5.0:
        segment.cut(["f"], ["a"])
        for _ in range(30):
            segment.run_for(0.01)
            assert set(segment.answers_per_vip()) == set(VIPS)
        segment.dropped.clear()
        for _ in range(30):
            segment.run_for(0.01)
            assert set(segment.answers_per_vip()) == set(VIPS)
    assert not segment.quiet["f"] and not segment.quiet["a"]
    assert not segment.cores["f"].damped_peers() and not segment.cores["a"].damped_peers()
    segment.run_for(1.0)
    assert_one_owner_each(segment)


def test_one_partition_and_heal_is_not_flapping() -> None:
    segment = started()
    segment.cut(["f"], PEERS)
    segment.run_for(2.0)
    segment.dropped.clear()
    segment.run_for(2.0)
    assert not any(segment.quiet.values())
    assert not any(segment.cores[n].damped_peers() for n in NODES)
    assert_one_owner_each(segment)
    assert_final_owner_announced_last(segment)
