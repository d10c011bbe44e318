"""The seed walkthroughs in kube mode in the lab: a Kubernetes API on k8s-master1 (the test
double herald.lab.kubeapi), the real kubectl, herald's controller and six agents each with
its service account's kubeconfig (RBAC enforced by the server), the lab kubelet writing
Nodes and EndpointSlices through the API, FRR and curl as in files mode.

They take over the machine's lab like test_lab.py (run them under the lab's lock).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from herald.lab import cluster
from herald.lab.demo import external_ip, run_demo
from herald.lab.failover import mac_of, neighbour_mac, owner_of
from herald.lab.netns import run

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed"
L2_SEED = ROOT / "examples" / "l2-seed"
VIP = "203.0.113.0"
NODES = {"192.0.2.10", "192.0.2.21", "192.0.2.22", "192.0.2.23", "192.0.2.24", "192.0.2.25"}


def kubectl(*args: str) -> str:
    return run(cluster.kubectl_argv(*args), check=True).stdout


def hops(prefix: str = VIP) -> set[str]:
    return set(re.findall(r"via (\S+)", cluster.run_in("router", "ip", "route", "show", prefix)))


def lab_slices(service: str) -> list[str]:
    listed = json.loads(kubectl("get", "endpointslices", "-n", "default", "-o", "json"))
    return [
        s["metadata"]["name"]
        for s in listed["items"]
        if s["metadata"].get("labels", {}).get("kubernetes.io/service-name") == service
    ]


def test_seed_walkthrough_with_kubectl(lab_cleanup: None) -> None:
    lines: list[str] = []
    run_demo(SEED, "frr", lines.append, source="kube")
    output = "\n".join(lines)
    # `kubectl apply -f examples/seed/` and `kubectl get svc`, as the seed shows them.
    assert "service/web1-lb created" in output
    assert "deployment.apps/web1 created" in output
    assert re.search(rf"^web1-lb\s+LoadBalancer\s+\S+\s+{VIP}\s+80:\d+/TCP", output, re.M)
    assert len(re.findall(r"^192\.0\.2\.\d+ .* 1 +0 N/A$", output, re.M)) == 6
    assert hops() == NODES
    assert "HTTP/1.0 200 OK" in output
    assert "60 of 60 answered" in output
    # What the API holds: six Ready Nodes and the kubelet's slice with the six pods; the
    # Service's status was written by the controller through its service account.
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    assert len(nodes) == 6
    assert all(
        c["status"] == "True"
        for n in nodes
        for c in n["status"]["conditions"]
        if c["type"] == "Ready"
    )
    (name,) = lab_slices("web1-lb")
    endpoints = json.loads(kubectl("get", "endpointslice", "-n", "default", name, "-o", "json"))
    assert len(endpoints["endpoints"]) == 6
    conditions = json.loads(kubectl("get", "svc", "web1-lb", "-o", "json"))["status"]
    assert any(c["type"] == "herald.io/IPAMRequestSatisfied" for c in conditions["conditions"])

    # A Service deleted with kubectl is withdrawn by every node, and its slice goes too.
    assert "deleted" in kubectl("delete", "svc", "web1-lb")
    cluster.wait_until(lambda: not hops(), 30, f"the router's route to {VIP} withdrawn")
    cluster.wait_until(lambda: not lab_slices("web1-lb"), 10, "web1-lb's EndpointSlice deleted")
    assert cluster.run_in("client1", "curl", "-s", "-m", "2", f"http://{VIP}/") == ""


def test_l2_walkthrough_with_kubectl(lab_cleanup: None) -> None:
    cluster.up(mode="l2", source="kube")
    applied = kubectl("apply", "-f", f"{L2_SEED}/")
    assert "service/web1-l2 created" in applied
    vip = cluster.wait_until(
        lambda: external_ip("default/web1-l2", "kube"), 30, "an EXTERNAL-IP for web1-l2"
    )
    assert vip in kubectl("get", "svc", "web1-l2")
    owner = owner_of(vip, timeout=30)
    deadline = time.monotonic() + 30
    response = ""
    while time.monotonic() < deadline and "200 OK" not in response:
        response = cluster.run_in("client1", "curl", "-s", "-i", "-m", "2", f"http://{vip}/")
    assert response.startswith("HTTP/1.0 200 OK"), response[:200]
    # The client reached the VIP through the owner's MAC: the owner answered its ARP.
    assert neighbour_mac("client1", vip) == mac_of(owner)
