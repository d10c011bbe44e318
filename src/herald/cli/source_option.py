"""The option every command that reads cluster state shares."""

from __future__ import annotations

from pathlib import Path

import click

DEFAULT_MANIFESTS = Path("/run/herald/manifests")

manifests_option = click.option(
    "--manifests",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="HERALD_MANIFESTS",
    default=DEFAULT_MANIFESTS,
    show_default=True,
    help="Directory of manifests (the embedded source); env HERALD_MANIFESTS.",
)
