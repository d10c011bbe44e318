"""Printing listings as a table (rich) or as JSON / YAML (`-o json`, `-o yaml`), the same
data either way."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
import yaml
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json", "yaml")

output_option = click.option(
    "-o",
    "--output",
    "output",
    type=click.Choice(FORMATS),
    default="table",
    show_default=True,
    help="Output format.",
)


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=False, default=str))


def print_data(data: Any, output: str) -> None:
    """`-o json` or `-o yaml`: the same document either way, as kubectl prints them."""
    if output == "yaml":
        click.echo(
            yaml.safe_dump(json.loads(json.dumps(data, default=str)), sort_keys=False), nl=False
        )
    else:
        print_json(data)


def print_table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    table = Table(title=title, box=None, header_style="bold", title_justify="left", pad_edge=False)
    for column in columns:
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(*("<none>" if cell in (None, "") else str(cell) for cell in row))
    console = Console()
    if not console.is_terminal:
        # Piped or captured output: keep one row per line, like kubectl does.
        console = Console(width=250)
    console.print(table)
