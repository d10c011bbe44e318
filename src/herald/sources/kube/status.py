"""Service and pool status written through the API's status subresources, and Events.

Only what changed is written: the status an object carries in the watch cache is compared
with what LB-IPAM decided, field by field, so a controller that restarts or takes over
writes nothing for the Services it agrees with. A write is a JSON merge patch carrying the
resourceVersion the status was computed against: if the object changed meanwhile the
server answers 409 and the status is computed again on the object read afresh (other
controllers' conditions on a Service are kept; herald replaces only its own). A Service
deleted meanwhile (404) is not an error. Other failures are collected and raised together
as `StatusWriteFailed` (an OSError, which the controller's loop retries with back-off);
one Service the server refuses does not stop the writes of the others.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import httpx2
from lightkube import ApiError, AsyncClient
from lightkube.types import PatchType

from herald.api.core import ServiceStatus
from herald.api.pool import PoolStatus
from herald.controller.events import ServiceEvent, event_for, satisfied_condition
from herald.sources.kube.cache import KindCache
from herald.sources.kube.kinds import EVENT_RESOURCE, POOL, SERVICE

log = logging.getLogger(__name__)

# Writes in flight at once: 10,000 Services at start-up are written in parallel, bounded.
CONCURRENCY = 16
# A write that keeps meeting 409 gives up for this round; the object's next change brings
# a new snapshot and another try.
CONFLICT_ATTEMPTS = 5
COMPONENT = "herald-controller"


class StatusWriteFailed(OSError):
    """Some status writes failed for a reason other than a conflict or a deletion."""


class NotLeading(Exception):
    """This controller is no longer the leader: it must not write."""


def _dump(status: ServiceStatus | PoolStatus) -> dict[str, Any]:
    return status.model_dump(mode="json", by_alias=True, exclude_none=True)


def service_status_patch(
    current: Mapping[str, Any], desired: ServiceStatus
) -> dict[str, Any] | None:
    """The merge patch that makes `current` (a Service as the API has it) carry `desired`,
    or None if it already does. Conditions of other types are kept as they are."""
    status = current.get("status") or {}
    want = _dump(desired)
    ingress = want.get("loadBalancer", {}).get("ingress") or []
    ours = {c["type"] for c in want.get("conditions", [])}
    conditions = [c for c in status.get("conditions") or [] if c.get("type") not in ours]
    conditions += want.get("conditions", [])
    have_ingress = (status.get("loadBalancer") or {}).get("ingress") or []
    if ingress == have_ingress and conditions == (status.get("conditions") or []):
        return None
    return {
        "metadata": {"resourceVersion": (current.get("metadata") or {}).get("resourceVersion")},
        # null removes the field (merge patch): a Service with no address shows <pending>.
        "status": {"loadBalancer": {"ingress": ingress or None}, "conditions": conditions},
    }


def pool_status_patch(current: Mapping[str, Any], desired: PoolStatus) -> dict[str, Any] | None:
    """The merge patch that gives a pool `desired` as its whole status, or None."""
    want = _dump(desired).get("conditions", [])
    if want == ((current.get("status") or {}).get("conditions") or []):
        return None
    return {
        "metadata": {"resourceVersion": (current.get("metadata") or {}).get("resourceVersion")},
        "status": {"conditions": want},
    }


class StatusWriter:
    def __init__(
        self,
        client: AsyncClient,
        services: KindCache,
        pools: KindCache,
        may_write: Callable[[], bool],
        instance: str,
    ) -> None:
        self.client = client
        self.services = services
        self.pools = pools
        self.may_write = may_write
        self.instance = instance
        self.written = 0
        self.conflicts = 0
        self.events = 0

    async def write(
        self, services: Mapping[str, ServiceStatus], pools: Mapping[str, PoolStatus]
    ) -> None:
        limit = asyncio.Semaphore(CONCURRENCY)

        async def bounded(job: Awaitable[None]) -> None:
            async with limit:
                await job

        jobs = [self._service(key, status) for key, status in services.items()]
        jobs += [self._pool(name, status) for name, status in pools.items()]
        results = await asyncio.gather(*(bounded(j) for j in jobs), return_exceptions=True)
        failed = [r for r in results if isinstance(r, BaseException)]
        for result in failed:
            if isinstance(result, NotLeading | asyncio.CancelledError):
                raise result
        if failed:
            raise StatusWriteFailed(
                f"{len(failed)} of {len(jobs)} status writes failed; first: {failed[0]!r}"
            )

    async def _service(self, key: str, desired: ServiceStatus) -> None:
        namespace, _, name = key.partition("/")
        current = self.services.objects.get((namespace, name))
        for _ in range(CONFLICT_ATTEMPTS):
            if current is None:
                return  # deleted: nothing to write
            patch = service_status_patch(current, desired)
            if patch is None:
                return
            written = await self._patch(SERVICE.status_resource(), name, namespace, patch)
            if written is _CONFLICT:
                current = await self._fresh(SERVICE.resource(), name, namespace)
                continue
            if written is None:
                return
            before = satisfied_condition((current.get("status") or {}).get("conditions") or [])
            event = event_for(before, desired.conditions)
            if event is not None:
                await self._record(current, event)
            return
        log.warning("event=status_conflicts service=%s attempts=%d", key, CONFLICT_ATTEMPTS)

    async def _pool(self, name: str, desired: PoolStatus) -> None:
        current = self.pools.objects.get(("", name))
        for _ in range(CONFLICT_ATTEMPTS):
            if current is None:
                return
            patch = pool_status_patch(current, desired)
            if patch is None:
                return
            written = await self._patch(POOL.status_resource(), name, None, patch)
            if written is not _CONFLICT:
                return
            current = await self._fresh(POOL.resource(), name, None)
        log.warning("event=status_conflicts pool=%s attempts=%d", name, CONFLICT_ATTEMPTS)

    async def _patch(
        self, resource: Any, name: str, namespace: str | None, patch: dict[str, Any]
    ) -> object:
        """The object as written; _CONFLICT on 409; None if it is gone."""
        if not self.may_write():
            raise NotLeading(f"not the leader: status of {namespace}/{name} not written")
        try:
            result = await self.client.patch(
                resource, name, patch, namespace=namespace, patch_type=PatchType.MERGE
            )
        except ApiError as err:
            if err.status.code == 404:
                log.info("event=status_target_gone object=%s/%s", namespace or "", name)
                return None
            if err.status.code == 409:
                self.conflicts += 1
                log.info("event=status_conflict object=%s/%s retry=fresh", namespace or "", name)
                return _CONFLICT
            raise
        self.written += 1
        return result

    async def _fresh(
        self, resource: Any, name: str, namespace: str | None
    ) -> dict[str, Any] | None:
        try:
            return dict(await self.client.get(resource, name, namespace=namespace))
        except ApiError as err:
            if err.status.code == 404:
                return None
            raise

    async def _record(self, service: Mapping[str, Any], event: ServiceEvent) -> None:
        meta = service.get("metadata") or {}
        now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        body = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta.get('name')}.{time.time_ns():x}",
                "namespace": meta.get("namespace"),
            },
            "involvedObject": {
                "apiVersion": "v1",
                "kind": "Service",
                "namespace": meta.get("namespace"),
                "name": meta.get("name"),
                "uid": meta.get("uid"),
            },
            "reason": event.reason,
            "message": event.message,
            "type": "Warning",
            "source": {"component": COMPONENT},
            "reportingComponent": "herald.io/controller",
            "reportingInstance": self.instance,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }
        try:
            await self.client.create(EVENT_RESOURCE(body))
        except (ApiError, httpx2.HTTPError, OSError) as err:
            # An Event is a courtesy: its loss must not hold the status back.
            log.warning(
                "event=event_unrecorded service=%s/%s reason=%s error=%r",
                meta.get("namespace"),
                meta.get("name"),
                event.reason,
                str(err),
            )
            return
        self.events += 1
        log.info(
            "event=event_recorded service=%s/%s reason=%s",
            meta.get("namespace"),
            meta.get("name"),
            event.reason,
        )


_CONFLICT = object()
