"""The test double through lightkube, the client library herald's Kubernetes source uses."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
from lightkube import ApiError, AsyncClient, KubeConfig, codecs
from lightkube.generic_resource import create_global_resource
from lightkube.models.meta_v1 import ObjectMeta
from lightkube.resources.coordination_v1 import Lease
from lightkube.resources.core_v1 import Namespace, Service
from lightkube.types import PatchType

from herald.lab.kubeapi import KubeApiServer

from .kubectl import CRDS

Pool = create_global_resource("herald.io", "v1alpha1", "LoadBalancerIPPool", "loadbalancerippools")


def run(scenario: Callable[[KubeApiServer, AsyncClient], Awaitable[None]], tmp_path: Path) -> None:
    async def main() -> None:
        async with KubeApiServer() as server:
            path = server.write_kubeconfig(tmp_path / "kubeconfig")
            client = AsyncClient(config=KubeConfig.from_file(path), field_manager="test")
            try:
                await scenario(server, client)
            finally:
                await client.close()

    asyncio.run(main())


def web() -> Service:
    return Service.from_dict(
        {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        }
    )


def test_list_watch_and_status_patch(tmp_path: Path) -> None:
    async def scenario(server: KubeApiServer, client: AsyncClient) -> None:
        created = await client.create(web())
        assert created.spec is not None and created.spec.clusterIP
        names = [s.metadata.name async for s in client.list(Service, namespace="*") if s.metadata]
        assert sorted(names) == ["kubernetes", "web"]
        assert created.metadata is not None
        rv = created.metadata.resourceVersion

        async def first_change() -> tuple[str, Service]:
            async for kind, obj in client.watch(Service, namespace="default", resource_version=rv):
                return kind, obj
            raise AssertionError("watch ended")

        watching = asyncio.ensure_future(first_change())
        await asyncio.sleep(0.1)
        status = {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.0"}]}}}
        await client.patch(
            Service.Status, "web", status, namespace="default", patch_type=PatchType.MERGE
        )
        kind, obj = await asyncio.wait_for(watching, 10)
        assert kind == "MODIFIED"
        assert obj.status is not None and obj.status.loadBalancer is not None
        assert obj.status.loadBalancer.ingress is not None
        assert obj.status.loadBalancer.ingress[0].ip == "203.0.113.0"

    run(scenario, tmp_path)


def test_stale_replace_is_a_conflict_and_apply_creates_then_updates(tmp_path: Path) -> None:
    async def scenario(server: KubeApiServer, client: AsyncClient) -> None:
        lease = Lease.from_dict(
            {
                "metadata": {"name": "herald-controller", "namespace": "herald-system"},
                "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15},
            }
        )
        with pytest.raises(ApiError) as missing_ns:
            await client.apply(lease)
        assert missing_ns.value.status.code == 404
        await client.create(Namespace(metadata=ObjectMeta(name="herald-system")))
        applied = await client.apply(lease)
        assert applied.spec is not None and applied.spec.holderIdentity == "a"
        stale = await client.get(Lease, "herald-controller", namespace="herald-system")
        lease.spec.holderIdentity = "b"  # type: ignore[union-attr]
        await client.apply(lease)
        assert stale.spec is not None
        stale.spec.holderIdentity = "c"
        with pytest.raises(ApiError) as conflict:
            await client.replace(stale)
        assert (conflict.value.status.code, conflict.value.status.reason) == (409, "Conflict")
        now = await client.get(Lease, "herald-controller", namespace="herald-system")
        assert now.spec is not None and now.spec.holderIdentity == "b"

    run(scenario, tmp_path)


def test_custom_resources_and_their_status(tmp_path: Path) -> None:
    async def scenario(server: KubeApiServer, client: AsyncClient) -> None:
        crd = (CRDS / "herald.io_loadbalancerippools.yaml").read_text()
        for obj in codecs.load_all_yaml(crd):
            await client.create(obj)
        pool = Pool.from_dict(  # type: ignore[attr-defined]
            {
                "apiVersion": "herald.io/v1alpha1",
                "kind": "LoadBalancerIPPool",
                "metadata": {"name": "p"},
                "spec": {"blocks": [{"cidr": "203.0.113.0/24"}]},
            }
        )
        await client.create(pool)
        with pytest.raises(ApiError) as strategic:
            await client.patch(Pool, "p", {"spec": {"disabled": True}})
        assert strategic.value.status.code == 415
        status = {"status": {"conditions": [{"type": "Ready", "status": "True"}]}}
        patched = await client.patch(Pool.Status, "p", status, patch_type=PatchType.MERGE)
        assert patched.status["conditions"][0]["type"] == "Ready"
        got = await client.get(Pool, "p")
        assert got.spec["allowFirstLastIPs"] == "Yes"
        assert got.status["conditions"][0]["status"] == "True"

    run(scenario, tmp_path)


def test_over_tls_a_service_account_without_roles_is_forbidden(tmp_path: Path) -> None:
    async def main() -> None:
        async with KubeApiServer(tls=True, authorize=True) as server:
            assert server.url.startswith("https://")
            admin_config = server.write_kubeconfig(tmp_path / "admin")
            sa_config = server.write_kubeconfig(tmp_path / "sa", service_account=("x", "y"))
            admin = AsyncClient(config=KubeConfig.from_file(admin_config))
            account = AsyncClient(config=KubeConfig.from_file(sa_config))
            try:
                assert [s.metadata.name async for s in admin.list(Service) if s.metadata]
                with pytest.raises(ApiError) as err:
                    await account.get(Service, "kubernetes", namespace="default")
                assert (err.value.status.code, err.value.status.reason) == (403, "Forbidden")
            finally:
                await admin.close()
                await account.close()
        users = {r.user for r in server.requests}
        assert users == {"kubernetes-admin", "system:serviceaccount:x:y"}

    asyncio.run(main())
