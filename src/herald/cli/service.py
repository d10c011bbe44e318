"""`herald service list`: every frontend (VIP:port/protocol) the agents forward, with its
backends and their state, as `cilium service list` shows them."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import click

from herald.agent.status import AgentStatus, FrontendStatus, query_all
from herald.cli.agent import status_dir_option
from herald.cli.output import output_option, print_data, print_table


@click.group()
def service() -> None:
    """Services as the datapath forwards them."""


@service.command(name="list")
@status_dir_option
@click.option("--node", default=None, help="One node's view (default: every node merged).")
@output_option
def list_services(status_dir: Path, node: str | None, output: str) -> None:
    """FRONTEND SERVICE MODE BACKEND PACKETS: one line per backend."""
    agents = [a for a in query_all(status_dir, frontends=True) if node is None or a.node == node]
    for agent in agents:
        if agent.error:
            click.echo(f"warning: {agent.node}: {agent.error}", err=True)
    if node is not None and not agents:
        raise click.ClickException(f"no agent of node {node} in {status_dir}")
    rows = merged(agents)
    if output != "table":
        print_data([row.model_dump(mode="json", by_alias=True) for row in rows], output)
        return
    lines = []
    for row in rows:
        backends = row.backends or ()
        first = (row.frontend, row.service, f"{row.mode}/{row.traffic_policy}")
        counted = "" if row.packets is None else f"{row.packets} pkts, {row.bytes} B"
        if not backends:
            lines.append((*first, "(none: new connections refused)", counted))
        for index, b in enumerate(backends):
            where = f"{b.address}:{b.port} {b.pod or '?'} on {b.node or '?'} ({b.state})"
            lines.append((*(first if index == 0 else ("", "", "")), where, counted))
            counted = ""
    print_table(None, ("FRONTEND", "SERVICE", "MODE", "BACKEND", "PACKETS"), lines)


def merged(agents: Iterable[AgentStatus]) -> list[FrontendStatus]:
    """One row per frontend (pure): the backends as the first node lists them (every node
    lists the same endpoints) and the counters summed over the nodes."""
    found: dict[tuple[str, str], FrontendStatus] = {}
    for agent in agents:
        for row in agent.frontends:
            key = (row.service, row.frontend)
            seen = found.get(key)
            if seen is None:
                found[key] = row
            elif row.packets is not None:
                found[key] = seen.model_copy(
                    update={
                        "packets": (seen.packets or 0) + row.packets,
                        "bytes": (seen.bytes or 0) + (row.bytes or 0),
                    }
                )
    return [found[key] for key in sorted(found)]
