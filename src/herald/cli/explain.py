"""`herald explain svc NAMESPACE/NAME`: why a Service is pending or unreachable.

The command only gathers (the manifests with the controller's status, every agent's
status with its frontends) and prints; `herald.explain` reasons.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from herald.agent.status import query_all
from herald.cli.agent import status_dir_option
from herald.cli.get import read_state
from herald.cli.observe import agent_sockets, recorded
from herald.cli.output import output_option, print_data, print_table
from herald.cli.source_option import SourceChoice, source_options
from herald.explain import Explanation, ServiceNotFound, explain_service
from herald.observe import format as flow_format
from herald.observe.event import FlowEvent
from herald.observe.filter import FlowFilter
from herald.observe.reader import ObserveRequest

DEFAULT_DROPPED = 5


@click.group()
def explain() -> None:
    """Why an object is, or is not, working."""


@explain.command(name="svc")
@click.argument("service", metavar="NAMESPACE/NAME")
@source_options
@status_dir_option
@click.option(
    "--dropped", type=click.IntRange(0), default=DEFAULT_DROPPED, show_default=True,
    help="How many of the last dropped flows to the Service's addresses to show (0: none).",
)  # fmt: skip
@output_option
def explain_svc(
    service: str, source: SourceChoice, status_dir: Path, dropped: int, output: str
) -> None:
    """Why a LoadBalancer Service is pending or unreachable: its IPAM decision, which nodes
    announce its address (and why the others do not), what each router peer was sent, the
    datapath entries and backends on each node, and the last flows it dropped."""
    key = service if "/" in service else f"default/{service}"
    state = read_state(source)
    agents = query_all(status_dir, frontends=True)
    try:
        explained = explain_service(state, agents, key)
    except ServiceNotFound as err:
        raise click.ClickException(str(err)) from err
    if dropped and explained.ipam.addresses:
        explained = explained.with_dropped(
            _dropped_flows(status_dir, explained.ipam.addresses, dropped), dropped
        )
    if output != "table":
        print_data(explained.to_json(), output)
        return
    _print(explained)


def _dropped_flows(status_dir: Path, addresses: tuple[str, ...], last: int) -> list[FlowEvent]:
    """Every agent's last `last` DROPPED events to `addresses`; an agent that does not
    answer, or has flow events off, adds none (its status says why)."""
    request = ObserveRequest(last=last, filter=FlowFilter(ips=addresses, verdicts=("DROPPED",)))
    streams = asyncio.run(recorded(agent_sockets(status_dir, None), request))
    return [e for s in streams for e in s.events]


def _print(explained: Explanation) -> None:
    click.echo(f"Service {explained.service}: {explained.verdict}")
    ipam = explained.ipam
    decided = f" ({ipam.reason}: {ipam.message})" if ipam.reason else ""
    if ipam.addresses:
        pairs = zip(ipam.addresses, ipam.pools, strict=True)
        where = ", ".join(f"{a} from pool {p or '<none>'}" for a, p in pairs)
        click.echo(f"IPAM: {ipam.state} {where}{decided}")
    else:
        click.echo(f"IPAM: {ipam.state}: {ipam.summary}")
    if not explained.nodes:
        return
    click.echo()
    print_table(
        None,
        ("NODE", "ANNOUNCES", "VIA", "WHY NOT"),
        [
            (
                n.node,
                "yes" if n.announces else "no",
                ",".join(n.via) or "-",
                "; ".join(n.reasons) or "-",
            )
            for n in explained.nodes
        ],
    )
    peers = [(n.node, p) for n in explained.nodes for p in n.peers]
    if peers:
        click.echo()
        print_table(
            None,
            ("NODE", "PEER", "ADDRESS", "SESSION", "SENT"),
            [
                (node, p.peer, p.address, p.state or "not running", ", ".join(p.sent) or "-")
                for node, p in peers
            ],
        )
    # Nodes whose rules hold the same entries are listed together (usually all of them).
    entries: dict[tuple[str, str, tuple[str, ...]], list[str]] = {}
    for n in explained.nodes:
        for f in n.frontends:
            backends = tuple(
                f"{b.address}:{b.port} {b.pod or '?'} on {b.node or '?'} ({b.state})"
                for b in f.backends
            )
            entries.setdefault((f.frontend, f"{f.mode}/{f.traffic_policy}", backends), []).append(
                n.node
            )
    rows = []
    for (frontend, mode, backends), nodes in entries.items():
        on = "all nodes" if len(nodes) == len(explained.nodes) else ",".join(nodes)
        for index, backend in enumerate(backends or ("(none: new connections refused)",)):
            rows.append((frontend, mode, on, backend) if index == 0 else ("", "", "", backend))
    if rows:
        click.echo()
        print_table(None, ("FRONTEND", "MODE", "ON", "BACKEND"), rows)
    problems = [(n.node, p) for n in explained.nodes for p in n.problems]
    if problems:
        click.echo()
        print_table(None, ("NODE", "PROBLEM"), problems)
    if explained.dropped:
        click.echo()
        click.echo(f"Last dropped flows ({len(explained.dropped)}):")
        for event in explained.dropped:
            click.echo(flow_format.line(event))
