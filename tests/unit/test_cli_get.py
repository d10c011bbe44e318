"""`herald get svc` and `herald ipam` while a manifest is invalid: they show what herald keeps
serving (the last good state the controller saved), with a warning naming every problem."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from herald.cli.main import cli
from herald.controller.run import run_controller
from herald.sources.files import FileSource

POOL = """apiVersion: herald.io/v1alpha1
kind: LoadBalancerIPPool
metadata: {name: pool}
spec: {blocks: [{cidr: 203.0.113.0/24}]}
"""
WEB = """apiVersion: v1
kind: Service
metadata: {name: web}
spec: {type: LoadBalancer, ports: [{port: 80}]}
"""
BROKEN = "apiVersion: v1\nkind: Service\nmetadata: {}\n"


def served_by_a_controller(manifests: Path) -> None:
    """Runs the controller until it has allocated and saved the last good state."""
    source = FileSource(manifests)

    async def scenario() -> None:
        controller = asyncio.ensure_future(run_controller(source, "test"))
        for _ in range(250):
            services = source.read_state().get("services", {})
            if services.get("default/web") and source.last_good_path.exists():
                break
            await asyncio.sleep(0.02)
        controller.cancel()
        await asyncio.gather(controller, return_exceptions=True)

    asyncio.run(asyncio.wait_for(scenario(), timeout=30))
    assert source.last_good_path.exists()


def test_get_svc_lists_services_with_their_addresses(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text(POOL)
    (tmp_path / "web.yaml").write_text(WEB)
    served_by_a_controller(tmp_path)
    result = CliRunner().invoke(cli, ["get", "svc", "--manifests", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "203.0.113.0" in result.stdout
    assert result.stderr == ""


def test_get_svc_shows_the_last_good_state_while_a_manifest_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text(POOL)
    (tmp_path / "web.yaml").write_text(WEB)
    served_by_a_controller(tmp_path)
    (tmp_path / "broken.yaml").write_text(BROKEN)
    (tmp_path / "web.yaml").write_text(WEB.replace("port: 80", "port: 8080"))
    result = CliRunner().invoke(cli, ["get", "svc", "--manifests", str(tmp_path)])
    assert result.exit_code == 0, result.output
    # What is served: the last good Service (port 80) and the address the controller gave it.
    row = next(line for line in result.stdout.splitlines() if " web " in line)
    assert row.split()[:6] == ["default", "web", "LoadBalancer", "<none>", "203.0.113.0", "80/TCP"]
    lines = result.stderr.splitlines()
    assert lines[0].startswith(
        f"warning: 1 problem in {tmp_path}: showing the last good state, saved "
    )
    assert lines[0].endswith("which herald keeps serving until they are fixed")
    assert lines[1] == f"  {tmp_path}/broken.yaml:1: metadata.name: required field is missing"
    assert lines[2] == f"  (`herald validate {tmp_path}` checks a fix)"


def test_get_svc_json_stays_json_while_a_manifest_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text(POOL)
    (tmp_path / "web.yaml").write_text(WEB)
    served_by_a_controller(tmp_path)
    (tmp_path / "broken.yaml").write_text(BROKEN)
    result = CliRunner().invoke(cli, ["get", "svc", "-o", "json", "--manifests", str(tmp_path)])
    assert result.exit_code == 0, result.output
    items = json.loads(result.stdout)["items"]
    assert [i["status"]["loadBalancer"]["ingress"] for i in items] == [[{"ip": "203.0.113.0"}]]
    assert "broken.yaml" in result.stderr


def test_get_svc_fails_when_there_is_no_last_good_state(tmp_path: Path) -> None:
    (tmp_path / "broken.yaml").write_text(BROKEN)
    result = CliRunner().invoke(cli, ["get", "svc", "--manifests", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert f"{tmp_path}/broken.yaml:1: metadata.name: required field is missing" in result.stderr
    assert "nothing to show: no last good state" in result.stderr


def test_ipam_runs_over_the_last_good_manifests_while_one_is_invalid(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text(POOL)
    (tmp_path / "web.yaml").write_text(WEB)
    served_by_a_controller(tmp_path)
    (tmp_path / "broken.yaml").write_text(BROKEN)
    result = CliRunner().invoke(cli, ["ipam", "-o", "json", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert [s["service"] for s in json.loads(result.stdout)["services"]] == ["default/web"]
    assert f"{tmp_path}/broken.yaml:1" in result.stderr


def test_get_svc_says_when_the_private_state_file_cannot_be_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "pool.yaml").write_text(POOL)
    (tmp_path / "web.yaml").write_text(WEB)
    served_by_a_controller(tmp_path)
    state = tmp_path / ".herald" / "state.json"
    # The state file is 0600: another user than the controller's may not read it (root,
    # running these tests, reads everything, hence the stand-in for the permission check).
    readable = os.access
    monkeypatch.setattr(os, "access", lambda path, mode: path != state and readable(path, mode))
    result = CliRunner().invoke(cli, ["get", "svc", "--manifests", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert result.stderr == (
        f"warning: {state} is not readable by this user, so addresses show as <pending>; "
        "run as the controller's user (its files are private)\n"
    )


def test_get_pools_shows_what_the_controller_counted(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text(POOL)
    (tmp_path / "spare.yaml").write_text(
        POOL.replace("name: pool", "name: spare").replace("/24}]}", "/30}], disabled: true}")
    )
    (tmp_path / "web.yaml").write_text(WEB)
    served_by_a_controller(tmp_path)
    result = CliRunner().invoke(cli, ["get", "pools", "--manifests", str(tmp_path)])
    assert result.exit_code == 0, result.output
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[0] == ["NAME", "DISABLED", "CONFLICTING", "IPS", "AVAILABLE", "AGE"]
    rows = {line[0]: line[1:4] for line in lines[1:]}
    # 256 addresses, one in use; the disabled /30 overlaps the older pool, so it serves none.
    assert rows["pool"] == ["false", "false", "255"]
    assert rows["spare"][:2] == ["true", "true"]
    as_yaml = CliRunner().invoke(cli, ["get", "pools", "--manifests", str(tmp_path), "-o", "yaml"])
    assert as_yaml.exit_code == 0 and "kind: List" in as_yaml.stdout
    assert "herald.io/IPsAvailable" in as_yaml.stdout
