"""NodePlan: what each node announces and forwards, from the same manifests users write."""

from __future__ import annotations

import dataclasses
import ipaddress
from pathlib import Path

import pytest

from herald.agent.plan import NodePlan, plan_node
from herald.api.manifests import parse_manifests
from herald.api.problems import ManifestError
from herald.api.snapshot import ClusterState
from herald.bfd.session import Timers
from herald.bgp.export import RouteAttributes
from herald.bgp.wire import LargeCommunity
from herald.dataplane.model import ForwardingMode, TrafficPolicy

ROOT = Path(__file__).resolve().parents[3]


def seed_files() -> dict[str, str]:
    paths = [
        *sorted((ROOT / "examples" / "seed").glob("*.yaml")),
        ROOT / "examples" / "cluster" / "nodes.yaml",
    ]
    return {str(p): p.read_text() for p in paths}


def endpoints(service: str, pods: list[tuple[str, str, bool]], port_name: str = "http") -> str:
    lines = [
        "apiVersion: discovery.k8s.io/v1",
        "kind: EndpointSlice",
        f"metadata: {{name: {service}-1, labels: {{kubernetes.io/service-name: {service}}}}}",
        "addressType: IPv4",
        f"ports: [{{name: {port_name}, port: 8080}}]",
        "endpoints:",
    ]
    for address, node, ready in pods:
        lines.append(
            f"  - {{addresses: [{address}], nodeName: {node}, conditions: {{ready: {str(ready).lower()}}}}}"
        )
    return "\n".join(lines) + "\n"


def state(files: dict[str, str], status: dict[str, str]) -> ClusterState:
    parsed = parse_manifests(files)
    services = tuple(
        svc.model_copy(
            update={
                "status": svc.status.model_validate(
                    {"loadBalancer": {"ingress": [{"ip": status[svc.key]}]}}
                )
            }
        )
        if svc.key in status
        else svc
        for svc in parsed.services
    )
    return dataclasses.replace(parsed, services=services)


SEED_STATUS = {"default/web1-lb": "203.0.113.0"}


def test_seed_every_node_announces_the_vip_with_ready_endpoints() -> None:
    files = seed_files()
    files["eps.yaml"] = endpoints(
        "web1-lb", [("198.18.1.10", "k8s-worker1", True), ("198.18.2.10", "k8s-worker2", True)]
    )
    snapshot = state(files, SEED_STATUS)
    for node in ("k8s-master1", "k8s-worker1", "k8s-worker5"):
        plan = plan_node(snapshot, node)
        assert [
            (p.name, str(p.address), p.config.peer_as, p.speaker.local_asn) for p in plan.peers
        ] == [("router", "192.0.2.1", 64512, 64512)]
        peer = plan.peers[0]
        assert peer.routes == ((ipaddress.ip_network("203.0.113.0/32"), RouteAttributes()),)
        assert peer.config.hold_time == 9
        assert peer.config.graceful_restart_time is not None
        [service] = plan.services
        assert service.key == "default/web1-lb"
        assert [str(v) for v in service.vips] == ["203.0.113.0"]
        assert [(p.port, p.target_port, p.protocol.value) for p in service.ports] == [
            (80, 8080, "tcp")
        ]
        assert [(str(b.address), b.node) for b in service.backends] == [
            ("198.18.1.10", "k8s-worker1"),
            ("198.18.2.10", "k8s-worker2"),
        ]
    assert plan_node(snapshot, "k8s-worker1").peers[0].speaker.router_id == "192.0.2.21"


def test_no_ready_endpoint_withdraws_but_keeps_forwarding_rules() -> None:
    files = seed_files()
    files["eps.yaml"] = endpoints("web1-lb", [("198.18.1.10", "k8s-worker1", False)])
    plan = plan_node(state(files, SEED_STATUS), "k8s-worker1")
    assert plan.peers[0].routes == ()
    # The datapath still knows the service, so traffic that arrives is rejected, not
    # sent into a routing loop or blackholed.
    assert [s.key for s in plan.services] == ["default/web1-lb"]


def test_traffic_policy_local_announces_only_from_nodes_with_local_pods() -> None:
    files = seed_files()
    files[next(k for k in files if k.endswith("web1.yaml"))] = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: web1-lb}\n"
        "spec: {type: LoadBalancer, externalTrafficPolicy: Local, ports: [{port: 80, targetPort: 8080}]}\n"
    )
    files["eps.yaml"] = endpoints(
        "web1-lb", [("198.18.1.10", "k8s-worker1", True), ("198.18.2.10", "k8s-worker2", False)]
    )
    snapshot = state(files, SEED_STATUS)
    announcing = [
        node
        for node in ("k8s-master1", "k8s-worker1", "k8s-worker2", "k8s-worker3")
        if plan_node(snapshot, node).peers[0].routes
    ]
    assert announcing == ["k8s-worker1"]
    service = plan_node(snapshot, "k8s-worker2").services[0]
    assert service.external_traffic_policy is TrafficPolicy.LOCAL


