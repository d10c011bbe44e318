"""The Kubernetes API source: the `Source` interface over list + watch, status subresources
and a Lease.

`snapshots()` lists and watches every kind it reads (one `KindWatch` each), waits until each
has been listed once (a snapshot without the pools would make the controller take every
address back), then yields a snapshot, and a new one after every change, bursts coalesced
for at most COALESCE_MS as the files source does. A snapshot equal to the last one (a
resourceVersion bump that changed nothing herald reads, such as a Node heartbeat) is not
yielded again.

`leadership()` runs the Lease election; leaving it hands the lease back. If the lease cannot
be renewed within the renew deadline, the body of `async with leadership()` is cancelled and
`LeadershipLost` raised: the controller process exits (as client-go's controllers do) and
its restart joins the election as a standby. Every status write checks leadership first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

from lightkube import AsyncClient

from herald.api.core import ServiceStatus
from herald.api.pool import PoolStatus
from herald.api.snapshot import ClusterState
from herald.controller.leader import LeaderElection, LeaseTimings
from herald.sources.kube.cache import KindCache
from herald.sources.kube.kinds import AGENT_KINDS, DEFAULT_NAMESPACE, POOL, SERVICE, Kind
from herald.sources.kube.lease import LEASE_NAME, LeaseLock
from herald.sources.kube.snapshot import SnapshotBuilder
from herald.sources.kube.status import NotLeading, StatusWriter
from herald.sources.kube.watch import KindWatch

log = logging.getLogger(__name__)

# As the files source: bursts of changes are coalesced for at most this long.
COALESCE_MS = 10
# How often kinds not yet listed are named in the log while herald waits for them.
WAITING_LOG_SECONDS = 10.0


class LeadershipLost(Exception):
    """The Lease could not be renewed in time: this controller stopped writing."""


class KubeSource:
    def __init__(
        self,
        client: AsyncClient,
        namespace: str = DEFAULT_NAMESPACE,
        kinds: tuple[Kind, ...] = AGENT_KINDS,
        timings: LeaseTimings | None = None,
        lease_name: str = LEASE_NAME,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.kinds = kinds
        self.timings = timings or LeaseTimings()
        self.lease_name = lease_name
        self.clock = clock
        self.caches = {kind.name: KindCache() for kind in kinds}
        self.watches: dict[str, KindWatch] = {}
        self.lock: LeaseLock | None = None
        self.writer: StatusWriter | None = None
        if SERVICE in kinds and POOL in kinds:
            self.writer = StatusWriter(
                client,
                self.caches[SERVICE.name],
                self.caches[POOL.name],
                self._may_write,
                instance="",
            )

    # -- reading -----------------------------------------------------------------------------

    async def snapshots(self) -> AsyncIterator[ClusterState]:
        changed = asyncio.Event()
        builder = SnapshotBuilder(self.kinds)
        self.watches = {
            kind.name: KindWatch(
                self.client, kind, self.namespace, self.caches[kind.name], changed.set
            )
            for kind in self.kinds
        }
        tasks = [
            asyncio.create_task(watch.run(), name=f"watch {name}")
            for name, watch in self.watches.items()
        ]
        try:
            await self._wait_synced(tasks)
            last: ClusterState | None = None
            while True:
                changed.clear()
                stale = [w.problem for w in self.watches.values() if w.problem]
                snapshot = builder.build(self.caches, stale)
                if snapshot != last:
                    last = snapshot
                    yield snapshot
                await changed.wait()
                await asyncio.sleep(COALESCE_MS / 1000)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _wait_synced(self, tasks: list[asyncio.Task[None]]) -> None:
        while True:
            waiting = [name for name, watch in self.watches.items() if not watch.synced.is_set()]
            if not waiting:
                return
            for task in tasks:
                if task.done():
                    task.result()  # a watch loop never ends; if it did, say why
            log.info(
                "event=waiting_for_lists kinds=%s errors=%s",
                ",".join(waiting),
                ";".join(
                    f"{name}={self.watches[name].last_error}"
                    for name in waiting
                    if self.watches[name].last_error
                )
                or "none",
            )
            synced: asyncio.Future[Any] = asyncio.ensure_future(
                asyncio.gather(*(self.watches[name].synced.wait() for name in waiting))
            )
            watching: list[asyncio.Future[Any]] = [synced, *tasks]
            try:
                # Until every kind is listed, a watch loop ends (it never should), or it is
                # time to say again what herald waits for.
                await asyncio.wait(
                    watching,
                    timeout=WAITING_LOG_SECONDS,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                synced.cancel()

    # -- writing -----------------------------------------------------------------------------

    async def write_status(
        self,
        services: Mapping[str, ServiceStatus],
        pools: Mapping[str, PoolStatus],
        first_seen: Mapping[str, str],
    ) -> None:
        """Objects from the API have creationTimestamps: `first_seen` is not needed."""
        if self.writer is None:
            raise RuntimeError("this source reads no Services and pools: it cannot write status")
        await self.writer.write(services, pools)

    def _may_write(self) -> bool:
        return self.lock is not None and self.lock.election.leading(self.clock())

    @asynccontextmanager
    async def leadership(self, identity: str) -> AsyncIterator[None]:
        election = LeaderElection(identity, self.timings)
        lock = LeaseLock(self.client, self.namespace, election, self.lease_name, self.clock)
        if self.writer is not None:
            self.writer.instance = identity
        campaign = asyncio.create_task(lock.run(), name="lease")
        log.info("event=standby identity=%s lease=%s/%s", identity, self.namespace, self.lease_name)
        became = asyncio.create_task(lock.became_leader.wait())
        try:
            await asyncio.wait([became, campaign], return_when=asyncio.FIRST_COMPLETED)
            if campaign.done():
                campaign.result()  # the election loop never ends; if it did, say why
                raise RuntimeError("the Lease election ended without an error")
        except BaseException:
            # Stopped while waiting as a standby (or the election failed): nothing to hand back.
            became.cancel()
            campaign.cancel()
            await asyncio.gather(became, campaign, return_exceptions=True)
            raise
        self.lock = lock
        body = asyncio.current_task()
        assert body is not None
        lost = asyncio.Event()
        guard = asyncio.create_task(self._guard(election, body, lost), name="lease deadline")
        try:
            yield
        except asyncio.CancelledError:
            if lost.is_set():
                body.uncancel()
                raise LeadershipLost(
                    f"{identity} could not renew lease {self.namespace}/{self.lease_name} "
                    f"within {self.timings.renew_deadline} s and stopped writing"
                ) from None
            raise
        except NotLeading as refused:
            # The deadline passed between the guard's checks: the writer refused first.
            lost.set()
            raise LeadershipLost(str(refused)) from None
        finally:
            guard.cancel()
            campaign.cancel()
            await asyncio.gather(guard, campaign, return_exceptions=True)
            if not lost.is_set():
                await lock.release()
            self.lock = None

    async def _guard(
        self, election: LeaderElection, body: asyncio.Task[object], lost: asyncio.Event
    ) -> None:
        """Cancels `body` when leadership ends without a renewal."""
        while True:
            deadline = election.deadline()
            now = self.clock()
            if deadline is None or now >= deadline or not election.leading(now):
                log.error(
                    "event=leadership_lost identity=%s hint='the lease was not renewed in "
                    "time; this controller stops and a standby takes over'",
                    election.identity,
                )
                lost.set()
                body.cancel()
                return
            await asyncio.sleep(deadline - now)
