"""`herald observe`: the flow events of every node merged in time order (the job of Hubble
Relay), or one node's with `--node`, as compact lines or `-o json` (one object per line).

It asks each agent's status socket for `observe` (the filter travels with the request, so
`--last N` means the last N that match) and, with `--follow`, keeps the connections open.
Events an agent could not record (rate limit, socket overruns) are reported on stderr as
`EVENTS LOST`, and an agent that does not answer is named in a warning.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from herald.agent.status import socket_path
from herald.cli.agent import status_dir_option
from herald.observe import format as flow_format
from herald.observe.event import FlowEvent
from herald.observe.filter import VERDICTS, FlowFilter, parse_since
from herald.observe.merge import Merger, merge_sorted
from herald.observe.reader import ObserveRequest

DEFAULT_LAST = 20
CONNECT_TIMEOUT = 2.0


@dataclass
class NodeStream:
    """What one agent answered."""

    node: str
    events: list[FlowEvent] = field(default_factory=list)
    lost: dict[str, int] = field(default_factory=dict)
    missed: int = 0
    error: str | None = None


def lost_line(stream: NodeStream) -> str | None:
    parts = {k: v for k, v in stream.lost.items() if v and k != "overruns"}
    if stream.missed:
        parts["ring_overwritten"] = stream.missed
    if not parts:
        return None
    total = sum(parts.values())
    detail = ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in parts.items())
    return f"EVENTS LOST: {total} on {stream.node} ({detail})"


async def read_stream(
    path: Path,
    request: ObserveRequest,
    on_event: Callable[[FlowEvent], None] | None = None,
    on_lost: Callable[[NodeStream], None] | None = None,
) -> NodeStream:
    """One agent's answer: its header, events until it closes (or forever, following)."""
    stream = NodeStream(node=path.stem)
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_unix_connection(str(path), limit=1 << 20), CONNECT_TIMEOUT
        )
    except (OSError, TimeoutError) as err:
        stream.error = f"no answer from {path}: {err}"
        return stream
    try:
        writer.write(request.encode())
        await writer.drain()
        while line := await reader.readline():
            item: dict[str, Any] = json.loads(line)
            if "flow" in item:
                event = FlowEvent.from_json(item["flow"])
                stream.events.append(event) if on_event is None else on_event(event)
            elif "missed" in item:
                stream.missed += int(item["missed"])
                if on_lost is not None:
                    on_lost(stream)
            elif "lost" in item:
                stream.node = str(item.get("node") or stream.node)
                stream.lost = dict(item["lost"] or {})
                if item.get("error"):
                    stream.error = str(item["error"])
                if on_lost is not None:
                    on_lost(stream)
            elif item.get("error"):
                stream.error = str(item["error"])
    except (OSError, ValueError) as err:
        stream.error = f"{path}: {err}"
    finally:
        writer.close()
    return stream


def agent_sockets(status_dir: Path, node: str | None) -> list[Path]:
    if node is not None:
        return [socket_path(status_dir, node)]
    return sorted(status_dir.glob("*.sock"))


async def recorded(paths: Sequence[Path], request: ObserveRequest) -> list[NodeStream]:
    return list(await asyncio.gather(*(read_stream(p, request) for p in paths)))


async def follow_all(
    paths: Sequence[Path],
    request: ObserveRequest,
    emit: Callable[[FlowEvent], None],
    warn: Callable[[str], None],
    merger: Merger,
    until: Callable[[], bool] = lambda: False,
) -> None:
    """Every agent's stream through `merger` to `emit`, until every stream ends or `until`."""

    told: dict[str, str] = {}

    def lost(stream: NodeStream) -> None:
        text = lost_line(stream)
        if text and told.get(stream.node) != text:
            told[stream.node] = text
            warn(text)

    async def one(path: Path) -> None:
        stream = await read_stream(path, request, merger.push, lost)
        if stream.error:
            warn(f"warning: {stream.node}: {stream.error}")

    tasks = [asyncio.create_task(one(p)) for p in paths]
    try:
        while not all(t.done() for t in tasks) and not until():
            for event in merger.pop_ready(time.time()):
                emit(event)
            await asyncio.sleep(0.05)
        for event in merger.flush():
            emit(event)
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)


@click.command()
@status_dir_option
@click.option("-f", "--follow", is_flag=True, help="Keep printing new events.")
@click.option(
    "--last", type=click.IntRange(0), default=None,
    help=f"The last N events (default {DEFAULT_LAST}; 0 with --follow: only new ones).",
)  # fmt: skip
@click.option("--since", default=None, help="Only events since a duration ago (5m) or a time.")
@click.option("--namespace", "namespaces", multiple=True, help="Service or pod namespace.")
@click.option("--service", "services", multiple=True, help="Service NAME or NAMESPACE/NAME.")
@click.option("--pod", "pods", multiple=True, help="Backend pod NAME or NAMESPACE/NAME.")
@click.option("--node", default=None, help="One node's events (default: every node merged).")
@click.option("--ip", "ips", multiple=True, help="Client, VIP or backend address.")
@click.option("--port", "ports", multiple=True, type=click.IntRange(0, 65535), help="Any port.")
@click.option(
    "--verdict", "verdicts", multiple=True,
    type=click.Choice(VERDICTS, case_sensitive=False), help="FORWARDED or DROPPED.",
)  # fmt: skip
@click.option("--protocol", "protocols", multiple=True, help="TCP, UDP, SCTP, ICMP ...")
@click.option(
    "-o", "--output", type=click.Choice(("compact", "json")), default="compact",
    show_default=True, help="compact: one line per event; json: one object per line.",
)  # fmt: skip
def observe(
    status_dir: Path,
    follow: bool,
    last: int | None,
    since: str | None,
    namespaces: tuple[str, ...],
    services: tuple[str, ...],
    pods: tuple[str, ...],
    node: str | None,
    ips: tuple[str, ...],
    ports: tuple[int, ...],
    verdicts: tuple[str, ...],
    protocols: tuple[str, ...],
    output: str,
) -> None:
    """Flow events: packets herald forwarded or dropped, as `hubble observe` shows them."""
    try:
        start = parse_since(since, time.time()) if since else None
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--since") from None
    flow_filter = FlowFilter(
        namespaces=namespaces,
        services=services,
        pods=pods,
        nodes=(node,) if node else (),
        ips=ips,
        ports=ports,
        verdicts=tuple(v.upper() for v in verdicts),
        protocols=protocols,
        since=start,
    )
    count = (0 if follow else DEFAULT_LAST) if last is None else last
    if since and last is None:
        count = 1 << 30  # every recorded event since then
    request = ObserveRequest(last=count, follow=follow, filter=flow_filter)
    paths = agent_sockets(status_dir, node)
    if not paths:
        raise click.ClickException(f"no agent sockets in {status_dir}")

    def emit(event: FlowEvent) -> None:
        text = flow_format.json_line(event) if output == "json" else flow_format.line(event)
        click.echo(text)
        sys.stdout.flush()

    def warn(text: str) -> None:
        click.echo(text, err=True)

    if follow:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(follow_all(paths, request, emit, warn, Merger()))
        return
    streams = asyncio.run(recorded(paths, request))
    for stream in streams:
        if stream.error:
            warn(f"warning: {stream.node}: {stream.error}")
    events = merge_sorted(s.events for s in streams)
    for event in events[max(0, len(events) - count) :]:
        emit(event)
    for stream in streams:
        text = lost_line(stream)
        if text:
            warn(text)
