"""The committed CRDs and configuration reference are what the models generate, and the
schemas are structural (what the Kubernetes API server requires of a CRD)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from herald.api.crd import crd_files
from herald.api.reference import render_reference, replace_generated
from herald.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", sorted(crd_files()))
def test_committed_crd_matches_models(name: str) -> None:
    committed = ROOT / "deploy" / "crds" / name
    assert committed.exists(), f"{committed} missing: run `herald crds`"
    assert committed.read_text() == crd_files()[name], "stale CRD: run `herald crds`"


def test_no_stray_crd_files() -> None:
    assert sorted(p.name for p in (ROOT / "deploy" / "crds").iterdir()) == sorted(crd_files())


def test_configuration_reference_is_current() -> None:
    doc = (ROOT / "docs" / "configuration.md").read_text()
    assert replace_generated(doc, render_reference(ROOT / "examples")) == doc


def _walk(node: Any, path: str = "") -> list[str]:
    """Everything a structural schema must not contain."""
    problems = []
    if isinstance(node, dict):
        for banned in ("$ref", "anyOf", "oneOf", "allOf", "$defs", "const", "title"):
            if banned in node:
                problems.append(f"{path}: {banned}")
        if node.get("additionalProperties") is False:
            problems.append(f"{path}: additionalProperties false")
        if "properties" in node and "type" not in node:
            problems.append(f"{path}: object without type")
        for key, value in node.items():
            if key in ("default", "enum"):
                continue
            problems += _walk(value, f"{path}.{key}")
    elif isinstance(node, list):
        for index, item in enumerate(node):
            problems += _walk(item, f"{path}[{index}]")
    return problems


@pytest.mark.parametrize("name", sorted(crd_files()))
def test_schema_is_structural(name: str) -> None:
    crd = yaml.safe_load(crd_files()[name])
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert _walk(schema) == []
    properties = schema["properties"]["spec"]["properties"]
    assert properties, "spec has fields"


def test_crds_check_command_detects_staleness(tmp_path: Path) -> None:
    runner = CliRunner()
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        out = tmp_path / "crds"
        result = runner.invoke(cli, ["crds", "--check", "--out", str(out)])
        assert result.exit_code == 1
        result = runner.invoke(
            cli, ["crds", "--out", str(out), "--docs", str(tmp_path / "none.md")]
        )
        assert result.exit_code == 0
        assert sorted(p.name for p in out.iterdir()) == sorted(crd_files())
    finally:
        os.chdir(cwd)
