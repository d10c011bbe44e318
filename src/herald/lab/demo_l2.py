"""The live demo in L2 mode (`herald demo --mode l2`).

lab up --mode l2; apply examples/l2-seed (a pool in the node segment, an
L2AnnouncementPolicy, web1-l2); then show which node owns the VIP, that the router's and a
client's neighbour entries for the VIP hold that node's MAC, an HTTP 200, and a live
failover: the owner's agent and its heartbeat process are killed (a crash, detected by
silence) while a client sends a request every 10 ms, and the time until a request
succeeds through the new owner is measured. The killed agent is
started again (it takes nothing back). The lab stays up; `herald lab down` removes it.
"""

from __future__ import annotations

import time
from pathlib import Path

from herald.lab import cluster
from herald.lab.demo import Echo, apply_examples, external_ip, show_request, show_services, step
from herald.lab.failover import fail_owner, mac_of, neighbour_mac, owner_of
from herald.lab.netns import run
from herald.ui.launch import ui_line

SERVICE = "default/web1-l2"
_KUBECTL_GET_SVC = (
    f"  KUBECONFIG={cluster.KUBECONFIG} herald lab exec k8s-master1 -- kubectl get svc\n  "
)


def run_l2_demo(examples: Path, echo: Echo, source: str = "files") -> float:
    """Runs the walkthrough; returns its duration in seconds (`source` as run_demo's)."""
    start = time.monotonic()
    step(echo, "herald lab up --mode l2" + (" --source kube" if source == "kube" else ""))
    topology = cluster.up(mode="l2", source=source)
    echo(
        f"{len(topology.nodes)} nodes on 192.0.2.0/24 with the router 192.0.2.1 (no BGP) and "
        f"clients {', '.join(topology.clients.values())}"
    )
    apply_examples(examples, echo, source)
    vip = cluster.wait_until(
        lambda: external_ip(SERVICE, source), 30, f"an EXTERNAL-IP for {SERVICE}"
    )
    owner = owner_of(vip, timeout=30)

    show_services(echo, source)
    step(echo, "herald l2 owners")
    echo(run(cluster.herald_argv("l2", "owners")).stdout.rstrip())
    mac = mac_of(owner)
    echo(f"-> {owner} answers ARP for {vip}; its eth0 is {mac}")

    show_request(vip, echo)
    # The router has no reason to talk to the VIP by itself: one request fills its entry.
    cluster.run_in("router", "curl", "-s", "-o", "/dev/null", "-m", "3", f"http://{vip}/")
    for host in ("router", "client1"):
        step(echo, f"{host}: ip neigh show {vip}")
        echo(cluster.run_in(host, "ip", "neigh", "show", vip).rstrip())
        seen = neighbour_mac(host, vip)
        echo(f"-> {seen} is {owner}'s MAC" if seen == mac else f"-> {seen}, not {owner}'s {mac}")

    step(
        echo,
        f"failover: kill {owner}'s agent and heartbeat process (SIGKILL) while client1 "
        "requests every 10 ms",
    )
    round_ = fail_owner(topology, vip, "agent")
    result = round_.result
    new_mac = mac_of(round_.new)
    echo(f"new owner: {round_.new} ({new_mac})")
    if result.recovered_after is None:
        echo("no request succeeded through the new owner within the probe's 2 s")
    else:
        echo(
            f"first successful request through {round_.new}: "
            f"{result.recovered_after * 1000:.0f} ms after the kill"
        )
    echo(
        f"{result.failed} of {result.requests} requests failed"
        + (f" (window {result.failed_window * 1000:.0f} ms)" if result.failed else "")
    )
    echo(
        f"(the old owner's datapath rules outlive its agent, so requests still sent to\n"
        f"{round_.old} kept working until the gratuitous ARP moved client1 to {round_.new})"
    )
    step(echo, f"client1: ip neigh show {vip}")
    echo(cluster.run_in("client1", "ip", "neigh", "show", vip).rstrip())
    cluster.start_agent(round_.old)
    echo(f"{round_.old}'s agent started again; the VIP stays with {round_.new} (no move back)")

    step(echo, "herald ui   (the web view: service map, flows, BGP, L2, pools)")
    echo(ui_line(cluster.herald_argv()))

    took = time.monotonic() - start
    step(echo, f"done in {took:.1f} s")
    echo(
        "Explore:\n"
        + (_KUBECTL_GET_SVC if source == "kube" else "  herald get svc | ")
        + "herald l2 owners | herald status\n"
        f"  herald lab exec client1 -- curl -s http://{vip}/\n"
        f"  herald lab exec router -- ip neigh show {vip}\n"
        "  logs: /run/herald/lab/logs/\n"
        "Tear down:\n"
        "  herald lab down"
    )
    return took
