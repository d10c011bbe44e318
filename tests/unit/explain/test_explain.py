"""`explain_service`, one test per reason a user meets: the cluster state comes from the
seed manifests with the controller's real IPAM decision written into it, and each agent's
status is what an agent applying its node's plan reports."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from herald.agent.plan import plan_node
from herald.agent.run import frontends
from herald.agent.status import AgentStatus, L2Owner, L2Status, SessionStatus
from herald.api.manifests import parse_manifests
from herald.api.snapshot import ClusterState
from herald.controller.reconcile import IPAMReconciler, statuses
from herald.explain import Explanation, NodeExplanation, ServiceNotFound, explain_service

ROOT = Path(__file__).resolve().parents[3]
NODES = ("k8s-master1", "k8s-worker1", "k8s-worker2", "k8s-worker3", "k8s-worker4", "k8s-worker5")
WEB = "default/web1-lb"


def _endpoints(service: str, pods: list[tuple[str, str, bool]]) -> str:
    lines = [
        "apiVersion: discovery.k8s.io/v1",
        "kind: EndpointSlice",
        f"metadata: {{name: {service}-1, labels: {{kubernetes.io/service-name: {service}}}}}",
        "addressType: IPv4",
        "ports: [{name: http, port: 8080}]",
        "endpoints:",
    ]
    for address, node, ready in pods:
        lines.append(
            f"  - {{addresses: [{address}], nodeName: {node}, "
            f"conditions: {{ready: {str(ready).lower()}}}}}"
        )
    return "\n".join(lines) + "\n"


def _seed(**extra: str) -> dict[str, str]:
    paths = [
        *sorted((ROOT / "examples" / "seed").glob("*.yaml")),
        ROOT / "examples" / "cluster" / "nodes.yaml",
    ]
    files = {str(p): p.read_text() for p in paths}
    files["eps.yaml"] = _endpoints(
        "web1-lb", [(f"198.18.{i}.10", f"k8s-worker{i}", True) for i in range(1, 6)]
    )
    files.update(extra)
    return files


def _decided(files: dict[str, str], later: dict[str, str] | None = None) -> ClusterState:
    """The manifests with the status the controller writes for them; `later` files are
    added after that decision (a Service created once the others hold their addresses)."""
    reconciler = IPAMReconciler()
    state = _with_status(reconciler, parse_manifests(files))
    if later is None:
        return state
    written = {s.key: s.status for s in state.services}
    parsed = parse_manifests({**files, **later})
    held = dataclasses.replace(
        parsed,
        services=tuple(
            s.model_copy(update={"status": written[s.key]}) if s.key in written else s
            for s in parsed.services
        ),
    )
    return _with_status(reconciler, held)


def _with_status(reconciler: IPAMReconciler, parsed: ClusterState) -> ClusterState:
    allocations, usage = reconciler.reconcile(parsed)
    services, _ = statuses(allocations, usage, parsed, {}, "2026-12-03T10:00:00Z")
    return dataclasses.replace(
        parsed,
        services=tuple(
            s.model_copy(update={"status": services[s.key]}) if s.key in services else s
            for s in parsed.services
        ),
    )


def _agent(
    state: ClusterState,
    node: str,
    session_state: str = "Established",
    families: tuple[str, ...] = ("ipv4-unicast",),
) -> AgentStatus:
    """What an agent that applied its plan reports: sessions in `session_state`, every
    planned route of a negotiated family sent while established, the plan's services
    committed."""
    plan = plan_node(state, node)
    peers = []
    for peer in plan.peers:
        routes = tuple(
            str(network)
            for network, _ in peer.routes
            if session_state == "Established" and f"ipv{network.version}-unicast" in families
        )
        peers.append(
            SessionStatus(
                name=peer.key,
                local_as=peer.speaker.local_asn,
                peer=str(peer.address),
                peer_as=peer.config.peer_as,
                state=session_state,
                routes=routes,
                advertised=len(routes),
                families=families if session_state == "Established" else (),
                last_down=None if session_state == "Established" else "hold timer expired",
            )
        )
    return AgentStatus(
        node=node,
        services=tuple(s.key for s in plan.services),
        peers=tuple(peers),
        problems=plan.problems,
        frontends=frontends(plan.services, {}),
    )


def _explain(state: ClusterState, key: str, **overrides: AgentStatus) -> Explanation:
    agents = [overrides.get(node) or _agent(state, node) for node in NODES]
    return explain_service(state, agents, key)


def _node(explained: Explanation, name: str) -> NodeExplanation:
    return next(n for n in explained.nodes if n.node == name)


ORPHAN = """
apiVersion: v1
kind: Service
metadata: {name: orphan, namespace: default, labels: {tier: batch}}
spec: {type: LoadBalancer, ports: [{port: 80, targetPort: 8080}]}
"""
SELECTING_POOL = """
apiVersion: herald.io/v1alpha1
kind: LoadBalancerIPPool
metadata: {name: seed-pool}
spec:
  blocks: [{cidr: 203.0.113.0/24}]
  serviceSelector: {matchLabels: {"io.kubernetes.service.name": web1-lb}}
