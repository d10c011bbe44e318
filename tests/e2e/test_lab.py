"""The seed walkthrough end to end in the lab: real namespaces, FRR or BIRD, herald's
controller, agents, speakers and nftables, curl from a client on another LAN.

These tests take over the machine's lab (`herald lab up` state in /run/herald): a lab a
developer left up is torn down first, and every test leaves none behind.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.lab import cluster
from herald.lab.demo import run_demo
from herald.lab.netns import end_process, pids_in, run

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed"
VIP = "203.0.113.0"


def hops(prefix: str = VIP) -> set[str]:
    found = re.findall(r"via (\S+)", cluster.run_in("router", "ip", "route", "show", prefix))
    return set(found)


def wait_for_hops(expected: set[str], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if hops() == expected:
            return
        time.sleep(0.1)
    raise AssertionError(f"router next hops {sorted(hops())}, expected {sorted(expected)}")


def curl(host: str = "client1") -> str:
    return cluster.run_in(host, "curl", "-s", "-m", "3", f"http://{VIP}/")


NODES = {"192.0.2.10", "192.0.2.21", "192.0.2.22", "192.0.2.23", "192.0.2.24", "192.0.2.25"}


@pytest.mark.parametrize("router", ["frr", "bird"])
def test_demo_walkthrough(router: str, lab_cleanup: None) -> None:
    lines: list[str] = []
    took = run_demo(SEED, router, lines.append)  # type: ignore[arg-type]
    output = "\n".join(lines)
    assert f"web1-lb  LoadBalancer  <none>      {VIP}" in output
    assert hops() == NODES
    assert "HTTP/1.0 200 OK" in output
    assert "60 of 60 answered" in output
    for pod in range(6):
        assert f"web1-{pod} " in output, f"pod web1-{pod} answered no request"
    if router == "frr":
        assert len(re.findall(r"^192\.0\.2\.\d+ .* 1 +0 N/A$", output, re.M)) == 6
    assert took < 90
    # `herald service list`: the frontend with its six pods, counted on the nodes.
    listed = json.loads(run(cluster.herald_argv("service", "list", "-o", "json")).stdout)
    (web,) = [row for row in listed if row["service"] == "default/web1-lb"]
    assert web["frontend"] == f"{VIP}:80/TCP"
    assert sorted(b["pod"] for b in web["backends"]) == [f"default/web1-{i}" for i in range(6)]
    assert {b["state"] for b in web["backends"]} == {"active"}
    assert web["packets"] >= 60


def write_service(**spec: str) -> None:
    text = (SEED / "web1.yaml").read_text()
    for key, value in spec.items():
        text = text.replace(
            "  type: LoadBalancer\n", f"  type: LoadBalancer\n  {key}: {value}\n", 1
        )
    (DEFAULT_MANIFESTS / "web1.yaml").write_text(text)


def test_routes_follow_scale_traffic_policy_and_deletion(lab_cleanup: None) -> None:
    run_demo(SEED, "frr", lambda _: None)
    # Local traffic policy: only nodes with a ready pod announce (workers 1-5; not master).
    write_service(externalTrafficPolicy="Local")
    wait_for_hops(NODES - {"192.0.2.10"})
    assert "pod=web1-" in curl()
    # Scale to one replica: only k8s-worker1 keeps a pod, only it announces.
    text = (DEFAULT_MANIFESTS / "web1.yaml").read_text().replace("replicas: 6", "replicas: 1")
    (DEFAULT_MANIFESTS / "web1.yaml").write_text(text)
    wait_for_hops({"192.0.2.21"})
    answer = curl()
    assert "pod=web1-0 node=k8s-worker1 client=198.51.100.10" in answer, answer
    # Delete the Service: the route goes.
    (DEFAULT_MANIFESTS / "web1.yaml").unlink()
    wait_for_hops(set())


def _statuses() -> dict[str, list[str]]:
    data = json.loads((DEFAULT_MANIFESTS / ".herald" / "state.json").read_text())
    return {
        key: [ingress["ip"] for ingress in status["loadBalancer"].get("ingress", [])]
        for key, status in data["services"].items()
    }


def _controller_pid() -> int:
    for pid in pids_in(cluster.PREFIX + "k8s-master1"):
        if b"controller" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise AssertionError("no controller process in k8s-master1")


def test_controller_restart_keeps_every_address(lab_cleanup: None) -> None:
    run_demo(SEED, "frr", lambda _: None)
    end_process(_controller_pid())
    # While no controller runs, a Service that sorts before web1-lb appears: a restarted
    # controller must restore web1-lb's address before it allocates anything new.
    other = (SEED / "web1.yaml").read_text().replace("web1", "web0")
    (DEFAULT_MANIFESTS / "web0.yaml").write_text(other)
    restarted = subprocess.Popen(
        ["ip", "netns", "exec", cluster.PREFIX + "k8s-master1",
         *cluster.herald_argv("controller", "--manifests", str(DEFAULT_MANIFESTS))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and not _statuses().get("default/web0-lb"):
            time.sleep(0.1)
        assert _statuses() == {"default/web1-lb": [VIP], "default/web0-lb": ["203.0.113.1"]}
        assert "pod=web1-" in curl()
    finally:
        end_process(restarted.pid)
        restarted.wait(timeout=5)


def _agent_pid(node: str) -> int:
    for pid in pids_in(cluster.PREFIX + node):
        if b"agent" in Path(f"/proc/{pid}/cmdline").read_bytes():
            return pid
    raise AssertionError(f"no agent process in {node}")


def _restart_agent(node: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["ip", "netns", "exec", cluster.PREFIX + node,
         *cluster.herald_argv("agent", "--node", node, "--manifests", str(DEFAULT_MANIFESTS))],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip


def test_killed_agent_loses_its_next_hop_within_the_hold_time(lab_cleanup: None) -> None:
    run_demo(SEED, "frr", lambda _: None)
    bgp = (SEED / "bgp.yaml").read_text().replace("enabled: true", "enabled: false")
    (DEFAULT_MANIFESTS / "bgp.yaml").write_text(bgp)
    wait_for_hops(NODES)
    time.sleep(1)  # the sessions restart without graceful restart
    wait_for_hops(NODES)
    os.kill(_agent_pid("k8s-worker5"), signal.SIGKILL)
    killed = time.monotonic()
    wait_for_hops(NODES - {"192.0.2.25"}, timeout=15)
    # Hold time 9 s (examples/seed/bgp.yaml): the router notices within it, plus its scan.
    assert time.monotonic() - killed < 12
    assert "pod=web1-" in curl()


def test_graceful_restart_keeps_the_next_hop_and_every_request(lab_cleanup: None) -> None:
    run_demo(SEED, "frr", lambda _: None)
    load = subprocess.Popen(
        ["ip", "netns", "exec", cluster.PREFIX + "client1", "sh", "-c",
         f"for i in $(seq 150); do curl -s -o /dev/null -w '%{{http_code}}\\n' -m 2 "
         f"http://{VIP}/; sleep 0.05; done"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    os.kill(_agent_pid("k8s-worker5"), signal.SIGKILL)
    time.sleep(3)
    assert hops() == NODES, "the router keeps the restarting node's route"
    restarted = _restart_agent("k8s-worker5")
    try:
        wait_for_hops(NODES)
        codes, _ = load.communicate(timeout=60)
        assert codes.split() == ["200"] * 150
        assert hops() == NODES
    finally:
        end_process(restarted.pid)
        restarted.wait(timeout=5)


def test_two_services_share_one_address(lab_cleanup: None) -> None:
    run_demo(SEED, "frr", lambda _: None)
    shared = {"herald.io/sharing-key": "web"}
    services = [
        "apiVersion: v1\nkind: Service\n"
        f"metadata: {{name: {name}, annotations: {json.dumps(shared)}}}\n"
        "spec:\n  type: LoadBalancer\n  selector: {app: web1}\n"
        f"  ports: [{{name: http, port: {port}, targetPort: 8080}}]\n"
        for name, port in (("web1-lb", 80), ("web1-alt", 8081))
    ]
    deployment = (SEED / "web1.yaml").read_text().split("---\n", 1)[1]
    (DEFAULT_MANIFESTS / "web1.yaml").write_text("---\n".join([*services, deployment]))
    # web1-lb keeps 203.0.113.0 and web1-alt joins it.
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _statuses().get("default/web1-alt") != [VIP]:
        time.sleep(0.1)
    assert _statuses()["default/web1-alt"] == [VIP]
    assert _statuses()["default/web1-lb"] == [VIP]
    deadline = time.monotonic() + 10
    answer = ""
    while time.monotonic() < deadline and "pod=web1-" not in answer:
        answer = cluster.run_in("client1", "curl", "-s", "-m", "2", f"http://{VIP}:8081/")
    assert "pod=web1-" in answer
    assert "pod=web1-" in curl()


def test_lab_from_a_topology_file(lab_cleanup: None) -> None:
    from herald.lab.topology_file import load_topology

    topology = load_topology(ROOT / "topologies" / "small.yaml")
    cluster.up(topology=topology)
    for manifest in sorted(SEED.glob("*.yaml")):
        (DEFAULT_MANIFESTS / manifest.name).write_text(manifest.read_text())
    wait_for_hops({"192.0.2.10", "192.0.2.21", "192.0.2.22"}, timeout=60)
    answers = "".join(curl() for _ in range(6))
    assert answers.count("pod=web1-") == 6
    assert set(re.findall(r"node=(\S+)", answers)) <= {"w1", "w2"}
    # The router is BIRD, as the file says.
    ctl = str(cluster.LAB_DIR / "router" / "bird.ctl")
    assert "Established" in cluster.run_in("router", "birdc", "-s", ctl, "show protocols")


def bfd_up() -> set[str]:
    out = cluster.run_in(
        "router", "vtysh", "-N", cluster.PREFIX + "router", "-c", "show bfd peers json"
    )
    return {peer["peer"] for peer in json.loads(out or "[]") if peer.get("status") == "up"}


def test_bfd_takes_a_silent_nodes_next_hop_away_before_the_hold_time(lab_cleanup: None) -> None:
    """k8s-worker5 goes silent: every packet to or from the node itself is dropped (no TCP
    reset, no link down on the router's side; traffic it forwards to its pods still
    passes). The hold time (9 s) would notice after 9 s; BFD at 300 ms x 3 after about a
    second, and the router stops sending the node traffic."""
    run_demo(SEED, "frr", lambda _: None)  # the seed's peers name a BFDProfile of 300 ms x 3
    cluster.wait_until(lambda: cluster.router_bfd_up() == NODES, 30, "BFD up with every node")
    wait_for_hops(NODES)
    cluster.silence("k8s-worker5")
    cut = time.monotonic()
    try:
        wait_for_hops(NODES - {"192.0.2.25"}, timeout=15)
        assert time.monotonic() - cut < 9, "the hold time, not BFD, took the next hop away"
        assert "pod=web1-" in curl()
    finally:
        cluster.unsilence("k8s-worker5")
    wait_for_hops(NODES, timeout=30)


DUAL_STACK = """\
apiVersion: v1
kind: Service
metadata: {name: web1-ds}
spec:
  type: LoadBalancer
  ipFamilyPolicy: RequireDualStack
  ipFamilies: [IPv4, IPv6]
  selector: {app: web1}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""
