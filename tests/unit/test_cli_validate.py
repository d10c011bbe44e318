"""`herald validate` and `herald ipam` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from herald.cli.main import cli

ROOT = Path(__file__).resolve().parents[2]


def test_validate_examples_passes_and_says_what_it_checked() -> None:
    result = CliRunner().invoke(cli, ["validate", str(ROOT / "examples")])
    assert result.exit_code == 0, result.output
    assert "valid" in result.output
    assert "LoadBalancerIPPool" in result.output
    assert "references between objects" in result.output


def test_validate_invalid_fixtures_fail_with_located_messages(tmp_path: Path) -> None:
    source = ROOT / "tests" / "unit" / "fixtures" / "invalid" / "pool-bad-blocks.yaml"
    (tmp_path / "pool.yaml").write_text(source.read_text())
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    lines = result.stderr.splitlines()
    assert f"{tmp_path}/pool.yaml:1: spec.disable: unknown field" in "\n".join(lines)
    assert lines[-1] == f"5 problems in {tmp_path}"


def test_validate_json(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(
        "apiVersion: herald.io/v1alpha1\nkind: BFDProfile\nmetadata: {name: x}\n"
        "spec: {detectMultiplier: 300}\n"
    )
    result = CliRunner().invoke(cli, ["validate", "-o", "json", str(tmp_path)])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["problems"] == [
        {
            "file": f"{tmp_path}/a.yaml",
            "document": 1,
            "path": "spec.detectMultiplier",
            "message": "got 300: Input should be less than or equal to 255",
        }
    ]


def test_validate_missing_directory() -> None:
    result = CliRunner().invoke(cli, ["validate", "/nonexistent/herald"])
    assert result.exit_code == 1
    assert "not a directory" in result.stderr


def test_ipam_json_for_the_seed() -> None:
    result = CliRunner().invoke(cli, ["ipam", "-o", "json", str(ROOT / "examples" / "seed")])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["services"][0]["service"] == "default/web1-lb"
    assert data["services"][0]["ips"] == ["203.0.113.0"]
    assert data["pools"] == [
        {
            "name": "seed-pool",
            "total": 256,
            "used": 1,
            "available": 255,
            "disabled": False,
            "conflictingWith": None,
        }
    ]
