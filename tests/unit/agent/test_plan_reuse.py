"""plan_node reuses what it derived from a Service and its EndpointSlices while they are the
same objects: a new snapshot that changes one of them must still be planned from it."""

from __future__ import annotations

import dataclasses

from herald.agent import plan as plan_module
from herald.agent.plan import plan_node
from herald.api.bgp import BGPAdvertisement, BGPClusterConfig, BGPPeerConfig
from herald.api.core import EndpointSlice, Node, Service
from herald.api.snapshot import ClusterState


def service(name: str, policy: str = "Cluster") -> Service:
    return Service.model_validate(
        {
            "metadata": {"name": name, "namespace": "default"},
            "spec": {
                "type": "LoadBalancer",
                "externalTrafficPolicy": policy,
                "ports": [{"port": 80, "targetPort": 8080}],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": f"203.0.113.{len(name)}"}]}},
        }
    )


def slice_of(name: str, ready: list[bool]) -> EndpointSlice:
    return EndpointSlice.model_validate(
        {
            "metadata": {
                "name": f"{name}-1",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": name},
            },
            "addressType": "IPv4",
            "ports": [{"port": 8080}],
            "endpoints": [
                {
                    "addresses": [f"198.18.0.{i + 1}"],
                    "nodeName": f"n{i % 2}",
                    "conditions": {"ready": r},
                }
                for i, r in enumerate(ready)
            ],
        }
    )


def cluster(services: tuple[Service, ...], slices: tuple[EndpointSlice, ...]) -> ClusterState:
    peers = [
        {"name": f"r{p}", "peerAddress": f"192.0.2.{p + 1}", "peerASN": 64512} for p in range(2)
    ]
    for peer in peers:
        peer["peerConfigRef"] = {"name": "p"}
    return ClusterState(
        services=services,
        endpoint_slices=slices,
        nodes=tuple(
            Node.model_validate(
                {
                    "metadata": {"name": f"n{i}"},
                    "status": {
                        "addresses": [{"type": "InternalIP", "address": f"192.0.2.{10 + i}"}]
                    },
                }
            )
            for i in range(2)
        ),
        bgp_cluster_configs=(
            BGPClusterConfig.model_validate(
                {
                    "metadata": {"name": "c"},
                    "spec": {"bgpInstances": [{"name": "i", "localASN": 64512, "peers": peers}]},
                }
            ),
        ),
        bgp_peer_configs=(
            BGPPeerConfig.model_validate(
                {
                    "metadata": {"name": "p"},
                    "spec": {
                        "families": [
                            {
                                "afi": "ipv4",
                                "safi": "unicast",
                                "advertisements": {"matchLabels": {"a": "b"}},
                            }
                        ]
                    },
                }
            ),
        ),
        bgp_advertisements=(
            BGPAdvertisement.model_validate(
                {
                    "metadata": {"name": "s", "labels": {"a": "b"}},
                    "spec": {"advertisements": [{"advertisementType": "Service"}]},
                }
            ),
        ),
    )


def from_scratch(state: ClusterState, node: str) -> plan_module.NodePlan:
    plan_module._derived.clear()
    return plan_node(state, node, memory=plan_module.PlanMemory())


def test_a_replaced_endpoint_slice_is_planned_from_the_new_one() -> None:
    web, api = service("web"), service("api-server", policy="Local")
    before = cluster(
        (web, api), (slice_of("web", [True, True]), slice_of("api-server", [True, True]))
    )
    first = plan_node(before, "n0")
    assert [len(s.backends) for s in first.services] == [2, 2]
    assert all(len(p.routes) == 2 for p in first.peers)
    # The same Service objects; api-server's slice now has no ready endpoint on n0.
    after = dataclasses.replace(
        before, endpoint_slices=(before.endpoint_slices[0], slice_of("api-server", [False, True]))
    )
    second = plan_node(after, "n0")
    assert second == from_scratch(after, "n0")
    assert [[b.ready for b in s.backends] for s in second.services] == [[False, True], [True, True]]
    # Local policy, no ready endpoint on n0 any more: its route is withdrawn by both peers.
    assert all(len(p.routes) == 1 for p in second.peers)
    # The other node still has one, and plans from the same remembered Service.
    assert all(len(p.routes) == 2 for p in plan_node(after, "n1").peers)


def test_a_replanned_snapshot_gives_the_same_plan_and_forgets_deleted_services() -> None:
    web, api = service("web"), service("api-server")
    state = cluster((web, api), (slice_of("web", [True]), slice_of("api-server", [True])))
    assert plan_node(state, "n0") == plan_node(dataclasses.replace(state), "n0")
    assert plan_node(state, "n0") == from_scratch(state, "n0")
    smaller = dataclasses.replace(state, services=(web,), endpoint_slices=state.endpoint_slices[:1])
    memory = plan_module.PlanMemory()
    plan_node(state, "n0", memory=memory)
    assert set(plan_module._derived) == {"default/web", "default/api-server"}
    # A following plan and a plan from nothing: neither keeps what was derived for the
    # deleted Service.
    assert [s.key for s in plan_node(smaller, "n0", memory=memory).services] == ["default/web"]
    assert set(plan_module._derived) == {"default/web"}
    plan_node(state, "n1", memory=memory)
    assert [s.key for s in plan_node(smaller, "n1").services] == ["default/web"]
    assert set(plan_module._derived) == {"default/web"}
