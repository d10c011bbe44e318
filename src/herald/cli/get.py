"""`herald get svc` and `herald get pools`: Services and pools as `kubectl get` shows them,
from the source."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import click

from herald.api.core import Service
from herald.api.pool import LoadBalancerIPPool
from herald.api.problems import ManifestError
from herald.api.snapshot import ClusterState
from herald.cli.output import output_option, print_data, print_json, print_table
from herald.cli.source_option import SourceChoice, listing_source_options
from herald.ipam.status import CONDITION_IPS_AVAILABLE, CONDITION_POOL_CONFLICT
from herald.sources.files import FileSource, merge_status

# Problems listed in the warning of a listing shown from the last good state; `herald
# validate` lists them all.
SHOWN_PROBLEMS = 10
# The API's first snapshot (every kind listed) must come within this many seconds.
KUBE_TIMEOUT = 30.0


@click.group()
def get() -> None:
    """List objects."""


@get.command(name="svc")
@listing_source_options
@click.option("-n", "--namespace", default=None, help="Only this namespace (default: all).")
@output_option
def services(source: SourceChoice, namespace: str | None, output: str) -> None:
    """Services: NAME TYPE CLUSTER-IP EXTERNAL-IP PORT(S) AGE."""
    state = read_state(source)
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


@get.command(name="pools")
@listing_source_options
@output_option
def pools(source: SourceChoice, output: str) -> None:
    """LoadBalancerIPPools: NAME DISABLED CONFLICTING IPS AVAILABLE AGE (as `kubectl get
    ippools` shows Cilium's), from the controller's pool status."""
    state = read_state(source)
    if output != "table":
        items = [p.model_dump(mode="json", by_alias=True, exclude_none=True) for p in state.pools]
        print_data({"apiVersion": "v1", "kind": "List", "items": items}, output)
        return
    print_table(
        None,
        ("NAME", "DISABLED", "CONFLICTING", "IPS AVAILABLE", "AGE"),
        [_pool_row(pool) for pool in state.pools],
    )


def _pool_row(pool: LoadBalancerIPPool) -> tuple[str, ...]:
    conditions = {c.type: c for c in pool.status.conditions} if pool.status else {}
    conflict = conditions.get(CONDITION_POOL_CONFLICT)
    available = conditions.get(CONDITION_IPS_AVAILABLE)
    return (
        pool.metadata.name,
        str(pool.spec.disabled).lower(),
        # Unknown until the controller has looked at the pool.
        "<unknown>" if conflict is None else str(conflict.status == "True").lower(),
        "<unknown>" if available is None else available.message or "0",
        _age(pool.metadata.creation_timestamp),
    )


def read_state(source: SourceChoice) -> ClusterState:
    """The objects with the controller's status, from the source chosen."""
    return listed_state(source.manifests) if source.kind == "files" else kube_state(source)


def kube_state(source: SourceChoice) -> ClusterState:
    """The API's objects as the agents see them (with the controller's status in each
    Service's): the first snapshot of the Kubernetes source, then it is closed."""

    async def first() -> ClusterState:
        # asyncio.run closes the generator (its watches) and cancels what is left.
        async for snapshot in source.open().snapshots():
            return snapshot
        raise click.ClickException("the Kubernetes API gave no snapshot")

    try:
        return asyncio.run(asyncio.wait_for(first(), KUBE_TIMEOUT))
    except TimeoutError:
        raise click.ClickException(
            f"no complete listing from the Kubernetes API within {KUBE_TIMEOUT:.0f} s"
        ) from None


def listed_state(manifests: Path, with_status: bool = True) -> ClusterState:
    """What a listing shows: the manifests (with the controller's status unless `with_status` is
    false). While they are invalid herald keeps serving its last good snapshot, so that is
    shown, with a warning on stderr naming every problem; the exit status stays 0, as data
    was shown. Exits 1 only when there is nothing to show."""
    source = FileSource(manifests)
    if with_status and source.state.exists() and not os.access(source.state, os.R_OK):
        click.echo(
            f"warning: {source.state} is not readable by this user, so addresses show as "
            "<pending>; run as the controller's user (its files are private)",
            err=True,
        )
    try:
        return source.load() if with_status else source.load_manifests()
    except ManifestError as err:
        last_good = source.read_last_good()
        if last_good is None:
            click.echo(str(err), err=True)
            click.echo(
                f"nothing to show: no last good state in {source.last_good_path} (the "
                "controller saves one while the manifests are valid)",
                err=True,
            )
            sys.exit(1)
        saved = datetime.fromtimestamp(last_good.saved, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        count = len(err.problems)
        click.echo(
            f"warning: {count} problem{'s' if count != 1 else ''} in {manifests}: showing the "
            f"last good state, saved {saved}, which herald keeps serving until they are fixed",
            err=True,
        )
        for problem in err.problems[:SHOWN_PROBLEMS]:
            click.echo(f"  {problem}", err=True)
        if count > SHOWN_PROBLEMS:
            click.echo(f"  ... and {count - SHOWN_PROBLEMS} more", err=True)
        click.echo(f"  (`herald validate {manifests}` checks a fix)", err=True)
        if not with_status:
            return last_good.state
        return merge_status(last_good.state, source.read_state())


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
