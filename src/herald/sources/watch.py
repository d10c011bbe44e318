"""Wake-ups for changes below directories, the first one before anything changed.

A reader of a directory must watch it before it reads it: what changes between the read and
the start of the watch is otherwise never seen. watchfiles sets up its inotify watches when
its iterator is first stepped, so `wakeups` steps it, then yields once for the initial read,
then once per batch of changes some path of which is `relevant`. A change made while the
caller handles a wake-up is kept by the watcher and gives the next one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable, Iterable
from pathlib import Path

import watchfiles


async def wakeups(
    paths: Iterable[Path], relevant: Callable[[Path], bool], debounce_ms: int
) -> AsyncGenerator[None, None]:
    changes = watchfiles.awatch(
        *sorted({str(p) for p in paths}),
        debounce=debounce_ms,
        step=1,
        recursive=True,
        watch_filter=None,
    )
    # Stepping the iterator runs its body up to its first await: the watches are in place
    # when this sleep returns.
    pending = asyncio.ensure_future(anext(changes))
    await asyncio.sleep(0)
    try:
        yield
        while True:
            batch = await pending
            pending = asyncio.ensure_future(anext(changes))
            if any(relevant(Path(path)) for _, path in batch):
                yield
    finally:
        pending.cancel()
        await asyncio.gather(pending, return_exceptions=True)
        await changes.aclose()
