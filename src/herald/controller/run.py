"""The controller process: wait for leadership, then reconcile every snapshot."""

from __future__ import annotations

import logging
import time

from herald.api.core import Service
from herald.api.pool import LoadBalancerIPPool, PoolStatus
from herald.controller.reconcile import IPAMReconciler, statuses
from herald.sources.base import Source
from herald.sources.files import object_key

log = logging.getLogger(__name__)


def rfc3339(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


async def run_controller(source: Source, identity: str) -> None:
    async with source.leadership(identity):
        reconciler = IPAMReconciler()
        written: tuple[object, dict[str, PoolStatus], object] = ({}, {}, {})
        async for snapshot in source.snapshots():
            start = time.perf_counter()
            allocations, usage = reconciler.reconcile(snapshot)
            now = rfc3339(time.time())
            services, pools = statuses(allocations, usage, snapshot, written[1], now)
            objects: list[Service | LoadBalancerIPPool] = [*snapshot.services, *snapshot.pools]
            first_seen = {
                object_key(obj): obj.metadata.creation_timestamp or now for obj in objects
            }
            if (services, pools, first_seen) == written:
                continue
            await source.write_status(services, pools, first_seen)
            written = (services, pools, first_seen)
            satisfied = sum(1 for a in allocations.values() if a.satisfied)
            log.info(
                "event=status_written services=%d satisfied=%d pools=%d ms=%.1f",
                len(services),
                satisfied,
                len(pools),
                (time.perf_counter() - start) * 1000,
            )
