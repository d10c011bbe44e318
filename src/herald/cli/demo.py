"""`herald demo`: the live demo. Until the lab arrives it validates the examples and shows
what LB-IPAM gives the seed walkthrough's Service."""

from __future__ import annotations

from pathlib import Path

import click

from herald.cli.ipam import ipam
from herald.cli.validate import validate


@click.command()
@click.option(
    "--examples",
    type=click.Path(path_type=Path),
    default=Path("examples"),
    show_default=True,
    help="Directory of example manifests.",
)
@click.pass_context
def demo(ctx: click.Context, examples: Path) -> None:
    """Validate the example manifests and run LB-IPAM over the seed walkthrough."""
    click.echo(f"== herald validate {examples}")
    ctx.invoke(validate, directory=examples, output="table")
    click.echo(f"\n== herald ipam {examples / 'seed'}")
    ctx.invoke(ipam, directory=examples / "seed", output="table")
    click.echo(
        "\nThe lab (routers, nodes and pods in network namespaces) arrives with the agent; "
        "for now, try `herald validate DIR` on your own manifests."
    )
