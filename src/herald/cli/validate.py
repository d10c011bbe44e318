"""`herald validate DIR`: check a directory of manifests and say what was checked."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from herald.api.manifests import load_directory
from herald.api.problems import Location, ManifestError, Problem
from herald.api.snapshot import ClusterState
from herald.cli.output import output_option, print_json, print_table
from herald.facts import is_handled
from herald.ipam import allocate, requests_from_services
from herald.ipam.request import settings_of


@click.command()
@click.argument("directory", type=click.Path(path_type=Path))
@output_option
def validate(directory: Path, output: str) -> None:
    """Validate every manifest under DIRECTORY; list every problem as
    file:document: field.path: message and exit 1 if there is any. Warnings (located the
    same way) do not change the exit status."""
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
    warnings = annotation_warnings(state)
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
                "warnings": [
                    {
                        "file": w.location.file,
                        "document": w.location.document,
                        "path": w.path,
                        "message": w.message,
                    }
                    for w in warnings
                ],
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
    for warning in warnings:
        click.echo(f"warning: {warning}")


def annotation_warnings(state: ClusterState) -> list[Problem]:
    """The annotations of Services herald serves that lose to another and ask for something
    else, located like problems (they are valid: herald knows which one wins)."""
    found: list[Problem] = []
    for service in state.services:
        if not is_handled(service):
            continue
        ref = ("Service", service.metadata.namespace or "", service.metadata.name)
        location = state.locations.get(ref, Location("?", 0))
        found.extend(Problem(location, w.path, w.message) for w in settings_of(service).warnings)
    return sorted(found, key=lambda p: (p.location, p.path))
