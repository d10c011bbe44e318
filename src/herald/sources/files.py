"""The embedded source: a directory of manifests, watched, with status in a file beside it.

The manifests are what a user would `kubectl apply`; the state file plays the API server's
status subresource, so a controller and agents on one machine share allocations. It lives
in the hidden directory `.herald/` of the manifests directory (the loader skips hidden
entries), so one watch covers both. Writes are atomic (write, fsync, rename) and leadership
is an exclusive lock on a file there: the lock dies with its holder, so a standby takes over
as soon as the active one exits.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fcntl
import json
import logging
import os
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from herald.api.core import Service, ServiceStatus
from herald.api.manifests import ParsedFile, load_directory
from herald.api.pool import LoadBalancerIPPool, PoolStatus
from herald.api.problems import ManifestError
from herald.api.snapshot import ClusterState
from herald.sources.watch import wakeups

log = logging.getLogger(__name__)

# Bursts of file events are coalesced for at most this long (issue: <= 10 ms).
COALESCE_MS = 10


def state_path_for(manifests: Path) -> Path:
    return manifests / ".herald" / "state.json"


class FileSource:
    def __init__(self, manifests: str | Path, state: str | Path | None = None) -> None:
        self.manifests = Path(manifests)
        self.state = Path(state) if state is not None else state_path_for(self.manifests)
        # Parsed files by path: a change re-parses only what changed.
        self._parsed: dict[Path, tuple[bytes, ParsedFile]] = {}

    # -- reading -----------------------------------------------------------------------------

    def load(self) -> ClusterState:
        """One snapshot: the manifests, with status from the state file where it has one."""
        return merge_status(load_directory(self.manifests, self._parsed), self.read_state())

    def read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.warning("event=state_unreadable path=%s error=%r", self.state, str(err))
            return {}
        return data if isinstance(data, dict) else {}

    async def snapshots(self) -> AsyncIterator[ClusterState]:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        last: ClusterState | None = None
        async for _ in wakeups((self.manifests, self.state.parent), self._relevant, COALESCE_MS):
            snapshot = self._try_load(last)
            if snapshot is not None and snapshot is not last:
                last = snapshot
                yield snapshot

    def _relevant(self, path: Path) -> bool:
        if path == self.state:
            return True
        try:
            relative = path.relative_to(self.manifests)
        except ValueError:
            return False
        return not any(part.startswith(".") for part in relative.parts)

    def _try_load(self, last: ClusterState | None) -> ClusterState | None:
        try:
            return self.load()
        except ManifestError as err:
            log.error(
                "event=manifests_invalid problems=%d first=%r keeping=last_good_snapshot",
                len(err.problems),
                str(err.problems[0]),
            )
            return last
        except OSError as err:
            log.error("event=manifests_unreadable error=%r keeping=last_good_snapshot", str(err))
            return last

    # -- writing -----------------------------------------------------------------------------

    async def write_status(
        self,
        services: Mapping[str, ServiceStatus],
        pools: Mapping[str, PoolStatus],
        first_seen: Mapping[str, str],
    ) -> None:
        state = self.read_state()
        state["firstSeen"] = dict(sorted(first_seen.items()))
        state["services"] = {
            key: status.model_dump(mode="json", by_alias=True, exclude_none=True)
            for key, status in sorted(services.items())
        }
        state["pools"] = {
            name: status.model_dump(mode="json", by_alias=True, exclude_none=True)
            for name, status in sorted(pools.items())
        }
        await asyncio.to_thread(write_atomically, self.state, json.dumps(state, indent=1))

    @asynccontextmanager
    async def leadership(self, identity: str) -> AsyncIterator[None]:
        lock_path = self.state.with_name("controller.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(lock_path, "a+")  # noqa: SIM115 - held for the whole leadership
        try:
            announced = False
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not announced:
                        log.info("event=standby identity=%s lock=%s", identity, lock_path)
                        announced = True
                    await asyncio.sleep(0.1)
            handle.seek(0)
            handle.truncate()
            handle.write(f"{identity} {os.getpid()}\n")
            handle.flush()
            log.info("event=leader identity=%s", identity)
            yield
        finally:
            handle.close()


def merge_status(state: ClusterState, stored: Mapping[str, Any]) -> ClusterState:
    """Service status from the state file replaces what the manifests say, and objects
    without a creationTimestamp get the time the controller first saw them."""
    statuses = stored.get("services") or {}
    first_seen = stored.get("firstSeen") or {}
    services = []
    for service in state.services:
        service = _with_first_seen(service, first_seen)
        raw = statuses.get(service.key)
        if raw is not None:
            try:
                service = service.model_copy(update={"status": ServiceStatus.model_validate(raw)})
            except ValueError:
                log.warning("event=state_entry_invalid service=%s", service.key)
        services.append(service)
    pools = tuple(_with_first_seen(pool, first_seen) for pool in state.pools)
    return dataclasses.replace(state, services=tuple(services), pools=pools)


def object_key(obj: Service | LoadBalancerIPPool) -> str:
    return f"{obj.kind}/{obj.metadata.namespace or ''}/{obj.metadata.name}"


ObjectT = TypeVar("ObjectT", Service, LoadBalancerIPPool)


def _with_first_seen(obj: ObjectT, first_seen: Mapping[str, Any]) -> ObjectT:
    seen = first_seen.get(object_key(obj))
    if obj.metadata.creation_timestamp or not isinstance(seen, str):
        return obj
    meta = obj.metadata.model_copy(update={"creation_timestamp": seen})
    return obj.model_copy(update={"metadata": meta})


def write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
