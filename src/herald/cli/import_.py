"""`herald import`: convert Cilium's or MetalLB's configuration into herald manifests.

Exit codes: 0 when everything was converted (findings marked `changed` or `ignored` do not
count), 1 when the input is malformed (nothing is written), 3 when something could not be
converted and `--allow-partial` was not given (nothing is written either: a partial
configuration is never applied by accident). Click's own usage errors exit 2.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import cast

import click

from herald.importers import SOURCES, Result, Source, convert
from herald.importers.render import HEADER, REPORT_FILE, files, joined
from herald.importers.secrets import SECRETS_FILE
from herald.importers.source import STDIN, read_inputs

EXIT_INVALID = 1
EXIT_PARTIAL = 3


@click.command("import")
@click.option(
    "--from",
    "source",
    type=click.Choice(SOURCES),
    default="auto",
    show_default=True,
    help="Whose configuration to read; auto tells by apiVersion and kind.",
)
@click.option(
    "-o",
    "--output-dir",
    "output_dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Write one file per source kind (and import-report.txt) here, instead of to stdout.",
)
@click.option("--dry-run", is_flag=True, help="Convert and report; write nothing.")
@click.option(
    "--allow-partial",
    is_flag=True,
    help="Write what could be converted even when something could not (exit 0).",
)
@click.argument("paths", nargs=-1, required=True)
def import_(
    source: str, output_dir: Path | None, dry_run: bool, allow_partial: bool, paths: tuple[str, ...]
) -> None:
    """Convert the Cilium or MetalLB manifests in PATHS (files, directories, - for stdin)
    into herald.io/v1alpha1 manifests, with a report of what each object became and of every
    field that has no herald equivalent (docs/migration.md)."""
    stdin_text = sys.stdin.read() if STDIN in paths else None
    objects, read = read_inputs(paths, stdin_text)
    result = convert(objects, cast(Source, source), read)
    report = result.report()
    # With the manifests on stdout the report goes to stderr, so the two can be piped apart.
    to_stderr = output_dir is None and not dry_run
    if result.failed:
        click.echo(report, nl=False, err=True)
        click.echo("nothing written: fix the errors above and import again", err=True)
        sys.exit(EXIT_INVALID)
    if result.partial and not allow_partial:
        click.echo(report, nl=False, err=to_stderr)
        click.echo(
            "nothing written: some of it could not be converted (see `not converted` above); "
            "add --allow-partial to write the rest",
            err=to_stderr,
        )
        sys.exit(EXIT_PARTIAL)
    if dry_run:
        click.echo(report, nl=False)
        where = f"{output_dir}/" if output_dir is not None else "stdout: "
        for name, items in files(result.emitted).items():
            click.echo(f"would write {where}{name} ({len(items)} objects)")
        return
    if output_dir is None:
        click.echo(joined(result.emitted), nl=False)
        click.echo(report, nl=False, err=True)
        return
    try:
        written = _write(output_dir, result, report)
    except _Refused as refused:
        click.echo(f"{output_dir}: {refused}", err=True)
        sys.exit(EXIT_INVALID)
    except OSError as err:
        click.echo(f"{output_dir}: cannot be written: {err.strerror or err}", err=True)
        sys.exit(EXIT_INVALID)
    click.echo(report, nl=False)
    for name in written:
        click.echo(f"wrote {output_dir / name}")


class _Refused(Exception):
    """The output directory cannot be written as asked; the message says why."""


def _write(directory: Path, result: Result, report: str) -> list[str]:
    """Write the files into `directory`: a new or empty one, or one an earlier import wrote
    (its files are replaced, and those this import does not write are removed)."""
    if directory.exists() and not directory.is_dir():
        raise _Refused("exists and is not a directory")
    directory.mkdir(parents=True, exist_ok=True)
    entries = [entry for entry in directory.iterdir() if not entry.name.startswith(".")]
    previous = [entry for entry in entries if _ours(entry)]
    others = sorted(entry.name for entry in entries if entry not in previous)
    if others:
        raise _Refused(
            f"holds files herald import did not write ({', '.join(others)}); choose a new or "
            "empty directory"
        )
    texts = dict(result.files)
    texts[REPORT_FILE] = report
    for name, text in texts.items():
        _write_file(directory / name, text, private=name == SECRETS_FILE)
    for entry in previous:
        if entry.name not in texts:
            entry.unlink()
    return list(texts)


def _ours(entry: Path) -> bool:
    if entry.name == REPORT_FILE:
        return True
    if not entry.is_file() or entry.suffix != ".yaml":
        return False
    with entry.open(encoding="utf-8", errors="replace") as opened:
        return opened.readline() == HEADER


def _write_file(path: Path, text: str, private: bool) -> None:
    """Atomically: a reader sees the old file or the new one, never half of one."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(temporary, 0o600 if private else 0o644)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
