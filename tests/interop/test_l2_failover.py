"""Three nodes running the L2 announcer (heartbeats, owner choice, responders) on one segment
with a client: every VIP has one owner, a crashed or stopped owner's VIPs move, and the
client's neighbour entry follows within the failover budget."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from l2_segment import Segment, build_segment

from herald.l2.key import create_key_file
from herald.lab.netns import Lab, crash

pytestmark = pytest.mark.netns

RUNNER = str(Path(__file__).with_name("l2_announcer_runner.py"))
NODES = {"n1": "21", "n2": "22", "n3": "23"}
VIPS = [f"203.0.113.{i}" for i in range(10, 16)] + ["2001:db8:113::10", "2001:db8:113::11"]


class Cluster:
    def __init__(self, segment: Segment, scratch: Path) -> None:
        self.segment, self.scratch = segment, scratch
        self.key = scratch / "key"
        create_key_file(self.key)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: str) -> None:
        self.status_file(node).write_text("")
        peers = [f"{n}=192.0.2.{last}" for n, last in NODES.items() if n != node]
        argv = [
            sys.executable, RUNNER, node, f"192.0.2.{NODES[node]}", str(self.key),
            str(self.status_file(node)), ",".join(VIPS), *peers,
        ]  # fmt: skip
        self.processes[node] = self.segment.lab.spawn(node, argv)

    def end(self, node: str, how: signal.Signals) -> tuple[float, subprocess.Popen[bytes]]:
        """Sends `how` to the node's agent (SIGKILL: to its heartbeat process too, a node's
        crash); returns when, and the process to reap later (reaping waits for the
        interpreter to exit, which is not part of the failover)."""
        process = self.processes.pop(node)
        sent = time.monotonic()
        if how is signal.SIGKILL:
            crash(process.pid)
        else:
            os.kill(process.pid, how)
        return sent, process

    def status_file(self, node: str) -> Path:
        return self.scratch / f"{node}.status"

    def owned(self) -> dict[str, set[str]]:
        return {n: set(self.status_file(n).read_text().split()) for n in self.processes}

    def owner_of(self, vip: str) -> str:
        (owner,) = [n for n, vips in self.owned().items() if vip in vips]
        return owner

    def wait_one_owner_each(self, limit: float = 5.0) -> dict[str, set[str]]:
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            owned = self.owned()
            if sorted(v for vips in owned.values() for v in vips) == sorted(VIPS):
                return owned
            time.sleep(0.01)
        raise AssertionError(f"not one owner per VIP: {self.owned()}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"{n}: {self.status_file(n).with_name(f'{n}.status.log').read_text()[-4000:]}"
            for n in NODES
            if self.status_file(n).with_name(f"{n}.status.log").exists()
        )

    def wait_moved(self, host: str, vip: str, away_from: str, limit: float = 3.0) -> str:
        """Waits until `host`'s neighbour entry for `vip` names another node; returns it."""
        others = {self.segment.macs[n]: n for n in NODES if n != away_from}
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            mac = self.segment.neighbour(host, vip)
            if mac in others:
                return others[mac]
            time.sleep(0.005)
        raise AssertionError(f"{host}: {vip} still at {self.segment.neighbour(host, vip)}")


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Cluster]:
    with Lab(prefix="hd-fo") as lab:
        build_segment(lab, {"c1": "10", **NODES})
        lab.route("c1", "203.0.113.0/24", "dev", "eth0")
        lab.route("c1", "2001:db8:113::/64", "dev", "eth0")
        segment = Segment(lab, tmp_path)
        for host in ("c1", *NODES):
            segment.macs[host] = segment.mac_of(host)
        built = Cluster(segment, tmp_path)
        for node in NODES:
            built.start(node)
        built.wait_one_owner_each()
        yield built


def test_every_vip_has_one_owner_spread_over_the_nodes(cluster: Cluster) -> None:
    owned = cluster.wait_one_owner_each()
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