VIP6 = "2001:db8:113::"
NODES6 = {f"2001:db8:2::{n}" for n in ("10", "21", "22", "23", "24", "25")}


def hops6() -> set[str]:
    return set(
        re.findall(r"via (\S+)", cluster.run_in("router", "ip", "-6", "route", "show", VIP6))
    )


def test_an_ipv6_vip_is_announced_by_every_node_and_answers(lab_cleanup: None) -> None:
    """The BGP lab is dual-stack: an IPv6 VIP goes over each node's IPv4 session with the
    node's IPv6 address as next hop, and a client on the IPv6 LAN reaches its pods."""
    run_demo(SEED, "frr", lambda _: None)
    pool = (SEED / "pool.yaml").read_text() + "    - cidr: 2001:db8:113::/120\n"
    (DEFAULT_MANIFESTS / "pool.yaml").write_text(pool)
    selected = "      advertisements:\n        matchLabels:\n          advertise: seed\n"
    bgp = (SEED / "bgp.yaml").read_text()
    bgp = bgp.replace(selected, f"{selected}    - afi: ipv6\n      safi: unicast\n{selected}", 1)
    (DEFAULT_MANIFESTS / "bgp.yaml").write_text(bgp)
    (DEFAULT_MANIFESTS / "web1-ds.yaml").write_text(DUAL_STACK)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and hops6() != NODES6:
        time.sleep(0.2)
    assert hops6() == NODES6
    assert _statuses()["default/web1-ds"] == ["203.0.113.1", VIP6]
    answer = cluster.run_in("client1", "curl", "-g", "-s", "-m", "3", f"http://[{VIP6}]/")
    # Policy Cluster: the pod sees the address of the node that masqueraded, an IPv6 one.
    assert re.search(r"pod=web1-\d node=\S+ client=2001:db8:(2|18):", answer), answer
    # The IPv4 VIP of the seed is unchanged.
    assert hops() == NODES and "pod=web1-" in curl()
    # Both VIPs answer ping from the client LAN, until the Service opts out.
    for vip in ("203.0.113.1", VIP6):
        assert pings(vip), f"{vip} does not answer ping"
    opted_out = DUAL_STACK.replace(
        "metadata: {name: web1-ds}",
        "metadata: {name: web1-ds, annotations: {herald.io/icmp-echo: 'false'}}",
    )
    assert opted_out != DUAL_STACK
    (DEFAULT_MANIFESTS / "web1-ds.yaml").write_text(opted_out)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and pings(VIP6):
        time.sleep(0.5)
    assert not pings(VIP6) and not pings("203.0.113.1")
    assert "pod=web1-" in cluster.run_in(
        "client1", "curl", "-g", "-s", "-m", "3", f"http://[{VIP6}]/"
    )


