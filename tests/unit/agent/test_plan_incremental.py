"""The incremental plan is the plan: after any sequence of changes, a node that plans each new
snapshot with its PlanMemory gets exactly what a plan from nothing gives for that snapshot.

The snapshots change as a watch-fed source changes them: objects that did not change are
handed on (the same instances), a changed object is a new instance (sometimes with the same
content), and objects come and go. Every kind of object the plan reads is changed."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from herald.agent import plan as plan_module
from herald.agent.plan import NodePlan, PlanMemory, plan_node
from herald.api.base import Condition
from herald.api.bfd import BFDProfile
from herald.api.bgp import BGPAdvertisement, BGPClusterConfig, BGPPeerConfig
from herald.api.core import EndpointSlice, Node, Secret, Service
from herald.api.l2 import L2AnnouncementPolicy
from herald.api.pool import LoadBalancerIPPool
from herald.api.snapshot import ClusterState
from herald.dataplane.model import ForwardingMode

from . import test_plan_reuse as reuse

FIXED = settings(derandomize=True, max_examples=120, deadline=None)
NODES = ("n0", "n1", "n2")
SERVICES = tuple(f"s{i}" for i in range(7))
# Shared and aggregated addresses: two Services on one VIP, several VIPs in one /24.
VIPS = (
    "203.0.113.1",
    "203.0.113.2",
    "203.0.113.130",
    "198.51.100.7",
    "2001:db8::1",
    "2001:db8::2",
)
BACKENDS = ("10.1.0.1", "10.1.0.2", "10.1.0.3", "fd00::5")
LABELS = st.sampled_from(({}, {"tier": "web"}, {"tier": "db"}))


def selector(draw: st.DrawFn, key: str, values: tuple[str, ...]) -> dict[str, Any] | None:
    value = draw(st.sampled_from((None, *values)))
    return None if value is None else {"matchLabels": {key: value}}


@st.composite
def services(draw: st.DrawFn, name: str) -> Service:
    ports = draw(
        st.lists(
            st.sampled_from(
                (
                    {"name": "http", "port": 80, "targetPort": 8080},
                    {"name": "http", "port": 80, "targetPort": "http"},
                    {"name": "admin", "port": 81, "targetPort": "admin"},
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                )
            ),
            min_size=1,
            max_size=2,
            unique_by=lambda p: p["name"],
        )
    )
    annotations = draw(
        st.sampled_from(
            ({}, {"herald.io/forwarding-mode": "dsr"}, {"herald.io/icmp-echo": "false"})
        )
    )
    return Service.model_validate(
        {
            "metadata": {
                "name": name,
                "namespace": "default",
                "labels": draw(LABELS),
                "annotations": annotations,
            },
            "spec": {
                "type": draw(st.sampled_from(("LoadBalancer",) * 4 + ("ClusterIP",))),
                "loadBalancerClass": draw(
                    st.sampled_from(
                        (None, None, None, "herald.io/bgp", "herald.io/l2", "other.io/x")
                    )
                ),
                "externalTrafficPolicy": draw(st.sampled_from(("Cluster", "Local"))),
                "ports": ports,
                "externalIPs": draw(st.lists(st.sampled_from(VIPS), max_size=1)),
                "clusterIP": "10.96.0.10",
            },
            "status": {
                "loadBalancer": {
                    "ingress": [
                        {"ip": ip}
                        for ip in draw(
                            st.lists(st.sampled_from(VIPS), min_size=1, max_size=2, unique=True)
                            | st.just([])
                        )
                    ]
                }
            },
        }
    )


@st.composite
def slices(draw: st.DrawFn, service: str, index: int) -> EndpointSlice:
    family = draw(st.sampled_from(("IPv4", "IPv6")))
    addresses = [a for a in BACKENDS if (":" in a) == (family == "IPv6")]
    endpoints = [
        {
            "addresses": [draw(st.sampled_from(addresses))],
            "nodeName": draw(st.sampled_from((*NODES, None))),
            "conditions": {
                "ready": draw(st.sampled_from((True, True, False, None))),
                "serving": draw(st.sampled_from((True, None))),
                "terminating": draw(st.booleans()),
            },
        }
        for _ in range(draw(st.sampled_from((1, 2, 3, 0))))
    ]
    return EndpointSlice.model_validate(
        {
            "metadata": {
                "name": f"{service}-{index}",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": service},
            },
            "addressType": family,
            "ports": draw(
                st.sampled_from(
                    (
                        [{"name": "http", "port": 8080}],
                        [{"name": "http", "port": 9090}, {"name": "admin", "port": 9091}],
                        [],
                    )
                )
            ),
            "endpoints": endpoints,
        }
    )


@st.composite
def nodes(draw: st.DrawFn, name: str) -> Node:
    addresses = [{"type": "InternalIP", "address": f"192.0.2.{10 + NODES.index(name)}"}]
    if draw(st.booleans()):
        addresses.append({"type": "InternalIP", "address": f"2001:db8:1::{NODES.index(name)}"})
    if draw(st.integers(0, 5)) == 0:
        addresses = []
    return Node.model_validate(
        {
            "metadata": {"name": name, "labels": {"rack": draw(st.sampled_from(("a", "b")))}},
            "spec": {"podCIDR": f"10.244.{NODES.index(name)}.0/24"},
            "status": {"addresses": addresses},
        }
    )


@st.composite
def cluster_configs(draw: st.DrawFn) -> tuple[BGPClusterConfig, ...]:
    configs = []
    for c in range(draw(st.sampled_from((1, 1, 2, 0)))):
        instances = []
        for i in range(draw(st.integers(1, 2))):
            addresses = draw(
                st.lists(
                    st.sampled_from(("192.0.2.1", "192.0.2.2", "2001:db8::ff")),
                    unique=True,
                    min_size=1,
                    max_size=3,
                )
            )
            peers = [
                {
                    "name": f"r{p}",
                    "peerAddress": address,
                    "peerASN": 64512,
                    **(
                        {"peerConfigRef": {"name": ref}}
                        if (ref := draw(st.sampled_from((None, "p1", "p2", "p1", "p9"))))
                        else {}
                    ),
                }
                for p, address in enumerate(addresses)
            ]
            instance: dict[str, Any] = {"name": f"i{i}", "localASN": 64512 + i, "peers": peers}
            if draw(st.booleans()):
                instance["routerID"] = "10.0.0.1"
            instances.append(instance)
        configs.append(
            BGPClusterConfig.model_validate(
                {
                    "metadata": {"name": f"c{c}"},
                    "spec": {
                        "nodeSelector": selector(draw, "rack", ("a",)),
                        "bgpInstances": instances,
                    },
                }
            )
        )
    return tuple(configs)


@st.composite
def peer_configs(draw: st.DrawFn) -> tuple[BGPPeerConfig, ...]:
    configs = []
    for name in ("p1", "p2"):
        families = [
            {
                "afi": afi,
                "safi": "unicast",
                "advertisements": draw(
                    st.sampled_from(
                        (
                            {},
                            {},
                            {"matchLabels": {"adv": "x"}},
                            {"matchLabels": {"adv": "y"}},
                            None,
                        )
                    )
                ),
            }
            for afi in draw(
                st.lists(st.sampled_from(("ipv4", "ipv6")), unique=True, min_size=1, max_size=2)
            )
        ]
        spec: dict[str, Any] = {"families": families}
        if draw(st.integers(0, 3)) == 0:
            spec["authSecretRef"] = draw(st.sampled_from(("pw", "missing")))
        if draw(st.integers(0, 3)) == 0:
            spec["bfdProfileRef"] = draw(st.sampled_from(("fast", "missing")))
        configs.append(BGPPeerConfig.model_validate({"metadata": {"name": name}, "spec": spec}))
    return tuple(configs)


@st.composite
def advertisements(draw: st.DrawFn) -> tuple[BGPAdvertisement, ...]:
    found = []
    for a in range(draw(st.sampled_from((1, 2, 3, 0)))):
        entries: list[dict[str, Any]] = []
        for _ in range(draw(st.integers(1, 2))):
            if draw(st.integers(0, 4)) == 0:
                entries.append({"advertisementType": "PodCIDR"})
                continue
            entry: dict[str, Any] = {
                "advertisementType": "Service",
                "service": {
                    "addresses": draw(
                        st.lists(
                            st.sampled_from(("LoadBalancerIP", "ExternalIP", "ClusterIP")),
                            min_size=1,
                            max_size=2,
                            unique=True,
                        )
                    )
                },
                "selector": selector(draw, "tier", ("web", "db")) if draw(st.booleans()) else None,
            }
            if draw(st.sampled_from((True, True, False))):
                entry["aggregationLength"] = draw(st.sampled_from((24, 24, 32)))
                entry["aggregationLengthV6"] = draw(st.sampled_from((64, 128)))
            attributes: dict[str, Any] = {}
            if draw(st.booleans()):
                attributes["communities"] = {
                    "standard": draw(st.lists(st.sampled_from(("64512:1", "64512:2")), max_size=2)),
                    "large": draw(
                        st.lists(st.sampled_from(("64512:1:1", "64512:2:2")), max_size=1)
                    ),
                }
            if draw(st.booleans()):
                attributes["localPreference"] = draw(st.sampled_from((100, 200)))
            if draw(st.booleans()):
                attributes["med"] = draw(st.sampled_from((5, 10)))
            if attributes:
                entry["attributes"] = attributes
            entries.append(entry)
        found.append(
            BGPAdvertisement.model_validate(
                {
                    "metadata": {"name": f"a{a}", "labels": {"adv": draw(st.sampled_from("xy"))}},
                    "spec": {"advertisements": entries},
                }
            )
        )
    return tuple(found)


@st.composite
def secrets(draw: st.DrawFn) -> tuple[Secret, ...]:
    data = draw(st.sampled_from(({"stringData": {"password": "s3cret"}}, {"data": {"x": "eA=="}})))
    return (Secret.model_validate({"metadata": {"name": "pw"}, **data}),)


@st.composite
def bfd_profiles(draw: st.DrawFn) -> tuple[BFDProfile, ...]:
    spec = {"receiveInterval": draw(st.sampled_from((100, 300))), "echoMode": draw(st.booleans())}
    return (BFDProfile.model_validate({"metadata": {"name": "fast"}, "spec": spec}),)


@st.composite
def l2_policies(draw: st.DrawFn) -> tuple[L2AnnouncementPolicy, ...]:
    if draw(st.booleans()):
        return ()
    spec = {
        "nodeSelector": selector(draw, "rack", ("a",)),
        "serviceSelector": selector(draw, "tier", ("web",)),
    }
    return (L2AnnouncementPolicy.model_validate({"metadata": {"name": "l2"}, "spec": spec}),)


@st.composite
def pools(draw: st.DrawFn) -> tuple[LoadBalancerIPPool, ...]:
    cidr = draw(st.sampled_from(("203.0.113.0/24", "198.51.100.0/24")))
    return (
        LoadBalancerIPPool.model_validate(
            {"metadata": {"name": "pool"}, "spec": {"blocks": [{"cidr": cidr}]}}
        ),
    )


CLUSTER_WIDE: dict[str, st.SearchStrategy[tuple[Any, ...]]] = {
    "bgp_cluster_configs": cluster_configs(),
    "bgp_peer_configs": peer_configs(),
    "bgp_advertisements": advertisements(),
    "secrets": secrets(),
    "bfd_profiles": bfd_profiles(),
    "l2_policies": l2_policies(),
    "pools": pools(),
}


class Cluster:
    """The objects of a changing cluster, in the order a source lists them."""

    def __init__(self, draw: st.DrawFn) -> None:
        self.services: dict[str, Service] = {}
        self.slices: dict[tuple[str, int], EndpointSlice] = {}
        self.nodes = {name: draw(nodes(name)) for name in NODES}
        self.wide: dict[str, tuple[Any, ...]] = {
            kind: draw(strategy) for kind, strategy in CLUSTER_WIDE.items()
        }
        for name in draw(st.lists(st.sampled_from(SERVICES), unique=True, min_size=2, max_size=5)):
            self.services[name] = draw(services(name))
            for index in range(draw(st.sampled_from((1, 1, 2, 0)))):
                self.slices[(name, index)] = draw(slices(name, index))

    def snapshot(self) -> ClusterState:
        return ClusterState(
            services=tuple(self.services.values()),
            endpoint_slices=tuple(self.slices.values()),
            nodes=tuple(self.nodes.values()),
            **self.wide,
        )

    def change(self, draw: st.DrawFn) -> str:
        """One change, as a source would hand it on; returns what it was (for failures)."""
        what = draw(
            st.sampled_from(
                (
                    "edit service",
                    "edit service",
                    "same service, new object",
                    "remove service",
                    "edit slice",
                    "edit slice",
                    "add slice",
                    "remove slice",
                    "edit node",
                    "same node, new object",
                    "reorder",
                    *CLUSTER_WIDE,
                )
            )
        )
        name = draw(st.sampled_from(SERVICES))
        index = draw(st.integers(0, 2))
        if what == "edit service":
            self.services[name] = draw(services(name))
        elif what == "same service, new object":
            if name in self.services:
                self.services[name] = self.services[name].model_copy()
        elif what == "remove service":
            self.services.pop(name, None)
        elif what in ("edit slice", "add slice"):
            if what == "add slice" or (name, index) in self.slices:
                self.slices[(name, index)] = draw(slices(name, index))
        elif what == "remove slice":
            self.slices.pop((name, index), None)
        elif what == "edit node":
            node = draw(st.sampled_from(NODES))
            self.nodes[node] = draw(nodes(node))
        elif what == "same node, new object":
            node = draw(st.sampled_from(NODES))
            self.nodes[node] = self.nodes[node].model_copy()
        elif what == "reorder":
            self.services = dict(reversed(self.services.items()))
            if draw(st.booleans()):
                self.slices = dict(reversed(self.slices.items()))
        else:
            self.wide[what] = draw(CLUSTER_WIDE[what])
        return f"{what} {name} {index}"


def from_scratch(state: ClusterState, node: str, mode: ForwardingMode) -> NodePlan:
    plan_module._derived.clear()
    return plan_node(state, node, mode, PlanMemory())


@FIXED
@given(st.data())
def test_every_incremental_plan_equals_the_plan_from_nothing(data: st.DataObject) -> None:
    cluster = Cluster(data.draw)
    node = data.draw(st.sampled_from(NODES))
    mode = data.draw(st.sampled_from((ForwardingMode.SNAT, ForwardingMode.DSR)))
    memory = PlanMemory()
    steps = ["start"]
    for _ in range(data.draw(st.integers(1, 25))):
        state = cluster.snapshot()
        planned = plan_node(state, node, mode, memory)
        assert planned == from_scratch(state, node, mode), steps
        steps.append(cluster.change(data.draw))
    # The memory also follows a snapshot that goes back to an older one.
    first = Cluster(data.draw).snapshot()
    assert plan_node(first, node, mode, memory) == from_scratch(first, node, mode)


@settings(derandomize=True, max_examples=30, deadline=None)
@given(st.data())
def test_a_memory_follows_whichever_node_and_mode_it_is_given(data: st.DataObject) -> None:
    state = Cluster(data.draw).snapshot()
    memory = PlanMemory()
    for node, mode in (
        ("n0", ForwardingMode.SNAT),
        ("n1", ForwardingMode.SNAT),
        ("n1", ForwardingMode.DSR),
    ):
        assert plan_node(state, node, mode, memory) == from_scratch(state, node, mode)


def test_a_service_change_is_followed_and_a_cluster_wide_change_starts_again() -> None:
    """The memory is really used: a Service's change keeps the planned state (and plans only
    that Service); an advertisement's does not."""
    web, api = reuse.service("web"), reuse.service("api-server")
    state = reuse.cluster(
        (web, api), (reuse.slice_of("web", [True]), reuse.slice_of("api-server", [True]))
    )
    memory = PlanMemory()
    plan_node(state, "n0", memory=memory)
    planned = memory._planned
    edited = reuse.service("web", policy="Local")
    changed = dataclasses.replace(state, services=(edited, api))
    plan = plan_node(changed, "n0", memory=memory)
    assert memory._planned is planned
    assert plan == from_scratch(changed, "n0", ForwardingMode.SNAT)
    assert plan_module._derived["default/web"].service is edited
    # The kubelet rewrites its Node's conditions: nothing the plan reads.
    n0 = changed.nodes[0]
    beat = n0.model_copy(
        update={
            "status": n0.status.model_copy(
                update={"conditions": (Condition(type="Ready", status="True"),)}
            )
        }
    )
    assert (
        plan_node(
            dataclasses.replace(changed, nodes=(beat, *changed.nodes[1:])), "n0", memory=memory
        )
        == plan
    )
    assert memory._planned is planned
    readvertised = dataclasses.replace(
        changed, bgp_advertisements=(changed.bgp_advertisements[0].model_copy(),)
    )
    assert plan_node(readvertised, "n0", memory=memory) == plan
    assert memory._planned is not planned


