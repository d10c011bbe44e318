"""`herald l2 owners`: which node answers ARP/NDP for each L2 VIP, from the agents' status."""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from pathlib import Path

import click

from herald.agent.status import AgentStatus, L2Owner, query_all
from herald.cli.agent import status_dir_option
from herald.cli.output import output_option, print_json, print_table


@click.group()
def l2() -> None:
    """L2 announcements (ARP/NDP)."""


@l2.command()
@status_dir_option
@output_option
def owners(status_dir: Path, output: str) -> None:
    """VIP, owner node, interface, since and candidates (next owner first)."""
    rows = owner_rows(query_all(status_dir))
    if output == "json":
        print_json([r.model_dump(mode="json", by_alias=True, exclude={"answering"}) for r in rows])
        return
    print_table(
        None,
        ("VIP", "OWNER", "INTERFACE", "SINCE", "CANDIDATES"),
        [
            (
                r.vip,
                r.owner,
                ",".join(r.interfaces),
                _time(r.since),
                ",".join(r.candidates),
            )
            for r in rows
        ],
    )


def owner_rows(agents: Iterable[AgentStatus]) -> list[L2Owner]:
    """One row per VIP and answering node (pure).

    The answering node's own status is the truth: it says where it answers and since when.
    Two nodes answering for one VIP (a partition) give two rows, so the duplicate shows. A
    VIP no node answers for is listed with no owner and the candidates some agent knows.
    """
    answering: dict[str, list[L2Owner]] = {}
    known: dict[str, L2Owner] = {}
    for agent in agents:
        for entry in agent.l2.owners if agent.l2 else ():
            known.setdefault(entry.vip, entry)
            if entry.answering and entry.owner == agent.node:
                answering.setdefault(entry.vip, []).append(entry)
    rows = []
    for vip in sorted(
        known, key=lambda v: (ipaddress.ip_address(v).version, ipaddress.ip_address(v).packed)
    ):
        unanswered = known[vip].model_copy(
            update={"owner": None, "answering": False, "interfaces": (), "since": None}
        )
        rows += answering.get(vip) or [unanswered]
    return rows


def _time(wall: float | None) -> str:
    if wall is None:
        return ""
    return datetime.datetime.fromtimestamp(wall, datetime.UTC).strftime("%H:%M:%S.%f")[:-3]
