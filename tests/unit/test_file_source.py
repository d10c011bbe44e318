"""The manifests-directory source and the controller on it, with real files and inotify
(no Kubernetes API involved: this is the embedded source itself)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path

from herald.api.snapshot import ClusterState
from herald.controller.run import run_controller
from herald.sources.files import FileSource

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
        # The invalid file makes the whole directory invalid: nothing new is yielded until
        # it is fixed, and then the snapshot holds both files.
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
