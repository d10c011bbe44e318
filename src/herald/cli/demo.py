"""`herald demo`: the seed walkthrough in the lab (see lab/demo.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from herald.cli.lab import lab_source_option, mode_option
from herald.lab.demo import run_demo
from herald.lab.demo_l2 import run_l2_demo
from herald.lab.netns import LabError


@click.command()
@click.option(
    "--examples",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=None,
    help="Manifests to apply  [default: examples/seed, examples/l2-seed with --mode l2]",
)
@click.option("--router", type=click.Choice(["frr", "bird"]), default="frr", show_default=True)
@mode_option
@lab_source_option
def demo(examples: Path | None, router: str, mode: str, source: str) -> None:
    """Build the lab, apply the seed manifests, and show the Service reachable (needs
    root). The lab stays up; `herald lab down` removes it. With --source kube the
    manifests go through the real kubectl to a Kubernetes API (a test double)."""
    try:
        if mode == "l2":
            run_l2_demo(examples or Path("examples/l2-seed"), click.echo, source)
        else:
            run_demo(examples or Path("examples/seed"), router, click.echo, source)  # type: ignore[arg-type]
    except (LabError, OSError) as err:
        click.echo(
            f"demo failed: {err}\n(see /run/herald/lab/logs; `herald lab down` cleans up)", err=True
        )
        sys.exit(1)
