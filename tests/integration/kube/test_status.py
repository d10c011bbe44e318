"""Status writes through the subresource: conflicts retried on fresh data, deletions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from lightkube.types import PatchType

from herald.api.base import Condition
from herald.api.core import LoadBalancerIngress, LoadBalancerStatus, ServiceStatus
from herald.sources.kube.cache import KindCache
from herald.sources.kube.client import list_objects
from herald.sources.kube.kinds import POOL, SERVICE
from herald.sources.kube.status import NotLeading, StatusWriter

from .apiserver import SEED, cluster, ingress_ips

DESIRED = ServiceStatus(
    load_balancer=LoadBalancerStatus(ingress=(LoadBalancerIngress(ip="203.0.113.9"),)),
    conditions=(
        Condition(
            type="herald.io/IPAMRequestSatisfied",
            status="True",
            reason="satisfied",
            message="203.0.113.9 from seed-pool",
            last_transition_time="2026-01-01T00:00:00Z",
        ),
    ),
)
OTHER = {
    "type": "example.com/Ready",
    "status": "True",
    "reason": "Checked",
    "message": "another controller's condition",
    "lastTransitionTime": "2026-01-01T00:00:00Z",
}


async def listed(client, kind) -> KindCache:  # type: ignore[no-untyped-def]
    cache = KindCache()
    items, version = await list_objects(client, kind, "herald-system")
    cache.replace(items, version)
    return cache


def test_a_conflict_is_retried_on_fresh_data_keeping_others_conditions(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube:
            client = kube.client()
            services, pools = await listed(client, SERVICE), await listed(client, POOL)
            # Another controller writes its own condition after herald's cache was filled:
            # herald's write, made against the older resourceVersion, meets 409.
            await client.patch(
                SERVICE.status_resource(),
                "web1-lb",
                {"status": {"conditions": [OTHER]}},
                namespace="default",
                patch_type=PatchType.MERGE,
            )
            writer = StatusWriter(client, services, pools, lambda: True, "test")
            await writer.write({"default/web1-lb": DESIRED}, {})
            assert writer.conflicts == 1
            assert writer.written == 1
            service = await kube.get("svc", "web1-lb")
            assert ingress_ips(service) == ["203.0.113.9"]
            types = [c["type"] for c in service["status"]["conditions"]]
            assert types == ["example.com/Ready", "herald.io/IPAMRequestSatisfied"]

    asyncio.run(scenario())


def test_a_service_deleted_meanwhile_is_not_an_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube:
            client = kube.client()
            services, pools = await listed(client, SERVICE), await listed(client, POOL)
            await kube.kubectl("delete", "svc", "web1-lb")
            writer = StatusWriter(client, services, pools, lambda: True, "test")
            await writer.write({"default/web1-lb": DESIRED}, {})
            assert writer.written == 0
            assert kube.writes("services", "status") == ["web1-lb"]  # tried once, 404

    asyncio.run(scenario())


def test_a_status_already_in_place_is_not_written(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube:
            client = kube.client()
            services, pools = await listed(client, SERVICE), await listed(client, POOL)
            writer = StatusWriter(client, services, pools, lambda: True, "test")
            await writer.write({"default/web1-lb": DESIRED}, {})
            fresh = StatusWriter(client, await listed(client, SERVICE), pools, lambda: True, "t")
            await fresh.write({"default/web1-lb": DESIRED}, {})
            assert (writer.written, fresh.written) == (1, 0)

    asyncio.run(scenario())


def test_a_controller_that_does_not_lead_writes_nothing(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube:
            client = kube.client()
            services, pools = await listed(client, SERVICE), await listed(client, POOL)
            writer = StatusWriter(client, services, pools, lambda: False, "test")
            with pytest.raises(NotLeading):
                await writer.write({"default/web1-lb": DESIRED}, {})
            assert kube.writes("services", "status") == []

    asyncio.run(scenario())
