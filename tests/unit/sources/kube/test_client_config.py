"""Which kubeconfig herald uses, in kubectl's order, and the CLI's checks of its options."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from herald.cli.main import cli
from herald.sources.kube.client import kube_config


def kubeconfig(path: Path, server: str) -> Path:
    path.write_text(
        f"""apiVersion: v1
kind: Config
clusters: [{{name: c, cluster: {{server: "{server}"}}}}]
users: [{{name: u, user: {{token: t}}}}]
contexts: [{{name: x, context: {{cluster: c, user: u, namespace: ns1}}}}]
current-context: x
"""
    )
    return path


def test_the_option_wins_over_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "env", "http://env:1")))
    chosen = kube_config(kubeconfig(tmp_path / "opt", "http://opt:2")).get()
    assert chosen is not None and chosen.cluster.server == "http://opt:2"


def test_kubeconfig_env_takes_the_first_file_that_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    present = kubeconfig(tmp_path / "present", "http://present:3")
    monkeypatch.setenv("KUBECONFIG", f"{tmp_path / 'missing'}:{present}")
    chosen = kube_config().get()
    assert chosen is not None and chosen.cluster.server == "http://present:3"


def test_in_cluster_is_used_without_kubeconfig(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    account = tmp_path / "sa"
    account.mkdir()
    for name, text in (("token", "tok"), ("namespace", "herald-system"), ("ca.crt", "")):
        (account / name).write_text(text)
    chosen = kube_config(service_account=account).get()
    assert chosen is not None and chosen.cluster.server == "https://10.96.0.1:443"


def test_lease_timings_that_allow_two_writers_are_refused_at_the_command_line() -> None:
    result = CliRunner().invoke(
        cli, ["controller", "--source", "kube", "--lease-duration", "10", "--renew-deadline", "12"]
    )
    assert result.exit_code == 2
    assert "must be longer than the renew deadline" in result.output


def test_no_kubeconfig_anywhere_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    result = CliRunner().invoke(cli, ["controller", "--source", "kube"])
    assert result.exit_code == 1
    assert "no usable Kubernetes configuration" in result.output
