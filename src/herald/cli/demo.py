"""`herald demo`: the seed walkthrough in the lab (see lab/demo.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from herald.lab.demo import run_demo
from herald.lab.netns import LabError


@click.command()
@click.option(
    "--examples",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=Path("examples/seed"),
    show_default=True,
    help="Manifests to apply.",
)
@click.option("--router", type=click.Choice(["frr", "bird"]), default="frr", show_default=True)
def demo(examples: Path, router: str) -> None:
    """Build the lab, apply the seed manifests, and show the Service reachable through
    every node (needs root). The lab stays up; `herald lab down` removes it."""
    try:
        run_demo(examples, router, click.echo)  # type: ignore[arg-type]
    except (LabError, OSError) as err:
        click.echo(
            f"demo failed: {err}\n(see /run/herald/lab/logs; `herald lab down` cleans up)", err=True
        )
        sys.exit(1)
