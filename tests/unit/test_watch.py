"""Directory wake-ups with real files and inotify: a reader that watches before it reads
misses nothing written while it reads."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from herald.sources.watch import batches, wakeups


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


def test_a_burst_is_one_batch_naming_every_relevant_path(tmp_path: Path) -> None:
    async def scenario() -> None:
        stream = batches([tmp_path], lambda path: path.suffix == ".yaml", 10)
        initial = await anext(stream)
        assert initial.paths == frozenset()
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0)
        written = {tmp_path / f"svc-{i}.yaml" for i in range(30)}
        for path in sorted(written):  # no await in between: one burst, as `cp -r` makes
            path.write_text("x")
        (tmp_path / "notes.txt").write_text("ignored")
        batch = await asyncio.wait_for(waiting, timeout=5)
        assert batch.paths == written
        later = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.3)
        assert not later.done()  # nothing of the burst is left for a second wake-up
        later.cancel()
        await asyncio.gather(later, return_exceptions=True)
        await stream.aclose()

    asyncio.run(scenario())


def test_a_new_directory_is_watched_and_what_was_already_in_it_is_a_change(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        stream = batches([tmp_path], lambda path: path.suffix == ".yaml", 10)
        await anext(stream)
        made = tmp_path / "team-a"
        made.mkdir()
        (made / "svc.yaml").write_text("x")
        first = await asyncio.wait_for(anext(stream), timeout=5)
        assert made / "svc.yaml" in first.paths
        (made / "pool.yaml").write_text("y")
        second = await asyncio.wait_for(anext(stream), timeout=5)
        assert second.paths == {made / "pool.yaml"}
        await stream.aclose()

    asyncio.run(scenario())


def test_a_change_while_the_caller_is_busy_keeps_when_it_was_noticed(tmp_path: Path) -> None:
    async def scenario() -> None:
        stream = batches([tmp_path], lambda path: path.suffix == ".yaml", 10)
        await anext(stream)
        (tmp_path / "svc.yaml").write_text("x")
        await asyncio.sleep(0.2)  # the caller is busy; the event loop runs
        asked = time.perf_counter()
        batch = await asyncio.wait_for(anext(stream), timeout=5)
        assert batch.noticed < asked  # stamped on arrival, not when asked for
        await stream.aclose()

    asyncio.run(scenario())


def test_a_missing_directory_is_the_callers_error(tmp_path: Path) -> None:
    async def scenario() -> None:
        stream = batches([tmp_path / "absent"], lambda path: True, 10)
        with pytest.raises(FileNotFoundError):
            await anext(stream)

    asyncio.run(scenario())
