"""The controller process: wait for leadership, then reconcile every snapshot."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence

from herald.api.core import Service, ServiceStatus
from herald.api.pool import LoadBalancerIPPool, PoolStatus
from herald.controller.reconcile import IPAMReconciler
from herald.ipam import Allocation, PoolUsage
from herald.sources.base import Source
from herald.sources.files import object_key

log = logging.getLogger(__name__)


def rfc3339(now: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))


# A status write that fails (a full disk, a read-only remount) is tried again after this long,
# doubling up to RETRY_MAX_SECONDS.
RETRY_SECONDS = 1.0
RETRY_MAX_SECONDS = 30.0


# Told every IPAM decision (metrics).
Observer = Callable[[Mapping[str, Allocation], Sequence[PoolUsage]], None]


async def run_controller(
    source: Source,
    identity: str,
    retry_seconds: float = RETRY_SECONDS,
    observe: Observer | None = None,
) -> None:
    async with source.leadership(identity):
        reconciler = IPAMReconciler()
        written: tuple[object, dict[str, PoolStatus], object] = ({}, {}, {})
        async for snapshot in source.snapshots():
            start = time.perf_counter()
            allocations, usage = reconciler.reconcile(snapshot)
            if observe is not None:
                observe(allocations, usage)
            now = rfc3339(time.time())
            services, pools = reconciler.statuses(allocations, usage, snapshot, written[1], now)
            objects: list[Service | LoadBalancerIPPool] = [*snapshot.services, *snapshot.pools]
            first_seen = {
                object_key(obj): obj.metadata.creation_timestamp or now for obj in objects
            }
            if (services, pools, first_seen) == written:
                continue
            await _write_until_done(source, services, pools, first_seen, retry_seconds)
            written = (services, pools, first_seen)
            satisfied = sum(1 for a in allocations.values() if a.satisfied)
            log.info(
                "event=status_written services=%d satisfied=%d pools=%d ms=%.1f",
                len(services),
                satisfied,
                len(pools),
                (time.perf_counter() - start) * 1000,
            )


async def _write_until_done(
    source: Source,
    services: Mapping[str, ServiceStatus],
    pools: Mapping[str, PoolStatus],
    first_seen: Mapping[str, str],
    retry_seconds: float,
) -> None:
    """Writes the status, retrying while the write fails: what is held stays held (agents
    keep serving the last status written), and the controller lives to write once it can.
    Newer snapshots wait meanwhile; the source coalesces them into the latest."""
    delay = retry_seconds
    while True:
        try:
            await source.write_status(services, pools, first_seen)
            return
        except OSError as err:
            log.error(
                "event=status_unwritten error=%r retry_in_s=%.1f "
                "hint='free space or make the state file writable; nothing is lost meanwhile'",
                str(err),
                delay,
            )
        await asyncio.sleep(delay)
        delay = min(delay * 2, RETRY_MAX_SECONDS)