def test_an_aggregate_carries_its_addresses_in_order_as_services_come_and_go() -> None:
    def web(last_octet: int) -> Service:
        return Service.model_validate(
            {
                "metadata": {"name": f"web{last_octet}", "namespace": "default"},
                "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
                "status": {"loadBalancer": {"ingress": [{"ip": f"203.0.113.{last_octet}"}]}},
            }
        )

    octets = (3, 1, 20, 2)
    every = reuse.cluster(
        tuple(map(web, octets)), tuple(reuse.slice_of(f"web{o}", [True]) for o in octets)
    )
    aggregating = BGPAdvertisement.model_validate(
        {
            "metadata": {"name": "s", "labels": {"a": "b"}},
            "spec": {"advertisements": [{"advertisementType": "Service", "aggregationLength": 24}]},
        }
    )
    every = dataclasses.replace(every, bgp_advertisements=(aggregating,))
    memory = PlanMemory()
    network = ipaddress.ip_network("203.0.113.0/24")
    for kept in ((3,), (3, 1), (3, 1, 20, 2), (1, 2), (20,), (), (2, 3)):
        state = dataclasses.replace(
            every,
            services=tuple(s for s, o in zip(every.services, octets, strict=True) if o in kept),
        )
        plan = plan_node(state, "n0", memory=memory)
        assert plan == from_scratch(state, "n0", ForwardingMode.SNAT)
        addresses = tuple(ipaddress.ip_address(f"203.0.113.{o}") for o in sorted(kept))
        for peer in plan.peers:
            assert peer.carries == (((network, addresses),) if kept else ())
            assert [route for route, _ in peer.routes] == ([network] if kept else [])
        assert plan.aggregates == ((network,) if kept else ())


def test_without_a_memory_each_node_plans_from_what_it_planned_last() -> None:
    """plan_node(state, node) as the agent calls it: its own node's memory, kept for it."""
    web = Service.model_validate(
        {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}},
        }
    )
    state = ClusterState(services=(web,))
    assert [s.key for s in plan_node(state, "n0").services] == ["default/web"]
    assert plan_node(dataclasses.replace(state, services=()), "n0").services == ()
    assert [s.key for s in plan_node(state, "n1").services] == ["default/web"]