def test_node_selector_communities_local_pref_and_password() -> None:
    files = {str(p): p.read_text() for p in sorted((ROOT / "examples" / "bgp").glob("*.yaml"))}
    files["nodes.yaml"] = (
        "apiVersion: v1\nkind: Node\nmetadata: {name: w1, labels: {node-role.kubernetes.io/worker: ''}}\n"
        "status: {addresses: [{type: InternalIP, address: 192.0.2.21}]}\n---\n"
        "apiVersion: v1\nkind: Node\nmetadata: {name: m1}\n"
    )
    files["svc.yaml"] = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: pub, labels: {tier: public}}\n"
        "spec: {type: LoadBalancer, ports: [{port: 443}], externalIPs: [198.51.100.7]}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: priv}\n"
        "spec: {type: LoadBalancer, ports: [{port: 443}]}\n"
    )
    files["eps.yaml"] = (
        endpoints("pub", [("198.18.1.10", "w1", True)])
        + "---\n"
        + endpoints("priv", [("198.18.1.11", "w1", True)])
    )
    snapshot = state(files, {"default/pub": "203.0.113.5", "default/priv": "203.0.113.6"})
    assert plan_node(snapshot, "m1").peers == ()
    plan = plan_node(snapshot, "w1")
    assert [p.key for p in plan.peers] == ["tor-4200000001/tor-a", "tor-4200000001/tor-b"]
    tor_a = plan.peers[0]
    assert tor_a.speaker.local_asn == 4200000001 and tor_a.config.peer_as == 4200000000
    assert tor_a.config.password == "example-only"
    attributes = RouteAttributes(
        communities=(64512 << 16 | 100, 0xFFFFFF01),
        large_communities=(LargeCommunity(4200000001, 1, 1),),
        local_pref=200,
    )
    assert tor_a.routes == (
        (ipaddress.ip_network("198.51.100.7/32"), attributes),
        (ipaddress.ip_network("203.0.113.5/32"), attributes),
    )
    # The announced external IP is forwarded too: never announce what is not forwarded.
    pub = next(s for s in plan.services if s.key == "default/pub")
    assert sorted(str(v) for v in pub.vips) == ["198.51.100.7", "203.0.113.5"]


def test_named_target_port_forwarding_mode_and_l2_class() -> None:
    files = seed_files()
    files[next(k for k in files if k.endswith("web1.yaml"))] = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: web1-lb, annotations: {herald.io/forwarding-mode: dsr}}\n"
        "spec: {type: LoadBalancer, ports: [{name: web, port: 80, targetPort: http}]}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: l2}\n"
        "spec: {type: LoadBalancer, loadBalancerClass: herald.io/l2, ports: [{port: 80}]}\n"
    )
    files["eps.yaml"] = endpoints("web1-lb", [("198.18.1.10", "k8s-worker1", True)]) + (
        "---\n" + endpoints("l2", [("198.18.1.11", "k8s-worker1", True)])
    )
    snapshot = state(files, {"default/web1-lb": "203.0.113.0", "default/l2": "203.0.113.1"})
    plan = plan_node(snapshot, "k8s-worker1")
    web = next(s for s in plan.services if s.key == "default/web1-lb")
    assert web.ports[0].target_port == 8080
    assert web.forwarding_mode is ForwardingMode.DSR
    assert [str(r[0]) for r in plan.peers[0].routes] == ["203.0.113.0/32"]
    assert {s.key for s in plan.services} == {"default/web1-lb", "default/l2"}


def test_icmp_echo_annotation_opts_a_service_out_of_ping() -> None:
    files = seed_files()
    files[next(k for k in files if k.endswith("web1.yaml"))] = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: web1-lb, annotations: {herald.io/icmp-echo: 'false'}}\n"
        "spec: {type: LoadBalancer, ports: [{name: web, port: 80, targetPort: 8080}]}\n---\n"
        "apiVersion: v1\nkind: Service\nmetadata: {name: pinged}\n"
        "spec: {type: LoadBalancer, ports: [{port: 80}]}\n"
    )
    files["eps.yaml"] = endpoints("web1-lb", [("198.18.1.10", "k8s-worker1", True)]) + (
        "---\n" + endpoints("pinged", [("198.18.1.11", "k8s-worker1", True)])
    )
    snapshot = state(files, {"default/web1-lb": "203.0.113.0", "default/pinged": "203.0.113.1"})
    echo = {s.key: s.answer_echo for s in plan_node(snapshot, "k8s-worker1").services}
    assert echo == {"default/web1-lb": False, "default/pinged": True}


