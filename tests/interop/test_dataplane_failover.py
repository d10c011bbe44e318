"""A node fails under long-lived connections: no forwarding storm, no packet bounced between
nodes, and connections whose backend lives keep working when they enter by another node."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from dataplane_cluster import BACKENDS, BACKENDS3, Cluster, web

from herald.dataplane.model import (
    DataplaneService,
    ForwardingMode,
    Protocol,
    ServicePort,
    TrafficPolicy,
)
from herald.netlink.neighbours import NeighbourWatch

pytestmark = pytest.mark.netns
SESSIONS = (ServicePort("sessions", Protocol.TCP, 80, 9090),)


def sessions(**changes: object) -> DataplaneService:
    """The test service on the session servers, DSR unless told otherwise."""
    fields: dict[str, object] = {"ports": SESSIONS, "forwarding_mode": ForwardingMode.DSR}
    return web(**{**fields, **changes})


# The neighbour watches a test opened (`learn_peers`), closed after it.
WATCHES: list[NeighbourWatch] = []


@pytest.fixture
def restored(cluster: Cluster) -> Iterator[Cluster]:
    """Whatever a test cuts or reroutes comes back, and the plain service is applied."""
    try:
        yield cluster
    finally:
        while WATCHES:
            WATCHES.pop().close()
        cluster.set_link("n3", True)
        cluster.via("n1")
        for datapath in cluster.nodes.values():
            datapath.set_peers(type(datapath.peers)())
        cluster.apply([web()])


def learn_peers(cluster: Cluster) -> dict[str, NeighbourWatch]:
    """As the agent does: each node resolves the others and learns their MACs."""
    watches = {node: NeighbourWatch("eth0", cluster.lab.ns(node)) for node in cluster.nodes}
    WATCHES.extend(watches.values())
    others = {
        node: [(n, a) for n, a in dp.node.node_addresses if n != node]
        for node, dp in cluster.nodes.items()
    }
    deadline = time.monotonic() + 10
    while True:
        for node, watch in watches.items():
            cluster.nodes[node].set_peers(watch.poll(others[node]))
        # A healthy cluster: every MAC known, and no node left unreachable by a failure
        # an earlier test caused (the watch resolves failed entries again).
        if all(
            len(w.peers.macs) == len(cluster.nodes) - 1 and not w.peers.unreachable
            for w in watches.values()
        ):
            return watches
        assert time.monotonic() < deadline, {n: w.peers for n, w in watches.items()}
        time.sleep(0.2)


def rates(cluster: Cluster, nodes: tuple[str, ...], seconds: float) -> dict[str, float]:
    """Frames per second on each node's uplink over the same `seconds`."""
    before = {node: cluster.packets(node) for node in nodes}
    time.sleep(seconds)
    return {node: (cluster.packets(node) - before[node]) / seconds for node in nodes}


def test_a_cut_node_causes_no_storm_and_live_backends_keep_their_connections(
    restored: Cluster,
) -> None:
    cluster = restored
    cluster.apply([sessions(backends=BACKENDS3)])
    learn_peers(cluster)
    held = cluster.hold(40, duration=7)
    time.sleep(1)
    before = rates(cluster, ("n1", "n2"), 1.5)
    cluster.set_link("n3", False)
    cut_at = time.time()
    # n1 keeps forwarding the flows of p3a's slots to n3, whose MAC the switch no longer
    # knows: it floods those frames to n2, which used to send them back toward n3.
    during = rates(cluster, ("n1", "n2"), 3)
    result = held.result()
    print(f"packets/s before the cut {before}, after {during}")
    for node in ("n1", "n2"):
        assert during[node] <= 2 * before[node] + 50, (node, before, during)
    on_p3a = [c for c in result if c["first_backend"] == "p3a"]
    alive = [c for c in result if c["first_backend"] != "p3a"]
    assert on_p3a and alive, "the flows should use every backend"
    for connection in alive:
        assert connection["ended"] == "alive", connection
        assert connection["backends"] == [connection["first_backend"]], connection
        assert connection["last_answer"] > cut_at + 2.5, connection
    for connection in on_p3a:
        assert connection["stalls"], "a backend behind a cut link cannot answer"


