"""The live demo: the seed walkthrough, end to end, in the lab.

lab up; apply examples/seed (pool, BGP config, the web1 Deployment and its LoadBalancer
Service); then show what the seed articles show: the Service's EXTERNAL-IP, the router's BGP
summary with one session and one prefix per node, the router's route with one next hop per
node, an HTTP 200 from a client on the client LAN, and how requests spread over nodes and
pods. The lab stays up for exploring; `herald lab down` removes it.
"""

from __future__ import annotations

import collections
import json
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.lab import cluster
from herald.lab.netns import run
from herald.lab.topology import RouterKind
from herald.ui.launch import ui_line

Echo = Callable[[str], None]
REQUESTS = 60


def run_demo(examples: Path, router: RouterKind, echo: Echo, source: str = "files") -> float:
    """Runs the walkthrough; returns its duration in seconds. With `source` "kube" herald
    reads a Kubernetes API (the lab's test double) and the demo uses the real kubectl."""
    start = time.monotonic()
    step(echo, f"herald lab up --router {router}" + _source_flag(source))
    topology = cluster.up(router, 5, DEFAULT_MANIFESTS, source=source)
    echo(f"{len(topology.nodes)} nodes, router 192.0.2.1 ({router}), clients 198.51.100.10-11")

    apply_examples(examples, echo, source)
    vip = cluster.wait_until(
        lambda: external_ip("default/web1-lb", source), 30, "an EXTERNAL-IP for web1-lb"
    )
    hops = cluster.wait_until(
        lambda: _next_hops(vip) if len(_next_hops(vip)) == len(topology.nodes) else None,
        60,
        f"the router's route to {vip} with {len(topology.nodes)} next hops",
    )
    applied = time.monotonic()

    show_services(echo, source)
    if router == "frr":
        step(echo, "router: vtysh -c 'show bgp ipv4 summary'")
        summary = cluster.run_in(
            "router", "vtysh", "-N", "hl-router", "-c", "show bgp ipv4 summary"
        )
        echo(_summary_table(summary))
    else:
        step(echo, "router: birdc show protocols")
        ctl = str(cluster.LAB_DIR / "router" / "bird.ctl")
        echo(cluster.run_in("router", "birdc", "-s", ctl, "show protocols").rstrip())
    step(echo, f"router: ip route show {vip}")
    echo(cluster.run_in("router", "ip", "route", "show", vip).rstrip())
    echo(f"-> {len(hops)} next hops: one per node (ECMP)")

    show_request(vip, echo)

    step(echo, f"client1: {REQUESTS} requests, new connection each")
    script = f"for i in $(seq {REQUESTS}); do curl -s -m 2 http://{vip}/; done"
    answers = cluster.run_in("client1", "sh", "-c", script).splitlines()
    # With snat the pod sees the address of the node the request entered by (its pod bridge
    # address when the pod is local to that node).
    seen = re.findall(r"pod=(\S+) node=(\S+) client=(\S+)", "\n".join(answers))
    entry = {a: node.name for node in topology.nodes for a in (node.address, node.pod_gateway)}
    echo(f"{len(seen)} of {REQUESTS} answered")
    echo("  by the node the router sent them to:")
    for name, count in sorted(collections.Counter(entry.get(c, c) for _, _, c in seen).items()):
        echo(f"    {name:12} {count:3d}")
    echo("  by the pod that answered:")
    for (pod, node), count in sorted(collections.Counter((p, n) for p, n, _ in seen).items()):
        echo(f"    {pod:8} on {node:12} {count:3d}")
    echo(
        "Each request entered through the node the router's ECMP hash chose, and every node\n"
        "picks the pod by the same Maglev table, so any node may answer for any pod."
    )
    step(echo, "herald observe --last 10   (the last request, packet by packet, all nodes)")
    echo(run(cluster.herald_argv("observe", "--last", "10"), check=False).stdout.rstrip())

    step(echo, "herald ui   (the web view: service map, flows, BGP, L2, pools)")
    echo(ui_line(cluster.herald_argv()))

    took = time.monotonic() - start
    step(echo, f"done in {took:.1f} s (all nodes announced the VIP at {applied - start:.1f} s)")
    echo(
        "Explore:\n"
        + _explore_source(source)
        + "  herald observe --follow   (flows as they pass; --node, --pod, -o json ...)\n"
        f"  herald lab exec client1 -- curl -s http://{vip}/\n"
        "  herald lab exec router -- vtysh -N hl-router -c 'show ip route'   (FRR)\n"
        + _how_to_change(source)
        + "  `herald bgp routes` and the router's route follow\n"
        "  logs: /run/herald/lab/logs/\n"
        "Tear down:\n"
        "  herald lab down"
    )
    return took


