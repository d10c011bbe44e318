"""`herald import` as a user runs it: where manifests and the report go, exit codes, and that
nothing is written when the input is malformed or (without --allow-partial) incomplete."""

from __future__ import annotations

import stat
from pathlib import Path

from click.testing import CliRunner

from herald.api.manifests import load_directory, parse_manifests
from herald.cli.main import cli

CASES = Path(__file__).parent / "cases"

POOL = """\
# https://docs.cilium.io/en/stable/network/lb-ipam/
apiVersion: cilium.io/v2
kind: CiliumLoadBalancerIPPool
metadata: {name: blue-pool}
spec:
  blocks: [{cidr: 10.0.10.0/24}]
"""
PARTIAL = """\
apiVersion: cilium.io/v2
kind: CiliumBGPPeerConfig
metadata: {name: tor}
spec:
  authSecretRef: not-imported
"""


def invoke(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["import", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def test_output_directory_gets_one_file_per_source_kind_and_the_report(tmp_path: Path) -> None:
    out = tmp_path / "herald"
    code, stdout, stderr = invoke(str(CASES / "metallb-bgp"), "-o", str(out), "--allow-partial")
    assert code == 0, stderr
    names = sorted(path.name for path in out.iterdir())
    assert names == [
        "bfdprofile.yaml",
        "bgpadvertisement.yaml",
        "bgppeer.yaml",
        "import-report.txt",
        "ipaddresspool.yaml",
        "secret.yaml",
    ]
    report = (out / "import-report.txt").read_text()
    assert stdout.startswith(report)
    assert f"wrote {out / 'bgppeer.yaml'}" in stdout
    # The passwords' file is private; the directory is what herald validate accepts.
    assert stat.S_IMODE((out / "secret.yaml").stat().st_mode) == 0o600
    assert stat.S_IMODE((out / "bgppeer.yaml").stat().st_mode) == 0o644
    assert len(load_directory(out).bgp_peer_configs) == 7


def test_without_a_directory_manifests_go_to_stdout_and_the_report_to_stderr() -> None:
    code, stdout, stderr = invoke(str(CASES / "cilium-lb-ipam" / "pools.yaml"))
    assert code == 0
    assert len(parse_manifests({"stdout.yaml": stdout}).pools) == 6
    assert "# --- ciliumloadbalancerippool.yaml" in stdout
    assert "became LoadBalancerIPPool blue-pool" in stderr
    assert stderr.splitlines()[-1].startswith("herald import: 6 source objects converted")


def test_standard_input_is_read_for_a_dash() -> None:
    code, stdout, stderr = invoke("-", stdin=POOL)
    assert code == 0, stderr
    assert "<stdin>:1: (object): CiliumLoadBalancerIPPool blue-pool became" in stderr
    assert parse_manifests({"x.yaml": stdout}).pools[0].metadata.name == "blue-pool"


def test_malformed_input_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("kind: [\n")
    (tmp_path / "good.yaml").write_text(POOL)
    out = tmp_path / "out"
    code, stdout, stderr = invoke(str(tmp_path), "-o", str(out))
    assert code == 1
    assert not out.exists()
    assert stdout == ""
    assert f"{tmp_path}/bad.yaml:1: (yaml): error: not YAML" in stderr
    assert stderr.splitlines()[-1] == "nothing written: fix the errors above and import again"


def test_a_missing_file_is_an_error() -> None:
    code, _, stderr = invoke("/nonexistent/metallb.yaml")
    assert code == 1
    assert "/nonexistent/metallb.yaml:0: (file): error: does not exist" in stderr


def test_a_partial_import_exits_3_unless_allowed(tmp_path: Path) -> None:
    (tmp_path / "in.yaml").write_text(PARTIAL)
    out = tmp_path / "out"
    code, stdout, _ = invoke(str(tmp_path / "in.yaml"), "-o", str(out))
    assert code == 3
    assert not out.exists()
    assert "spec.authSecretRef: not converted: Secret 'not-imported'" in stdout
    assert "add --allow-partial to write the rest" in stdout
    code, stdout, _ = invoke(str(tmp_path / "in.yaml"), "-o", str(out), "--allow-partial")
    assert code == 0
    assert (out / "ciliumbgppeerconfig.yaml").exists()


def test_dry_run_reports_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, stdout, _ = invoke(str(CASES / "cilium-l2"), "-o", str(out), "--dry-run")
    assert code == 0
    assert not out.exists()
    assert f"would write {out}/ciliuml2announcementpolicy.yaml (2 objects)" in stdout


def test_from_reads_only_the_chosen_implementation() -> None:
    code, stdout, stderr = invoke("--from", "metallb", str(CASES / "cilium-l2"))
    assert code == 0
    assert "# Written by `herald import`" in stdout and "kind:" not in stdout
    assert "--from metallb reads MetalLB's only" in stderr


def test_an_output_directory_of_other_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    code, _, stderr = invoke(str(CASES / "cilium-l2"), "-o", str(tmp_path))
    assert code == 1
    assert "holds files herald import did not write (notes.txt)" in stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_importing_again_replaces_an_earlier_import(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert invoke(str(CASES / "metallb-bgp"), "-o", str(out), "--allow-partial")[0] == 0
    assert invoke(str(CASES / "cilium-l2"), "-o", str(out))[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "ciliuml2announcementpolicy.yaml",
        "import-report.txt",
    ]
