"""The one small interface every source of cluster state implements."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

from herald.api.core import ServiceStatus
from herald.api.pool import PoolStatus
from herald.api.snapshot import ClusterState


class Source(Protocol):
    def snapshots(self) -> AsyncIterator[ClusterState]:
        """The current snapshot at once, then a new one after every change (bursts
        coalesced). Invalid input is logged and skipped: the last good snapshot stands."""
        ...

    async def write_status(
        self,
        services: Mapping[str, ServiceStatus],
        pools: Mapping[str, PoolStatus],
        first_seen: Mapping[str, str],
    ) -> None:
        """Replaces the status of the named Services and pools. `first_seen` gives objects
        that have no creationTimestamp one (keys `Kind/namespace/name`), as an API server
        would; a source that has real timestamps ignores it."""
        ...

    def leadership(self, identity: str) -> AbstractAsyncContextManager[None]:
        """Waits until `identity` is the one active controller; holds it until exit."""
        ...
