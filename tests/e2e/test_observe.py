"""`herald observe` in the lab: a curl from client1 shows up, packet by packet, with the pod
that answered and its node, merged over every node's agent."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
import threading
import time
from pathlib import Path

import pytest

from herald.agent.status import DEFAULT_STATUS_DIR
from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.lab import cluster
from herald.lab.demo import run_demo

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed"
VIP = "203.0.113.0"
CLIENT_PORT = 41234


def fd_links(pid: int) -> list[str]:
    """What the process's open descriptors point to; one closed meanwhile is skipped."""
    links = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with contextlib.suppress(FileNotFoundError):
            links.append(os.readlink(fd))
    return links


def wait_connected(pid: int) -> None:
    """Until the follower holds a connection to every agent's socket (it takes seconds to
    start on a busy machine; a request made before would not be followed)."""
    agents = len(list(DEFAULT_STATUS_DIR.glob("*.sock")))
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sockets = [link for link in fd_links(pid) if link.startswith("socket:")]
        if len(sockets) >= agents:
            time.sleep(0.2)  # the requests written, the agents' first answers read
            return
        time.sleep(0.1)
    raise AssertionError("herald observe --follow did not connect to every agent")


def test_a_curl_from_client1_appears_with_its_pod_and_node(lab_cleanup: None) -> None:
    demo: list[str] = []
    run_demo(SEED, "frr", demo.append)
    # The demo ends with the last request as `herald observe --last 10` shows it.
    shown = "\n".join(demo).split("herald observe --last 10", 1)[1].splitlines()[1:11]
    assert all(" FORWARDED " in line and "(TCP Flags: " in line for line in shown), shown
    follow = subprocess.Popen(
        cluster.herald_argv("observe", "--follow", "-o", "json", "--port", str(CLIENT_PORT)),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reading = threading.Thread(target=lambda: lines.extend(follow.stdout or ()), daemon=True)
    reading.start()
    try:
        wait_connected(follow.pid)
        answer = cluster.run_in(
            "client1", "curl", "-s", "-m", "3", "--local-port", str(CLIENT_PORT),
            f"http://{VIP}/",
        )  # fmt: skip
        found = re.search(r"pod=(\S+) node=(\S+)", answer)
        assert found, answer
        pod, node = found.groups()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any('"FIN"' in line for line in lines[-4:]):
            time.sleep(0.1)
    finally:
        follow.terminate()
        follow.wait(timeout=5)
        reading.join(timeout=5)
    events = [json.loads(line) for line in lines]
    assert events, follow.stderr.read() if follow.stderr else ""
    requests = [e for e in events if e["direction"] == "request"]
    replies = [e for e in events if e["direction"] == "reply"]
    flags = [set(e["tcp_flags"]) for e in requests]
    assert flags[0] == {"SYN"}
    assert {"ACK", "PSH"} in flags and any("FIN" in f for f in flags)
    assert any(set(e["tcp_flags"]) == {"SYN", "ACK"} for e in replies)
    for event in events:
        assert event["client"] == "198.51.100.10" and event["client_port"] == CLIENT_PORT
        assert (event["vip"], event["vip_port"]) == (VIP, 80)
        assert event["verdict"] == "FORWARDED"
        assert event["service"] == "default/web1-lb"
        assert event["pod"] == f"default/{pod}"
        assert event["backend_node"] == node
        assert event["reason"] == ("to-endpoint" if event["node"] == node else "to-node")
    # One node took the flow (the router's ECMP choice) and logged both directions.
    assert len({e["node"] for e in events}) == 1
    times = [e["time"] for e in events]
    assert times == sorted(times)
    # The recorded view (`--last`) shows the same request in the compact line.
    text = subprocess.run(
        cluster.herald_argv("observe", "--last", "3", "--pod", pod, "--port", str(CLIENT_PORT)),
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert f"198.51.100.10:{CLIENT_PORT} " in text and f"default/{pod}:" in text
    assert f"(on {node}) via {VIP}:80 FORWARDED" in text


def observed(*args: str) -> list[dict[str, object]]:
    out = subprocess.run(
        cluster.herald_argv("observe", "-o", "json", *args), capture_output=True, text=True
    ).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_refused_requests_appear_as_dropped_with_their_reason(lab_cleanup: None) -> None:
    run_demo(SEED, "frr", lambda _: None)
    # Another port of the VIP: refused with a reset by whichever node the router chose.
    assert cluster.run_in("client1", "curl", "-s", "-m", "3", f"http://{VIP}:81/") == ""
    # Only client2 may reach the Service: client1's SYNs are dropped (the VIP stays
    # announced: the Service has backends).
    text = (
        (SEED / "web1.yaml")
        .read_text()
        .replace(
            "  type: LoadBalancer\n",
            '  type: LoadBalancer\n  loadBalancerSourceRanges: ["198.51.100.11/32"]\n',
            1,
        )
    )
    (DEFAULT_MANIFESTS / "web1.yaml").write_text(text)
    deadline = time.monotonic() + 20
    denied: list[dict[str, object]] = []
    while time.monotonic() < deadline and not denied:
        cluster.run_in("client1", "curl", "-s", "-m", "1", f"http://{VIP}/")
        denied = observed("--verdict", "DROPPED", "--service", "web1-lb", "--last", "5")
    assert denied, "no source-range drop was observed"
    assert {(e["reason"], e["client"], e["vip"]) for e in denied} == {
        ("source-range-denied", "198.51.100.10", VIP)
    }
    assert "pod=web1-" in cluster.run_in("client2", "curl", "-s", "-m", "3", f"http://{VIP}/")
    other_port = observed("--verdict", "DROPPED", "--port", "81", "--last", "5")
    assert {(e["reason"], e["vip_port"], e["service"]) for e in other_port} == {
        ("no-service-port", 81, "")
    }
