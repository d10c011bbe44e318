"""Golden files: each case under cases/ (manifests from Cilium's and MetalLB's documentation,
each file naming its source) is imported as a directory, and what is written (one file per
source kind) and the report must equal golden/<case>/. HERALD_UPDATE_GOLDEN=1 rewrites them.
Every output must load with herald's own manifest loader."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from herald.api.manifests import parse_manifests
from herald.importers import Result, convert
from herald.importers.source import read_inputs

HERE = Path(__file__).parent
CASES = HERE / "cases"
GOLDEN = HERE / "golden"
UPDATE = os.environ.get("HERALD_UPDATE_GOLDEN") == "1"
NAMES = sorted(path.name for path in CASES.iterdir() if path.is_dir())
REPORT = "report.txt"


def imported(case: str, monkeypatch: pytest.MonkeyPatch) -> Result:
    # From inside the case, so that the report names files as they are written there.
    monkeypatch.chdir(CASES / case)
    objects, read = read_inputs(["."])
    return convert(objects, "auto", read)


def test_there_are_cases_for_both_sources() -> None:
    assert {"cilium-lb-ipam", "cilium-bgp", "metallb-bgp", "metallb-legacy"} <= set(NAMES)


@pytest.mark.parametrize("case", NAMES)
def test_import_matches_golden_files(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = imported(case, monkeypatch)
    assert not result.failed, result.report()
    written = {**result.files, REPORT: result.report()}
    golden = GOLDEN / case
    if UPDATE:
        shutil.rmtree(golden, ignore_errors=True)
        golden.mkdir(parents=True)
        for name, text in written.items():
            (golden / name).write_text(text)
    expected = {path.name: path.read_text() for path in sorted(golden.iterdir())}
    assert sorted(written) == sorted(expected), f"{golden}: HERALD_UPDATE_GOLDEN=1 rewrites it"
    for name, text in written.items():
        assert text == expected[name], (
            f"{golden / name} differs; HERALD_UPDATE_GOLDEN=1 rewrites it"
        )


@pytest.mark.parametrize("case", NAMES)
def test_output_passes_herald_validation(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    result = imported(case, monkeypatch)
    state = parse_manifests(result.files)
    assert sum(state.counts().values()) == len(result.emitted)


@pytest.mark.parametrize("case", NAMES)
def test_every_source_object_is_accounted_for(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each object of the input has a line in the report: what it became, or why not."""
    result = imported(case, monkeypatch)
    objects, _ = read_inputs(["."])
    said = {
        (f.location, f.item) for f in result.findings if f.path in ("(object)", f"items[{f.item}]")
    }
    assert said == {(obj.location, obj.item) for obj in objects}


@pytest.mark.parametrize("case", NAMES)
def test_each_input_names_its_source(case: str) -> None:
    for path in sorted((CASES / case).glob("*.yaml")):
        head = path.read_text().split("\napiVersion", 1)[0]
        assert "https://" in head or "/work/shared/LAB.md" in head, f"{path}: cite the source"
