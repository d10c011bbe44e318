"""The import report: for every source object what it became, and every field that did not
come across as it was, each located as `file:document: field.path: message`.

Findings are collected per source object by a `Context` while converters run; the report
is their sorted text. Nothing here reads files or decides exit codes: the CLI does.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from herald.api.problems import Location


class Outcome(Enum):
    """What happened to a source object or one of its fields."""

    BECAME = "became"  # a source object and what it became
    CHANGED = "changed"  # converted, but herald behaves differently or needs a step from you
    NOT_CONVERTED = "not converted"  # has no herald equivalent: left out of the output
    IGNORED = "ignored"  # not configuration herald import reads, or has no effect anyway
    ERROR = "error"  # the input is malformed: nothing is written


# Outcomes that make an import partial (exit code, `--allow-partial`).
PARTIAL = frozenset({Outcome.NOT_CONVERTED})


@dataclass(frozen=True)
class Origin:
    """One source object: where it was written, and what it is."""

    location: Location
    item: int  # index in a `kind: List`, -1 when the document is the object itself
    kind: str
    name: str

    @property
    def prefix(self) -> str:
        return f"items[{self.item}]." if self.item >= 0 else ""

    def path(self, field_path: str = "") -> str:
        """A field of this object as the report names it; "" names the object itself."""
        if field_path:
            return self.prefix + field_path
        return f"items[{self.item}]" if self.item >= 0 else "(object)"

    @property
    def text(self) -> str:
        return f"{self.kind} {self.name}" if self.name else self.kind


@dataclass(frozen=True)
class Finding:
    location: Location
    item: int
    path: str
    outcome: Outcome
    message: str
    # Emission order: findings of one object stay in the order their converter said them.
    seq: int = 0

    def sort_key(self) -> tuple[str, int, int, bool, int]:
        # What an object became comes first among its findings, though it is known last.
        first = self.outcome is not Outcome.BECAME
        return (self.location.file, self.location.document, self.item, first, self.seq)

    def __str__(self) -> str:
        if self.outcome is Outcome.BECAME:
            return f"{self.location}: {self.path}: {self.message}"
        return f"{self.location}: {self.path}: {self.outcome.value}: {self.message}"


class Context:
    """Collects the findings about one source object, its fields located under its origin."""

    def __init__(self, origin: Origin, findings: list[Finding]) -> None:
        self.origin = origin
        self._findings = findings

    def add(self, outcome: Outcome, path: str, message: str) -> None:
        """`path` is the field path inside the object ("" for the object itself)."""
        self.add_at(outcome, self.origin.path(path), message)

    def add_at(self, outcome: Outcome, full_path: str, message: str) -> None:
        """Like `add`, with a path that already carries the list prefix."""
        where, seq = self.origin, len(self._findings)
        self._findings.append(Finding(where.location, where.item, full_path, outcome, message, seq))

    def became(self, message: str) -> None:
        self.add(Outcome.BECAME, "", message)

    def changed(self, path: str, message: str) -> None:
        self.add(Outcome.CHANGED, path, message)

    def not_converted(self, path: str, message: str) -> None:
        self.add(Outcome.NOT_CONVERTED, path, message)

    def ignored(self, path: str, message: str) -> None:
        self.add(Outcome.IGNORED, path, message)

    def error(self, path: str, message: str) -> None:
        self.add(Outcome.ERROR, path, message)


def sorted_findings(findings: Iterable[Finding]) -> list[Finding]:
    return sorted(findings, key=Finding.sort_key)


def summary(findings: Iterable[Finding], objects: int) -> str:
    """One line: how many source objects became how many herald objects, and how many
    findings of each kind there are."""
    counts = {outcome: 0 for outcome in Outcome}
    for finding in findings:
        counts[finding.outcome] += 1
    line = (
        f"herald import: {counts[Outcome.BECAME]} source object{_s(counts[Outcome.BECAME])} "
        f"converted into {objects} herald object{_s(objects)}; "
        f"{counts[Outcome.NOT_CONVERTED]} not converted, {counts[Outcome.CHANGED]} changed, "
        f"{counts[Outcome.IGNORED]} ignored"
    )
    if counts[Outcome.ERROR]:
        line += f", {counts[Outcome.ERROR]} error{_s(counts[Outcome.ERROR])}: nothing written"
    return line


def render(findings: Iterable[Finding], objects: int) -> str:
    """The report's text: every finding in source order, then the summary line."""
    ordered = sorted_findings(findings)
    lines = [str(finding) for finding in ordered]
    lines.append(summary(ordered, objects))
    return "\n".join(lines) + "\n"


def _s(count: int) -> str:
    return "" if count == 1 else "s"
