"""Which long-lived connections survive a node's failure, per forwarding mode, in the lab.

One lab (FRR router, 6 nodes, the seed manifests with their BFD profile) and one
Deployment of session servers (bench/chaos/sessions.py, port 9090, in the lab's pod
namespaces) behind four Services side by side:

- `snat`: the default (DNAT + masquerade);
- `dsr`: herald.io/forwarding-mode dsr;
- `local`: externalTrafficPolicy Local (each node picks among its own pods);
- `local-dsr`: Local with dsr forwarding (a cluster-wide Maglev table picks the node).

Each Service gets `--connections` long-lived connections from client1 (one request every
100 ms each). Then one worker's link is cut at the switch. Per connection, its cause of
death if it dies: its backend is on the cut node / it entered through the cut node / ECMP
moved it when the route changed / other; the entry node comes from the router's own FIB
(`ip route get … ipproto tcp sport …`, the kernel's multipath hash) before and after the
cut. Also: the time until the router dropped the node's next hop (polled every 20 ms),
and each node's uplink packet rate before and during the failure.

The router hashes the 5-tuple (`fib_multipath_hash_policy` 3, fields 0x37), as a hardware
router does. The lab's default policy 1 uses the hash the client's socket put on the
packet when there is one (the client and the router share this kernel), and TCP picks a
new random hash at every retransmission timeout: a flow stalled by the cut moves to
another node after its first timeout, before any route changed (`--router-hash socket`
keeps that behaviour, for comparison).

Run as root under the lab lock (takes the machine's lab, ~2 min):
    flock /tmp/herald-lab.lock .venv/bin/python bench/chaos/survival.py \\
        [--connections 50] [--json bench/results/survival.json]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for stamp

from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.lab import cluster
from herald.lab.demo import external_ip, run_demo
from herald.lab.failover import set_link
from herald.lab.kubelet import POD_HOST, PODS
from herald.lab.topology import Topology
from stamp import publish, stamp

ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed"
SESSIONS = str(Path(__file__).with_name("sessions.py"))
CLIENT = "client1"
CUT = "k8s-worker2"
REPLICAS = 10
MODES = {
    "snat": "",
    "dsr": "  annotations: {herald.io/forwarding-mode: dsr}\n",
    "local": "",
    "local-dsr": "  annotations: {herald.io/forwarding-mode: dsr}\n",
}
# A connection whose last answer is older than this at the end did not survive.
ALIVE_WITHIN = 1.5


def manifests() -> str:
    docs = [
        "apiVersion: apps/v1\nkind: Deployment\n"
        "metadata: {name: survival, namespace: default}\n"
        f"spec:\n  replicas: {REPLICAS}\n  selector: {{matchLabels: {{app: survival}}}}\n"
        "  template:\n    metadata: {labels: {app: survival}}\n    spec:\n      containers:\n"
        "        - {name: web, image: herald-lab/echo, ports: [{containerPort: 8080}]}\n"
    ]
    for mode, extra in MODES.items():
        policy = "Local" if mode.startswith("local") else "Cluster"
        docs.append(
            "apiVersion: v1\nkind: Service\n"
            f"metadata:\n  name: survival-{mode}\n  namespace: default\n{extra}"
            "spec:\n  type: LoadBalancer\n  selector: {app: survival}\n"
            f"  externalTrafficPolicy: {policy}\n"
            "  ports: [{name: sessions, port: 80, targetPort: 9090}]\n"
        )
    return "---\n".join(docs)


def hops(vip: str) -> set[str]:
    return set(re.findall(r"via (\S+)", cluster.run_in("router", "ip", "route", "show", vip)))


def entry(vip: str, client: str, sport: int) -> str:
    """The next hop the router's multipath hash picks for this flow."""
    out = cluster.run_in(
        "router", "ip", "route", "get", vip, "from", client, "iif", "lan0",
        "ipproto", "tcp", "sport", str(sport), "dport", "80",
    )  # fmt: skip
    match = re.search(r"via (\S+)", out)
    return match.group(1) if match else "?"


def uplink_packets(node: str) -> int:
    raw = cluster.run_in(node, "ip", "-j", "-s", "link", "show", "eth0")
    stats = json.loads(raw)[0]["stats64"]
    return int(stats["rx"]["packets"]) + int(stats["tx"]["packets"])


