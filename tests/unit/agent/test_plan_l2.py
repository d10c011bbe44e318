"""The L2 part of the NodePlan, the announcer's input restricted to what the datapath
serves, and `herald l2 owners` rows from agents' status."""

from __future__ import annotations

import ipaddress
from pathlib import Path

from herald.agent.l2 import servable_only
from herald.agent.plan import plan_node
from herald.agent.status import AgentStatus
from herald.cli.l2 import owner_rows
from herald.lab.topology import node_manifests, seed_topology

from .test_plan import endpoints, state

ROOT = Path(__file__).resolve().parents[3]
L2_STATUS = {"default/web1-l2": "192.0.2.200"}


def l2_files() -> dict[str, str]:
    files = {str(p): p.read_text() for p in sorted((ROOT / "examples" / "l2-seed").glob("*.yaml"))}
    files["nodes.yaml"] = node_manifests(seed_topology())
    files["eps.yaml"] = endpoints("web1-l2", [("198.18.1.10", "k8s-worker1", True)])
    return files


def test_selected_node_gets_members_and_every_announcement() -> None:
    plan = plan_node(state(l2_files(), L2_STATUS), "k8s-worker2")
    assert plan.l2 is not None
    assert [name for name, _ in plan.l2.members] == [
        "k8s-master1",
        *(f"k8s-worker{i}" for i in range(1, 6)),
    ]
    assert plan.l2.address_of("k8s-worker2") == ipaddress.ip_address("192.0.2.22")
    assert "k8s-worker2" not in plan.l2.peers_of("k8s-worker2")
    (announcement,) = plan.l2.announcements
    assert announcement.vip == ipaddress.ip_address("192.0.2.200")
    assert announcement.nodes == tuple(name for name, _ in plan.l2.members)
    # The datapath serves the L2 VIP exactly like a BGP one, and there is no BGP session.
    assert plan.peers == ()
    assert plan.services[0].vips == (ipaddress.ip_address("192.0.2.200"),)


def test_node_no_policy_selects_runs_no_announcer() -> None:
    files = l2_files()
    policy = next(name for name in files if name.endswith("l2.yaml"))
    files[policy] = files[policy].replace(
        "spec:\n",
        "spec:\n  nodeSelector:\n    matchExpressions:\n"
        "      - {key: node-role.kubernetes.io/control-plane, operator: DoesNotExist}\n",
    )
    snapshot = state(files, L2_STATUS)
    assert plan_node(snapshot, "k8s-master1").l2 is None
    worker = plan_node(snapshot, "k8s-worker1").l2
    assert worker is not None and "k8s-master1" not in dict(worker.members)


def test_bgp_only_cluster_has_no_l2_plan() -> None:
    from .test_plan import SEED_STATUS, seed_files

    assert plan_node(state(seed_files(), SEED_STATUS), "k8s-worker1").l2 is None


def test_unserved_vip_keeps_its_place_without_this_node() -> None:
    plan = plan_node(state(l2_files(), L2_STATUS), "k8s-worker2")
    assert plan.l2 is not None
    vip = plan.l2.announcements[0].vip
    kept = servable_only(plan.l2.announcements, "k8s-worker2", {vip})
    assert kept == plan.l2.announcements
    (dropped,) = servable_only(plan.l2.announcements, "k8s-worker2", set())
    assert dropped.vip == vip
    assert "k8s-worker2" not in dropped.nodes and "k8s-worker1" in dropped.nodes


def _entry(vip: str, owner: str, answering: bool) -> dict[str, object]:
    return {
        "vip": vip,
        "owner": owner,
        "answering": answering,
        "interfaces": ["eth0"] if answering else [],
        "since": 1.0 if answering else None,
        "candidates": ["w1", "w2"],
    }


def test_owner_rows_trust_the_answering_node() -> None:
    agents = [
        {
            "node": "w1",
            "l2": {
                "owners": [_entry("192.0.2.201", "w1", True), _entry("192.0.2.200", "w2", False)]
            },
        },
        {
            "node": "w2",
            "l2": {
                "owners": [_entry("192.0.2.200", "w2", True), _entry("192.0.2.201", "w1", False)]
            },
        },
        {"node": "w3", "error": "no answer"},
    ]
    rows = owner_rows(AgentStatus.model_validate(a) for a in agents)
    assert [(r.vip, r.owner, r.interfaces) for r in rows] == [
        ("192.0.2.200", "w2", ("eth0",)),
        ("192.0.2.201", "w1", ("eth0",)),
    ]


def test_owner_rows_show_duplicates_and_unanswered() -> None:
    agents = [
        {
            "node": "w1",
            "l2": {
                "owners": [_entry("192.0.2.200", "w1", True), _entry("192.0.2.202", "w1", False)]
            },
        },
        {"node": "w2", "l2": {"owners": [_entry("192.0.2.200", "w2", True)]}},
    ]
    rows = owner_rows(AgentStatus.model_validate(a) for a in agents)
    assert [(r.vip, r.owner) for r in rows] == [
        ("192.0.2.200", "w1"),
        ("192.0.2.200", "w2"),
        ("192.0.2.202", None),
    ]
