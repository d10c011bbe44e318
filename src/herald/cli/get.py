"""`herald get svc`: Services as `kubectl get svc` shows them, from the source."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from herald.api.core import Service
from herald.api.problems import ManifestError
from herald.cli.output import output_option, print_json, print_table
from herald.cli.source_option import manifests_option
from herald.sources.files import FileSource


@click.group()
def get() -> None:
    """List objects."""


@get.command(name="svc")
@manifests_option
@click.option("-n", "--namespace", default=None, help="Only this namespace (default: all).")
@output_option
def services(manifests: Path, namespace: str | None, output: str) -> None:
    """Services: NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE."""
    try:
        state = FileSource(manifests).load()
    except ManifestError as err:
        click.echo(str(err), err=True)
        sys.exit(1)
    selected = [
        svc for svc in state.services if namespace is None or svc.metadata.namespace == namespace
    ]
    if output == "json":
        print_json(
            {
                "items": [
                    svc.model_dump(mode="json", by_alias=True, exclude_none=True)
                    for svc in selected
                ]
            }
        )
        return
    print_table(
        None,
        ("NAMESPACE", "NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"),
        [_row(svc) for svc in selected],
    )


def _row(svc: Service) -> tuple[str, ...]:
    spec = svc.spec
    external = ",".join(i.ip or i.hostname or "" for i in svc.status.load_balancer.ingress)
    if not external:
        external = "<pending>" if spec.type == "LoadBalancer" else "<none>"
    ports = ",".join(
        f"{p.port}:{p.node_port}/{p.protocol}" if p.node_port else f"{p.port}/{p.protocol}"
        for p in spec.ports
    )
    return (
        svc.metadata.namespace or "default",
        svc.metadata.name,
        spec.type,
        spec.cluster_ip or "<none>",
        external,
        ports or "<none>",
        _age(svc.metadata.creation_timestamp),
    )


def _age(created: str | None) -> str:
    if not created:
        return "<unknown>"
    try:
        seconds = time.time() - datetime.fromisoformat(created).replace(tzinfo=UTC).timestamp()
    except ValueError:
        return "<unknown>"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{max(0, int(seconds))}s"
