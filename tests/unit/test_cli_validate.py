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


MIGRATION = ROOT / "tests" / "unit" / "fixtures" / "migration"


def test_validate_warns_where_annotations_disagree_and_exits_0() -> None:
    result = CliRunner().invoke(cli, ["validate", str(MIGRATION)])
    assert result.exit_code == 0, result.output
    services = MIGRATION / "services.yaml"
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        f"warning: {services}:7: metadata.annotations[herald.io/ips]: spec.loadBalancerIP "
        "203.0.113.62 is not requested: this annotation wins over it and does not list it; add "
        "it here or remove spec.loadBalancerIP",
        f"warning: {services}:7: metadata.annotations[lbipam.cilium.io/ips]: ignored: "
        "herald.io/ips wins and asks for 203.0.113.60, not 203.0.113.61; remove this annotation "
        "or make it say the same",
    ]


def test_validate_json_lists_annotation_warnings() -> None:
    result = CliRunner().invoke(cli, ["validate", "-o", "json", str(MIGRATION)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["valid"] is True
    assert [(w["file"], w["document"], w["path"]) for w in data["warnings"]] == [
        (str(MIGRATION / "services.yaml"), 7, "metadata.annotations[herald.io/ips]"),
        (str(MIGRATION / "services.yaml"), 7, "metadata.annotations[lbipam.cilium.io/ips]"),
    ]


def test_validate_reports_foreign_annotations_that_disagree_located(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  annotations:\n"
        "    lbipam.cilium.io/ips: 203.0.113.10\n    metallb.io/loadBalancerIPs: 203.0.113.20\n"
        "spec: {type: LoadBalancer}\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path}/svc.yaml:1: metadata.annotations[metallb.io/loadBalancerIPs]: asks for "
        "203.0.113.20 but lbipam.cilium.io/ips asks for 203.0.113.10, and herald cannot tell "
        "which one the Service was served by: remove one, or set herald.io/ips, which wins over "
        "both",
        f"1 problem in {tmp_path}",
    ]


def test_ipam_honours_cilium_and_metallb_annotations_where_they_stand() -> None:
    result = CliRunner().invoke(cli, ["ipam", "-o", "json", str(MIGRATION)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    got = {s["service"]: (s["ips"], s["reason"]) for s in data["services"]}
    assert got == {
        # lbipam.cilium.io/ips
        "shop/cilium-ips": (["203.0.113.50"], "satisfied"),
        # io.cilium/lb-ipam-sharing-key and herald.io/sharing-key, same key: one address
        "shop/dns-udp": (["203.0.113.0"], "satisfied"),
        "shop/dns-tcp": (["203.0.113.0"], "satisfied"),
        # metallb address-pool: the newer pool, chosen by name over the older one
        "shop/metallb-pool": (["198.51.100.0"], "satisfied"),
        # metallb allow-shared-ip in two namespaces, as MetalLB shares them
        "blue/web": (["198.51.100.1"], "satisfied"),
        "green/web": (["198.51.100.1"], "satisfied"),
        # herald.io/ips wins
        "shop/both": (["203.0.113.60"], "satisfied"),
    }
    assert {p["name"]: p["used"] for p in data["pools"]} == {"general": 3, "gold": 2}
