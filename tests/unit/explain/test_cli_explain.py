"""`herald explain svc` end to end without a lab: a real controller decides (and its
metrics hook sees the decision), a real agent status socket answers, the CLI prints."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path

from click.testing import CliRunner, Result
from prometheus_client.parser import text_string_to_metric_families

from herald.agent.status import AgentStatus, serve_status, socket_path
from herald.cli.main import cli
from herald.controller.run import run_controller
from herald.metrics.controller import ControllerMetrics
from herald.observe.event import FlowEvent
from herald.observe.reader import FlowReader
from herald.sources.files import FileSource

POOL = """apiVersion: herald.io/v1alpha1
kind: LoadBalancerIPPool
metadata: {name: pool}
spec: {blocks: [{cidr: 203.0.113.0/24}]}
"""
WEB = """apiVersion: v1
kind: Service
metadata: {name: web}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"""
NOPOOL = """apiVersion: v1
kind: Service
metadata: {name: nopool, annotations: {herald.io/ips: 198.51.100.200}}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"""


def _decide(manifests: Path, metrics: ControllerMetrics) -> None:
    source = FileSource(manifests)

    async def scenario() -> None:
        controller = asyncio.ensure_future(run_controller(source, "test", observe=metrics.observe))
        for _ in range(250):
            if len(source.read_state().get("services", {})) == 2:
                break
            await asyncio.sleep(0.02)
        controller.cancel()
        await asyncio.gather(controller, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


def _explain(
    manifests: Path, status_dir: Path, *args: str, flows: FlowReader | None = None
) -> Result:
    agent = AgentStatus(node="n1", services=("default/web",))

    async def scenario() -> Result:
        observe = flows.stream if flows is not None else None
        server = await serve_status(socket_path(status_dir, "n1"), lambda _: agent, observe)
        try:
            argv = ["explain", "svc", *args, "--manifests", str(manifests)]
            argv += ["--status-dir", str(status_dir)]
            return await asyncio.to_thread(CliRunner().invoke, cli, argv)
        finally:
            server.close()

    return asyncio.run(scenario())


def test_explain_from_the_controllers_decision_and_the_agents_status(tmp_path: Path) -> None:
    manifests, status_dir = tmp_path / "m", tmp_path / "agents"
    manifests.mkdir()
    for name, text in (("pool", POOL), ("web", WEB), ("nopool", NOPOOL)):
        (manifests / f"{name}.yaml").write_text(text)
    metrics = ControllerMetrics()
    _decide(manifests, metrics)
    # The controller told its metrics what it decided.
    text = asyncio.run(metrics.exposition()).decode()
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("herald_ipam_addresses_in_use", (("pool", "pool"),))] == 1
    assert samples[("herald_ipam_allocation_failures_total", (("reason", "no_pool"),))] == 1

    result = _explain(manifests, status_dir, "default/web", "-o", "json")
    assert result.exit_code == 0, result.output
    web = json.loads(result.stdout)
    assert web["ipam"]["addresses"] == ["203.0.113.0"] and web["ipam"]["pools"] == ["pool"]
    (node,) = web["nodes"]
    assert node["node"] == "n1" and node["announces"] is False
    assert node["reasons"] == [
        "no ready endpoint anywhere (nor one serving while terminating): nothing to forward to"
    ]

    result = _explain(manifests, status_dir, "nopool")  # the default namespace
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[0] == (
        "Service default/nopool: pending: no pool has an address for it: 198.51.100.200 is "
        "in no LoadBalancerIPPool"
    )

    result = _explain(manifests, status_dir, "default/missing")
    assert result.exit_code == 1
    assert "Service default/missing not found in the manifests" in result.output


def test_explain_shows_the_last_dropped_flows_to_the_services_address(tmp_path: Path) -> None:
    manifests, status_dir = tmp_path / "m", tmp_path / "agents"
    manifests.mkdir()
    for name, text in (("pool", POOL), ("web", WEB), ("nopool", NOPOOL)):
        (manifests / f"{name}.yaml").write_text(text)
    _decide(manifests, ControllerMetrics())
    flows = FlowReader("n1")
    drop = FlowEvent(time=1764795000.0, node="n1", direction="request", protocol="TCP",
                     client="198.51.100.10", client_port=40000, vip="203.0.113.0", vip_port=80,
                     verdict="DROPPED", reason="no-usable-backend", service="default/web",
                     tcp_flags=("SYN",))  # fmt: skip
    for i in range(8):
        flows.ring.append(replace(drop, time=drop.time + i, client_port=40000 + i))
    forwarded = replace(drop, verdict="FORWARDED", reason="to-node", time=drop.time + 20)
    flows.ring.append(forwarded)
    flows.ring.append(replace(drop, vip="203.0.113.9", time=drop.time + 30))  # another VIP

    result = _explain(manifests, status_dir, "web", "--dropped", "3", "-o", "json", flows=flows)
    assert result.exit_code == 0, result.output
    dropped = json.loads(result.stdout)["dropped"]
    assert [d["client_port"] for d in dropped] == [40005, 40006, 40007]
    assert {(d["vip"], d["verdict"]) for d in dropped} == {("203.0.113.0", "DROPPED")}

    table = _explain(manifests, status_dir, "web", flows=flows)
    assert table.exit_code == 0, table.output
    lines = table.stdout.splitlines()
    start = lines.index("Last dropped flows (5):")
    assert all("DROPPED no-usable-backend" in line for line in lines[start + 1 : start + 6])
    # Without flow events on the node the rest is explained all the same.
    assert "dropped" not in _explain(manifests, status_dir, "web").stdout.lower()
