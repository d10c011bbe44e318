"""Located validation problems: every error names the file, the document and the field."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Location:
    """Where an object was written: a file and its document number (counting from 1)."""

    file: str
    document: int

    def __str__(self) -> str:
        return f"{self.file}:{self.document}"


@dataclass(frozen=True)
class Problem:
    location: Location
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.location}: {self.path}: {self.message}"


class ManifestError(Exception):
    """The manifests are not valid; `problems` lists every problem found, in file order."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(sorted(problems, key=lambda p: (p.location, p.path)))
        super().__init__("\n".join(str(problem) for problem in self.problems))
