"""The I/O of leader election: reading and writing the coordination.k8s.io/v1 Lease.

`controller/leader.py` decides; this loop reads the Lease every retry period, writes what
the decision proposes (create, or replace carrying the resourceVersion read, so that two
candidates racing for it cannot both win: the second gets 409) and keeps the decision's view
current. Each request is bounded by the renew deadline, so a server that stopped answering
cannot keep a leader leading past it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient

from herald.controller.leader import LeaderElection, LeaseRecord
from herald.sources.kube.kinds import LEASE_RESOURCE

log = logging.getLogger(__name__)

LEASE_NAME = "herald-controller"
# A Lease someone else wrote badly (a non-number duration) is a failure to retry, not a crash.
FAILURES = (ApiError, httpx2.HTTPError, OSError, TimeoutError, ValueError, TypeError)


def micro_time(now: float | None = None) -> str:
    """The API's MicroTime text."""
    moment = datetime.fromtimestamp(time.time() if now is None else now, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_of(lease: dict[str, Any]) -> LeaseRecord:
    spec = lease.get("spec") or {}
    return LeaseRecord(
        holder=str(spec.get("holderIdentity") or ""),
        duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
        acquire_time=spec.get("acquireTime"),
        renew_time=spec.get("renewTime"),
        transitions=int(spec.get("leaseTransitions") or 0),
    )


def spec_of(record: LeaseRecord) -> dict[str, Any]:
    return {
        "holderIdentity": record.holder,
        "leaseDurationSeconds": record.duration_seconds,
        "acquireTime": record.acquire_time,
        "renewTime": record.renew_time,
        "leaseTransitions": record.transitions,
    }


class LeaseLock:
    """Runs one candidate's election against the Lease `namespace/name`."""

    def __init__(
        self,
        client: AsyncClient,
        namespace: str,
        election: LeaderElection,
        name: str = LEASE_NAME,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.namespace = namespace
        self.name = name
        self.election = election
        self.clock = clock
        self.jitter = jitter
        self.became_leader = asyncio.Event()
        self._version: str | None = None
        self._exists = False

    async def run(self) -> None:
        timings = self.election.timings
        while True:
            try:
                async with asyncio.timeout(timings.renew_deadline):
                    await self.try_once()
            except FAILURES as err:
                log.warning(
                    "event=lease_unreachable identity=%s error=%r leading=%s",
                    self.election.identity,
                    str(err) or type(err).__name__,
                    self.election.leading(self.clock()),
                )
            if self.election.leading(self.clock()):
                self.became_leader.set()
                await asyncio.sleep(timings.retry_period)
            else:
                # Candidates wait a jittered period (client-go: JitterFactor 1.2) so that
                # standbys do not hit the server in step.
                await asyncio.sleep(timings.retry_period * (1 + 0.2 * self.jitter()))

    async def try_once(self) -> None:
        """Read the Lease, then write what the election proposes."""
        now = self.clock()
        try:
            lease = dict(await self.client.get(LEASE_RESOURCE, self.name, namespace=self.namespace))
            self._exists = True
            self._version = (lease.get("metadata") or {}).get("resourceVersion")
            self.election.observe(record_of(lease), now)
        except ApiError as err:
            if err.status.code != 404:
                raise
            self._exists, self._version = False, None
            self.election.observe(None, now)
        proposal = self.election.proposal(self.clock(), micro_time())
        if proposal is not None:
            await self.write(proposal)

    async def write(self, record: LeaseRecord) -> bool:
        """Store `record`; False if another candidate wrote first (409, or 409 on create)."""
        sent = self.clock()
        body: dict[str, Any] = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": spec_of(record),
        }
        try:
            if self._exists:
                body["metadata"]["resourceVersion"] = self._version
                stored = await self.client.replace(LEASE_RESOURCE(body))
            else:
                stored = await self.client.create(LEASE_RESOURCE(body))
        except ApiError as err:
            if err.status.code == 409:
                log.info("event=lease_lost_race identity=%s", self.election.identity)
                return False
            raise
        stored = dict(stored)
        self._exists = True
        self._version = (stored.get("metadata") or {}).get("resourceVersion")
        was_leading = self.election.renewed_at is not None
        self.election.written(record, sent)
        if not was_leading and record.holder == self.election.identity:
            log.info(
                "event=leader identity=%s lease=%s/%s transitions=%d",
                self.election.identity,
                self.namespace,
                self.name,
                record.transitions,
            )
        return True

    async def release(self) -> None:
        """Hand the lease back (clean exit), so a standby need not wait for it to expire."""
        record = self.election.release(micro_time())
        self.election.stepped_down()
        if record is None:
            return
        try:
            async with asyncio.timeout(self.election.timings.retry_period):
                await self.write(record)
            log.info("event=lease_released identity=%s", self.election.identity)
        except FAILURES as err:
            log.warning("event=lease_unreleased identity=%s error=%r", self.election.identity, err)
