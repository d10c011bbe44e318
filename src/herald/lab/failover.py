"""L2 failovers in the lab: who owns a VIP, its owner's death (agent killed or link cut), and
what a client sending a request every 10 ms saw meanwhile. Used by `herald demo --mode l2`,
the e2e tests and bench/l2."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Literal

from herald.agent.status import DEFAULT_STATUS_DIR, query_all
from herald.cli.l2 import owner_rows
from herald.lab import cluster
from herald.lab.netns import LabError, crash
from herald.lab.probe import Failover, failover, parse
from herald.lab.topology import Topology

Kind = Literal["agent", "link"]
INTERVAL = 0.01
FAILOVER_SERVICE = "default/web-failover"

# A Service whose one pod runs on k8s-worker1 (the lab kubelet puts pod 0 there) and whose
# IP only the other nodes may own. Cutting an owner's link then cuts no backend: failed
# requests measure the L2 failover only, not a lost pod (which the lab's kubelet, like a
# real one within its grace period, would still list as ready).
FAILOVER_MANIFESTS = """\
apiVersion: herald.io/v1alpha1
kind: L2AnnouncementPolicy
metadata: {name: failover}
spec:
  serviceSelector: {matchLabels: {failover: "yes"}}
  nodeSelector:
    matchExpressions:
      - {key: kubernetes.io/hostname, operator: NotIn, values: [k8s-worker1]}
  interfaces: ["^eth[0-9]+$"]
---
apiVersion: v1
kind: Service
metadata: {name: web-failover, namespace: default, labels: {failover: "yes"}}
spec:
  type: LoadBalancer
  loadBalancerClass: herald.io/l2
  selector: {app: web-failover}
  ports: [{name: http, port: 80, targetPort: 8080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web-failover, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: web-failover}}
  template:
    metadata: {labels: {app: web-failover}}
    spec:
      containers:
        - {name: web, image: herald-lab/echo, ports: [{containerPort: 8080}]}
"""


def owners(vip: str) -> list[str]:
    """The nodes answering for `vip`, from their agents' status (two during a partition)."""
    rows = owner_rows(query_all(DEFAULT_STATUS_DIR))
    return [r.owner for r in rows if r.vip == vip and r.owner is not None]


def owner_of(vip: str, timeout: float = 20.0, other_than: str | None = None) -> str:
    def single() -> str | None:
        found = [n for n in owners(vip) if n != other_than]
        return found[0] if len(found) == 1 else None

    owner: str = cluster.wait_until(single, timeout, f"one owner of {vip}")
    return owner


def all_live(count: int) -> bool:
    """`count` agents answer, and each one running L2 hears every L2 member."""
    agents = query_all(DEFAULT_STATUS_DIR)
    l2 = [agent.l2 for agent in agents if agent.l2]
    return (
        len(agents) == count
        and not any(agent.error for agent in agents)
        and bool(l2)
        and all(len(status.live) == len(status.members) for status in l2)
    )


def mac_of(node: str, interface: str = "eth0") -> str:
    text = cluster.run_in(node, "ip", "-o", "link", "show", interface)
    match = re.search(r"link/ether (\S+)", text)
    if match is None:
        raise LabError(f"{node} has no {interface}")
    return match.group(1)


def neighbour_mac(host: str, vip: str) -> str | None:
    match = re.search(r"lladdr (\S+)", cluster.run_in(host, "ip", "neigh", "show", vip))
    return match.group(1) if match else None


def entry_addresses(topology: Topology, node: str) -> set[str]:
    """What a pod sees as the client of a request that entered by `node` (SNAT), in either
    family (the IPv6 ones only appear in the dual-stack L2 lab)."""
    lab_node = topology.node(node)
    return {lab_node.address, lab_node.pod_gateway, lab_node.address6, lab_node.pod_gateway6}


def url(vip: str, port: int = 80) -> str:
    """The URL of `vip`: an IPv6 address goes in brackets (curl needs -g for them)."""
    host = f"[{vip}]" if ":" in vip else vip
    return f"http://{host}:{port}/"


def kill_agent(node: str) -> float:
    """SIGKILL the agent and its heartbeat process, by pid: a crash of the node's herald,
    with no goodbye to the peers (the agent alone would leave its heartbeat process to say
    goodbye, and its VIPs would move at once). Returns the wall time."""
    pid = int(cluster.read_state()["agents"][node])
    now = time.time()
    crash(pid)
    return now


def set_link(node: str, up: bool) -> float:
    """The switch side of the node's segment link, down or up. Returns the wall time."""
    now = time.time()
    cluster.run_in("sw", "ip", "link", "set", node, "up" if up else "down", check=True)
    return now


@dataclass(frozen=True)
class Round:
    kind: Kind
    old: str
    new: str
    result: Failover


def fail_owner(
    topology: Topology,
    vip: str,
    kind: Kind,
    client: str = "client1",
    before: float = 1.0,
    duration: float = 3.0,
) -> Round:
    """Ends the owner of `vip` (`kind`) while `client` sends a request every 10 ms, for
    `duration` seconds, starting `before` seconds earlier. The caller restores the node
    (`cluster.start_agent` / `set_link(node, True)`)."""
    old = owner_of(vip)
    probe = subprocess.Popen(
        ["ip", "netns", "exec", cluster.PREFIX + client, sys.executable, "-m", "herald.lab.probe",
         url(vip), str(INTERVAL), str(duration)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        time.sleep(before)
        since = kill_agent(old) if kind == "agent" else set_link(old, False)
        out, err = probe.communicate(timeout=duration + 10)
    finally:
        if probe.poll() is None:
            probe.kill()
            probe.wait()
    if probe.returncode != 0:
        raise LabError(f"probe in {client} failed: {err.strip()}")
    new = owner_of(vip, other_than=old)
    return Round(kind, old, new, failover(parse(out), since, entry_addresses(topology, new)))


def restore(node: str, kind: Kind) -> None:
    if kind == "agent":
        cluster.start_agent(node)
    else:
        set_link(node, True)
