"""What users and the network do to a running lab, one thing at a time: each costs only
itself. While it happens a client keeps requesting the seed's VIP and every request must
succeed, the router keeps its six next hops, no agent restarts and no BGP session resets;
the problem shows where a user looks (`herald status`, the agents' problems).

One lab for the module (the seed in BGP mode, FRR); each case undoes what it did. The L2
lab's cases (a killed heartbeat process, heartbeat cuts that heal) are in test_l2_lab.py,
which builds that lab once; a crashed task inside an agent is injected by the unit tests
(tests/unit/bgp/test_supervision.py, tests/unit/agent/test_isolation.py).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from teardown import torn_down

from herald.agent.status import DEFAULT_STATUS_DIR, AgentStatus, query_all
from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.lab import cluster
from herald.lab.demo import run_demo
from herald.lab.probe import parse

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed"
VIP = "203.0.113.0"
NODES = {"192.0.2.10", "192.0.2.21", "192.0.2.22", "192.0.2.23", "192.0.2.24", "192.0.2.25"}
# The probe: a request every 50 ms from client1 while a case runs.
INTERVAL = 0.05


@pytest.fixture(scope="module")
def lab() -> Iterator[None]:
    with torn_down():
        run_demo(SEED, "frr", lambda _: None)
        yield


def hops(vip: str = VIP) -> set[str]:
    return set(re.findall(r"via (\S+)", cluster.run_in("router", "ip", "route", "show", vip)))


def agents() -> list[AgentStatus]:
    found = query_all(DEFAULT_STATUS_DIR)
    assert len(found) == len(NODES) and not any(a.error for a in found), found
    return found


def sessions() -> dict[str, float]:
    """Each node's session uptime (a session that reset would start again from zero)."""
    return {a.node: p.uptime_seconds or 0.0 for a in agents() for p in a.peers if p.established}


def wait(check: Callable[[], object], what: str, timeout: float = 60) -> None:
    cluster.wait_until(check, timeout, what)


