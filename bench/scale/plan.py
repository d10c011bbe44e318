"""The node plan and the controller at cluster scale, in pure code (no lab, no root).

A synthetic snapshot: N nodes, S LoadBalancer Services of one port with B backends each
(spread over the nodes, one EndpointSlice per Service), every Service's address already in
its status, one BGPClusterConfig giving every node P peers, one advertisement of every
LoadBalancerIP. Measured:
  1. `plan_node` for one node on the full snapshot as an agent that just started computes
     it (nothing remembered from earlier plans; a fresh snapshot object, so its indexes are
     built inside the time), with the collector as is and with the snapshot frozen out of
     its view (gc.freeze); median over --sample nodes. In a cluster each agent plans its own
     node, in parallel; one process planning every node in turn is the first plan plus
     N - 1 plans of another node of the same snapshot;
  2. one change at that size: one Service loses a backend (its EndpointSlice replaced in a
     new snapshot that hands every other object on, as the Kubernetes source does), and
     the node that planned the snapshot before plans again (from the PlanMemory plan_node
     keeps for it: the plan follows the changed objects only); and the same for one
     Service edited (a label added);
  3. the controller: IPAMReconciler.reconcile + statuses on the full snapshot as at a start
     (every address restored from status), then one change (one Service edited);
  4. memory: the snapshot (tracemalloc), one plan's peak (tracemalloc), process RSS.
Times are CPU time of this process (the machine these ran on is shared).
Growth: the same at the --grid sizes.

    .venv/bin/python bench/scale/plan.py --json bench/results/scale.json

Targets (issue #14): every node planned in < 5 s; one change < 10 ms per node.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import os
import resource
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for stamp

from herald import facts
from herald.agent import plan as plan_module
from herald.agent.plan import plan_node
from herald.api.bgp import BGPAdvertisement, BGPClusterConfig, BGPPeerConfig
from herald.api.core import EndpointSlice, Node, Service
from herald.api.pool import LoadBalancerIPPool
from herald.api.snapshot import ClusterState
from herald.controller.reconcile import IPAMReconciler
from stamp import publish, stamp

NOW = "2026-12-03T00:00:00Z"


def node_name(index: int) -> str:
    return f"node-{index:04}"


def node(index: int) -> Node:
    return Node.model_validate(
        {
            "metadata": {"name": node_name(index), "labels": {"kubernetes.io/hostname": "x"}},
            "spec": {"podCIDR": f"10.{128 + index // 256}.{index % 256}.0/24"},
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": f"10.0.{index // 250}.{index % 250 + 1}"}
                ]
            },
        }
    )


def vip(index: int) -> str:
    return f"198.18.{index // 250}.{index % 250 + 1}"


def service(index: int) -> Service:
    return Service.model_validate(
        {
            "metadata": {"name": f"svc{index}", "namespace": f"ns{index % 100}"},
            "spec": {
                "type": "LoadBalancer",
                "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
            },
            "status": {"loadBalancer": {"ingress": [{"ip": vip(index)}]}},
        }
    )


def endpoint_slice(
    index: int, nodes: int, backends: int, ready: int | None = None
) -> EndpointSlice:
    endpoints = []
    for b in range(backends):
        address = index * backends + b
        endpoints.append(
            {
                "addresses": [
                    f"10.{64 + address // 62500}.{address // 250 % 250}.{address % 250 + 1}"
                ],
                "nodeName": node_name((index + b * 7) % nodes),
                "conditions": {"ready": ready is None or b < ready},
            }
        )
    return EndpointSlice.model_validate(
        {
            "metadata": {
                "name": f"svc{index}-1",
                "namespace": f"ns{index % 100}",
                "labels": {"kubernetes.io/service-name": f"svc{index}"},
            },
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080}],
            "endpoints": endpoints,
        }
    )


def bgp(peers: int) -> tuple[BGPClusterConfig, BGPPeerConfig, BGPAdvertisement]:
    cluster = BGPClusterConfig.model_validate(
        {
            "metadata": {"name": "scale"},
            "spec": {
                "bgpInstances": [
                    {
                        "name": "instance-64512",
                        "localASN": 64512,
                        "peers": [
                            {
                                "name": f"tor{p}",
                                "peerAddress": f"192.0.2.{p + 1}",
                                "peerASN": 64512,
                                "peerConfigRef": {"name": "scale-peer"},
                            }
                            for p in range(peers)
                        ],
                    }
                ]
            },
        }
    )
    peer = BGPPeerConfig.model_validate(
        {
            "metadata": {"name": "scale-peer"},
            "spec": {
                "families": [
                    {
                        "afi": "ipv4",
                        "safi": "unicast",
                        "advertisements": {"matchLabels": {"a": "s"}},
                    }
                ]
            },
        }
    )
    advertisement = BGPAdvertisement.model_validate(
        {
            "metadata": {"name": "scale-services", "labels": {"a": "s"}},
            "spec": {
                "advertisements": [
                    {"advertisementType": "Service", "service": {"addresses": ["LoadBalancerIP"]}}
                ]
            },
        }
    )
    return cluster, peer, advertisement


def snapshot(nodes: int, services: int, peers: int, backends: int) -> ClusterState:
    cluster, peer, advertisement = bgp(peers)
    pool = LoadBalancerIPPool.model_validate(
        {"metadata": {"name": "scale-pool"}, "spec": {"blocks": [{"cidr": "198.18.0.0/15"}]}}
    )
    return ClusterState(
        services=tuple(service(i) for i in range(services)),
        endpoint_slices=tuple(endpoint_slice(i, nodes, backends) for i in range(services)),
        nodes=tuple(node(i) for i in range(nodes)),
        pools=(pool,),
        bgp_cluster_configs=(cluster,),
        bgp_peer_configs=(peer,),
        bgp_advertisements=(advertisement,),
    )


def one_endpoint_gone(state: ClusterState, nodes: int, backends: int) -> ClusterState:
    """A new snapshot in which Service 0 has one backend not ready; every other object is
    the same instance, as a watch-fed source hands them on."""
    slices = (endpoint_slice(0, nodes, backends, ready=backends - 1), *state.endpoint_slices[1:])
    return dataclasses.replace(state, endpoint_slices=slices)


def one_service_edited(state: ClusterState) -> ClusterState:
    """A new snapshot in which Service 0 has a new label; every other object handed on."""
    svc = state.services[0]
    edited = svc.model_copy(
        update={"metadata": svc.metadata.model_copy(update={"labels": {"x": "y"}})}
    )
    return dataclasses.replace(state, services=(edited, *state.services[1:]))


def timed(action: Callable[[], object]) -> float:
    """CPU milliseconds of `action`: on a shared machine, steadier than wall time."""
    start = time.process_time()
    action()
    return (time.process_time() - start) * 1000


def fresh(state: ClusterState) -> ClusterState:
    # A new object: the cached per-snapshot indexes are rebuilt, as in each agent.
    return dataclasses.replace(state)


def forget() -> None:
    """Empty what plans remember between snapshots, as in an agent that just started."""
    plan_module._memories.clear()
    plan_module._derived.clear()
    plan_module._covering.cache_clear()
    facts.parse_address.cache_clear()


def cold(state: ClusterState, node: str) -> float:
    forget()
    return timed(lambda: plan_node(fresh(state), node))


def plans(state: ClusterState, nodes: int, sample: int, backends: int) -> dict[str, Any]:
    chosen = [node_name(i * nodes // sample) for i in range(sample)]
    start = [cold(state, n) for n in chosen]
    # The agent holds the snapshot for long: with it moved out of the collector's view, the
    # plan's allocations stop triggering full collections that walk the whole snapshot.
    gc.freeze()
    start_frozen = [cold(state, n) for n in chosen]
    gc.unfreeze()
    # One process planning node after node of one snapshot (explain, a simulation).
    forget()
    plan = plan_node(fresh(state), chosen[0])
    next_node = [timed(lambda n=n: plan_node(fresh(state), n)) for n in chosen[1:]]  # type: ignore[misc]
    changed = one_endpoint_gone(state, nodes, backends)
    change = []
    for n in chosen:
        plan_node(fresh(state), n)  # the plan before the change, as the agent made it
        change.append(timed(lambda n=n: plan_node(fresh(changed), n)))  # type: ignore[misc]
    gc.freeze()
    change_frozen = []
    for n in chosen:
        plan_node(fresh(state), n)
        change_frozen.append(timed(lambda n=n: plan_node(fresh(changed), n)))  # type: ignore[misc]
    edited = one_service_edited(state)
    edit = []
    for n in chosen:
        plan_node(fresh(state), n)
        edit.append(timed(lambda n=n: plan_node(fresh(edited), n)))  # type: ignore[misc]
    gc.unfreeze()
    per_node = statistics.median(next_node) if next_node else statistics.median(start)
    return {
        "plan_ms_start_median": round(statistics.median(start), 1),
        "plan_ms_start_max": round(max(start), 1),
        "plan_ms_start_gc_frozen_median": round(statistics.median(start_frozen), 1),
        "plan_ms_next_node_median": round(per_node, 1),
        "all_nodes_s_one_process": round(
            (statistics.median(start) + per_node * (nodes - 1)) / 1000, 1
        ),
        "one_change_ms_median": round(statistics.median(change), 1),
        "one_change_ms_max": round(max(change), 1),
        "one_change_ms_gc_frozen_median": round(statistics.median(change_frozen), 1),
        "one_service_edit_ms_gc_frozen_median": round(statistics.median(edit), 1),
        "sampled_nodes": sample,
        "plan_services": len(plan.services),
        "plan_routes_per_peer": len(plan.peers[0].routes) if plan.peers else 0,
        "plan_problems": len(plan.problems),
    }


def controller(state: ClusterState) -> dict[str, Any]:
    """The controller as it runs: its start, the snapshot that echoes the statuses it wrote
    (as a source delivers them), then one Service edited in a snapshot that hands every
    other object on (as the Kubernetes source does)."""
    reconciler = IPAMReconciler()
    written: dict[str, Any] = {}

    def start() -> None:
        allocations, usage = reconciler.reconcile(state)
        written.update(reconciler.statuses(allocations, usage, state, {}, NOW)[0])

    start_ms = timed(start)
    echo = dataclasses.replace(
        state,
        services=tuple(s.model_copy(update={"status": written[s.key]}) for s in state.services),
    )
    allocations, usage = reconciler.reconcile(echo)
    reconciler.statuses(allocations, usage, echo, {}, NOW)
    edited = echo.services[0].model_copy(
        update={"metadata": echo.services[0].metadata.model_copy(update={"labels": {"x": "y"}})}
    )
    changed = dataclasses.replace(echo, services=(edited, *echo.services[1:]))

    def change() -> None:
        allocations, usage = reconciler.reconcile(changed)
        reconciler.statuses(allocations, usage, changed, {}, NOW)

    return {"start_ms": round(start_ms, 1), "one_change_ms": round(timed(change), 1)}


def memory(state_builder: Callable[[], ClusterState], node: str) -> dict[str, Any]:
    gc.collect()
    tracemalloc.start()
    state = state_builder()
    snapshot_mib = tracemalloc.get_traced_memory()[0] / 2**20
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    forget()
    plan_node(state, node)
    plan_peak_mib = (tracemalloc.get_traced_memory()[1] - base) / 2**20
    tracemalloc.stop()
    return {"snapshot_mib": round(snapshot_mib, 1), "plan_peak_mib": round(plan_peak_mib, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--services", type=int, default=10000)
    parser.add_argument("--peers", type=int, default=4)
    parser.add_argument("--backends", type=int, default=10)
    parser.add_argument("--sample", type=int, default=5, help="nodes timed per size")
    parser.add_argument(
        "--grid",
        default="100x1000,100x10000,1000x1000",
        help="more NODESxSERVICES sizes for the growth table",
    )
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    sizes = [(args.nodes, args.services)]
    sizes += [tuple(map(int, s.split("x"))) for s in args.grid.split(",") if s]  # type: ignore[misc]
    rows = []
    for nodes, services in sizes:
        start = time.perf_counter()
        state = snapshot(nodes, services, args.peers, args.backends)
        built_s = time.perf_counter() - start
        row: dict[str, Any] = {
            "nodes": nodes,
            "services": services,
            "snapshot_build_s": round(built_s, 1),
        }
        row.update(plans(state, nodes, args.sample, args.backends))
        row["controller"] = controller(state)
        if (nodes, services) == sizes[0]:
            row["memory"] = memory(
                lambda n=nodes, s=services: snapshot(n, s, args.peers, args.backends),  # type: ignore[misc]
                node_name(0),
            )
        rows.append(row)
        print(row, file=sys.stderr)
        del state
        gc.collect()
    publish(
        {
            **stamp("scale-plan"),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "peers": args.peers,
            "backends_per_service": args.backends,
            "max_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "results": rows,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
