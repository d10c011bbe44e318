"""One Service through the Kubernetes source in the lab: created through the API -> its
status written by the controller (seen on a watch) -> the router's kernel FIB holding its
VIP with one next hop per node; and deleted -> the route removed. p50/p99 over N Services,
one at a time. The files source's figures for the same chain come from
bench/announce/announce.py (run it beside this one).

The lab runs `--source kube`: the API test double on k8s-master1, the lab kubelet writing the
EndpointSlice through it, controller and agents watching it. This process joins
k8s-master1's network namespace (its mounts stay the root namespace's) to reach the API; the
router's FIB is read by announce.py's `RouteMonitor` (one `ip -o monitor route`).

Run as root, under the lab's lock:
    flock /tmp/herald-lab.lock .venv/bin/python bench/kube/announce.py [--services 50]
        [--json bench/results/kube_announce.json]
"""

from __future__ import annotations

import argparse
import ctypes
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
from lightkube import Client
from lightkube.config.kubeconfig import KubeConfig
from lightkube.types import OnErrorAction, OnErrorResult

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for stamp
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "announce"))

from announce import RouteMonitor, hop_count, summary
from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.lab import cluster
from herald.sources.kube.kinds import SERVICE
from stamp import publish, stamp

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
CLONE_NEWNET = 0x40000000


def join_network(path: str) -> None:
    """This thread (and threads it starts later) into the network namespace at `path` only."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDONLY)
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), "setns")
    finally:
        os.close(fd)


def service(index: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"bench-{index}", "namespace": "default"},
        "spec": {
            "type": "LoadBalancer",
            "selector": {"app": "web1"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    }


class StatusWatch:
    """When each Service's first ingress address was seen on a watch, by name."""

    def __init__(self, client: Client) -> None:
        self.seen: queue.Queue[tuple[float, str, str]] = queue.Queue()
        self.client = client
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        retry = lambda err, count: OnErrorResult(OnErrorAction.RETRY, sleep=0.5)  # noqa: E731
        for _, obj in self.client.watch(SERVICE.resource(), namespace="default", on_error=retry):
            ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress")
            if ingress:
                name = obj["metadata"]["name"]
                self.seen.put((time.perf_counter(), name, ingress[0]["ip"]))

    def wait(self, name: str, since: float, timeout: float) -> tuple[float, str]:
        deadline = time.perf_counter() + timeout
        while (left := deadline - time.perf_counter()) > 0:
            try:
                at, seen, vip = self.seen.get(timeout=left)
            except queue.Empty:
                break
            if seen == name and at >= since:
                return at, vip
        raise TimeoutError(f"no status for {name} within {timeout} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=50)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    topology = cluster.up("frr", 5, DEFAULT_MANIFESTS, source="kube")
    nodes = len(topology.nodes)
    routes = RouteMonitor()
    every_node = lambda line: hop_count(line) == nodes  # noqa: E731
    gone = lambda line: line.startswith("Deleted ")  # noqa: E731
    # Back to it before `lab down`, which ends every process in the lab's namespaces.
    root = f"/proc/{os.getpid()}/ns/net"
    root_fd = os.open(root, os.O_RDONLY)
    status: list[float] = []
    appear: list[float] = []
    vanish: list[float] = []
    try:
        subprocess.run(cluster.kubectl_argv("apply", "-f", f"{SEED}/"), check=True)
        join_network(f"/run/netns/{cluster.PREFIX}{topology.nodes[0].name}")
        config = KubeConfig.from_file(cluster.KUBECONFIG)
        client = Client(config=config, timeout=httpx2.Timeout(10, read=None), trust_env=False)
        watch = StatusWatch(Client(config=config, timeout=httpx2.Timeout(10, read=None)))
        _, vip = watch.wait("web1-lb", 0.0, 30)
        routes.wait(vip, every_node, 0.0, 60)
        for index in range(args.services):
            start = time.perf_counter()
            client.create(SERVICE.resource()(service(index)), namespace="default")
            written, vip = watch.wait(f"bench-{index}", start, 10)
            status.append(written - start)
            appear.append(routes.wait(vip, every_node, start, 10) - start)
            start = time.perf_counter()
            client.delete(SERVICE.resource(), f"bench-{index}", namespace="default")
            vanish.append(routes.wait(vip, gone, start, 10) - start)
    finally:
        routes.close()
        join_network(f"/proc/self/fd/{root_fd}")
        cluster.down()

    results = {
        **stamp("kube/announce"),
        "source": "kube",
        "router": "frr",
        "nodes": nodes,
        "services": args.services,
        "status_written": summary(status),
        "appear": summary(appear),
        "vanish": summary(vanish),
    }
    publish(results, args.json)


if __name__ == "__main__":
    main()