def test_nodes_that_disagree_about_a_slot_do_not_bounce_its_packets(restored: Cluster) -> None:
    # n1 believes every slot is n2's, n2 that every slot is n1's (as for a moment during an
    # update): a packet n1 forwards must stay on n2.
    cluster = restored
    cluster.nodes["n1"].sync([sessions(backends=BACKENDS[2:])])
    cluster.nodes["n2"].sync([sessions(backends=BACKENDS[:1])])
    cluster.nodes["n3"].sync([])
    learn_peers(cluster)
    before = cluster.packets("n2")
    result = cluster.connect(5, timeout=0.5)
    sent = cluster.packets("n2") - before
    print(f"n2's uplink: {sent} packets for 5 connection attempts")
    assert result["backends"] == {}, "p1a's answers come from the wrong node: no connection"
    # Each SYN crosses n2's uplink twice (in from n1, out to p1a through n1), plus the
    # pod's answers routed through: a bounce would repeat it until the TTL runs out.
    assert sent <= 5 * 3 * 8, sent


@pytest.mark.parametrize("policy", list(TrafficPolicy))
def test_a_flow_keeps_its_backend_when_it_enters_by_another_node(
    restored: Cluster, policy: TrafficPolicy
) -> None:
    cluster = restored
    cluster.apply([sessions(backends=BACKENDS, external_traffic_policy=policy)])
    learn_peers(cluster)
    held = cluster.hold(30, duration=4)
    time.sleep(1.5)
    cluster.via("n2")  # every flow moves, as ECMP rehashes when a next hop leaves
    moved_at = time.time()
    result = held.result()
    assert {c["first_backend"] for c in result} == {"p1a", "p1b", "p2a"}
    for connection in result:
        assert connection["ended"] == "alive", connection
        assert connection["backends"] == [connection["first_backend"]], connection
        assert connection["last_answer"] > moved_at + 1.5, connection


def test_plain_local_policy_resets_flows_that_move(restored: Cluster) -> None:
    # The failure the DSR variant avoids: each node picks among its own backends.
    cluster = restored
    cluster.apply(
        [
            sessions(
                backends=BACKENDS,
                external_traffic_policy=TrafficPolicy.LOCAL,
                forwarding_mode=ForwardingMode.SNAT,
            )
        ]
    )
    held = cluster.hold(20, duration=3)
    time.sleep(1)
    cluster.via("n2")
    result = held.result()
    assert all(c["first_backend"] in ("p1a", "p1b") for c in result)
    assert all(c["ended"] != "alive" for c in result), [c["ended"] for c in result]


def test_a_node_whose_neighbour_entry_fails_gets_nothing(restored: Cluster) -> None:
    cluster = restored
    cluster.apply([sessions(backends=BACKENDS3)])
    watches = learn_peers(cluster)
    held = cluster.hold(20, duration=30)
    try:
        others = [(n, a) for n, a in cluster.nodes["n1"].node.node_addresses if n != "n1"]
        cluster.set_link("n3", False)
        # The kernel fails the entry after its probes go unanswered; how soon depends on
        # the traffic toward n3 (in about one run of four here it took over 20 s), so the
        # test fails it at once, as the kernel does: the watch must see the failure, keep
        # n3 unreachable while its re-resolution goes unanswered, and let it back after.
        cluster.lab.ip("n1", "neigh", "replace", "192.0.2.23", "dev", "eth0", "nud", "failed")
        deadline = time.monotonic() + 20
        while ("n3", 4) not in watches["n1"].poll(others).unreachable:
            table = cluster.lab.exec("n1", "ip", "neigh", "show", "dev", "eth0").stdout
            assert time.monotonic() < deadline, f"n3's entry never failed:\n{table}"
            time.sleep(0.3)
        for _ in range(5):  # re-resolved every poll, never answered: still unreachable
            time.sleep(0.5)
            assert ("n3", 4) in watches["n1"].poll(others).unreachable
        cluster.nodes["n1"].set_peers(watches["n1"].peers)
        chain = cluster.lab.exec("n1", "nft", "list", "chain", "netdev", "herald", "node/n3/v4")
        assert "fwd" not in chain.stdout and "accept" in chain.stdout
        cluster.set_link("n3", True)
        deadline = time.monotonic() + 20
        while ("n3", 4) in watches["n1"].poll(others).unreachable:
            assert time.monotonic() < deadline, "n3 never came back"
            time.sleep(0.3)
        cluster.nodes["n1"].set_peers(watches["n1"].peers)
        chain = cluster.lab.exec("n1", "nft", "list", "chain", "netdev", "herald", "node/n3/v4")
        assert "fwd ip to 192.0.2.23" in chain.stdout
    finally:
        held.out.with_name(held.out.name + ".stop").write_text("")
        held.result()
