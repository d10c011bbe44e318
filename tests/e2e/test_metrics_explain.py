"""Metrics and `herald explain` in the lab: after the seed demo, every agent's /metrics
(scraped with curl inside its node, parsed with prometheus_client's parser) shows its BGP
session up and the VIP advertised, the controller's shows the pool in use, and `herald
explain` says who announces web1-lb and why a Service without a pool has no address.

Takes over the machine's lab like tests/e2e/test_lab.py: run it under
`flock /tmp/herald-lab.lock`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

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


@pytest.fixture
def demo() -> Iterator[None]:
    try:
        run_demo(SEED, "frr", lambda _: None)
        yield
    finally:
        state = cluster.read_state()
        cluster.down()
        assert cluster.leftovers(state) == []


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
    packets = 0.0
    for node in NODES:
        found = scrape(node, cluster.AGENT_METRICS)
        ((labels, up),) = found["herald_bgp_session_up"]
        assert (labels["node"], labels["peer"], up) == (node, "192.0.2.1", 1.0)
        ((_, announced),) = found["herald_bgp_announced_prefixes"]
        assert announced >= 1
        ((_, uptime),) = found["herald_bgp_session_uptime_seconds"]
        assert uptime > 0
        assert found["herald_services_programmed"] == [({"node": node}, 1.0)]
        ((_, applies),) = found["herald_datapath_apply_duration_seconds_count"]
        assert applies >= 1
        packets += sum(v for labels, v in found.get("herald_service_packets_total", []))
    assert packets >= 60  # the demo's 60 requests, counted by the nodes that took them
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
