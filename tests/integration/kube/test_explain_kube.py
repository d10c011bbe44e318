"""`herald explain svc --source kube`: the objects and the controller's decision read from
the API (the test-double server), as the agents and the controller read them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from click.testing import CliRunner

from herald.cli.main import cli

from .apiserver import SEED, cluster, eventually, ingress_ips
from .test_controller import controller


def test_explain_reads_the_service_and_its_ipam_decision_from_the_api(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube, controller(kube):

            async def allocated() -> bool:
                return ingress_ips(await kube.get("svc", "web1-lb")) == ["203.0.113.0"]

            await eventually(allocated, "the controller's allocation")
            argv = ["explain", "svc", "default/web1-lb", "--source", "kube", "--kubeconfig",
                    str(kube.kubeconfig), "--status-dir", str(tmp_path / "none"), "-o", "json"]  # fmt: skip
            result = await asyncio.to_thread(CliRunner().invoke, cli, argv)
            assert result.exit_code == 0, result.output
            explained = json.loads(result.stdout)
            assert explained["ipam"]["addresses"] == ["203.0.113.0"]
            assert explained["ipam"]["reason"] == "satisfied"
            assert explained["ipam"]["pools"] == ["seed-pool"]
            assert explained["verdict"].startswith("203.0.113.0 (pool seed-pool)")

            missing = [*argv[:2], "default/nope", *argv[3:]]
            result = await asyncio.to_thread(CliRunner().invoke, cli, missing)
            assert result.exit_code == 1 and "default/nope not found" in result.output

    asyncio.run(asyncio.wait_for(scenario(), timeout=120))
