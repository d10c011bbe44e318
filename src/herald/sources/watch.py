"""Wake-ups for changes below directories, the first one before anything changed.

A reader of a directory must watch it before it reads it: what changes between the read and
the start of the watch is otherwise never seen. `batches` sets up its inotify watches before
it yields once for the initial read, then once per batch of changes some path of which is
`relevant`. A change made while the caller handles a wake-up stays queued in the kernel and
gives the next one.

inotify is read on the event loop itself (`add_reader`): nothing polls. The watcher this
replaces (watchfiles) ran a thread per process that woke every millisecond and took the GIL
each time: ~2.6 % of a CPU per idle process, eight processes per lab node set, and a GIL
hand-off in the middle of every agent's plan and commit.

A burst (an editor's save, `kubectl apply` of a directory, the lab's write-then-rename)
costs one wake-up: after the first event the queue is read again every `QUIET_MS` while more
arrives, for at most `coalesce_ms`. Events arriving while the caller is busy are gathered
into the next wake-up whatever their number.
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import os
import struct
import time
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

# A burst is over once nothing new arrived for this long.
QUIET_MS = 1

_IN_MODIFY = 0x00000002
_IN_ATTRIB = 0x00000004
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_FROM = 0x00000040
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE = 0x00000200
_IN_DELETE_SELF = 0x00000400
_IN_MOVE_SELF = 0x00000800
_IN_Q_OVERFLOW = 0x00004000
_IN_IGNORED = 0x00008000
_IN_ONLYDIR = 0x01000000
_IN_ISDIR = 0x40000000
_MASK = (
    _IN_MODIFY
    | _IN_ATTRIB
    | _IN_CLOSE_WRITE
    | _IN_MOVED_FROM
    | _IN_MOVED_TO
    | _IN_CREATE
    | _IN_DELETE
    | _IN_DELETE_SELF
    | _IN_MOVE_SELF
)
_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len (struct inotify_event)


@dataclass(frozen=True)
class Batch:
    """One wake-up: the relevant paths that changed (none for the initial read), and when
    the first event of the batch was read, as `time.perf_counter()` and as Unix time."""

    paths: frozenset[Path]
    noticed: float
    noticed_wall: float


class Inotify:
    """Recursive inotify watches of directories, read without blocking."""

    def __init__(self, roots: Iterable[Path]) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        fd = self._libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
        if fd < 0:
            raise _os_error("inotify_init1", None)
        self.fd: int = fd
        self.roots = sorted(set(roots))
        self._dirs: dict[int, Path] = {}
        try:
            for root in self.roots:
                self._add_tree(root, None, root=True)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def read(self) -> set[Path]:
        """The paths changed since the last read (the roots themselves after an overflow:
        the kernel dropped events, so anything may have changed)."""
        changed: set[Path] = set()
        while True:
            try:
                data = os.read(self.fd, 65536)
            except BlockingIOError:
                return changed
            offset = 0
            while offset + _EVENT.size <= len(data):
                wd, mask, _, length = _EVENT.unpack_from(data, offset)
                raw = data[offset + _EVENT.size : offset + _EVENT.size + length]
                offset += _EVENT.size + length
                self._event(wd, mask, raw.rstrip(b"\0"), changed)

    def _event(self, wd: int, mask: int, name: bytes, changed: set[Path]) -> None:
        if mask & _IN_Q_OVERFLOW:
            changed.update(self.roots)
            return
        directory = self._dirs.get(wd)
        if directory is None:
            return
        if mask & _IN_IGNORED:  # the directory is gone, or its watch was removed
            del self._dirs[wd]
            return
        path = directory / os.fsdecode(name) if name else directory
        changed.add(path)
        if name and mask & _IN_ISDIR:
            if mask & (_IN_CREATE | _IN_MOVED_TO):
                # Files written in it before its watch was in place are changes too.
                self._add_tree(path, changed, root=False)
            elif mask & _IN_MOVED_FROM:
                self._forget_tree(path)

    def _add_tree(self, top: Path, changed: set[Path] | None, root: bool) -> None:
        self._add(top, root)
        for parent, directories, files in os.walk(top):
            for name in directories:
                self._add(Path(parent, name), False)
            if changed is not None:
                changed.update(Path(parent, name) for name in files)

    def _add(self, directory: Path, root: bool) -> None:
        wd = self._libc.inotify_add_watch(self.fd, os.fsencode(directory), _MASK | _IN_ONLYDIR)
        if wd >= 0:
            self._dirs[wd] = directory
            return
        err = _os_error("inotify_add_watch", directory)
        # Gone (or replaced by a file) since it was listed: its removal is an event of its
        # own. A root that is missing, or a watch limit reached, is the caller's to know.
        if root or err.errno not in (errno.ENOENT, errno.ENOTDIR):
            raise err

    def _forget_tree(self, top: Path) -> None:
        for wd, directory in list(self._dirs.items()):
            if directory == top or top in directory.parents:
                self._libc.inotify_rm_watch(self.fd, wd)
                del self._dirs[wd]


def _os_error(call: str, path: Path | None) -> OSError:
    code = ctypes.get_errno()
    text = f"{call}: {os.strerror(code)}"
    return OSError(code, text, str(path)) if path is not None else OSError(code, text)


async def batches(
    paths: Iterable[Path], relevant: Callable[[Path], bool], coalesce_ms: int
) -> AsyncGenerator[Batch, None]:
    watch = Inotify(paths)  # in place before the first yield: the caller reads after it
    loop = asyncio.get_running_loop()
    readable = asyncio.Event()
    first: tuple[float, float] | None = None
    armed = False

    def arrived() -> None:
        # Stamped when the kernel's queue became readable, not when the caller came back
        # for it: the wait behind a busy caller is part of the change's latency. One shot:
        # the descriptor stays readable until read, and a level-triggered reader left in
        # place would spin the loop for as long as the caller is busy.
        nonlocal first, armed
        loop.remove_reader(watch.fd)
        armed = False
        if first is None:
            first = (time.perf_counter(), time.time())
        readable.set()

    def arm() -> None:
        nonlocal armed
        if not armed:
            loop.add_reader(watch.fd, arrived)
            armed = True

    try:
        arm()
        yield Batch(frozenset(), time.perf_counter(), time.time())
        while True:
            await readable.wait()
            readable.clear()
            changed = watch.read()
            noticed = first or (time.perf_counter(), time.time())
            deadline = noticed[0] + coalesce_ms / 1000
            while changed and time.perf_counter() < deadline:
                await asyncio.sleep(QUIET_MS / 1000)
                more = watch.read()
                if not more:
                    break
                changed |= more
            first = None
            arm()
            wanted = frozenset(path for path in changed if relevant(path))
            if wanted:
                yield Batch(wanted, *noticed)
    finally:
        if armed:
            loop.remove_reader(watch.fd)
        watch.close()


async def wakeups(
    paths: Iterable[Path], relevant: Callable[[Path], bool], coalesce_ms: int
) -> AsyncGenerator[None, None]:
    """`batches` for a caller that only needs to know that something changed."""
    changes = batches(paths, relevant, coalesce_ms)
    try:
        async for _ in changes:
            yield
    finally:
        await changes.aclose()
