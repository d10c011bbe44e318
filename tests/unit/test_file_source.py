"""The manifests-directory source and the controller on it, with real files and inotify
(no Kubernetes API involved: this is the embedded source itself)."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from herald.api.core import Service
from herald.api.manifests import SizeLimits
from herald.api.snapshot import ClusterState
from herald.controller.run import run_controller
from herald.sources.files import FileSource, MergeCache, merge_status, write_atomically

POOL = """apiVersion: herald.io/v1alpha1
kind: LoadBalancerIPPool
metadata: {name: pool}
spec: {blocks: [{cidr: 203.0.113.0/24}]}
"""


def service_yaml(name: str, created: str | None = None) -> str:
    meta = f"{{name: {name}" + (f", creationTimestamp: '{created}'" if created else "") + "}"
    return f"apiVersion: v1\nkind: Service\nmetadata: {meta}\nspec: {{type: LoadBalancer}}\n"


async def wait_for(check: Callable[[], bool], seconds: float = 5.0) -> None:
    for _ in range(int(seconds / 0.02)):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not reached in time")


def external_ips(source: FileSource) -> dict[str, tuple[str, ...]]:
    state = source.load()
    return {
        svc.key: tuple(i.ip or "" for i in svc.status.load_balancer.ingress)
        for svc in state.services
    }


def run(coroutine: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(coroutine(), timeout=30))


def test_snapshots_follow_changes_and_skip_invalid_input(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text(POOL)
    source = FileSource(tmp_path)

    async def scenario() -> None:
        seen: list[ClusterState] = []
        stream = source.snapshots()
        seen.append(await anext(stream))
        assert [p.metadata.name for p in seen[0].pools] == ["pool"]
        (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {}\n")
        (tmp_path / "svc.yaml").write_text(service_yaml("web"))
        # The invalid file makes the whole directory invalid: the last good snapshot comes
        # again with the problem, nothing newer until it is fixed, and then the snapshot
        # holds both files.
        kept = await asyncio.wait_for(anext(stream), timeout=5)
        assert kept.services == () and any("bad.yaml" in p for p in kept.problems)
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        (tmp_path / "bad.yaml").unlink()
        snapshot = await asyncio.wait_for(waiting, timeout=5)
        assert [s.key for s in snapshot.services] == ["default/web"]
        await stream.aclose()

    run(scenario)


def test_leadership_is_exclusive_and_passes_on(tmp_path: Path) -> None:
    source = FileSource(tmp_path)
    order: list[str] = []

    async def hold(name: str, seconds: float) -> None:
        async with source.leadership(name):
            order.append(f"{name} leads")
            await asyncio.sleep(seconds)
            order.append(f"{name} leaves")

    async def scenario() -> None:
        first = asyncio.ensure_future(hold("a", 0.4))
        await asyncio.sleep(0.05)
        await asyncio.gather(first, hold("b", 0.0))

    run(scenario)
    assert order == ["a leads", "a leaves", "b leads", "b leaves"]


def test_controller_allocates_and_keeps_addresses_across_restart(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text(POOL)
    (tmp_path / "b.yaml").write_text(service_yaml("b"))
    source = FileSource(tmp_path)

    async def scenario() -> None:
        controller = asyncio.ensure_future(run_controller(source, "first"))
        await wait_for(lambda: external_ips(source).get("default/b") == ("203.0.113.0",))
        (tmp_path / "c.yaml").write_text(service_yaml("c"))
        await wait_for(lambda: external_ips(source).get("default/c") == ("203.0.113.1",))
        controller.cancel()
        # While no controller runs, a Service that claims to be older than both appears;
        # a restarted controller must not hand it an address someone already holds.
        (tmp_path / "a.yaml").write_text(service_yaml("a", created="2020-01-01T00:00:00Z"))
        restarted = asyncio.ensure_future(run_controller(FileSource(tmp_path), "second"))
        await wait_for(lambda: bool(external_ips(source).get("default/a")))
        assert external_ips(source) == {
            "default/a": ("203.0.113.2",),
            "default/b": ("203.0.113.0",),
            "default/c": ("203.0.113.1",),
        }
        (tmp_path / "b.yaml").unlink()
        await wait_for(lambda: "default/b" not in json.loads(source.state.read_text())["services"])
        assert external_ips(source)["default/c"] == ("203.0.113.1",)
        restarted.cancel()

    run(scenario)


def test_standby_controller_takes_over(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text(POOL)
    source = FileSource(tmp_path)

    async def scenario() -> None:
        active = asyncio.ensure_future(run_controller(source, "active"))
        await wait_for(source.state.exists)
        standby = asyncio.ensure_future(run_controller(FileSource(tmp_path), "standby"))
        await asyncio.sleep(0.3)
        lock = source.state.with_name("controller.lock")
        assert lock.read_text().startswith("active ")
        active.cancel()
        await wait_for(lambda: lock.read_text().startswith("standby "))
        (tmp_path / "svc.yaml").write_text(service_yaml("web"))
        await wait_for(lambda: external_ips(source).get("default/web") == ("203.0.113.0",))
        standby.cancel()

    run(scenario)


# -- robustness: a large directory, invalid files, private files ------------------------------


def services_yaml(first: int, count: int) -> str:
    return "---\n".join(
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: svc-{i}, labels: {{app: a{i}}}}}\n"
        f"spec:\n  type: LoadBalancer\n  selector: {{app: a{i}}}\n  ports:\n"
        "  - {name: http, port: 80, targetPort: 8080, protocol: TCP}\n"
        "  - {name: https, port: 443, targetPort: 8443, protocol: TCP}\n"
        for i in range(first, first + count)
    )


async def tick_into(gaps: list[float]) -> None:
    """Every 10 ms, the time since the last tick: how long the event loop was held."""
    before = time.monotonic()
    while True:
        await asyncio.sleep(0.01)
        now = time.monotonic()
        gaps.append(now - before)
        before = now


def test_parsing_a_large_directory_leaves_the_event_loop_ticking(tmp_path: Path) -> None:
    # Four files of ~0.75 MiB: seconds of parsing, which an agent's loop (BGP keepalives
    # and hold timers) must not wait for.
    for index in range(4):
        (tmp_path / f"services-{index}.yaml").write_text(services_yaml(index * 2500, 2500))
    limits = SizeLimits(file_bytes=2**20, total_bytes=4 * 2**20)
    source = FileSource(tmp_path, limits=limits)
    gaps: list[float] = []

    async def scenario() -> None:
        ticking = asyncio.ensure_future(tick_into(gaps))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        stream = source.snapshots()
        snapshot = await anext(stream)
        elapsed = time.monotonic() - start
        await stream.aclose()
        await asyncio.sleep(0.05)  # the ticker's next tick measures the gap it is in
        ticking.cancel()
        assert len(snapshot.services) == 10_000
        # Relative to the parse as well, so that a fast machine cannot pass it by parsing
        # in less than the bound.
        assert max(gaps) < min(0.5, elapsed / 3), (max(gaps), elapsed)

    run(scenario)


def test_a_large_file_written_after_a_quick_load_is_parsed_off_the_loop(tmp_path: Path) -> None:
    # The first load is quick (one Service), so the next would run on the loop if its
    # time were the only guide; the file written next takes seconds to parse.
    (tmp_path / "small.yaml").write_text(services_yaml(0, 1))
    limits = SizeLimits(file_bytes=4 * 2**20, total_bytes=4 * 2**20)
    source = FileSource(tmp_path, limits=limits)
    gaps: list[float] = []

    async def scenario() -> None:
        stream = source.snapshots()
        assert len((await anext(stream)).services) == 1
        # Loaded once more, quickly, so that the last load's time is a small one.
        (tmp_path / "small.yaml").write_text(services_yaml(0, 2))
        assert len((await anext(stream)).services) == 2
        ticking = asyncio.ensure_future(tick_into(gaps))
        await asyncio.sleep(0.05)
        start = time.monotonic()
        big = tmp_path / "big.tmp"
        big.write_text(services_yaml(10, 5000))
        big.rename(tmp_path / "big.yaml")
        snapshot = await anext(stream)
        elapsed = time.monotonic() - start
        await stream.aclose()
        await asyncio.sleep(0.05)
        ticking.cancel()
        assert len(snapshot.services) == 5002
        assert max(gaps) < min(0.5, elapsed / 3), (max(gaps), elapsed)

    run(scenario)


def test_an_invalid_link_or_a_file_too_large_keeps_the_last_good_snapshot(
    tmp_path: Path,
) -> None:
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "pool.yaml").write_text(POOL)
    (tmp_path / "outside.yaml").write_text(service_yaml("outside"))
    source = FileSource(manifests, limits=SizeLimits(file_bytes=1000, total_bytes=10_000))

    async def scenario() -> None:
        stream = source.snapshots()
        first = await anext(stream)
        assert first.problems == ()
        (manifests / "link.yaml").symlink_to(tmp_path / "outside.yaml")
        (manifests / "big.yaml").write_text(service_yaml("big") + "#\n" * 1000)
        # The last good snapshot again, now saying why it is kept (every process shows it).
        kept = await asyncio.wait_for(anext(stream), timeout=5)
        assert kept.services == first.services and kept.pools == first.pools
        assert any("link.yaml" in p and "outside" in p for p in kept.problems), kept.problems
        assert any("big.yaml" in p for p in kept.problems), kept.problems
        waiting = asyncio.ensure_future(anext(stream))
        await asyncio.sleep(0.3)
        assert not waiting.done(), "the same problems are not yielded again"
        (manifests / "link.yaml").unlink()
        (manifests / "big.yaml").write_text(service_yaml("big"))
        snapshot = await asyncio.wait_for(waiting, timeout=5)
        assert [p.metadata.name for p in first.pools] == ["pool"]
        assert [s.key for s in snapshot.services] == ["default/big"]
        assert snapshot.problems == ()
        await stream.aclose()

    run(scenario)


def test_write_atomically_never_lets_others_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    replace = os.replace

    def checked_replace(source: Any, target: Any) -> None:
        # The moment before the file appears under its name: it must be private already
        # (and was since its creation: nothing widens it in between).
        modes.append(stat.S_IMODE(os.stat(source).st_mode))
        replace(source, target)

    monkeypatch.setattr(os, "replace", checked_replace)
    previous = os.umask(0o022)
    try:
        write_atomically(tmp_path / "state.json", "{}")
        write_atomically(tmp_path / "public.yaml", "a: 1", mode=0o644)
    finally:
        os.umask(previous)
    assert modes == [0o600, 0o644]
    assert stat.S_IMODE((tmp_path / "state.json").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "public.yaml").stat().st_mode) == 0o644
    assert (tmp_path / "state.json").read_text() == "{}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["public.yaml", "state.json"]


def test_the_controller_keeps_its_files_private_and_the_last_good_manifests(
    tmp_path: Path,
) -> None:
    (tmp_path / "pool.yaml").write_text(POOL)
    (tmp_path / "web.yaml").write_text(service_yaml("web"))
    source = FileSource(tmp_path)
    previous = os.umask(0o022)

    async def scenario() -> None:
        controller = asyncio.ensure_future(run_controller(source, "only"))
        await wait_for(lambda: external_ips(source).get("default/web") == ("203.0.113.0",))
        await wait_for(source.last_good_path.exists)
        ported = service_yaml("web").replace(
            "LoadBalancer}", "LoadBalancer, ports: [{port: 8080}]}"
        )
        (tmp_path / "web.yaml").write_text(ported)
        await wait_for(lambda: "8080" in source.last_good_path.read_text())
        # An invalid file: nothing is saved, the last good manifests stay.
        (tmp_path / "bad.yaml").write_text("apiVersion: v1\nkind: Service\nmetadata: {}\n")
        (tmp_path / "db.yaml").write_text(service_yaml("db"))
        await asyncio.sleep(0.3)
        controller.cancel()

    try:
        run(scenario)
    finally:
        os.umask(previous)
    for name in ("state.json", "last-good.json", "controller.lock"):
        mode = stat.S_IMODE((tmp_path / ".herald" / name).stat().st_mode)
        assert mode == 0o600, (name, oct(mode))
    last_good = source.read_last_good()
    assert last_good is not None
    assert [s.key for s in last_good.state.services] == ["default/web"]
    assert [p.port for p in last_good.state.services[0].spec.ports] == [8080]
    assert [p.metadata.name for p in last_good.state.pools] == ["pool"]
    assert sorted(p.name for p in (tmp_path / ".herald").iterdir()) == [
        "controller.lock",
        "last-good.json",
        "state.json",
    ]


def test_a_slow_last_good_save_does_not_hold_back_the_status(tmp_path: Path) -> None:
    # The last good manifests are saved after the status is written, not in the load:
    # a disk slow to sync must not stand between a new Service and its address.
    (tmp_path / "pool.yaml").write_text(POOL)
    (tmp_path / "web.yaml").write_text(service_yaml("web"))
    source = FileSource(tmp_path)
    release = threading.Event()
    save = source._keep_last_good

    def slow_disk(manifests: ClusterState) -> None:
        release.wait(10)
        save(manifests)

    source._keep_last_good = slow_disk  # type: ignore[method-assign]

    async def scenario() -> None:
        controller = asyncio.ensure_future(run_controller(source, "only"))
        try:
            await wait_for(lambda: external_ips(source).get("default/web") == ("203.0.113.0",))
            (tmp_path / "db.yaml").write_text(service_yaml("db"))
            await wait_for(lambda: bool(external_ips(source).get("default/db")))
            assert not source.last_good_path.exists()  # still syncing
        finally:
            release.set()
        await wait_for(
            lambda: source.last_good_path.exists() and "db" in source.last_good_path.read_text()
        )
        controller.cancel()
        await asyncio.gather(controller, return_exceptions=True)

    run(scenario)
    last_good = source.read_last_good()
    assert last_good is not None
    assert sorted(s.key for s in last_good.state.services) == ["default/db", "default/web"]


def test_a_last_good_save_that_fails_costs_only_the_listing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "pool.yaml").write_text(POOL)
    (tmp_path / "web.yaml").write_text(service_yaml("web"))
    source = FileSource(tmp_path)
    source.last_good_path.mkdir(parents=True)  # cannot be replaced by a file

    async def scenario() -> None:
        controller = asyncio.ensure_future(run_controller(source, "only"))
        await wait_for(lambda: external_ips(source).get("default/web") == ("203.0.113.0",))
        (tmp_path / "db.yaml").write_text(service_yaml("db"))
        await wait_for(lambda: bool(external_ips(source).get("default/db")))
        controller.cancel()
        await asyncio.gather(controller, return_exceptions=True)

    run(scenario)
    assert "event=last_good_unwritten" in caplog.text
    assert source.read_last_good() is None


def test_a_load_that_waited_rather_than_worked_stays_on_the_event_loop(tmp_path: Path) -> None:
    # A load held up by a busy machine (here: a read that sleeps) used little CPU: the next
    # one runs on the loop, not behind two thread hand-offs. One that worked goes to a thread.
    (tmp_path / "pool.yaml").write_text(POOL)
    source = FileSource(tmp_path)
    threads: list[bool] = []
    read_state = source.read_state
    busy = {"work": False}

    def slow_read() -> dict[str, Any]:
        threads.append(threading.current_thread() is threading.main_thread())
        deadline = time.perf_counter() + 0.02
        if busy["work"]:
            while time.perf_counter() < deadline:  # 20 ms of CPU
                pass
        else:
            time.sleep(0.02)  # 20 ms of waiting
        return read_state()

    source.read_state = slow_read  # type: ignore[method-assign]

    async def scenario() -> None:
        stream = source.snapshots()
        await anext(stream)  # the first load: its cost unknown, in a thread
        (tmp_path / "a.yaml").write_text(service_yaml("a"))
        await asyncio.wait_for(anext(stream), timeout=5)  # after a waiting load: inline
        busy["work"] = True
        (tmp_path / "b.yaml").write_text(service_yaml("b"))
        await asyncio.wait_for(anext(stream), timeout=5)  # inline; it worked 20 ms
        (tmp_path / "c.yaml").write_text(service_yaml("c"))
        await asyncio.wait_for(anext(stream), timeout=5)  # so this one in a thread
        await stream.aclose()

    run(scenario)
    assert threads == [False, True, True, False]


def test_merging_status_again_keeps_what_did_not_change_and_only_that(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The loader hands back the same objects for unchanged files; the merge keeps them
    # too, so that nothing downstream sees a change where there was none.
    web, db = (
        Service.model_validate(
            {"metadata": {"name": n, "namespace": "default"}, "spec": {"type": "LoadBalancer"}}
        )
        for n in ("web", "db")
    )
    state = ClusterState(services=(web, db))
    ready = {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}}
    stored: dict[str, Any] = {
        "services": {"default/web": ready, "default/db": ready},
        "firstSeen": {"Service/default/web": "2026-01-01T00:00:00Z"},
    }
    cache: MergeCache = {}
    first = merge_status(state, json.loads(json.dumps(stored)), cache)
    again = merge_status(state, json.loads(json.dumps(stored)), cache)
    assert again.services[0] is first.services[0] and again.services[1] is first.services[1]
    assert again.services[0].metadata.creation_timestamp == "2026-01-01T00:00:00Z"
    # db's entry changes: db is merged again, web stays the object it was.
    moved = {"loadBalancer": {"ingress": [{"ip": "203.0.113.2"}]}}
    stored["services"]["default/db"] = moved
    changed = merge_status(state, json.loads(json.dumps(stored)), cache)
    assert changed.services[0] is first.services[0]
    assert changed.services[1].status.load_balancer.ingress[0].ip == "203.0.113.2"
    # A broken entry costs only its Service (no status, said on every load); the others stay.
    stored["services"]["default/db"] = {"loadBalancer": {"ingress": "not a list"}}
    for _ in range(2):
        broken = merge_status(state, json.loads(json.dumps(stored)), cache)
        assert broken.services[0] is first.services[0]
        assert broken.services[1].status.load_balancer.ingress == ()
    assert caplog.text.count("event=state_entry_invalid service=default/db") == 2
    # An edited manifest is a new object: merged again whatever its entry.
    edited = web.model_copy(update={"spec": web.spec.model_copy(update={"ports": ()})})
    state = ClusterState(services=(edited, db))
    assert merge_status(state, stored, cache).services[0].status.load_balancer.ingress[0].ip
    assert merge_status(state, stored, cache).services[0] is not first.services[0]
    assert set(cache) == {"Service/default/web"}  # db's broken entry is never kept
