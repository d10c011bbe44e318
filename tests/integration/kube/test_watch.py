"""List + watch against the test-double API server: restarts, 410 Gone, bookmarks."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from herald.api.snapshot import ClusterState
from herald.sources.kube import AGENT_KINDS, KubeSource

from .apiserver import CRDS, SEED, Cuttable, cluster, eventually, service_json


def names(state: ClusterState) -> set[str]:
    return {svc.metadata.name for svc in state.services}


@contextlib.asynccontextmanager
async def following(source: KubeSource) -> AsyncIterator[list[ClusterState]]:
    """Every snapshot `source` gives, appended as it comes; the first one awaited."""
    seen: list[ClusterState] = []

    async def follow() -> None:
        async for snapshot in source.snapshots():
            seen.append(snapshot)

    task = asyncio.create_task(follow())
    try:
        await eventually(lambda: seen, "the first snapshot")
        yield seen
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_an_api_server_restart_mid_watch_loses_no_change(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube:
            link = Cuttable()
            source = KubeSource(kube.client(link), kinds=AGENT_KINDS)
            async with following(source) as seen:
                assert "web1-lb" in names(seen[-1])
                # The server restarts and, before herald's watches are back, a Service is
                # created: it must arrive through the resumed watch.
                link.cut = True
                await kube.server.restart(keep_state=True)
                await kube.apply_text(service_json("during"))
                await eventually(lambda: source.watches["Service"].failures >= 1, "the watch down")
                # Meanwhile the snapshot says it may be stale, and why.
                await eventually(
                    lambda: any("Service not watched" in p for p in seen[-1].problems),
                    "the staleness shown",
                )
                link.cut = False
                await eventually(lambda: "during" in names(seen[-1]), "the change made meanwhile")
                await eventually(lambda: not seen[-1].problems, "the staleness cleared")
                # Resumed from the resourceVersion it had: no second list was needed.
                assert source.watches["Service"].relists == 1
                await kube.kubectl("delete", "svc", "during")
                await eventually(lambda: "during" not in names(seen[-1]), "the deletion")

    asyncio.run(scenario())


def test_410_gone_relists_and_finds_what_was_missed(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube:
            link = Cuttable()
            source = KubeSource(kube.client(link), kinds=AGENT_KINDS)
            async with following(source) as seen:
                # While herald cannot reach the server: a deletion and a creation, then the
                # history is compacted away (as etcd does) and the server restarts.
                link.cut = True
                await kube.server.restart(keep_state=True)
                await kube.kubectl("delete", "svc", "web1-lb")
                await kube.apply_text(service_json("fresh"))
                kube.server.compact()
                link.cut = False
                await eventually(
                    lambda: names(seen[-1]) == {"kubernetes", "fresh"}, "the relisted state"
                )
                assert source.watches["Service"].relists == 2

    asyncio.run(scenario())


def test_an_invalid_object_costs_only_itself(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube:
            # A malformed herald annotation: the Service is left out and named.
            await kube.apply_text(service_json("broken", **{"herald.io/ips": "not-an-ip"}))
            source = KubeSource(kube.client(), kinds=AGENT_KINDS)
            snapshots = source.snapshots()
            try:
                first = await asyncio.wait_for(anext(snapshots), 30)
            finally:
                await snapshots.aclose()  # type: ignore[attr-defined]
            assert "web1-lb" in names(first)
            assert "broken" not in names(first)
            assert any("Service/default/broken" in p for p in first.problems)
            assert {p.metadata.name for p in first.pools} == {"seed-pool"}
            assert {c.metadata.name for c in first.bgp_peer_configs} == {"seed-peer"}

    asyncio.run(scenario())


def test_a_kind_not_served_yet_is_retried_until_it_is_and_nothing_is_served_before(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, crds=False) as kube:
            source = KubeSource(kube.client(), kinds=AGENT_KINDS)
            snapshots = source.snapshots()
            first = asyncio.ensure_future(anext(snapshots))
            try:
                # Without herald's CRDs their lists fail (404) and are retried with back-off;
                # no snapshot is given without them (it would lack every pool).
                await eventually(
                    lambda: source.watches and source.watches["LoadBalancerIPPool"].failures >= 1,
                    "a failed list of pools",
                )
                assert not first.done()
                assert source.watches["Service"].synced.is_set()
                await kube.apply(CRDS, SEED)
                state = await asyncio.wait_for(first, 60)
                assert {p.metadata.name for p in state.pools} == {"seed-pool"}
            finally:
                first.cancel()
                await snapshots.aclose()  # type: ignore[attr-defined]

    asyncio.run(scenario())


def test_a_quiet_kind_resumes_from_the_bookmarks_it_was_sent(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube:
            source = KubeSource(kube.client(), kinds=AGENT_KINDS)
            async with following(source):
                nodes = source.caches["Node"]
                listed_at = nodes.resource_version
                # Other kinds change; no Node does. The server's bookmarks (every second
                # here) carry the Node watch's resume point forward all the same, so a
                # reconnect after a compaction need not re-list Nodes.
                await kube.apply_text(service_json("elsewhere"))
                revision = str(kube.server.store.revision)
                await eventually(
                    lambda: nodes.resource_version == revision, "a bookmark at the new revision"
                )
                assert listed_at != revision
                assert source.watches["Node"].relists == 1

    asyncio.run(scenario())