def test_an_icmp_echo_annotation_that_is_not_a_boolean_is_refused_where_written() -> None:
    text = (
        "apiVersion: v1\nkind: Service\nmetadata: {name: web1-lb, annotations: {herald.io/icmp-echo: 'no'}}\n"
        "spec: {type: LoadBalancer, ports: [{port: 80}]}\n"
    )
    with pytest.raises(ManifestError, match=r"herald\.io/icmp-echo"):
        parse_manifests({"web1.yaml": text})


def test_pod_cidr_advertisement_and_determinism() -> None:
    files = seed_files()
    files["podcidr.yaml"] = (
        "apiVersion: herald.io/v1alpha1\nkind: BGPAdvertisement\n"
        "metadata: {name: pods, labels: {advertise: seed}}\n"
        "spec: {advertisements: [{advertisementType: PodCIDR}]}\n"
    )
    snapshot = state(files, SEED_STATUS)
    plan = plan_node(snapshot, "k8s-worker3")
    assert [str(r[0]) for r in plan.peers[0].routes] == ["198.18.3.0/24"]
    assert plan == plan_node(state(files, SEED_STATUS), "k8s-worker3")


def test_bfd_profile_reaches_the_peer_config() -> None:
    files = seed_files()
    bgp = next(k for k in files if k.endswith("bgp.yaml"))
    files[bgp] = files[bgp].replace("  timers:\n", "  bfdProfileRef: fast\n  timers:\n", 1)
    files["bfd.yaml"] = (
        "apiVersion: herald.io/v1alpha1\nkind: BFDProfile\nmetadata: {name: fast}\n"
        "spec: {transmitInterval: 100, receiveInterval: 200, detectMultiplier: 4}\n"
    )
    (peer,) = plan_node(state(files, SEED_STATUS), "k8s-worker1").peers
    assert peer.config.bfd == Timers(100_000, 200_000, 4)
    # A profile that is gone: the session runs without BFD and the agent says why.
    del files["bfd.yaml"]
    files[bgp] = files[bgp].replace("bfdProfileRef: fast", "bfdProfileRef: gone")
    with pytest.raises(ManifestError, match="gone"):
        state(files, SEED_STATUS)


def dual_stack_seed(families: str, node_v6: bool) -> tuple[dict[str, str], dict[str, str]]:
    """The seed with web1-lb holding an IPv4 and an IPv6 address, the peer's families
    replaced by `families`, and k8s-worker1 with or without an IPv6 InternalIP."""
    files = seed_files()
    bgp = next(k for k in files if k.endswith("bgp.yaml"))
    files[bgp] = files[bgp].replace(
        "  families:\n    - afi: ipv4\n      safi: unicast\n", f"  families:\n{families}", 1
    )
    if node_v6:
        nodes = next(k for k in files if k.endswith("nodes.yaml"))
        files[nodes] = files[nodes].replace(
            "      address: 192.0.2.21\n",
            "      address: 192.0.2.21\n    - type: InternalIP\n      address: 2001:db8:2::21\n",
        )
    files["eps.yaml"] = endpoints("web1-lb", [("198.18.1.10", "k8s-worker1", True)])
    return files, {"default/web1-lb": "203.0.113.0"}


SELECTED = "      advertisements:\n        matchLabels:\n          advertise: seed\n"


def dual_stack_plan(families: str, node_v6: bool) -> NodePlan:
    files, status = dual_stack_seed(families, node_v6)
    snapshot = state(files, status)
    web = snapshot.services[0]
    ingress = [{"ip": "203.0.113.0"}, {"ip": "2001:db8:113::"}]
    two = web.model_copy(
        update={"status": web.status.model_validate({"loadBalancer": {"ingress": ingress}})}
    )
    return plan_node(dataclasses.replace(snapshot, services=(two,)), "k8s-worker1")


def test_ipv6_routes_over_ipv4_take_the_nodes_ipv6_address_as_next_hop() -> None:
    families = f"    - afi: ipv4\n{SELECTED}    - afi: ipv6\n{SELECTED}"
    plan = dual_stack_plan(families, node_v6=True)
    (peer,) = plan.peers
    assert str(peer.config.ipv6_next_hop) == "2001:db8:2::21"
    assert [str(r[0]) for r in peer.routes] == ["203.0.113.0/32", "2001:db8:113::/128"]
    assert plan.problems == ()


