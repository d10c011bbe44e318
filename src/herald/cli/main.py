"""The `herald` command: one group, sub-commands registered from their own modules."""

from __future__ import annotations

import click

from herald import __version__
from herald.cli.agent import agent, peers, routes, status
from herald.cli.bgp import bgp
from herald.cli.controller import controller
from herald.cli.crds import crds
from herald.cli.demo import demo
from herald.cli.explain import explain
from herald.cli.get import get
from herald.cli.import_ import import_
from herald.cli.ipam import ipam
from herald.cli.l2 import l2
from herald.cli.lab import lab
from herald.cli.observe import observe
from herald.cli.service import service
from herald.cli.ui import ui
from herald.cli.validate import validate


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="herald")
def cli() -> None:
    """herald: LoadBalancer Services for bare-metal Kubernetes."""


cli.add_command(validate)
cli.add_command(ipam)
cli.add_command(crds)
cli.add_command(demo)
cli.add_command(controller)
cli.add_command(get)
cli.add_command(bgp)
cli.add_command(agent)
cli.add_command(status)
cli.add_command(lab)
cli.add_command(l2)
cli.add_command(import_)
cli.add_command(service)
cli.add_command(explain)
cli.add_command(observe)
cli.add_command(ui)
bgp.add_command(peers)
bgp.add_command(routes)


def main() -> None:
    cli()
