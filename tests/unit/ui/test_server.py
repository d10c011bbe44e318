"""The web view's server against real agent sockets: read-only on every route, loopback by
default, no secret in anything it serves, and `herald observe`'s filters on the flows."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from herald.ui.server import ROUTES, parse_listen

from .harness import ROOT, SERVICE, flow, running, wait_for

WRITES = ("POST", "PUT", "DELETE", "PATCH")
MD5_PASSWORD = "md5-ui-test-8f3a1c"
L2_KEY = "l2-heartbeat-ui-test-key-5d9e2b7c0a41"
MAIN = "from herald.cli.main import main; main()"


def get(url: str, timeout: float = 5) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return bytes(response.read())


def stream_until(url: str, marker: bytes, limit: int = 1 << 20) -> bytes:
    """The event stream's first bytes, until `marker` has come (it never ends by itself)."""
    seen = b""
    with urllib.request.urlopen(url, timeout=10) as response:
        while marker not in seen and len(seen) < limit:
            seen += response.read1(65536)
    return seen


def test_every_route_refuses_every_write_method(tmp_path: Path) -> None:
    with running(tmp_path) as cluster:
        for route in (*ROUTES, "/static/style.css", "/static/index.html", "/no/such/route"):
            for method in WRITES:
                request = urllib.request.Request(cluster.url.rstrip("/") + route, method=method,
                                                 data=b"{}")  # fmt: skip
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(request, timeout=5)
                assert refused.value.code == 405, (method, route)
                assert "GET" in refused.value.headers["Allow"]
        # The same routes answer a read.
        for route in ("/", "/api/model", "/api/flows", "/static/app.js"):
            assert get(cluster.url.rstrip("/") + route)


def _manifests_with_secrets(directory: Path) -> Path:
    manifests = directory / "manifests"
    shutil.copytree(ROOT / "examples" / "seed", manifests)
    bgp = manifests / "bgp.yaml"
    text = bgp.read_text()
    assert "  bfdProfileRef: seed-bfd\n" in text
    bgp.write_text(
        text.replace("  bfdProfileRef: seed-bfd\n", "  authSecretRef: seed-md5\n  bfdProfileRef: seed-bfd\n", 1)
        + "---\napiVersion: v1\nkind: Secret\nmetadata:\n  name: seed-md5\n"
        f"  namespace: herald-system\nstringData:\n  password: {MD5_PASSWORD}\n"
    )  # fmt: skip
    (manifests / "l2.key").write_text(L2_KEY)
    return manifests


def test_no_secret_reaches_the_page(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HERALD_L2_KEY", L2_KEY)
    manifests = _manifests_with_secrets(tmp_path)
    with running(tmp_path, manifests) as cluster:
        cluster.add_flow(flow("k8s-worker1", "198.51.100.10", 0))
        base = cluster.url.rstrip("/")
        model = wait_for(
            lambda: (m := json.loads(get(base + "/api/model")))["pools"] and m, what="the pools"
        )
        # The manifests were read: their pool and their Service's (undecided) address.
        assert [p["name"] for p in model["pools"]] == ["seed-pool"]
        assert [p["service"] for p in model["pending"]] == ["default/web1-lb"]
        served = [get(base + r) for r in ("/", "/api/model", "/api/flows", "/static/app.js",
                                          "/static/style.css")]  # fmt: skip
        served.append(stream_until(base + "/api/stream", b"event: flows"))
        for body in served:
            assert MD5_PASSWORD.encode() not in body and L2_KEY.encode() not in body
            assert b"seed-md5" not in body  # not even the Secret's name


def test_flows_take_the_observe_filters_and_stream_live(tmp_path: Path) -> None:
    with running(tmp_path) as cluster:
        base = cluster.url.rstrip("/")
        cluster.add_flow(flow("k8s-worker1", "198.51.100.10", 0))
        cluster.add_flow(flow("k8s-worker2", "198.51.100.11", 1, verdict="DROPPED"))
        wait_for(lambda: len(json.loads(get(base + "/api/flows"))["flows"]) == 2, what="2 flows")
        dropped = json.loads(get(base + "/api/flows?verdict=dropped"))["flows"]
        assert [(f["node"], f["verdict"]) for f in dropped] == [("k8s-worker2", "DROPPED")]
        by_pod = json.loads(get(base + "/api/flows?pod=web1-1&ip=198.51.100.10"))["flows"]
        assert [f["pod"] for f in by_pod] == ["default/web1-1"]
        assert json.loads(get(base + "/api/flows?service=other"))["flows"] == []
        with pytest.raises(urllib.error.HTTPError) as bad:
            get(base + "/api/flows?port=http")
        assert bad.value.code == 400
        # Live: an event recorded after the stream opened comes through it, filtered.
        cluster.add_flow(flow("k8s-worker3", "198.51.100.99", 2, port=45678))
        seen = stream_until(base + "/api/stream?ip=198.51.100.99", b"45678")
        flows = [json.loads(line[6:]) for line in seen.split(b"\n")
                 if line.startswith(b"data: [")]  # fmt: skip
        assert {f["client"] for batch in flows for f in batch} == {"198.51.100.99"}
        model = json.loads(get(base + "/api/model"))
        assert model["services"][0]["key"] == SERVICE


def test_a_flow_replayed_by_a_reconnection_is_counted_once(tmp_path: Path) -> None:
    with running(tmp_path) as cluster:
        base = cluster.url.rstrip("/")
        cluster.add_flow(flow("k8s-worker1", "198.51.100.10", 0))
        wait_for(lambda: json.loads(get(base + "/api/flows"))["flows"], what="the flow")
        cluster.kill_agent("k8s-worker1")
        cluster.run(cluster.start_agent("k8s-worker1"))  # replays its ring to the view
        cluster.add_flow(flow("k8s-worker1", "198.51.100.10", 1))
        flows = wait_for(
            lambda: len(f := json.loads(get(base + "/api/flows"))["flows"]) >= 2 and f,
            what="the new flow",
        )
        assert [f["pod"] for f in flows] == ["default/web1-1", "default/web1-2"]


def test_it_binds_to_loopback_unless_told_and_says_so(tmp_path: Path) -> None:
    assert parse_listen("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_listen("[::1]:9000") == ("::1", 9000)
    for bad in ("localhost:80", "127.0.0.1:http", "127.0.0.1:70000"):
        with pytest.raises(ValueError):
            parse_listen(bad)
    proc = subprocess.Popen(
        [sys.executable, "-c", MAIN, "ui", "--listen", "127.0.0.1:0",
         "--status-dir", str(tmp_path), "--manifests", str(tmp_path / "none")],
        stderr=subprocess.PIPE, text=True, cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT / "src")},
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "http://127.0.0.1:" in line and "read-only; loopback only" in line, line
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(10)
    help_text = subprocess.run(
        [sys.executable, "-c", MAIN, "ui", "--help"], capture_output=True,
        text=True, check=True, cwd=ROOT,
    ).stdout  # fmt: skip
    assert "127.0.0.1:8080" in help_text


def test_on_loopback_only_loopback_names_are_answered(tmp_path: Path) -> None:
    """A page elsewhere whose name was rebound to 127.0.0.1 cannot read the model."""
    with running(tmp_path) as cluster:
        url = cluster.url + "api/model"
        rebound = urllib.request.Request(url, headers={"Host": f"evil.example:{cluster.port}"})
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(rebound, timeout=5)
        assert refused.value.code == 421
        named = urllib.request.Request(url, headers={"Host": f"localhost:{cluster.port}"})
        with urllib.request.urlopen(named, timeout=5) as response:
            assert json.loads(response.read())["nodes"]