"""


def test_seed_service_is_announced_by_every_node_with_its_pool_and_backends() -> None:
    state = _decided(_seed())
    explained = _explain(state, WEB)
    assert explained.ipam.state == "allocated"
    assert explained.ipam.addresses == ("203.0.113.0",) and explained.ipam.pools == ("seed-pool",)
    assert explained.announcing == NODES
    assert explained.verdict.startswith("203.0.113.0 (pool seed-pool) announced by 6 of 6 nodes")
    worker = _node(explained, "k8s-worker3")
    (peer,) = worker.peers
    assert (peer.address, peer.state, peer.sent, peer.reason) == (
        "192.0.2.1",
        "Established",
        ("203.0.113.0/32",),
        None,
    )
    (frontend,) = worker.frontends
    assert frontend.frontend == "203.0.113.0:80/TCP" and len(frontend.backends) == 5
    assert explained.to_json()["announcing"] == list(NODES)


def test_no_pool_selects_the_service() -> None:
    files = _seed(**{"orphan.yaml": ORPHAN})
    files[next(k for k in files if k.endswith("pool.yaml"))] = SELECTING_POOL
    state = _decided(files)
    explained = _explain(state, "default/orphan")
    assert explained.ipam.state == "pending" and explained.ipam.addresses == ()
    assert explained.ipam.reason == "pool_selector_mismatch"
    assert explained.verdict == (
        "pending: no pool selects it: no pool with IPv4 addresses selects this Service; "
        "no LoadBalancerIPPool has IPv6 addresses"
    )
    assert explained.nodes == ()  # nothing to announce anywhere


def test_the_requested_ip_is_taken() -> None:
    taken = ORPHAN.replace("labels: {tier: batch}", "annotations: {herald.io/ips: 203.0.113.0}")
    state = _decided(_seed(), later={"taken.yaml": taken})
    explained = _explain(state, "default/orphan")
    assert explained.ipam.reason == "already_allocated"
    assert explained.verdict.startswith("pending: requested IP taken by another Service: ")
    assert "203.0.113.0 is already allocated" in explained.verdict
    assert "default/web1-lb" in (explained.ipam.message or "")


def test_local_policy_and_no_local_endpoint_on_a_node() -> None:
    files = _seed()
    web = next(k for k in files if k.endswith("web1.yaml"))
    files[web] = files[web].replace(
        "  type: LoadBalancer\n", "  type: LoadBalancer\n  externalTrafficPolicy: Local\n"
    )
    files["eps.yaml"] = _endpoints(
        "web1-lb", [("198.18.1.10", "k8s-worker1", True), ("198.18.2.10", "k8s-worker2", False)]
    )
    state = _decided(files)
    explained = _explain(state, WEB)
    assert explained.announcing == ("k8s-worker1",)
    assert _node(explained, "k8s-worker2").reasons == (
        "externalTrafficPolicy Local and no ready endpoint on this node (ready on: k8s-worker1)",
    )
    assert "1 of 6 nodes: k8s-worker1" in explained.verdict


def test_the_peer_session_is_down_on_a_node() -> None:
    state = _decided(_seed())
    down = _agent(state, "k8s-worker4", session_state="Active")
    explained = _explain(state, WEB, **{"k8s-worker4": down})
    assert "k8s-worker4" not in explained.announcing and len(explained.announcing) == 5
    node = _node(explained, "k8s-worker4")
    (peer,) = node.peers
    assert peer.state == "Active" and peer.sent == ()
    assert peer.reason == "session is Active, not Established; last down: hold timer expired"
    assert node.reasons == (f"BGP: peer {peer.peer} (192.0.2.1): {peer.reason}",)


def test_the_peer_did_not_negotiate_the_family() -> None:
    state = _decided(_seed())
    v6_only = _agent(state, "k8s-worker2", families=("ipv6-unicast",))
    node = _node(_explain(state, WEB, **{"k8s-worker2": v6_only}), "k8s-worker2")
    assert not node.announces
    assert node.peers[0].reason is not None
    assert node.peers[0].reason.startswith(
        "family not negotiated: the peer did not agree to ipv4-unicast (negotiated: ipv6-unicast)"
    )


def test_no_ready_endpoint_anywhere() -> None:
    files = _seed()
    files["eps.yaml"] = _endpoints("web1-lb", [("198.18.1.10", "k8s-worker1", False)])
    explained = _explain(_decided(files), WEB)
    assert explained.announcing == ()
    assert explained.verdict.endswith(
        "announced by no node: no ready endpoint anywhere (nor one serving while "
        "terminating): nothing to forward to"
    )


def test_no_bgp_cluster_config_selects_the_node() -> None:
    files = _seed()
    bgp = next(k for k in files if k.endswith("bgp.yaml"))
    files[bgp] = files[bgp].replace(
        "spec:\n  bgpInstances:",
        "spec:\n  nodeSelector: {matchLabels: {bgp: 'on'}}\n  bgpInstances:",
        1,
    )
    explained = _explain(_decided(files), WEB)
    assert explained.announcing == ()
    assert _node(explained, "k8s-worker1").reasons == (
        "BGP: no BGPClusterConfig selects this node (its nodeSelector)",
    )


def test_an_agent_that_does_not_answer_is_named() -> None:
    state = _decided(_seed())
    silent = AgentStatus(node="k8s-worker5", error="no answer from /run/herald/agents/x.sock")
    node = _node(_explain(state, WEB, **{"k8s-worker5": silent}), "k8s-worker5")
    assert not node.announces
    assert node.reasons[0].startswith("agent not answering (no answer from")


def test_rules_not_committed_hold_the_announcement_back() -> None:
    state = _decided(_seed())
    refused = _agent(state, "k8s-worker1").model_copy(
        update={"frontends": (), "problems": ("datapath: Service default/web1-lb: refused",)}
    )
    refused = refused.model_copy(
        update={"peers": tuple(p.model_copy(update={"routes": ()}) for p in refused.peers)}
    )
    node = _node(_explain(state, WEB, **{"k8s-worker1": refused}), "k8s-worker1")
    assert not node.announces
    assert any(r.startswith("datapath: no committed rules for 203.0.113.0") for r in node.reasons)
    assert node.problems == ("datapath: Service default/web1-lb: refused",)


def test_a_service_that_is_not_herald_s_and_one_that_does_not_exist() -> None:
    cluster_ip = ORPHAN.replace("type: LoadBalancer", "type: ClusterIP")
    state = _decided(_seed(**{"c.yaml": cluster_ip}))
    assert _explain(state, "default/orphan").verdict == (
        "not herald's: type is ClusterIP, not LoadBalancer"
    )
    with pytest.raises(ServiceNotFound, match="default/nothing not found"):
        _explain(state, "default/nothing")


def _l2_seed() -> dict[str, str]:
    paths = [
        *sorted((ROOT / "examples" / "l2-seed").glob("*.yaml")),
        ROOT / "examples" / "cluster" / "nodes.yaml",
    ]
    files = {str(p): p.read_text() for p in paths}
    files["eps.yaml"] = _endpoints("web1-l2", [("198.18.1.10", "k8s-worker1", True)])
    return files


def test_l2_the_owner_answers_and_the_others_say_who_does() -> None:
    state = _decided(_l2_seed())
    (address,) = state.services_by_key["default/web1-l2"].status.load_balancer.ingress
    owner = L2Status(owners=(L2Owner(vip=address.ip or "", owner="k8s-worker2", answering=True),))
    seen = L2Status(owners=(L2Owner(vip=address.ip or "", owner="k8s-worker2"),))
    agents = {
        node: _agent(state, node).model_copy(
            update={"l2": owner if node == "k8s-worker2" else seen}
        )
        for node in NODES
    }
    explained = _explain(state, "default/web1-l2", **agents)
    assert explained.announcing == ("k8s-worker2",)
    assert _node(explained, "k8s-worker2").via == ("l2",)
    assert _node(explained, "k8s-worker3").reasons == (
        f"L2: {address.ip} is answered by k8s-worker2 (one owner per VIP)",
    )
    assert "1 of 6 nodes: k8s-worker2" in explained.verdict
