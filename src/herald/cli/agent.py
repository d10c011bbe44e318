"""`herald agent` and the commands that read agents' status: `herald status`,
`herald bgp peers`, `herald bgp routes`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from pathlib import Path

import click

from herald.agent.bfd import socket_of
from herald.agent.l2 import L2Config
from herald.agent.run import Agent, AgentConfig
from herald.agent.status import DEFAULT_STATUS_DIR, query_all, serve_status, socket_path
from herald.cli.metrics_option import metrics_address_option
from herald.cli.output import output_option, print_json, print_table
from herald.cli.resident import settle
from herald.cli.source_option import SourceChoice, source_options
from herald.dataplane.model import ForwardingMode
from herald.l2.key import ENV_KEY, ENV_KEY_FILE, HeartbeatKeyError, load_key
from herald.l2.liveness import MEMBERSHIPS
from herald.metrics.agent import AgentMetrics
from herald.metrics.server import serve_metrics_if_asked
from herald.observe.reader import FlowReader
from herald.observe.rules import FlowRate

status_dir_option = click.option(
    "--status-dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="HERALD_STATUS_DIR",
    default=DEFAULT_STATUS_DIR,
    show_default=True,
    help="Directory of the agents' status sockets; env HERALD_STATUS_DIR.",
)


@click.command()
@click.option(
    "--node",
    envvar="HERALD_NODE",
    required=True,
    help="Name of this node (its Node object's name); env HERALD_NODE (in a DaemonSet: "
    "spec.nodeName from the downward API).",
)
@source_options
@status_dir_option
@click.option("--interface", default=None, help="Uplink interface (needed for DSR).")
@click.option(
    "--forwarding",
    type=click.Choice([mode.value for mode in ForwardingMode]),
    default=ForwardingMode.SNAT.value,
    show_default=True,
    help="Forwarding mode of Services without the herald.io/forwarding-mode annotation.",
)
# The key itself is never an option: `ps` shows argv to every user of the node.
@click.option(
    "--l2-key-file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar=ENV_KEY_FILE,
    default=None,
    help=f"File holding the shared key authenticating L2 heartbeats (at least 16 bytes; the "
    f"same on every node); env {ENV_KEY_FILE}, or the key itself in env {ENV_KEY}. Without "
    "a key the agent runs but refuses L2 announcements.",
)
@click.option(
    "--l2-interval",
    type=click.FloatRange(0.001, min_open=False),
    default=L2Config.interval,
    show_default=True,
    help="Seconds between L2 heartbeats.",
)
@click.option(
    "--l2-multiplier",
    type=click.IntRange(2),
    default=L2Config.multiplier,
    show_default=True,
    help="A peer is dead after interval x multiplier without a heartbeat.",
)
@click.option(
    "--l2-port", type=click.IntRange(1, 65535), default=L2Config.port, show_default=True,
    help="UDP port of L2 heartbeats on the node addresses.",
)  # fmt: skip
@click.option(
    "--l2-membership",
    envvar="HERALD_L2_MEMBERSHIP",
    type=click.Choice(MEMBERSHIPS),
    default=L2Config.membership,
    show_default=True,
    help="How agents watch each other: every node heartbeats every other (heartbeat; "
    "--l2-interval and --l2-multiplier apply), or SWIM probing and gossip (swim: O(1) "
    "datagrams per node, for large clusters; every node must use the same).",
)
@click.option(
    "--flow-rate",
    default=f"{FlowRate().per_second}/s",
    show_default=True,
    envvar="HERALD_FLOW_RATE",
    help="Flow events per second this node logs (N or N/s); beyond it they are counted as "
    "lost. 0 turns flow events off. Env HERALD_FLOW_RATE.",
)
@click.option(
    "--flow-burst",
    type=click.IntRange(1),
    default=FlowRate().burst,
    show_default=True,
    help="Flow events logged at once above the rate before the limit applies.",
)
@click.option(
    "--bfd-process",
    type=click.Choice(["spawn", "external"]),
    default="spawn",
    show_default=True,
    envvar="HERALD_BFD_PROCESS",
    help="spawn: the agent starts the node's BFD process (detached, it outlives the agent). "
    "external: another container runs it (`python -m herald.bfd.process --resident "
    "SOCKET`) and the agent only connects. Env HERALD_BFD_PROCESS.",
)
@metrics_address_option
def agent(
    node: str,
    source: SourceChoice,
    status_dir: Path,
    interface: str | None,
    forwarding: str,
    l2_key_file: Path | None,
    l2_interval: float,
    l2_multiplier: int,
    l2_port: int,
    l2_membership: str,
    flow_rate: str,
    flow_burst: int,
    bfd_process: str,
    metrics_address: str | None,
) -> None:
    """Run the node agent: datapath rules, BGP and L2 announcements for NODE."""
    try:
        rate = FlowRate.parse(flow_rate, flow_burst)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--flow-rate") from err
    logging.basicConfig(level=logging.INFO, format="ts=%(asctime)s level=%(levelname)s %(message)s")
    try:
        key = load_key(l2_key_file, os.environ)
    except HeartbeatKeyError as err:
        raise click.ClickException(str(err)) from err
    # What this process starts (nft, the heartbeat process) has no use for the key.
    os.environ.pop(ENV_KEY, None)
    if key is None:
        logging.getLogger(__name__).warning(
            "event=l2_disabled node=%s reason=no_heartbeat_key fix=%r",
            node,
            f"set {ENV_KEY_FILE} (or --l2-key-file) or {ENV_KEY}, the same key on every node",
        )
    config = AgentConfig(
        node=node,
        interface=interface,
        default_forwarding=ForwardingMode(forwarding),
        l2=L2Config(key, l2_interval, l2_multiplier, l2_port, l2_membership),
        bfd_socket=socket_of(status_dir, node),
        bfd_spawn=bfd_process == "spawn",
    )

    async def main() -> None:
        # Agents only read the API: every kind, written by nobody here.
        flows = FlowReader(node, rate=rate)
        flows.start()  # off where NFLOG is unavailable; `herald observe` then says why
        runner = Agent(config, source.open(), flows=flows)
        server = await serve_status(
            socket_path(status_dir, node), runner.status, flows.stream, runner.counted_status
        )
        exported = AgentMetrics(node, runner.counted_status, flows.header)
        metrics = await serve_metrics_if_asked(metrics_address, exported.exposition)
        if metrics is not None:
            runner.on_datapath_applied = exported.datapath_applied
            runner.on_stages = exported.stages_observed
        try:
            await runner.run()
        finally:
            server.close()
            if metrics is not None:
                metrics.close()

    settle()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main())


@click.command()
@status_dir_option
@output_option
def status(status_dir: Path, output: str) -> None:
    """Each agent: when it last applied a plan, its services, sessions and problems."""
    agents = query_all(status_dir)
    # In the lab, the pods behind the Services are the lab kubelet's: its problems belong
    # beside the agents' (a pod it could not start is a missing backend).
    from herald.lab.kubelet import lab_problems

    for problem in lab_problems():
        click.echo(f"warning: {problem}", err=True)
    if output == "json":
        print_json([a.to_json() for a in agents])
        return
    if not agents:
        click.echo(f"no agent sockets in {status_dir}", err=True)
        sys.exit(1)
    print_table(
        None,
        ("NODE", "SERVICES", "SESSIONS UP", "APPLY MS", "PROBLEMS"),
        [
            (
                a.node,
                len(a.services),
                f"{sum(p.established for p in a.peers)}/{len(a.peers)}",
                f"{a.apply_ms:.1f}" if a.apply_ms is not None else "",
                a.error or "; ".join(a.problems) or "none",
            )
            for a in agents
        ],
    )


@click.command()
@status_dir_option
@output_option
def peers(status_dir: Path, output: str) -> None:
    """BGP sessions of every node, like `cilium bgp peers`."""
    rows = [(a, p) for a in query_all(status_dir) for p in a.peers]
    if output == "json":
        print_json([{"node": a.node, **p.model_dump(mode="json", by_alias=True)} for a, p in rows])
        return
    print_table(
        None,
        (
            "NODE",
            "LOCAL AS",
            "PEER AS",
            "PEER ADDRESS",
            "SESSION",
            "UPTIME",
            "RECEIVED",
            "ADVERTISED",
        ),
        [
            (
                a.node,
                p.local_as,
                p.peer_as,
                p.peer,
                p.state.lower(),
                _duration(p.uptime_seconds),
                p.received,
                p.advertised,
            )
            for a, p in rows
        ],
    )


@click.command()
@status_dir_option
@output_option
def routes(status_dir: Path, output: str) -> None:
    """Routes each node advertises to each peer."""
    rows = [
        (a.node, p.peer, route)
        for a in query_all(status_dir)
        for p in a.peers
        for route in p.routes
    ]
    if output == "json":
        print_json([{"node": n, "peer": peer, "prefix": r} for n, peer, r in rows])
        return
    print_table(None, ("NODE", "PEER", "PREFIX"), rows)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return ""
    seconds = int(seconds)
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}h{minutes:02}m{secs:02}s" if hours else f"{minutes}m{secs:02}s"
