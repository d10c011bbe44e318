from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address, ip_network

import pytest
from dataplane_cluster import (
    BACKENDS,
    BACKENDS6,
    CLIENT,
    CLIENT6,
    NODES,
    OTHER_CLIENT,
    VIP,
    VIP6,
    Cluster,
    v6,
    web,
    web_port,
)

from herald.dataplane.model import Protocol, SessionAffinity, TrafficPolicy

pytestmark = pytest.mark.netns


def test_spread_over_three_backends_is_even(cluster: Cluster) -> None:
    cluster.apply([web()])
    result = cluster.connect(3000, timeout=2)
    assert result["errors"] == {}
    counts = result["backends"]
    assert sorted(counts) == ["p1a", "p1b", "p2a"]
    for name, count in counts.items():
        assert abs(count - 1000) <= 100, f"{name}: {count} of 3000"
    print(f"spread: {counts} in {result['seconds']:.1f}s")


def test_snat_hides_the_client_address(cluster: Cluster) -> None:
    cluster.apply([web()])
    result = cluster.connect(60)
    seen = {address for addresses in result["seen"].values() for address in addresses}
    assert CLIENT not in seen
    # Local pods see the node's pod-bridge address, the remote one the node's own address.
    assert result["seen"]["p2a"] == [NODES["n1"][0]]


def test_local_policy_keeps_client_address_and_local_backends(cluster: Cluster) -> None:
    cluster.apply([web(external_traffic_policy=TrafficPolicy.LOCAL)])
    result = cluster.connect(200)
    assert result["errors"] == {}
    assert sorted(result["backends"]) == ["p1a", "p1b"]
    assert {a for v in result["seen"].values() for a in v} == {CLIENT}


def test_client_ip_affinity_pins_each_client(cluster: Cluster) -> None:
    cluster.apply([web(session_affinity=SessionAffinity.CLIENT_IP)])
    for source in (CLIENT, OTHER_CLIENT):
        result = cluster.connect(100, source=source)
        assert result["errors"] == {}
        assert len(result["backends"]) == 1, result["backends"]


def test_source_ranges_block_other_clients(cluster: Cluster) -> None:
    cluster.apply([web(source_ranges=(ip_network("198.51.100.0/28"),))])
    allowed = cluster.connect(20, source=CLIENT)
    assert allowed["errors"] == {}
    blocked = cluster.connect(3, source=OTHER_CLIENT, timeout=0.3)
    assert blocked["backends"] == {}
    assert blocked["errors"] == {"TimeoutError": 3}


def test_no_backend_rejects_instead_of_dropping(cluster: Cluster) -> None:
    cluster.apply([web(backends=())])
    result = cluster.connect(3, timeout=2)
    assert result["errors"] == {"ConnectionRefusedError": 3}


def test_other_ports_of_a_vip_are_refused(cluster: Cluster) -> None:
    cluster.apply([web()])
    result = cluster.connect(2, port=81, timeout=2)
    assert result["errors"] == {"ConnectionRefusedError": 2}


def test_same_flow_same_backend_on_both_nodes(cluster: Cluster) -> None:
    cluster.apply([web()])
    try:
        first = cluster.connect(30, sport=41000)
        cluster.via("n2")
        second = cluster.connect(30, sport=41000)
    finally:
        cluster.via("n1")
    assert first["errors"] == second["errors"] == {}
    assert len(set(first["by_sport"].values())) == 3, "the flows should use every backend"
    assert first["by_sport"] == second["by_sport"]


def test_counters_count_service_traffic(cluster: Cluster) -> None:
    cluster.apply([web()])
    before = cluster.nodes["n1"].counters()["default/web"]
    cluster.connect(10)
    after = cluster.nodes["n1"].counters()["default/web"]
    # At least SYN, ACK+request, ACK of the reply and FIN per connection.
    assert after.packets - before.packets >= 40
    assert after.bytes > before.bytes


def test_dual_stack_service_over_ipv6(cluster: Cluster) -> None:
    dual = web(vips=(ip_address(VIP), ip_address(VIP6)), backends=BACKENDS + BACKENDS6)
    cluster.apply([dual])
    result = cluster.connect(300, vip=VIP6)
    assert result["errors"] == {}
    assert sorted(result["backends"]) == ["p1a", "p1b", "p2a"]
    assert result["seen"]["p2a"] == [v6(NODES["n1"][0])]
    assert cluster.connect(30)["errors"] == {}, "IPv4 still works"


def test_ipv6_local_policy_keeps_the_client(cluster: Cluster) -> None:
    local = web(
        vips=(ip_address(VIP6),),
        backends=BACKENDS6,
        external_traffic_policy=TrafficPolicy.LOCAL,
    )
    cluster.apply([local])
    result = cluster.connect(100, vip=VIP6)
    assert result["errors"] == {}
    assert sorted(result["backends"]) == ["p1a", "p1b"]
    assert {a for v in result["seen"].values() for a in v} == {CLIENT6}


def test_udp_service(cluster: Cluster) -> None:
    dns = web_port(Protocol.UDP, 53)
    cluster.apply([dns])
    result = cluster.connect(300, port=53, udp=True)
    assert result["errors"] == {}
    assert sorted(result["backends"]) == ["p1a", "p1b", "p2a"]
    cluster.apply([replace(dns, backends=())])
    refused = cluster.connect(2, port=53, udp=True)
    assert refused["errors"] == {"ConnectionRefusedError": 2}


def test_udp_flows_leave_a_removed_backend(cluster: Cluster) -> None:
    # The same source ports again are the same conntrack entries: without herald forgetting
    # them, they would stay on the removed backend, and on the service with none left.
    dns = web_port(Protocol.UDP, 53)
    cluster.apply([dns])
    before = cluster.connect(30, port=53, udp=True, sport=42000)
    assert before["errors"] == {}
    assert "p2a" in before["by_sport"].values()
    cluster.apply([replace(dns, backends=BACKENDS[:2])])
    after = cluster.connect(30, port=53, udp=True, sport=42000)
    assert after["errors"] == {}
    assert sorted(set(after["by_sport"].values())) == ["p1a", "p1b"]
    kept = {p: b for p, b in before["by_sport"].items() if b != "p2a"}
    assert kept.items() <= after["by_sport"].items(), "flows on remaining backends stay"
    cluster.apply([replace(dns, backends=())])
    refused = cluster.connect(30, port=53, udp=True, sport=42000)
    assert refused["errors"] == {"ConnectionRefusedError": 30}


def test_the_node_itself_reaches_the_vip(cluster: Cluster) -> None:
    cluster.apply([web()])
    result = cluster.connect(90, host="n2")
    assert result["errors"] == {}
    assert sorted(result["backends"]) == ["p1a", "p1b", "p2a"]


def test_a_pod_reaches_its_own_service(cluster: Cluster) -> None:
    # Hairpin: p1b's connections come back to p1b itself or to p1a on the same bridge; the
    # masquerade makes their replies return through n1 to be un-DNATed.
    cluster.apply([web()])
    result = cluster.connect(90, host="p1b")
    assert result["errors"] == {}
    assert sorted(result["backends"]) == ["p1a", "p1b", "p2a"]
