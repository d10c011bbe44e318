"""Directory wake-ups with real files and inotify: a reader that watches before it reads
misses nothing written while it reads."""

from __future__ import annotations

import asyncio
from pathlib import Path

from herald.sources.watch import wakeups


def test_a_change_made_while_handling_a_wakeup_gives_the_next_one(tmp_path: Path) -> None:
    async def scenario() -> None:
        stream = wakeups([tmp_path], lambda path: path.suffix == ".yaml", 10)
        await anext(stream)
        # The first read: the file written now, before the caller asks again, is exactly
        # what the lab's kubelet missed when it read first and watched after.
        (tmp_path / "services.yaml").write_text("late")
        await asyncio.wait_for(anext(stream), timeout=5)
        await stream.aclose()

    asyncio.run(scenario())


def test_irrelevant_changes_wake_nobody(tmp_path: Path) -> None:
    async def scenario() -> None:
        stream = wakeups([tmp_path], lambda path: path.suffix == ".yaml", 10)
        await anext(stream)
        waiting = asyncio.ensure_future(anext(stream))
        (tmp_path / "notes.txt").write_text("ignored")
        await asyncio.sleep(0.3)
        assert not waiting.done()
        (tmp_path / "pool.yaml").write_text("seen")
        await asyncio.wait_for(waiting, timeout=5)
        await stream.aclose()

    asyncio.run(scenario())
