"""Reading what to import: files, directories and standard input, each holding YAML (or
JSON) documents as `kubectl get -o yaml` prints them, a `kind: List` standing for its items.

`parse_text` is pure (a name and a text in, objects and findings out); `read_inputs` is the
thin shell that reads paths. Objects come back in one order whatever order the paths were
given in (file name, then document, then list item), so an import is deterministic.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from herald.api.manifests import MANIFEST_SUFFIXES, YAML_LOADER
from herald.api.problems import Location
from herald.importers.report import Finding, Outcome

STDIN = "-"
STDIN_NAME = "<stdin>"


class KubernetesLoader(YAML_LOADER):  # type: ignore[misc,valid-type]
    """YAML as Kubernetes and MetalLB read it: like PyYAML's YAML 1.1, except that numbers
    written with colons (`1234:1`, a BGP community) are text, not base-60 integers."""


KubernetesLoader.yaml_implicit_resolvers = {
    first: [
        (
            tag,
            re.compile(r"(?=[^:]*\Z)" + regexp.pattern, regexp.flags)
            if tag in ("tag:yaml.org,2002:int", "tag:yaml.org,2002:float")
            else regexp,
        )
        for tag, regexp in resolvers
    ]
    for first, resolvers in YAML_LOADER.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class SourceObject:
    """One object of the input: where it was written and its parsed YAML."""

    location: Location
    item: int  # index in a `kind: List`, -1 when the document is the object
    raw: Any

    def sort_key(self) -> tuple[str, int, int]:
        return (self.location.file, self.location.document, self.item)


def parse_text(name: str, text: str) -> tuple[list[SourceObject], list[Finding]]:
    """The objects of one file's text, and an error for each part that is not YAML or not an
    object."""
    objects: list[SourceObject] = []
    findings: list[Finding] = []

    def error(location: Location, item: int, path: str, message: str) -> None:
        findings.append(Finding(location, item, path, Outcome.ERROR, message, len(findings)))

    index = 0
    try:
        for index, document in enumerate(yaml.load_all(text, Loader=KubernetesLoader), start=1):
            location = Location(name, index)
            if document is None:
                continue
            if isinstance(document, dict) and document.get("kind") == "List":
                items = document.get("items") or []
                if not isinstance(items, list):
                    error(location, -1, "items", "a List's items must be a list of objects")
                    continue
                for item, raw in enumerate(items):
                    if isinstance(raw, dict):
                        objects.append(SourceObject(location, item, raw))
                    else:
                        error(location, item, f"items[{item}]", _not_an_object(raw))
            elif isinstance(document, dict):
                objects.append(SourceObject(location, -1, document))
            else:
                error(location, -1, "(document)", _not_an_object(document))
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        reason = getattr(err, "problem", None) or str(err)
        error(
            Location(name, index + 1),
            -1,
            "(yaml)",
            f"not YAML: {reason}{where}; fix the file, or leave it out of the import",
        )
    return objects, findings


def read_inputs(
    paths: Sequence[str], stdin_text: str | None = None
) -> tuple[list[SourceObject], list[Finding]]:
    """Every object of `paths` (files, directories read recursively with hidden entries
    skipped, or "-" for `stdin_text`), sorted, and the errors met on the way."""
    objects: list[SourceObject] = []
    findings: list[Finding] = []
    seen: set[str] = set()

    def take(name: str, text: str) -> None:
        found, problems = parse_text(name, text)
        objects.extend(found)
        findings.extend(problems)

    for given in paths:
        if given == STDIN:
            if STDIN_NAME not in seen:
                seen.add(STDIN_NAME)
                take(STDIN_NAME, stdin_text or "")
            continue
        for path in _files(Path(given), findings):
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            try:
                text = path.read_bytes().decode("utf-8")
            except UnicodeDecodeError as err:
                findings.append(_file_error(path, f"is not UTF-8 text ({err.reason})"))
                continue
            except OSError as err:
                findings.append(_file_error(path, f"cannot be read: {err.strerror or err}"))
                continue
            take(str(path), text)
    objects.sort(key=SourceObject.sort_key)
    return objects, findings


def _files(path: Path, findings: list[Finding]) -> list[Path]:
    """`path` itself when it is a file (whatever its name), or the manifest files below it."""
    if path.is_dir():
        found = [
            candidate
            for candidate in sorted(path.rglob("*"))
            if candidate.suffix in MANIFEST_SUFFIXES
            and candidate.is_file()
            and not any(part.startswith(".") for part in candidate.relative_to(path).parts)
        ]
        if not found:
            findings.append(
                _file_error(path, "holds no .yaml, .yml or .json file; nothing to import there")
            )
        return found
    if path.exists():
        return [path]
    findings.append(_file_error(path, "does not exist"))
    return []


def _file_error(path: Path, message: str) -> Finding:
    return Finding(Location(str(path), 0), -1, "(file)", Outcome.ERROR, message)


def _not_an_object(value: Any) -> str:
    kind = {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )
    return f"expected an object with apiVersion and kind, got {kind}"