@contextlib.contextmanager
def traffic_keeps_flowing(duration: float = 8.0) -> Iterator[None]:
    """Runs the case's body under a client's steady requests and asserts that nothing else
    noticed: every request answered, the router's next hops, the agents and their BGP
    sessions unchanged."""
    pids = dict(cluster.read_state()["agents"])
    before = sessions()
    assert len(before) == len(NODES) and hops() == NODES
    probe = subprocess.Popen(
        ["ip", "netns", "exec", cluster.PREFIX + "client1", sys.executable, "-m",
         "herald.lab.probe", f"http://{VIP}/", str(INTERVAL), str(duration)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        yield
        out, err = probe.communicate(timeout=duration + 30)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
    assert probe.returncode == 0, err
    samples = parse(out)
    failed = [s for s in samples if not s.ok]
    assert len(samples) >= duration / INTERVAL * 0.9 and not failed, (
        f"{len(failed)} of {len(samples)} requests failed"
    )
    assert hops() == NODES
    assert dict(cluster.read_state()["agents"]) == pids
    after = sessions()
    assert after.keys() == before.keys()
    assert all(after[node] > before[node] for node in before), (before, after)


def problems() -> list[str]:
    return [problem for a in agents() for problem in a.problems]


def every_agent_says(*words: str) -> Callable[[], bool]:
    def check() -> bool:
        found = agents()
        return all(any(all(w in p for w in words) for p in a.problems) for a in found)

    return check


def no_problems() -> bool:
    return not problems()


def write(name: str, text: str) -> Path:
    path = DEFAULT_MANIFESTS / name
    path.with_suffix(".tmp").write_text(text)
    path.with_suffix(".tmp").rename(path)
    return path


SERVICE = """\
apiVersion: v1
kind: Service
metadata: {{name: {name}, annotations: {annotations}}}
spec:
  type: LoadBalancer
  {selector}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""


def test_a_dsr_service_the_datapath_cannot_render_costs_only_that_service(lab: None) -> None:
    # DSR forwards to the backend's node: one on a node the cluster does not know (no
    # address to forward to) cannot be rendered on any node.
    manifests = SERVICE.format(
        name="web-dsr", annotations="{herald.io/forwarding-mode: dsr}", selector=""
    ) + (
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
        "metadata: {name: web-dsr-1, labels: {kubernetes.io/service-name: web-dsr}}\n"
        "addressType: IPv4\nports: [{name: http, port: 8080}]\n"
        "endpoints: [{addresses: [198.18.9.10], nodeName: k8s-worker9}]\n"
    )
    path = DEFAULT_MANIFESTS / "web-dsr.yaml"
    try:
        with traffic_keeps_flowing():
            write(path.name, manifests)
            wait(
                every_agent_says("default/web-dsr", "k8s-worker9", "no IPv4 address"),
                "every agent names web-dsr",
            )
        # Never announce what is not forwarded: the DSR Service has an address, no route.
        status = json.loads((DEFAULT_MANIFESTS / ".herald" / "state.json").read_text())
        address = status["services"]["default/web-dsr"]["loadBalancer"]["ingress"][0]["ip"]
        assert hops(address) == set()
    finally:
        path.unlink(missing_ok=True)
    wait(no_problems, "no problem once web-dsr is gone")


def test_a_service_of_1500_backends_is_served_beside_the_others(lab: None) -> None:
    endpoints = "\n".join(
        f"  - {{addresses: [{ipaddress.ip_address('198.18.100.0') + i}], nodeName: k8s-worker{1 + i % 5}}}"
        for i in range(1500)
    )
    manifests = SERVICE.format(name="web-big", annotations="{}", selector="") + (
        "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n"
        "metadata: {name: web-big-1, labels: {kubernetes.io/service-name: web-big}}\n"
        f"addressType: IPv4\nports: [{{name: http, port: 8080}}]\nendpoints:\n{endpoints}\n"
    )
    with traffic_keeps_flowing(duration=15):
        path = write("web-big.yaml", manifests)
        wait(
            lambda: all("default/web-big" in a.services for a in agents()) and no_problems(),
            "every agent forwards web-big",
            timeout=120,
        )
    path.unlink()


BAD_PEER = """\
apiVersion: herald.io/v1alpha1
kind: BGPClusterConfig
metadata: {name: zero}
spec:
  bgpInstances:
    - name: instance-64512
      localASN: 64512
      peers: [{name: zero, peerAddress: 192.0.2.1, peerASN: 0}]
"""


@pytest.mark.parametrize(
    ("name", "make", "words"),
    [
        ("peer-asn-zero.yaml", lambda p: p.write_text(BAD_PEER), ("peer-asn-zero.yaml", "peerASN")),
        ("garbage.yaml", lambda p: p.write_bytes(b"{{{ \x00 not: [yaml"), ("garbage.yaml",)),
        ("shadow.yaml", lambda p: p.symlink_to("/etc/shadow"), ("shadow.yaml", "outside")),
        (
            "huge.yaml",
            lambda p: p.write_text("# padding\n" * 5_000_000 + "apiVersion: v1\nkind: List\n"),
            ("huge.yaml", "over the limit"),
        ),
    ],
    ids=["peerASN 0", "garbage", "symlink outside", "50 MB file"],
)
def test_a_bad_manifest_keeps_the_last_good_state_and_is_said(
    lab: None, name: str, make: Callable[[Path], None], words: tuple[str, ...]
) -> None:
    path = DEFAULT_MANIFESTS / name
    with traffic_keeps_flowing():
        make(path)
        wait(every_agent_says(*words), f"every agent names {name}")
        listing = subprocess.run(
            cluster.herald_argv("get", "svc"), capture_output=True, text=True, check=False
        )
        assert f"{VIP}" in listing.stdout and name in listing.stderr, listing
    path.unlink()
    wait(no_problems, f"no problem once {name} is gone")
