"""Three nodes running the L2 announcer (heartbeats, owner choice, responders) on one segment
with a client: every VIP has one owner, a crashed or stopped owner's VIPs move, and the
client's neighbour entry follows within the failover budget."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from l2_cluster import VIPS, Cluster, running_cluster

pytestmark = pytest.mark.netns


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with running_cluster(tmp_path, prefix="hd-fo") as built:
        yield built


def test_every_vip_has_one_owner_spread_over_the_nodes(cluster: Cluster) -> None:
    owned = cluster.wait_one_owner_each(spread=True)
    assert all(owned.values()), f"every node owns something: {owned}"
    for vip in (VIPS[0], VIPS[1]):
        assert (
            cluster.segment.arping(vip, count=2)
            == [cluster.segment.macs[cluster.owner_of(vip)]] * 2
        )
    assert cluster.segment.ndisc(VIPS[-1]) == cluster.segment.macs[cluster.owner_of(VIPS[-1])]


@pytest.mark.parametrize("how", [signal.SIGKILL, signal.SIGTERM], ids=["crash", "graceful-stop"])
def test_the_owner_s_vips_move_and_the_client_follows(
    cluster: Cluster, how: signal.Signals
) -> None:
    vip, vip6 = VIPS[0], VIPS[-1]
    victim = cluster.owner_of(vip)
    lost = cluster.owned()[victim]
    for address in (vip, vip6):
        cluster.segment.resolve("c1", address)
    assert cluster.segment.neighbour("c1", vip) == cluster.segment.macs[victim]
    ended, process = cluster.end(victim, how)
    heir = cluster.wait_moved("c1", vip, away_from=victim)
    moved_after = time.monotonic() - ended
    cluster.segment.lab.stop(process)
    owned = cluster.wait_one_owner_each()
    assert victim not in owned and heir in owned
    assert lost <= owned[heir] | (set(VIPS) - {vip}), "the victim's other VIPs moved too"
    budget = 1.0 if how is signal.SIGKILL else 0.3
    print(f"{how.name}: client's neighbour entry moved after {moved_after * 1000:.0f} ms")
    assert moved_after < budget
    assert cluster.segment.arping(vip, count=2) == [cluster.segment.macs[heir]] * 2
    # The agent comes back (a new incarnation): accepted, and it takes nothing back.
    before = cluster.owned()
    cluster.start(victim)
    time.sleep(1.0)
    after = cluster.owned()
    assert after[victim] == set()
    assert {n: after[n] for n in before} == before


def test_a_cut_link_moves_the_vips_and_after_the_heal_the_client_ends_at_the_one_owner(
    cluster: Cluster,
) -> None:
    vip = VIPS[0]
    victim = cluster.owner_of(vip)
    cluster.segment.resolve("c1", vip)
    cut = time.monotonic()
    cluster.segment.lab.ip(victim, "link", "set", "eth0", "down")
    heir = cluster.wait_moved("c1", vip, away_from=victim)
    print(
        f"link cut: client's neighbour entry moved after {(time.monotonic() - cut) * 1000:.0f} ms"
    )
    assert time.monotonic() - cut < 1.0
    # Cut off from every peer, the victim keeps its VIPs and takes nobody else's (it cannot
    # tell that it is the one cut off); the others hold them too: two claims, but only one
    # reaches the segment.
    before = cluster.owned()[victim]
    time.sleep(0.7)
    assert cluster.owned()[victim] == before and vip in cluster.owned()[heir]
    cluster.segment.lab.ip(victim, "link", "set", "eth0", "up")
    owned = cluster.wait_one_owner_each()
    (final,) = [n for n, vips in owned.items() if vip in vips]
    # Whoever the rendezvous order picked, the client ends up at its MAC: the winner
    # announces again (it saw the other claim, or it had heard nobody and rejoined).
    deadline = time.monotonic() + 3.0
    while cluster.segment.neighbour("c1", vip) != cluster.segment.macs[final]:
        assert time.monotonic() < deadline, f"client stayed at the old MAC\n{cluster.logs()}"
        time.sleep(0.02)
    assert cluster.segment.arping(vip, count=2) == [cluster.segment.macs[final]] * 2
