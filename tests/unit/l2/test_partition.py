"""Agents deciding ownership from their own heartbeat view (owners.node_view), wired in
memory: a crash, an isolated node, a heal, and a two-node cluster. The claims each agent
sends are what it would announce on the segment."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from ipaddress import IPv4Address

from herald.dataplane.model import IPAddress
from herald.l2.owners import Owner, node_view
from herald.l2.policy import Announcement, Candidate

from .memory import ADDRESSES, Network, agent

NODES = tuple(ADDRESSES)
VIPS = tuple(IPv4Address(f"203.0.113.{i}") for i in range(1, 61))
ANNOUNCED = tuple(Announcement(v, ("default/s",), tuple(map(Candidate, NODES))) for v in VIPS)


class Cluster:
    def __init__(self, nodes: tuple[str, ...] = NODES) -> None:
        self.net = Network({n: agent(n, nodes=nodes) for n in nodes}, tick=self.decide)
        self.views: dict[str, dict[IPAddress, Owner]] = {n: {} for n in nodes}

    def decide(self, node: str, now: float) -> None:
        """One pass of an agent's loop, every 5 ms: owners from its view, then announce
        its own."""
        if round(now * 1000) % 5:
            return
        beat = self.net.agents[node]
        view = node_view(
            node,
            ANNOUNCED,
            beat.live(),
            beat.heard(),
            len(beat.peers),
            beat.claims(),
            self.views[node],
            now,
            beat.settled(now),
        )
        self.views[node] = view
        beat.set_owned((vip for vip, owner in view.items() if owner.node == node), now)

    def announcing(self) -> dict[str, frozenset[IPAddress]]:
        """What each running agent answers for on the segment."""
        return {n: b.owned for n, b in self.net.agents.items() if n not in self.net.down}

    def answers_per_vip(self) -> Counter[IPAddress]:
        return Counter(vip for owned in self.announcing().values() for vip in owned)

    def seconds_until(self, condition: Callable[[], bool], limit: float = 2.0) -> float:
        start = self.net.now
        while self.net.now < start + limit:
            self.net.run_until(round(self.net.now + 0.001, 6))
            if condition():
                return self.net.now - start
        raise AssertionError(f"not reached within {limit}s")


def exactly_one_owner(cluster: Cluster) -> bool:
    return set(cluster.answers_per_vip().items()) == {(vip, 1) for vip in VIPS}


def test_nobody_announces_before_hearing_peers_then_each_vip_has_one_owner() -> None:
    cluster = Cluster()
    cluster.net.run_until(0.4)
    assert cluster.answers_per_vip() == Counter(), "not settled: nothing taken yet"
    cluster.net.run_until(0.7)
    assert exactly_one_owner(cluster)
    assert all(len(owned) >= 15 for owned in cluster.announcing().values())


def test_a_crashed_node_s_vips_are_taken_over_within_the_detection_time() -> None:
    cluster = Cluster()
    cluster.net.run_until(1.0)
    before = cluster.announcing()
    cluster.net.down.add("n3")
    took = cluster.seconds_until(lambda: set(cluster.answers_per_vip()) == set(VIPS))
    assert took <= 0.5 + 0.005
    after = cluster.announcing()
    assert exactly_one_owner(cluster)
    for node in ("n1", "n2"):
        assert before[node] <= after[node], "survivors keep their own VIPs"
    assert after["n1"] | after["n2"] == set(VIPS)


def test_an_isolated_node_keeps_its_vips_the_others_take_them_and_the_heal_settles() -> None:
    cluster = Cluster()
    cluster.net.run_until(1.0)
    before = cluster.announcing()
    cluster.net.cut |= {frozenset(("n1", "n2")), frozenset(("n1", "n3"))}
    cluster.net.run_until(2.0)
    during = cluster.announcing()
    # n1 hears nobody: it keeps what it had and takes nothing.
    assert during["n1"] == before["n1"]
    # n2 and n3 took n1's VIPs: only those are answered twice while the cut lasts.
    duplicates = {vip for vip, count in cluster.answers_per_vip().items() if count > 1}
    assert duplicates == before["n1"]
    assert during["n2"] | during["n3"] == set(VIPS)
    cluster.net.cut.clear()
    healed = cluster.seconds_until(lambda: exactly_one_owner(cluster))
    assert healed <= 0.15, "one heartbeat round settles every duplicate"
    # Each duplicate went to the heavier claimant, as every node computes it the same way.
    cluster.net.run_until(cluster.net.now + 0.5)
    assert exactly_one_owner(cluster)


def test_two_nodes_the_survivor_takes_everything() -> None:
    cluster = Cluster(nodes=("n1", "n2"))
    cluster.net.run_until(1.0)
    cluster.net.down.add("n2")
    took = cluster.seconds_until(lambda: cluster.announcing()["n1"] == set(VIPS))
    assert took <= 0.5 + 0.005


def test_peers_lost_one_after_the_other_still_leave_the_isolated_node_its_own_only() -> None:
    cluster = Cluster()
    cluster.net.run_until(1.0)
    before = cluster.announcing()
    cluster.net.cut.add(frozenset(("n1", "n2")))
    cluster.net.run_until(1.05)
    cluster.net.cut.add(frozenset(("n1", "n3")))
    cluster.net.run_until(2.0)
    # n2 was declared dead 50 ms before n3: by then n3 was already suspect, not heard.
    assert cluster.announcing()["n1"] == before["n1"]