def pings(address: str) -> bool:
    """One echo request from client1 answered within a second."""
    argv = ["ip", "netns", "exec", cluster.PREFIX + "client1", "ping", "-c", "1", "-W", "1"]
    return subprocess.run([*argv, address], capture_output=True, check=False).returncode == 0


WEB2 = """\
apiVersion: v1
kind: Service
metadata: {name: web2}
spec:
  type: LoadBalancer
  selector: {app: web1}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""


@pytest.mark.parametrize("router", ["frr", "bird"])
def test_an_aggregated_advertisement_gives_the_router_one_prefix(
    router: str, lab_cleanup: None
) -> None:
    """aggregationLength 24: the router holds one 203.0.113.0/24 with six next hops instead
    of a /32 per Service; both Services answer; an unused address of the /24 is refused at
    once by the node it reaches (not routed back to the router until its TTL runs out);
    the /24 goes when no Service inside it is left."""
    run_demo(SEED, router, lambda _: None)
    bgp = (SEED / "bgp.yaml").read_text()
    listed = "        addresses: [LoadBalancerIP]\n"
    (DEFAULT_MANIFESTS / "bgp.yaml").write_text(
        bgp.replace(listed, f"{listed}      aggregationLength: 24\n")
    )
    (DEFAULT_MANIFESTS / "web2.yaml").write_text(WEB2)
    aggregate = "203.0.113.0/24"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (
        hops(aggregate) != NODES or hops() or hops("203.0.113.1")
    ):
        time.sleep(0.2)
    assert hops(aggregate) == NODES and not hops() and not hops("203.0.113.1")
    assert _statuses()["default/web2"] == ["203.0.113.1"]
    for vip in (VIP, "203.0.113.1"):
        answer = cluster.run_in("client1", "curl", "-s", "-m", "3", f"http://{vip}/")
        assert "pod=web1-" in answer, vip
    started = time.monotonic()
    unused = run(
        ["ip", "netns", "exec", cluster.PREFIX + "client1",
         "curl", "-s", "-m", "5", "http://203.0.113.99/"],
        check=False,
    )  # fmt: skip
    assert unused.returncode == 7 and time.monotonic() - started < 2, unused
    (DEFAULT_MANIFESTS / "web1.yaml").unlink()
    (DEFAULT_MANIFESTS / "web2.yaml").unlink()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and hops(aggregate):
        time.sleep(0.2)
    assert not hops(aggregate)
