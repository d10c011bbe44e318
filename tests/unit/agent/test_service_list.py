"""`herald service list`: the frontends a node's committed rules forward, with backends,
their state and pod, and counters; merged over nodes by the CLI."""

from __future__ import annotations

import asyncio
import json
from ipaddress import ip_address
from pathlib import Path

from click.testing import CliRunner

from herald.agent.run import frontends
from herald.agent.status import AgentStatus, serve_status, socket_path
from herald.cli.main import cli
from herald.dataplane.apply import Counter
from herald.dataplane.model import (
    Backend,
    DataplaneService,
    ForwardingMode,
    Protocol,
    ServicePort,
)

from .test_isolation import FakeNft, agent, two_services

WEB = DataplaneService(
    key="default/web",
    vips=(ip_address("203.0.113.0"), ip_address("2001:db8:113::")),
    ports=(ServicePort("http", Protocol.TCP, 80, 8080),),
    backends=(
        Backend(ip_address("198.18.1.10"), "w1", pod="default/web-0"),
        Backend(
            ip_address("198.18.2.10"), "w2", ready=False, terminating=True, pod="default/web-1"
        ),
        Backend(ip_address("198.18.3.10"), "w3", ready=False, serving=False, pod="default/web-2"),
        Backend(ip_address("2001:db8:18:1::10"), "w1", pod="default/web-0"),
    ),
    forwarding_mode=ForwardingMode.DSR,
)


def test_each_frontend_lists_its_familys_backends_with_their_state() -> None:
    v4, v6 = frontends([WEB], {"default/web": Counter(7, 700)})
    assert (v4.frontend, v6.frontend) == ("203.0.113.0:80/TCP", "[2001:db8:113::]:80/TCP")
    assert [(b.address, b.port, b.pod, b.state) for b in v4.backends] == [
        ("198.18.1.10", 8080, "default/web-0", "active"),
        ("198.18.2.10", 8080, "default/web-1", "terminating"),
        ("198.18.3.10", 8080, "default/web-2", "not-ready"),
    ]
    assert [b.address for b in v6.backends] == ["2001:db8:18:1::10"]
    assert (v4.mode, v4.traffic_policy, v4.packets, v4.bytes) == ("dsr", "Cluster", 7, 700)


def test_an_agent_lists_what_it_committed() -> None:
    runner = agent(FakeNft())
    asyncio.run(runner.apply_snapshot(two_services()))
    assert runner.status().frontends == ()  # only when asked: it costs
    listed = {f.service: f for f in runner.status(frontends=True).frontends}
    assert sorted(listed) == ["default/web1-lb", "default/web2"]
    assert [b.address for b in listed["default/web2"].backends] == ["198.18.1.10"]


def test_the_cli_merges_nodes_and_sums_their_counters(tmp_path: Path) -> None:
    rows = frontends([WEB], {"default/web": Counter(7, 700)})
    nodes = [AgentStatus(node=n, frontends=rows) for n in ("w1", "w2")]

    async def main() -> tuple[str, str]:
        servers = [
            await serve_status(
                socket_path(tmp_path, a.node),
                lambda frontends, a=a: a if frontends else AgentStatus(node=a.node),
            )
            for a in nodes
        ]
        try:
            table = await asyncio.to_thread(
                CliRunner().invoke, cli, ["service", "list", "--status-dir", str(tmp_path)]
            )
            as_json = await asyncio.to_thread(
                CliRunner().invoke,
                cli,
                ["service", "list", "--status-dir", str(tmp_path), "-o", "json", "--node", "w1"],
            )
            return table.output, as_json.output
        finally:
            for server in servers:
                server.close()

    table, as_json = asyncio.run(main())
    assert "203.0.113.0:80/TCP" in table and "14 pkts, 1400 B" in table
    assert "198.18.2.10:8080 default/web-1 on w2 (terminating)" in table
    listed = json.loads(as_json)
    assert [r["frontend"] for r in listed] == ["203.0.113.0:80/TCP", "[2001:db8:113::]:80/TCP"]
    assert listed[0]["packets"] == 7