def step(echo: Echo, title: str) -> None:
    echo(f"\n== {title}")


def _source_flag(source: str) -> str:
    return " --source kube" if source == "kube" else ""


def _explore_source(source: str) -> str:
    if source == "kube":
        return (
            f"  export KUBECONFIG={cluster.KUBECONFIG}   (the lab's API: a test double)\n"
            "  herald lab exec k8s-master1 -- kubectl get svc,endpointslices,nodes,leases -A\n"
            "  herald bgp peers | herald bgp routes | herald status\n"
        )
    return "  herald get svc | herald bgp peers | herald bgp routes | herald status\n"


def _how_to_change(source: str) -> str:
    if source == "kube":
        return "  herald lab exec k8s-master1 -- kubectl scale deploy web1 --replicas 3 and watch\n"
    return f"  edit {DEFAULT_MANIFESTS}/web1.yaml (replicas, externalTrafficPolicy) and watch\n"


def show_services(echo: Echo, source: str) -> None:
    """The Services with their EXTERNAL-IP: `kubectl get svc` on the API, else herald's."""
    if source == "kube":
        step(echo, "k8s-master1: kubectl get svc")
        echo(run(cluster.kubectl_argv("get", "svc"), check=True).stdout.rstrip())
    else:
        step(echo, "herald get svc")
        echo(run(cluster.herald_argv("get", "svc")).stdout.rstrip())


def show_request(vip: str, echo: Echo) -> None:
    """One request from client1: its status line and the answering pod."""
    step(echo, f"client1: curl -i http://{vip}/")
    response = cluster.run_in("client1", "curl", "-s", "-i", "-m", "3", f"http://{vip}/")
    echo(
        "\n".join(
            line for line in response.splitlines() if line.startswith("HTTP/") or "pod=" in line
        )
    )


def apply_examples(examples: Path, echo: Echo, source: str = "files") -> None:
    if source == "kube":
        step(echo, f"k8s-master1: kubectl apply -f {examples}/")
        echo(run(cluster.kubectl_argv("apply", "-f", f"{examples}/"), check=True).stdout.rstrip())
        return
    step(echo, f"apply {examples}/*.yaml")
    for manifest in sorted(examples.glob("*.yaml")):
        target = DEFAULT_MANIFESTS / manifest.name
        shutil.copyfile(manifest, target.with_suffix(".tmp"))
        target.with_suffix(".tmp").rename(target)  # whole files only: the watchers see no half
        echo(f"  {manifest.name}")


def external_ip(service: str, source: str = "files") -> str | None:
    """The first ingress IP the controller wrote for `service` (namespace/name)."""
    if source == "kube":
        namespace, name = service.split("/")
        jsonpath = "{.status.loadBalancer.ingress[0].ip}"
        argv = cluster.kubectl_argv(
            "get", "svc", "-n", namespace, name, "-o", f"jsonpath={jsonpath}"
        )
        return run(argv).stdout.strip() or None
    state = DEFAULT_MANIFESTS / ".herald" / "state.json"
    try:
        services = json.loads(state.read_text()).get("services", {})
    except (FileNotFoundError, ValueError):
        return None
    ingress = services.get(service, {}).get("loadBalancer", {}).get("ingress", [])
    return str(ingress[0]["ip"]) if ingress else None


def _next_hops(vip: str) -> list[str]:
    return re.findall(r"nexthop via (\S+)", cluster.run_in("router", "ip", "route", "show", vip))


def _summary_table(text: str) -> str:
    lines = text.strip().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("Neighbor")), 0)
    return "\n".join(lines[start:])
