"""`herald crds`: write (or check) the CRDs and the configuration reference."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from herald.api.crd import crd_files
from herald.api.reference import render_reference, replace_generated


@click.command()
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=Path("deploy/crds"),
    show_default=True,
    help="Directory for the CRD files.",
)
@click.option(
    "--docs",
    type=click.Path(path_type=Path),
    default=Path("docs/configuration.md"),
    show_default=True,
    help="Configuration reference whose generated section is rewritten.",
)
@click.option("--check", is_flag=True, help="Only check that the files are current.")
def crds(out: Path, docs: Path, check: bool) -> None:
    """Generate CustomResourceDefinitions and the field reference from the models."""
    wanted = {out / name: text for name, text in crd_files().items()}
    examples = Path("examples")
    if docs.exists():
        wanted[docs] = replace_generated(docs.read_text(), render_reference(examples))
    stale = [path for path, text in wanted.items() if not path.exists() or path.read_text() != text]
    if check:
        for path in stale:
            click.echo(f"{path}: out of date; run `herald crds`", err=True)
        sys.exit(1 if stale else 0)
    out.mkdir(parents=True, exist_ok=True)
    for path in stale:
        path.write_text(wanted[path])
        click.echo(f"wrote {path}")
