"""Keeping LB-IPAM in step with snapshots (no I/O, time passed in).

A change to Services is applied incrementally; a change to pools rebuilds the allocator,
restoring every address still held first, exactly as a restart does, so a pool edit can
only move the addresses it made invalid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

from herald.api.base import Condition
from herald.api.core import ServiceStatus
from herald.api.pool import PoolStatus
from herald.api.snapshot import ClusterState
from herald.ipam import Allocation, Allocator, PoolUsage, ServiceRequest, requests_from_services
from herald.ipam.request import to_address
from herald.ipam.status import pool_conditions, service_status


class IPAMReconciler:
    def __init__(self) -> None:
        self._allocator: Allocator | None = None
        self._pools_seen: tuple[str, ...] | None = None
        # Requests as last applied, without `current` (status echoes of our own writes).
        self._requests: dict[str, ServiceRequest] = {}

    def reconcile(self, state: ClusterState) -> tuple[Mapping[str, Allocation], list[PoolUsage]]:
        requests = {r.key: r for r in requests_from_services(state.services)}
        pools_seen = tuple(
            pool.model_dump_json(include={"metadata": {"name", "creation_timestamp"}, "spec": True})
            for pool in sorted(state.pools, key=lambda p: p.metadata.name)
        )
        if self._allocator is None or pools_seen != self._pools_seen:
            held = self._allocator.allocations() if self._allocator is not None else {}
            allocator = Allocator(state.pools)
            allocator.add_all(
                dataclasses.replace(
                    request,
                    current=tuple(map(to_address, held[key].ips))
                    if key in held
                    else request.current,
                )
                for key, request in requests.items()
            )
            self._allocator, self._pools_seen = allocator, pools_seen
        else:
            for key in sorted(self._requests.keys() - requests.keys()):
                self._allocator.remove(key)
            # Known Services first, new ones after (oldest first): a new Service that may
            # share an address must meet its partners' current requests, not stale ones.
            changed = [
                request
                for key, request in requests.items()
                if self._requests.get(key) != dataclasses.replace(request, current=())
            ]
            changed.sort(key=lambda r: (r.key not in self._requests, r.order))
            for request in changed:
                self._allocator.upsert(request)
        self._requests = {k: dataclasses.replace(r, current=()) for k, r in requests.items()}
        return self._allocator.allocations(), self._allocator.pool_usage()


def statuses(
    allocations: Mapping[str, Allocation],
    usage: list[PoolUsage],
    previous: ClusterState,
    previous_pools: Mapping[str, PoolStatus],
    now: str,
) -> tuple[dict[str, ServiceStatus], dict[str, PoolStatus]]:
    """Status objects to write; a condition keeps its transition time while it holds, so
    writing the same decisions twice writes the same bytes."""
    old = {svc.key: svc.status for svc in previous.services}
    services = {}
    for key, allocation in allocations.items():
        status = service_status(allocation, now)
        before = old.get(key)
        if before is not None:
            status = status.model_copy(
                update={"conditions": _keep_times(status.conditions, before.conditions)}
            )
        services[key] = status
    pools = {}
    for u in usage:
        conditions = pool_conditions(u, now)
        before_pool = previous_pools.get(u.name)
        if before_pool is not None:
            conditions = _keep_times(conditions, before_pool.conditions)
        pools[u.name] = PoolStatus(conditions=conditions)
    return services, pools


def _keep_times(new: tuple[Condition, ...], old: tuple[Condition, ...]) -> tuple[Condition, ...]:
    previous = {c.type: c for c in old}
    kept = []
    for condition in new:
        before = previous.get(condition.type)
        if before is not None and (before.status, before.reason) == (
            condition.status,
            condition.reason,
        ):
            condition = condition.model_copy(
                update={"last_transition_time": before.last_transition_time}
            )
        kept.append(condition)
    return tuple(kept)
