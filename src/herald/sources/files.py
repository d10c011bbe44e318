"""The embedded source: a directory of manifests, watched, with status in a file beside it.

The manifests are what a user would `kubectl apply`; the state file plays the API server's
status subresource, so a controller and agents on one machine share allocations. It lives
in the hidden directory `.herald/` of the manifests directory (the loader skips hidden
entries), so one watch covers both. Writes are atomic (write, fsync, rename) and leadership
is an exclusive lock on a file there: the lock dies with its holder, so a standby takes over
as soon as the active one exits.

While the manifests are invalid every process keeps its last good snapshot. The leader also
keeps the Services and pools of that snapshot in `.herald/last-good.json`, so the listings
(`herald get svc`, `herald ipam`) can show what is still served rather than only the error.
Everything herald writes there is created 0600: status and snapshots may carry secrets.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

from herald.api.core import Service, ServiceStatus
from herald.api.manifests import (
    DEFAULT_LIMITS,
    ParsedFile,
    SizeLimits,
    combine,
    load_directory,
    parse_file,
)
from herald.api.pool import LoadBalancerIPPool, PoolStatus
from herald.api.problems import ManifestError
from herald.api.snapshot import ClusterState
from herald.sources.watch import batches

log = logging.getLogger(__name__)

# Bursts of file events are coalesced for at most this long (issue: <= 10 ms); a single
# change waits only sources.watch.QUIET_MS for more.
COALESCE_MS = 10

# A load that took less than this last time runs on the event loop: handing it to a worker
# thread and back costs two thread wake-ups, which on a loaded machine (six agents on two
# CPUs in the lab) cost more than reading a small directory. What counts is the CPU time
# the load used: by the wall clock, a 1 ms load that waited for a CPU on such a machine
# sent the next one to a thread, adding the hand-offs in exactly the case they cost most.
# Larger ones go to a thread, and so does any load after a change to a file larger than
# INLINE_MAX_BYTES (or one that cannot be sized): the last load's time says nothing of a
# large file just written (a 1,500-endpoint EndpointSlice parsed on the loop stalled
# agents for seconds, BGP included).
INLINE_LOAD_SECONDS = 0.002
INLINE_MAX_BYTES = 16 * 1024

# What herald writes beside the manifests is for herald (and root) alone.
PRIVATE = 0o600


# Problems a kept snapshot carries: enough to name the files, bounded for a broken tree.
SHOWN_PROBLEMS = 10


def _keeping(last: ClusterState | None, problems: list[str]) -> ClusterState | None:
    """The last good snapshot, carrying why it is kept (a new object only when the problems
    change, so that a process applies it once)."""
    shown = problems[:SHOWN_PROBLEMS]
    if len(problems) > SHOWN_PROBLEMS:
        shown.append(f"and {len(problems) - SHOWN_PROBLEMS} more: see `herald validate`")
    shown = [f"manifests invalid, keeping the last good ones: {p}" for p in shown]
    if last is None or last.problems == tuple(shown):
        return last
    return dataclasses.replace(last, problems=tuple(shown))


def state_path_for(manifests: Path) -> Path:
    return manifests / ".herald" / "state.json"


@dataclasses.dataclass(frozen=True)
class SnapshotTiming:
    """When the change a snapshot answers was first noticed (`time.perf_counter()` and Unix
    time) and when the snapshot was ready (`time.perf_counter()`): the source's share of the
    time from a change to its effect (agent/stages.py)."""

    noticed: float
    noticed_wall: float
    ready: float


@dataclasses.dataclass(frozen=True)
class LastGood:
    """The Services and pools of the last valid manifests, as the leader saved them (without
    the state file's status), and when (Unix time)."""

    state: ClusterState
    saved: float


class FileSource:
    def __init__(
        self,
        manifests: str | Path,
        state: str | Path | None = None,
        limits: SizeLimits = DEFAULT_LIMITS,
    ) -> None:
        self.manifests = Path(manifests)
        self.state = Path(state) if state is not None else state_path_for(self.manifests)
        self.last_good_path = self.state.with_name("last-good.json")
        self.limits = limits
        # Parsed files by path: a change re-parses only what changed.
        self._parsed: dict[Path, tuple[bytes, ParsedFile]] = {}
        # Loads run in worker threads; one at a time, as they share that cache.
        self._loading = threading.Lock()
        self._leading = False
        self._last_good: tuple[object, ...] | None = None
        # What the snapshots' loads merged last (loads run one at a time).
        self._merged: MergeCache = {}
        # Valid manifests the leader loaded and has not yet handed to `_keep_last_good`.
        self._unsaved: ClusterState | None = None
        # Of the snapshot `snapshots` yielded last.
        self.timing: SnapshotTiming | None = None
        self._load_seconds = float("inf")  # the last load's CPU time; unknown at first

    # -- reading -----------------------------------------------------------------------------

    def load(self) -> ClusterState:
        """One snapshot: the manifests, with status from the state file where it has one."""
        return merge_status(self.load_manifests(), self.read_state())

    def load_manifests(self) -> ClusterState:
        """The manifests alone (ManifestError if they are invalid)."""
        with self._loading:
            return load_directory(self.manifests, self._parsed, self.limits)

    def read_state(self) -> dict[str, Any]:
        try:
            data = json.loads(self.state.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as err:
            log.warning("event=state_unreadable path=%s error=%r", self.state, str(err))
            return {}
        return data if isinstance(data, dict) else {}

    def read_last_good(self) -> LastGood | None:
        """What the leader saved from the last valid manifests; None if it saved nothing
        (or what it saved cannot be read, which is logged)."""
        path = self.last_good_path
        try:
            saved = path.stat().st_mtime
            text = path.read_text(encoding="utf-8")
            return LastGood(combine({str(path): parse_file(str(path), text)}), saved)
        except FileNotFoundError:
            return None
        except (OSError, ManifestError) as err:
            log.warning("event=last_good_unreadable path=%s error=%r", path, str(err))
            return None

    async def snapshots(self) -> AsyncIterator[ClusterState]:
        self.state.parent.mkdir(parents=True, exist_ok=True)
        last: ClusterState | None = None
        changes = batches((self.manifests, self.state.parent), self._relevant, COALESCE_MS)
        saving: asyncio.Task[None] | None = None
        try:
            async for batch in changes:
                # Reading and parsing a large directory takes seconds: off the event loop,
                # whose timers (BGP keepalives and hold timers in an agent) must keep running.
                if self._load_seconds < INLINE_LOAD_SECONDS and all_small(batch.paths):
                    snapshot = self._timed_load(last)
                else:
                    snapshot = await asyncio.to_thread(self._timed_load, last)
                if snapshot is not None and snapshot is not last:
                    last = snapshot
                    ready = time.perf_counter()
                    self.timing = SnapshotTiming(batch.noticed, batch.noticed_wall, ready)
                    yield snapshot
                # Once the consumer is done with the snapshot (the controller has written
                # its status): saved in the load, two fsyncs stood between every change and
                # its status, up to ~150 ms each on a busy disk.
                if saving is not None and saving.done():
                    saving.result()  # a fault in saving ends the source, as it did inline
                    saving = None
                if saving is None and self._unsaved is not None:
                    saving = asyncio.create_task(self._save_last_good())
        finally:
            if saving is not None:
                await asyncio.gather(saving, return_exceptions=True)
            await changes.aclose()  # the inotify descriptor, now rather than at collection

    async def _save_last_good(self) -> None:
        """Saves the latest valid manifests until none is left unsaved (off the event loop:
        it writes and syncs a file)."""
        while (manifests := self._unsaved) is not None:
            self._unsaved = None
            await asyncio.to_thread(self._keep_last_good, manifests)

    def _relevant(self, path: Path) -> bool:
        if path == self.state:
            return True
        try:
            relative = path.relative_to(self.manifests)
        except ValueError:
            return False
        return not any(part.startswith(".") for part in relative.parts)

    def _timed_load(self, last: ClusterState | None) -> ClusterState | None:
        start = time.thread_time()  # of the thread it runs in, the loop's or a worker's
        try:
            return self._try_load(last)
        finally:
            self._load_seconds = time.thread_time() - start

    def _try_load(self, last: ClusterState | None) -> ClusterState | None:
        try:
            manifests = self.load_manifests()
        except ManifestError as err:
            log.error(
                "event=manifests_invalid problems=%d files=%s first=%r keeping=last_good_snapshot",
                len(err.problems),
                ",".join(sorted({p.location.file for p in err.problems})),
                str(err.problems[0]),
            )
            return _keeping(last, [str(problem) for problem in err.problems])
        except OSError as err:
            log.error("event=manifests_unreadable error=%r keeping=last_good_snapshot", str(err))
            return _keeping(last, [f"{self.manifests}: unreadable: {err}"])
        if self._leading:
            self._unsaved = manifests
        return merge_status(manifests, self.read_state(), self._merged)

    def _keep_last_good(self, manifests: ClusterState) -> None:
        # The loader hands back the same objects for unchanged files, and tuples compare
        # items by identity first: this costs nothing when only the state file changed.
        kept = (*manifests.services, *manifests.pools)
        if kept == self._last_good:
            return
        items = [obj.model_dump(mode="json", by_alias=True, exclude_none=True) for obj in kept]
        text = json.dumps({"apiVersion": "v1", "kind": "List", "items": items}, indent=1)
        try:
            write_atomically(self.last_good_path, text)
        except OSError as err:
            log.error("event=last_good_unwritten path=%s error=%r", self.last_good_path, str(err))
            return
        self._last_good = kept

    # -- writing -----------------------------------------------------------------------------

    async def write_status(
        self,
        services: Mapping[str, ServiceStatus],
        pools: Mapping[str, PoolStatus],
        first_seen: Mapping[str, str],
    ) -> None:
        await asyncio.to_thread(self._write_status, services, pools, first_seen)

    def _write_status(
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
        write_atomically(self.state, json.dumps(state, indent=1))

    @asynccontextmanager
    async def leadership(self, identity: str) -> AsyncIterator[None]:
        lock_path = self.state.with_name("controller.lock")
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        # Held for the whole leadership; created private like everything else here.
        handle = open(lock_path, "a+", opener=_private)  # noqa: SIM115
        with contextlib.suppress(OSError):  # made by an older herald, or another user's
            os.fchmod(handle.fileno(), PRIVATE)
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
            self._leading, self._last_good = True, None
            yield
        finally:
            self._leading = False
            handle.close()


# Objects as `merge_status` merged them, by object_key: (the object read, its status entry,
# its first-seen entry, the merged object).
MergeCache = dict[str, tuple[object, object, object, object]]


def merge_status(
    state: ClusterState, stored: Mapping[str, Any], cache: MergeCache | None = None
) -> ClusterState:
    """Service and pool status from the state file replace what the manifests say, and
    objects without a creationTimestamp get the time the controller first saw them.

    With `cache` (kept between calls by one reader), an object read again (the loader hands
    back the same object for an unchanged file) whose entries did not change is the merged
    object of last time: validating every status on every change cost ~25 ms per 1,000
    Services in each agent, and new objects defeated the planners' reuse of unchanged ones."""
    statuses = stored.get("services") or {}
    pool_statuses = stored.get("pools") or {}
    first_seen = stored.get("firstSeen") or {}
    fresh: MergeCache = {}
    services = [
        _merged(service, statuses.get(service.key), first_seen, cache, fresh)
        for service in state.services
    ]
    pools = [
        _merged(pool, pool_statuses.get(pool.metadata.name), first_seen, cache, fresh)
        for pool in state.pools
    ]
    if cache is not None:
        cache.clear()  # what is gone from the manifests is not kept
        cache.update(fresh)
    return dataclasses.replace(state, services=tuple(services), pools=tuple(pools))


def _merged(
    obj: ObjectT,
    raw: object,
    first_seen: Mapping[str, Any],
    cache: MergeCache | None,
    fresh: MergeCache,
) -> ObjectT:
    key = object_key(obj)
    seen = first_seen.get(key)
    cached = cache.get(key) if cache is not None else None
    if cached is not None and cached[0] is obj and cached[1] == raw and cached[2] == seen:
        fresh[key] = cached
        return cast(ObjectT, cached[3])
    merged = _with_first_seen(obj, first_seen)
    if raw is not None:
        model = ServiceStatus if isinstance(obj, Service) else PoolStatus
        try:
            merged = merged.model_copy(update={"status": model.model_validate(raw)})
        except ValueError:
            if isinstance(obj, Service):
                log.warning("event=state_entry_invalid service=%s", obj.key)
            else:
                log.warning("event=state_entry_invalid pool=%s", obj.metadata.name)
            return merged  # not kept: said again on every load, as before
    fresh[key] = (obj, raw, seen, merged)
    return merged


def object_key(obj: Service | LoadBalancerIPPool) -> str:
    return f"{obj.kind}/{obj.metadata.namespace or ''}/{obj.metadata.name}"


ObjectT = TypeVar("ObjectT", Service, LoadBalancerIPPool)


def _with_first_seen(obj: ObjectT, first_seen: Mapping[str, Any]) -> ObjectT:
    seen = first_seen.get(object_key(obj))
    if obj.metadata.creation_timestamp or not isinstance(seen, str):
        return obj
    meta = obj.metadata.model_copy(update={"creation_timestamp": seen})
    return obj.model_copy(update={"metadata": meta})


def write_atomically(path: Path, text: str, mode: int = PRIVATE, durable: bool = True) -> None:
    """Replaces `path` by a file holding `text`: readers see the old file or the new one,
    never a part. The new file has `mode` from its creation on, whatever the umask: there
    is no moment at which others may read it (0600 unless asked otherwise). `durable`: the
    file and its name are on disk before this returns, so a crash cannot leave an empty
    file; without it a file that is written again after a crash anyway is not held up by
    the disk (two fsyncs, up to ~150 ms each on a busy one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file 0600 (and never follows a link planted at its name); hidden,
    # so no watcher of the directory takes it for a manifest.
    fd, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), mode)
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    if not durable:
        return
    # The rename itself survives a crash only once the directory is on disk too.
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _private(path: str, flags: int) -> int:
    return os.open(path, flags | os.O_CLOEXEC, PRIVATE)


def all_small(paths: Iterable[Path]) -> bool:
    """Every changed path is a file of at most INLINE_MAX_BYTES, or gone. A directory (the
    roots after an inotify overflow) or a file that cannot be sized is not small."""
    for path in paths:
        try:
            info = path.lstat()
        except FileNotFoundError:
            continue
        except OSError:
            return False
        if not stat.S_ISREG(info.st_mode) or info.st_size > INLINE_MAX_BYTES:
            return False
    return True
