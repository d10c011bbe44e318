"""`herald lab`: the seed topology in network namespaces on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from pathlib import Path

import click

from herald.cli.source_option import manifests_option
from herald.lab import cluster
from herald.lab.netns import LabError
from herald.lab.topology_file import load_topology

mode_option = click.option(
    "--mode",
    type=click.Choice(["bgp", "l2"]),
    default="bgp",
    show_default=True,
    help="bgp: clients on their own LAN behind a BGP router, one route per node; l2: "
    "clients, router and Service IPs on the node segment, one node answers ARP per IP.",
)
lab_source_option = click.option(
    "--source",
    type=click.Choice(["files", "kube"]),
    default="files",
    show_default=True,
    help="files: herald reads the manifests directory; kube: a Kubernetes API on "
    "k8s-master1 (the test double herald.lab.kubeapi), used with the real kubectl.",
)


@click.group()
def lab() -> None:
    """Build, use and remove a lab cluster (needs root)."""


@lab.command()
@click.option("--router", type=click.Choice(["frr", "bird"]), default="frr", show_default=True)
@click.option("--nodes", type=click.IntRange(1, 5), default=5, show_default=True,
              help="Number of workers besides k8s-master1.")  # fmt: skip
@mode_option
@click.option(
    "--topology",
    "topology_file",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="YAML file of router, mode and nodes (see lab/topology_file.py); overrides "
    "--router, --nodes and --mode.",
)
@manifests_option
@lab_source_option
def up(
    router: str, nodes: int, mode: str, topology_file: Path | None, manifests: Path, source: str
) -> None:
    """Build the lab: router, clients, k8s-master1 and k8s-worker1..N with pods, controller
    and agents. Apply manifests by copying them into the manifests directory, or with
    --source kube by `kubectl apply` on k8s-master1."""
    try:
        described = load_topology(topology_file) if topology_file else None
        topology = cluster.up(router, nodes, manifests, mode, described, source)  # type: ignore[arg-type]
    except (LabError, OSError) as err:
        click.echo(f"lab up failed (everything it made was removed): {err}", err=True)
        sys.exit(1)
    router_text = "no BGP" if topology.mode == "l2" else topology.router
    where = (
        f"Kubernetes API on k8s-master1 ({cluster.API_LISTEN}, a test double): "
        f"KUBECONFIG={cluster.KUBECONFIG} herald lab exec k8s-master1 -- kubectl get svc"
        if source == "kube"
        else f"manifests in {manifests}"
    )
    click.echo(
        f"lab up ({topology.mode}): router ({router_text}) 192.0.2.1, "
        f"{len(topology.nodes)} nodes, clients {', '.join(topology.clients.values())}; {where}"
    )


@lab.command()
def down() -> None:
    """Remove every namespace, process and file the lab made (also after a crash)."""
    removed = cluster.down()
    click.echo(f"lab down: removed {len(removed)} namespaces")


@lab.command(name="exec", context_settings={"ignore_unknown_options": True})
@click.argument("host")
@click.argument("argv", nargs=-1, required=True, type=click.UNPROCESSED)
def exec_(host: str, argv: tuple[str, ...]) -> None:
    """Run a command in lab host HOST: herald lab exec client1 -- curl http://203.0.113.0/"""
    try:
        sys.exit(cluster.exec_in(host, list(argv)))
    except LabError as err:
        click.echo(str(err), err=True)
        sys.exit(2)


@lab.command(hidden=True)
@manifests_option
@click.option(
    "--kubeconfig",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=None,
    help="Read Deployments and Services from, and write Nodes and EndpointSlices to, this "
    "Kubernetes API instead of the manifests directory.",
)
def kubelet(manifests: Path, kubeconfig: Path | None) -> None:
    """The lab's pod and EndpointSlice manager (started by `lab up`)."""
    from herald.cli.resident import settle
    from herald.lab.kubelet import run_kubelet

    logging.basicConfig(level=logging.INFO, format="ts=%(asctime)s level=%(levelname)s %(message)s")
    settle()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_kubelet(manifests, kubeconfig))
