"""`herald validate DIR`: check a directory of manifests and say what was checked."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from herald.api.manifests import load_directory
from herald.api.problems import ManifestError
from herald.cli.output import output_option, print_json, print_table
from herald.ipam import allocate, requests_from_services


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
@output_option
def validate(directory: Path, output: str) -> None:
    """Validate every manifest under DIRECTORY; list every problem as
    file:document: field.path: message and exit 1 if there is any."""
    try:
        state = load_directory(directory)
    except ManifestError as err:
        if output == "json":
            print_json(
                {
                    "valid": False,
                    "problems": [
                        {
                            "file": p.location.file,
                            "document": p.location.document,
                            "path": p.path,
                            "message": p.message,
                        }
                        for p in err.problems
                    ],
                }
            )
        else:
            for problem in err.problems:
                click.echo(str(problem), err=True)
            count = len(err.problems)
            click.echo(f"{count} problem{'s' if count != 1 else ''} in {directory}", err=True)
        sys.exit(1)
    allocations, usage = allocate(state.pools, requests_from_services(state.services))
    conflicts = {u.name: u.conflicting_with for u in usage if u.conflicting_with}
    unsatisfied = {key: a for key, a in allocations.items() if not a.satisfied}
    counts = state.counts()
    if output == "json":
        print_json(
            {
                "valid": True,
                "objects": counts,
                "ignored": dict(state.ignored),
                "poolConflicts": conflicts,
                "unsatisfied": {
                    k: {"reason": a.reason.value, "message": a.message}
                    for k, a in unsatisfied.items()
                },
            }
        )
        return
    print_table(
        f"{directory}: valid",
        ("KIND", "OBJECTS"),
        sorted(counts.items())
        + [(f"{k} (not read by herald)", n) for k, n in state.ignored.items()],
    )
    click.echo(
        "checked: YAML syntax, apiVersion/kind, every field's type, range and allowed values, "
        "defaults, unique names, references between objects (peer configs, BFD profiles, "
        "secrets), and a dry run of LB-IPAM over the Services"
    )
    for name, why in conflicts.items():
        click.echo(f"warning: pool {name} conflicts and serves no addresses: {why}")
    for key, allocation in unsatisfied.items():
        click.echo(
            f"warning: Service {key} gets no address: {allocation.reason}: {allocation.message}"
        )
