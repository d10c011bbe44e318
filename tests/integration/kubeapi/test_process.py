"""`python -m herald.lab.kubeapi` as the lab runs it: a process that writes a kubeconfig."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .kubectl import Kubectl, kubectl_binary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_server_process_serves_kubectl_and_stops_on_sigterm(tmp_path: Path) -> None:
    port = free_port()
    config = tmp_path / "kubeconfig"
    account = tmp_path / "account"
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "herald.lab.kubeapi", "--listen", f"127.0.0.1:{port}"),
            *("--kubeconfig", str(config), "--tls", "--authorize"),
            *("--service-account", f"kube-system/herald={account}"),
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not config.exists():
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no kubeconfig within 30 s"
            time.sleep(0.1)
        written = yaml.safe_load(config.read_text())
        assert written["clusters"][0]["cluster"]["server"] == f"https://127.0.0.1:{port}"
        kubectl = Kubectl(kubectl_binary(), config, tmp_path / "cache")
        assert "kube-system" in kubectl("get", "namespaces", "-o", "name")
        # The service account's kubeconfig is written before the admin's.
        as_account = Kubectl(kubectl_binary(), account, tmp_path / "cache2")
        denied = as_account.run("get", "namespaces", check=False)
        assert denied.returncode != 0
        assert 'User "system:serviceaccount:kube-system:herald" cannot list' in denied.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert f"listening on https://127.0.0.1:{port}" in err
