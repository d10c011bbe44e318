"""Printing listings as a table (rich) or as JSON (`-o json`), the same data either way."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click
from rich.console import Console
from rich.table import Table

FORMATS = ("table", "json")

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
