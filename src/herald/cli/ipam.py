"""`herald ipam DIR`: what LB-IPAM gives each Service, and how full each pool is."""

from __future__ import annotations

from pathlib import Path

import click

from herald.cli.get import listed_state
from herald.cli.output import output_option, print_json, print_table
from herald.ipam import allocate, requests_from_services


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
@output_option
def ipam(directory: Path, output: str) -> None:
    """Run LB-IPAM over the manifests in DIRECTORY and list allocations and pools (from the
    last good manifests, with a warning, while some are invalid)."""
    state = listed_state(directory, with_status=False)
    allocations, usage = allocate(state.pools, requests_from_services(state.services))
    if output == "json":
        print_json(
            {
                "services": [
                    {
                        "service": a.service,
                        "ips": list(a.ips),
                        "satisfied": a.satisfied,
                        "reason": a.reason.value,
                        "message": a.message,
                    }
                    for a in sorted(allocations.values(), key=lambda a: a.service)
                ],
                "pools": [
                    {
                        "name": u.name,
                        "total": u.total,
                        "used": u.used,
                        "available": u.available,
                        "disabled": u.disabled,
                        "conflictingWith": u.conflicting_with,
                    }
                    for u in usage
                ],
            }
        )
        return
    print_table(
        "Services",
        ("SERVICE", "EXTERNAL-IP", "REASON", "MESSAGE"),
        [
            (a.service, ",".join(a.ips), a.reason.value, a.message)
            for a in sorted(allocations.values(), key=lambda a: a.service)
        ],
    )
    print_table(
        "Pools",
        ("POOL", "TOTAL", "USED", "AVAILABLE", "STATE"),
        [
            (
                u.name,
                u.total,
                u.used,
                u.available,
                "conflicting: " + u.conflicting_with
                if u.conflicting_with
                else ("disabled" if u.disabled else "serving"),
            )
            for u in usage
        ],
    )
