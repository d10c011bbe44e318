"""Metrics and `herald explain` in the lab: after the seed demo, every agent's /metrics
(scraped with curl inside its node, parsed with prometheus_client's parser) shows its BGP
session up and the VIP advertised, the controller's shows the pool in use, and `herald
explain` says who announces web1-lb, why a Service without a pool has no address, why one
asking for web1-lb's address has none, and which node's peer is down.

Takes over the machine's lab like tests/e2e/test_lab.py: run it under
`flock /tmp/herald-lab.lock`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from teardown import torn_down

from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.lab import cluster
from herald.lab.demo import run_demo
from herald.lab.netns import run

pytestmark = pytest.mark.netns
SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
VIP = "203.0.113.0"
NODES = ("k8s-master1", "k8s-worker1", "k8s-worker2", "k8s-worker3", "k8s-worker4", "k8s-worker5")

NO_POOL = """apiVersion: v1
kind: Service
metadata:
  name: nopool
  namespace: default
  annotations: {herald.io/ips: 198.51.100.200}
spec:
  type: LoadBalancer
  selector: {app: web1}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""

TAKEN = NO_POOL.replace("name: nopool", "name: taken").replace("198.51.100.200", VIP)


@pytest.fixture
def demo() -> Iterator[None]:
    with torn_down():
        run_demo(SEED, "frr", lambda _: None)
        yield


Samples = dict[str, list[tuple[dict[str, str], float]]]


def scrape(node: str, address: str) -> Samples:
    text = cluster.run_in(node, "curl", "-s", "-m", "5", f"http://{address}/metrics", check=True)
    found: Samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def explain(*args: str) -> str:
    return run(cluster.herald_argv("explain", "svc", *args), check=True).stdout


def test_metrics_show_sessions_up_and_prefixes_advertised(demo: None) -> None:
    packets = forwarded = 0.0
    for node in NODES:
        found = scrape(node, cluster.AGENT_METRICS)
        ((labels, up),) = found["herald_bgp_session_up"]
        assert (labels["node"], labels["peer"], up) == (node, "192.0.2.1", 1.0)
        ((_, announced),) = found["herald_bgp_announced_prefixes"]
        assert announced >= 1
        ((_, uptime),) = found["herald_bgp_session_uptime_seconds"]
        assert uptime > 0
        # The VIP went out in an UPDATE (and the End-of-RIB is one); FRR sent its own.
        ((_, updates),) = found["herald_bgp_updates_total"]
        assert updates >= 2
        ((_, received),) = found["herald_bgp_updates_received_total"]
        assert received >= 1
        events = dict((labels["verdict"], v) for labels, v in found["herald_flow_events_total"])
        lost = {labels["cause"] for labels, _ in found["herald_flow_events_lost_total"]}
        assert lost == {"rate_limited", "undelivered", "undecodable"}
        forwarded += events.get("FORWARDED", 0)
        assert found["herald_services_programmed"] == [({"node": node}, 1.0)]
        ((_, applies),) = found["herald_datapath_apply_duration_seconds_count"]
        assert applies >= 1
        packets += sum(v for labels, v in found.get("herald_service_packets_total", []))
    assert packets >= 60  # the demo's 60 requests, counted by the nodes that took them
    assert forwarded >= 60  # and each a few flow events (SYN, ACK, ...) where it entered
    controller = scrape("k8s-master1", cluster.CONTROLLER_METRICS)
    assert ({"pool": "seed-pool"}, 1.0) in controller["herald_ipam_addresses_in_use"]
    assert ({"pool": "seed-pool"}, 256.0) in controller["herald_ipam_addresses"]


def test_explain_says_who_announces_and_why_a_service_has_no_address(demo: None) -> None:
    explained = json.loads(explain("default/web1-lb", "-o", "json"))
    assert explained["announcing"] == list(NODES)
    assert explained["ipam"]["addresses"] == [VIP]
    assert explained["ipam"]["pools"] == ["seed-pool"]
    text = explain("default/web1-lb")
    assert f"{VIP} (pool seed-pool) announced by 6 of 6 nodes" in text
    assert f"{VIP}/32" in text  # what the router peer was sent
    (DEFAULT_MANIFESTS / "nopool.yaml").write_text(NO_POOL)

    def pending() -> dict[str, object] | None:
        found: dict[str, object] = json.loads(explain("default/nopool", "-o", "json"))
        return found if found["ipam"]["reason"] else None  # type: ignore[index]

    nopool = cluster.wait_until(pending, 30, "the controller's decision on default/nopool")
    assert nopool["verdict"] == (
        "pending: no pool has an address for it: 198.51.100.200 is in no LoadBalancerIPPool"
    )
    assert nopool["nodes"] == []


def test_explain_says_a_requested_ip_is_taken(demo: None) -> None:
    (DEFAULT_MANIFESTS / "taken.yaml").write_text(TAKEN)

    def decided() -> dict[str, object] | None:
        found: dict[str, object] = json.loads(explain("default/taken", "-o", "json"))
        return found if found["ipam"]["reason"] else None  # type: ignore[index]

    taken = cluster.wait_until(decided, 30, "the controller's decision on default/taken")
    assert taken["ipam"]["reason"] == "already_allocated"  # type: ignore[index]
    assert str(taken["verdict"]).startswith("pending: requested IP taken by another Service")
    assert VIP in str(taken["ipam"]["message"])  # type: ignore[index]
    # web1-lb keeps its address and every node.
    assert json.loads(explain("default/web1-lb", "-o", "json"))["announcing"] == list(NODES)


def test_explain_names_the_node_whose_peer_is_down(demo: None) -> None:
    node = "k8s-worker5"
    address = cluster.run_in(node, "ip", "-4", "-o", "addr", "show", "eth0", check=True)
    address = address.split(" inet ", 1)[1].split("/", 1)[0]
    vtysh = ("vtysh", "-N", cluster.PREFIX + "router")
    summary = json.loads(cluster.run_in("router", *vtysh, "-c", "show bgp summary json"))
    asn = summary["ipv4Unicast"]["as"]
    neighbor = ("-c", "configure terminal", "-c", f"router bgp {asn}")
    cluster.run_in("router", *vtysh, *neighbor, "-c", f"neighbor {address} shutdown", check=True)

    def down() -> dict[str, object] | None:
        found = json.loads(explain("default/web1-lb", "-o", "json"))
        (worker,) = [n for n in found["nodes"] if n["node"] == node]
        (peer,) = worker["peers"]
        return found if peer["state"] != "Established" and peer["reason"] else None

    explained = cluster.wait_until(down, 30, f"{node}'s session down")
    (worker,) = [n for n in explained["nodes"] if n["node"] == node]  # type: ignore[attr-defined]
    (peer,) = worker["peers"]
    assert "not Established" in peer["reason"] and peer["sent"] == []
    assert node not in explained["announcing"]  # type: ignore[index]
    assert len(explained["announcing"]) == len(NODES) - 1  # type: ignore[index]
    assert "not Established" in explain("default/web1-lb")