def test_ipv6_routes_without_an_ipv6_next_hop_are_held_back_and_said() -> None:
    families = f"    - afi: ipv4\n{SELECTED}    - afi: ipv6\n{SELECTED}"
    plan = dual_stack_plan(families, node_v6=False)
    (peer,) = plan.peers
    assert [str(r[0]) for r in peer.routes] == ["203.0.113.0/32"]
    session, service = plan.problems
    assert "peer router: 1 IPv6 routes not announced" in session
    assert "no IPv6 InternalIP" in session
    assert service.startswith("Service default/web1-lb: 2001:db8:113:: is selected")


def test_an_address_of_a_family_no_session_has_is_said() -> None:
    plan = dual_stack_plan(f"    - afi: ipv4\n{SELECTED}", node_v6=True)
    assert [str(r[0]) for r in plan.peers[0].routes] == ["203.0.113.0/32"]
    (problem,) = plan.problems
    assert "2001:db8:113::" in problem and "family ipv6" in problem


def test_enforce_first_as_reaches_the_peer_config() -> None:
    files = seed_files()
    bgp = next(k for k in files if k.endswith("bgp.yaml"))
    assert plan_node(state(files, SEED_STATUS), "k8s-worker1").peers[0].config.enforce_first_as
    files[bgp] = files[bgp].replace("  timers:\n", "  enforceFirstAS: false\n  timers:\n", 1)
    (peer,) = plan_node(state(files, SEED_STATUS), "k8s-worker1").peers
    assert peer.config.enforce_first_as is False


AGGREGATED = """\
apiVersion: herald.io/v1alpha1
kind: BGPAdvertisement
metadata: {name: seed-services, labels: {advertise: seed}}
spec:
  advertisements:
    - advertisementType: Service
      aggregationLength: 24
      aggregationLengthV6: 120
      attributes: {localPreference: 150}
"""
WEB2 = (
    "apiVersion: v1\nkind: Service\nmetadata: {name: web2}\n"
    "spec: {type: LoadBalancer, ports: [{port: 80, targetPort: 8080}]}\n"
)


def aggregated(ready: tuple[bool, bool]) -> NodePlan:
    files = seed_files()
    bgp = next(k for k in files if k.endswith("bgp.yaml"))
    files[bgp] = files[bgp].split("---\napiVersion: herald.io/v1alpha1\nkind: BGPAdvertisement")[0]
    files["adv.yaml"] = AGGREGATED
    files["web2.yaml"] = WEB2
    files["eps.yaml"] = (
        endpoints("web1-lb", [("198.18.1.10", "k8s-worker1", ready[0])])
        + "---\n"
        + endpoints("web2", [("198.18.1.11", "k8s-worker1", ready[1])])
    )
    status = {**SEED_STATUS, "default/web2": "203.0.113.1"}
    return plan_node(state(files, status), "k8s-worker1")


def test_an_aggregated_advertisement_announces_one_covering_prefix() -> None:
    plan = aggregated((True, True))
    (peer,) = plan.peers
    prefix = ipaddress.ip_network("203.0.113.0/24")
    assert peer.routes == ((prefix, RouteAttributes(local_pref=150)),)
    assert [str(a) for a in peer.carried_by(prefix)] == ["203.0.113.0", "203.0.113.1"]
    assert plan.aggregates == (prefix,)
    assert plan.problems == ()
    # Still forwarded one by one.
    assert sorted(str(v) for s in plan.services for v in s.vips) == ["203.0.113.0", "203.0.113.1"]


def test_an_aggregate_stays_while_one_service_inside_is_servable_and_goes_after() -> None:
    (peer,) = aggregated((False, True)).peers
    assert [str(a) for a in peer.carried_by(peer.routes[0][0])] == ["203.0.113.1"]
    plan = aggregated((False, False))
    assert plan.peers[0].routes == () and plan.aggregates == ()


def test_aggregation_lengths_belong_to_service_advertisements() -> None:
    files = seed_files()
    files["adv.yaml"] = (
        "apiVersion: herald.io/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: pods}\n"
        "spec: {advertisements: [{advertisementType: PodCIDR, aggregationLength: 16}]}\n"
        "---\napiVersion: herald.io/v1alpha1\nkind: BGPAdvertisement\nmetadata: {name: long}\n"
        "spec: {advertisements: [{advertisementType: Service, aggregationLength: 33}]}\n"
    )
    with pytest.raises(ManifestError) as caught:
        state(files, SEED_STATUS)
    text = str(caught.value)
    assert "adv.yaml:1: spec.advertisements[0]" in text and "Service only" in text
    assert "adv.yaml:2: spec.advertisements[0].aggregationLength" in text
