"""The `herald` command: one group, sub-commands registered from their own modules."""

from __future__ import annotations

import click

from herald import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="herald")
def cli() -> None:
    """herald: LoadBalancer Services for bare-metal Kubernetes."""


def main() -> None:
    cli()
