"""`herald get svc|pools --source kube`: the listings read from the API (the test-double
server) with the controller's status, as `kubectl get` would show them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from herald.cli.main import cli

from .apiserver import SEED, cluster, eventually, ingress_ips
from .test_controller import controller


def test_get_lists_services_and_pools_from_the_api(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube, controller(kube):

            async def allocated() -> bool:
                return ingress_ips(await kube.get("svc", "web1-lb")) == ["203.0.113.0"]

            await eventually(allocated, "the controller's allocation")
            source = ["--source", "kube", "--kubeconfig", str(kube.kubeconfig)]

            def get(*argv: str) -> str:
                result = CliRunner().invoke(cli, ["get", *argv, *source])
                assert result.exit_code == 0, result.output
                return result.stdout

            table = await asyncio.to_thread(get, "svc", "-n", "default")
            (row,) = [line for line in table.splitlines() if "web1-lb" in line]
            assert "203.0.113.0" in row.split() and "LoadBalancer" in row.split()
            assert "web1-lb" not in await asyncio.to_thread(get, "svc", "-n", "elsewhere")
            listed = json.loads(await asyncio.to_thread(get, "pools", "-o", "json"))
            assert [p["metadata"]["name"] for p in listed["items"]] == ["seed-pool"]
            conditions = {c["type"]: c for c in listed["items"][0]["status"]["conditions"]}
            assert conditions["herald.io/IPsUsed"]["message"] == "1"

    asyncio.run(asyncio.wait_for(scenario(), timeout=120))