def watch_drops(
    vips: dict[str, str], gone: str, since: float, found: dict[str, float], stop: threading.Event
) -> None:
    """`found[mode]`: seconds from `since` until `vips[mode]`'s route lost next hop `gone`."""
    while len(found) < len(vips) and not stop.is_set():
        for mode, vip in vips.items():
            if mode not in found and gone not in hops(vip):
                found[mode] = round(time.time() - since, 3)
        time.sleep(0.02)


def rates(nodes: list[str], seconds: float) -> dict[str, float]:
    before = {n: uplink_packets(n) for n in nodes}
    time.sleep(seconds)
    return {n: round((uplink_packets(n) - before[n]) / seconds, 1) for n in nodes}


def start_servers() -> list[subprocess.Popen[bytes]]:
    """A session server in every survival pod's namespace (the pod's own server stays)."""
    pods = json.loads(PODS.read_text())["pods"]
    servers = []
    for pod in pods:
        if pod["name"].startswith("survival-"):
            namespace = cluster.PREFIX + POD_HOST + pod["name"]
            servers.append(
                subprocess.Popen(
                    [
                        "ip",
                        "netns",
                        "exec",
                        namespace,
                        sys.executable,
                        SESSIONS,
                        "serve",
                        "--name",
                        pod["name"],
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    return servers


def classify(
    connection: dict[str, Any], pod_node: dict[str, str], cut: str, ends: float
) -> tuple[str, bool]:
    backend_node = pod_node.get(connection["first_backend"] or "", "?")
    if backend_node == cut:
        cause = "backend_on_cut_node"
    elif connection["entry_before"] == cut:
        cause = "entered_through_cut_node"
    elif connection["entry_before"] != connection["entry_after"]:
        cause = "moved_by_ecmp"
    else:
        cause = "other"
    alive = (
        connection["ended"] == "alive"
        and connection["last_answer"] is not None
        and connection["last_answer"] > ends - ALIVE_WITHIN
        and len(connection["backends"]) == 1
    )
    return cause, alive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--after", type=float, default=6.0, help="s kept after the route drop")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--router-hash", choices=("5-tuple", "socket"), default="5-tuple")
    args = parser.parse_args()
    results: dict[str, Any] = stamp("chaos/survival")
    servers: list[subprocess.Popen[bytes]] = []
    clients: dict[str, tuple[Path, subprocess.Popen[bytes]]] = {}
    try:
        run_demo(SEED, "frr", lambda _: None)
        if args.router_hash == "5-tuple":
            for family in ("ipv4", "ipv6"):
                cluster.run_in(
                    "router", "sysctl", "-qw", f"net.{family}.fib_multipath_hash_policy=3"
                )
                cluster.run_in(
                    "router", "sysctl", "-qw", f"net.{family}.fib_multipath_hash_fields=0x37"
                )
        results["router_hash"] = args.router_hash
        topology = Topology.from_json(cluster.read_state()["topology"])
        address_of = {n.name: n.address for n in topology.nodes}
        node_at = {a: n for n, a in address_of.items()}
        client_address = topology.clients[CLIENT]
        (DEFAULT_MANIFESTS / "survival.yaml").write_text(manifests())
        vips = {
            mode: cluster.wait_until(
                lambda m=mode: external_ip(f"default/survival-{m}"), 60, f"a VIP for {mode}"
            )
            for mode in MODES
        }
        cluster.wait_until(
            lambda: (
                len(
                    [
                        p
                        for p in json.loads(PODS.read_text())["pods"]
                        if p["name"].startswith("surv")
                    ]
                )
                == REPLICAS
            ),
            90,
            "the survival pods",
        )
        pods = [p for p in json.loads(PODS.read_text())["pods"] if p["name"].startswith("surv")]
        pod_node = {p["name"]: p["node"] for p in pods}
        servers = start_servers()
        pod_nodes = {address_of[p["node"]] for p in pods}
        for mode, vip in vips.items():
            wanted = pod_nodes if mode.startswith("local") else set(address_of.values())
            cluster.wait_until(lambda v=vip, w=wanted: hops(v) == w, 90, f"{mode}'s next hops")
        time.sleep(2)
        scratch = cluster.LAB_DIR / "survival"
        scratch.mkdir(exist_ok=True)
        for mode, vip in vips.items():
            out = scratch / f"{mode}.json"
            for stale in (out, Path(f"{out}.ready"), Path(f"{out}.stop")):
                stale.unlink(missing_ok=True)
            argv = ["ip", "netns", "exec", cluster.PREFIX + CLIENT, sys.executable, SESSIONS,
                    "hold", "--vip", vip, "--count", str(args.connections), "--duration", "120",
                    "--out", str(out)]  # fmt: skip
            clients[mode] = (out, subprocess.Popen(argv))
        cluster.wait_until(
            lambda: all(Path(f"{out}.ready").exists() for out, _ in clients.values()),
            60,
            "every connection open",
        )
        entry_before = {
            mode: {
                sport: node_at.get(entry(vips[mode], client_address, sport), "?")
                for sport in json.loads(Path(f"{out}.ready").read_text())
            }
            for mode, (out, _) in clients.items()
        }
        others = [n.name for n in topology.nodes if n.name != CUT]
        baseline = rates([n.name for n in topology.nodes], 2.0)
        dropped: dict[str, float] = {}
        stop = threading.Event()
        cut_at = set_link(CUT, False)
        watcher = threading.Thread(
            target=watch_drops, args=(vips, address_of[CUT], cut_at, dropped, stop)
        )
        watcher.start()
        # The failure: rates every 0.5 s until every VIP lost the cut node's next hop.
        during: list[dict[str, float]] = []
        while len(dropped) < len(vips) and time.time() - cut_at < 30:
            during.append(rates(others, 0.5))
        stop.set()
        watcher.join()
        during.append(rates(others, 2.0))
        time.sleep(max(0.0, args.after - 2.0))
        ends = time.time()
        entry_after = {
            mode: {sport: node_at.get(entry(vips[mode], client_address, sport), "?")
                   for sport in entry_before[mode]}
            for mode in vips
        }  # fmt: skip
        for out, _ in clients.values():
            Path(f"{out}.stop").write_text("")
        for mode, (out, process) in clients.items():
            process.wait(timeout=60)
            connections = json.loads(out.read_text())["connections"]
            summary: dict[str, dict[str, int]] = {}
            failures = []
            for c in connections:
                c["entry_before"] = entry_before[mode][c["sport"]]
                c["entry_after"] = entry_after[mode][c["sport"]]
                cause, alive = classify(c, pod_node, CUT, ends)
                counts = summary.setdefault(cause, {"connections": 0, "survived": 0})
                counts["connections"] += 1
                counts["survived"] += int(alive)
                if not alive:
                    ended_at = c["ended_at"]
                    failures.append(
                        {
                            "cause": cause,
                            "ended": c["ended"],
                            "after_cut_s": round(ended_at - cut_at, 2) if ended_at else None,
                            "first_stall_after_cut_s": round(c["stalls"][0] - cut_at, 2)
                            if c["stalls"]
                            else None,
                            "backends": c["backends"],
                        }
                    )
            results[mode] = {
                "vip": vips[mode],
                "survived": sum(s["survived"] for s in summary.values()),
                "connections": len(connections),
                "by_cause": summary,
                "next_hop_dropped_after_s": dropped.get(mode),
                "failures": failures,
            }
            print(mode, json.dumps(results[mode]), flush=True)
        peak = {n: max(r[n] for r in during) for n in others}
        results["cut_node"] = CUT
        results["uplink_packets_per_s"] = {"before": baseline, "peak_during": peak}
        results["max_rate_ratio"] = round(max(peak[n] / max(baseline[n], 1.0) for n in others), 2)
        # What a node gained, in units of the cut node's own traffic: taking over flows
        # can add at most all of it (a node with little traffic of its own may still more
        # than double); a storm adds many times that.
        results["max_gain_of_cut_traffic"] = round(
            max(peak[n] - baseline[n] for n in others) / max(baseline[CUT], 1.0), 2
        )
    finally:
        for _, process in clients.values():
            if process.poll() is None:
                process.kill()
        for server in servers:
            server.kill()
            server.wait()
        set_link(CUT, True)
        cluster.down()
    publish(results, args.json)


if __name__ == "__main__":
    main()
