"""The controller process around the reconciler: a failed status write is retried, never the
end of the controller."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import pytest

from herald.api.core import ServiceStatus
from herald.api.manifests import parse_manifests
from herald.api.pool import PoolStatus
from herald.api.snapshot import ClusterState
from herald.controller.run import run_controller

MANIFESTS = """apiVersion: herald.io/v1alpha1
kind: LoadBalancerIPPool
metadata: {name: pool}
spec: {blocks: [{cidr: 203.0.113.0/24}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, creationTimestamp: '2024-01-01T00:00:00Z'}
spec: {type: LoadBalancer}
"""


class DiskFullSource:
    """One snapshot; the first `failures` status writes fail as a full disk would."""

    def __init__(self, snapshot: ClusterState, failures: int) -> None:
        self.snapshot = snapshot
        self.failures = failures
        self.attempts = 0
        self.written: Mapping[str, ServiceStatus] | None = None

    async def snapshots(self) -> AsyncIterator[ClusterState]:
        yield self.snapshot
        await asyncio.Event().wait()

    async def write_status(
        self,
        services: Mapping[str, ServiceStatus],
        pools: Mapping[str, PoolStatus],
        first_seen: Mapping[str, str],
    ) -> None:
        self.attempts += 1
        if self.attempts <= self.failures:
            raise OSError(28, "No space left on device")
        self.written = services

    @asynccontextmanager
    async def leadership(self, identity: str) -> AsyncIterator[None]:
        yield


def test_a_failed_status_write_is_retried_and_the_controller_lives_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    source = DiskFullSource(parse_manifests({"a.yaml": MANIFESTS}), failures=3)

    async def scenario() -> None:
        controller = asyncio.ensure_future(run_controller(source, "test", retry_seconds=0.01))
        for _ in range(200):
            if source.written is not None or controller.done():
                break
            await asyncio.sleep(0.01)
        assert not controller.done()
        controller.cancel()

    with caplog.at_level(logging.ERROR):
        asyncio.run(asyncio.wait_for(scenario(), timeout=10))
    assert source.attempts == 4
    assert source.written is not None
    assert [ip.ip for ip in source.written["default/web"].load_balancer.ingress] == ["203.0.113.0"]
    failures = [r.getMessage() for r in caplog.records if "status_unwritten" in r.getMessage()]
    assert len(failures) == 3
    assert "No space left on device" in failures[0]
