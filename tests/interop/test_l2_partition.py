"""Heartbeats cut both ways at one node (nftables in its namespace) while the segment still
carries its ARP and NDP, then let through again in the adverse order (the cut node hears
its peers before they hear it): during the cut both sides answer for the cut node's VIPs;
after the heal the client's neighbour entry of every such VIP ends at the MAC of its final
owner, whichever side that is."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from l2_cluster import VIPS, Cluster, running_cluster

pytestmark = pytest.mark.netns

# Longer than the takeovers' repeated announcements (2 s): after the heal, only the rules
# for a heal can put the client right.
CUT = 3.0
# The hold after a return (0.2 s) plus the announcements again (up to 2 s after).
AFTER_HEAL = 2.6
# Between the steps of a heal: more than a heartbeat interval, so each step is heard.
STEP = 0.15


def neighbours(cluster: Cluster) -> dict[str, str]:
    """The client's neighbour entries with an address, both families: {IP: MAC}."""
    out = cluster.segment.lab.exec("c1", "ip", "-j", "neigh", "show", "dev", "eth0").stdout
    return {e["dst"]: e["lladdr"] for e in json.loads(out or "[]") if e.get("lladdr")}


def wait_taken_over(cluster: Cluster, victim: str, vips: set[str], limit: float = 3.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        owned = cluster.owned()
        others = set().union(*(v for n, v in owned.items() if n != victim))
        if vips <= others and owned[victim] == vips:
            return
        time.sleep(0.02)
    raise AssertionError(f"{victim}'s VIPs not taken over: {cluster.owned()}\n{cluster.logs()}")


def test_after_a_heartbeat_cut_heals_the_client_ends_at_each_vip_s_final_owner(
    tmp_path: Path,
) -> None:
    with running_cluster(tmp_path, prefix="hd-l2", start=False) as cluster:
        # n3 comes last and takes nothing (owners are sticky): some VIPs of n1 and n2 have
        # a heavier candidate than their owner, so after a heal the cut node gives some up
        # and keeps others.
        cluster.start("n1")
        cluster.start("n2")
        cluster.wait_one_owner_each()
        cluster.start("n3")
        time.sleep(1.0)
        assert cluster.owned()["n3"] == set()
        for vip in VIPS:
            cluster.segment.resolve("c1", vip)
        outcomes: list[tuple[str, str, str]] = []
        settled: list[float] = []
        for victim in ("n1", "n2"):
            before = cluster.owned()[victim]
            assert before, f"{victim} owns nothing: {cluster.owned()}"
            cut = time.monotonic()
            cluster.cut_heartbeats(victim)
            try:
                wait_taken_over(cluster, victim, before)
                time.sleep(max(0.0, cut + CUT - time.monotonic()))
                # The heal in the lab's adverse order: the cut node hears one peer, then
                # the other (n3, which took the VIPs it must give up), and only then is
                # heard itself.
                first = "n2" if victim == "n1" else "n1"
                cluster.cut_heartbeats(victim, hears=[first])
                time.sleep(STEP)
                cluster.cut_heartbeats(victim, hears=[first, "n3"])
                time.sleep(STEP)
            finally:
                cluster.heal_heartbeats(victim)
            healed = time.monotonic()
            # The client's entries for the cut node's VIPs, watched until every announcement
            # is over: when each last changed.
            changed: dict[str, float] = {}
            seen = neighbours(cluster)
            while time.monotonic() < healed + AFTER_HEAL:
                now = neighbours(cluster)
                changed |= {v: time.monotonic() for v in before if now.get(v) != seen.get(v)}
                seen = now
                time.sleep(0.01)
            settled.append(max(changed.values(), default=healed) - healed)
            owned = cluster.wait_one_owner_each()
            for vip in sorted(before):
                (final,) = [n for n, vips in owned.items() if vip in vips]
                mac = cluster.segment.neighbour("c1", vip)
                holder = {m: n for n, m in cluster.segment.macs.items()}.get(mac or "", mac)
                outcomes.append((victim, vip, final))
                assert mac == cluster.segment.macs[final], (
                    f"after {victim}'s heal the client holds {vip} at {holder}, its owner is "
                    f"{final}\n{cluster.logs()}"
                )
        print("cut node, VIP, final owner:", outcomes)
        print(
            "client's entries last changed after the heal:", [f"{t * 1000:.0f} ms" for t in settled]
        )
        kept = [o for o in outcomes if o[0] == o[2]]
        given_up = [o for o in outcomes if o[0] != o[2]]
        assert kept and given_up, "each side of a heal was the one to give a VIP up"
