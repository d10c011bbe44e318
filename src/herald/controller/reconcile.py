"""Keeping LB-IPAM in step with snapshots (no I/O, time passed in).

A change to Services is applied incrementally; a change to pools rebuilds the allocator,
restoring every address still held first, exactly as a restart does, so a pool edit can
only move the addresses it made invalid.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping

from herald.api.base import Condition
from herald.api.core import Service, ServiceStatus
from herald.api.pool import PoolStatus
from herald.api.snapshot import ClusterState
from herald.facts import is_handled
from herald.ipam import Allocation, Allocator, PoolUsage, ServiceRequest
from herald.ipam.request import request_for, to_address
from herald.ipam.status import pool_conditions, service_status


class IPAMReconciler:
    def __init__(self) -> None:
        self._allocator: Allocator | None = None
        self._pools_seen: tuple[str, ...] | None = None
        # Requests as last applied, without `current` (status echoes of our own writes).
        self._requests: dict[str, ServiceRequest] = {}
        # The requests of the last snapshot, and per Service key the Service object read
        # and its request (None: not herald's): a snapshot that hands unchanged Services on
        # (the Kubernetes source does) costs a lookup per Service, not a reading.
        self._last: dict[str, ServiceRequest] = {}
        self._read: dict[str, tuple[Service, ServiceRequest | None]] = {}
        # Per Service key: the allocation, the status the snapshot had and the one written,
        # while they agree (see `statuses`).
        self._settled: dict[str, tuple[Allocation, ServiceStatus]] = {}

    def _requests_of(self, services: Iterable[Service]) -> dict[str, ServiceRequest]:
        read = self._read
        fresh: dict[str, tuple[Service, ServiceRequest | None]] = {}
        requests = {}
        for service in services:
            key = service.key
            known = read.get(key)
            if known is None or known[0] is not service:
                known = (service, request_for(service) if is_handled(service) else None)
            fresh[key] = known
            if known[1] is not None:
                requests[known[1].key] = known[1]
        self._read = fresh
        return requests

    def reconcile(self, state: ClusterState) -> tuple[Mapping[str, Allocation], list[PoolUsage]]:
        requests = self._requests_of(state.services)
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
            last = self._last
            changed = [
                request
                for key, request in requests.items()
                if last.get(key) is not request
                and self._requests.get(key) != dataclasses.replace(request, current=())
            ]
            changed.sort(key=lambda r: (r.key not in self._requests, r.order))
            for request in changed:
                self._allocator.upsert(request)
            for key in self._requests.keys() - requests.keys():
                del self._requests[key]
            self._requests.update((r.key, dataclasses.replace(r, current=())) for r in changed)
            self._last = requests
            return self._allocator.allocations(), self._allocator.pool_usage()
        self._requests = {k: dataclasses.replace(r, current=()) for k, r in requests.items()}
        self._last = requests
        return self._allocator.allocations(), self._allocator.pool_usage()

    def statuses(
        self,
        allocations: Mapping[str, Allocation],
        usage: list[PoolUsage],
        previous: ClusterState,
        previous_pools: Mapping[str, PoolStatus],
        now: str,
    ) -> tuple[dict[str, ServiceStatus], dict[str, PoolStatus]]:
        """`statuses`, reusing each status that the snapshot already holds for an
        allocation that did not change: at 10,000 Services, building every status object
        again was most of a one-Service change."""
        return statuses(allocations, usage, previous, previous_pools, now, self._settled)


def statuses(
    allocations: Mapping[str, Allocation],
    usage: list[PoolUsage],
    previous: ClusterState,
    previous_pools: Mapping[str, PoolStatus],
    now: str,
    settled: dict[str, tuple[Allocation, ServiceStatus]] | None = None,
) -> tuple[dict[str, ServiceStatus], dict[str, PoolStatus]]:
    """Status objects to write; a condition keeps its transition time while it holds, so
    writing the same decisions twice writes the same bytes.

    `settled` (kept by the caller between calls) remembers the Services whose status the
    snapshot already held: while the allocation and the snapshot's status are the same
    objects, that status is the answer again (it does not depend on `now`: every
    condition kept its time). A status equal to the snapshot's is the snapshot's object."""
    old = {svc.key: svc.status for svc in previous.services}
    memo = settled if settled is not None else {}
    services = {}
    for key, allocation in allocations.items():
        before = old.get(key)
        known = memo.get(key)
        if known is not None and known[0] is allocation and known[1] is before:
            services[key] = before
            continue
        memo.pop(key, None)
        status = service_status(allocation, now)
        if before is not None:
            status = status.model_copy(
                update={"conditions": _keep_times(status.conditions, before.conditions)}
            )
            if status == before:
                status = before
                memo[key] = (allocation, before)
        services[key] = status
    for key in memo.keys() - allocations.keys():
        del memo[key]
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
