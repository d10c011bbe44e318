"""The controller in kube mode against the test-double API server, read back with kubectl."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from herald.controller.leader import LeaseTimings
from herald.controller.run import run_controller
from herald.sources.kube import CONTROLLER_KINDS, KubeSource

from .apiserver import SEED, Cluster, cluster, eventually, ingress_ips, service_json

FAST = LeaseTimings(lease_duration=3, renew_deadline=2.0, retry_period=0.5)


@contextlib.asynccontextmanager
async def controller(kube: Cluster, identity: str = "c1"):  # type: ignore[no-untyped-def]
    source = KubeSource(kube.client(), kinds=CONTROLLER_KINDS, timings=FAST)
    task = asyncio.create_task(run_controller(source, identity))
    try:
        yield source, task
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def test_the_controller_allocates_and_kubectl_get_svc_shows_the_address(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube, controller(kube):

            async def external_ip() -> str:
                table = await kube.kubectl("get", "svc", "web1-lb")
                return "203.0.113.0" in table and table

            table = await eventually(external_ip, "EXTERNAL-IP in kubectl get svc")
            assert "web1-lb" in table
            service = await kube.get("svc", "web1-lb")
            conditions = {c["type"]: c for c in service["status"]["conditions"]}
            assert conditions["herald.io/IPAMRequestSatisfied"]["status"] == "True"
            pool = await kube.get("loadbalancerippools", "seed-pool")
            pool_conditions = {c["type"]: c for c in pool["status"]["conditions"]}
            assert pool_conditions["herald.io/IPsUsed"]["message"] == "1"

    asyncio.run(scenario())


def test_status_is_written_only_when_it_changes(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube, controller(kube):
            await eventually(
                lambda: kube.writes("services", "status") == ["web1-lb"], "one status write"
            )
            # A change herald does not care about (a label) reaches the controller as a
            # new snapshot, and another Service is added: only the new one is written.
            await kube.kubectl("label", "svc", "web1-lb", "team=web")
            await kube.apply_text(service_json("web2-lb"))
            await eventually(
                lambda: "web2-lb" in kube.writes("services", "status"), "web2-lb written"
            )
            await asyncio.sleep(0.5)
            assert kube.writes("services", "status") == ["web1-lb", "web2-lb"]
            web2 = await kube.get("svc", "web2-lb")
            assert ingress_ips(web2) == ["203.0.113.1"]

    asyncio.run(scenario())


def test_an_allocation_failure_is_one_event_however_often_it_is_reconciled(
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube, controller(kube):
            # An address outside every pool cannot be given.
            await kube.apply_text(service_json("stray", **{"herald.io/ips": "192.0.2.77"}))

            async def events() -> list[dict[str, object]]:
                listed = await kube.get("events", "--field-selector", "involvedObject.name=stray")
                return listed["items"]  # type: ignore[no-any-return]

            found = await eventually(events, "an AllocationFailed event")
            assert [e["reason"] for e in found] == ["AllocationFailed"]
            assert found[0]["type"] == "Warning"
            assert "192.0.2.77" in str(found[0]["message"])
            # Other changes make the controller reconcile again; no second event.
            await kube.kubectl("label", "svc", "stray", "again=1")
            await kube.apply_text(service_json("other"))
            await eventually(lambda: "other" in kube.writes("services", "status"), "other")
            await asyncio.sleep(0.5)
            assert len(await events()) == 1
            stray = await kube.get("svc", "stray")
            assert ingress_ips(stray) == []

    asyncio.run(scenario())
