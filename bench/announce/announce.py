"""Announcement latency in the lab: from a Service appearing in the manifests to the router's
kernel FIB holding its VIP with one next hop per node, and from its deletion to the route's
removal. p50/p99 over N Services (default 200), one at a time (issue #5: p99 < 100 ms).

The chain measured is the whole system: file watch -> lab kubelet (EndpointSlice) ->
controller (LB-IPAM, status) -> every agent (plan, nftables, BGP UPDATE) -> FRR -> zebra ->
kernel. The router's FIB changes are read from one `ip -o monitor route` in the router's
namespace, each stamped when its line arrives: no polling process competes for the two CPUs
with the system under test (an earlier version ran `ip route show` in a tight loop, a
process every few milliseconds, and measured its own load too).

Run as root: .venv/bin/python bench/announce/announce.py [--services 200] [--router frr]
         [--json bench/results/announce.json]
"""

from __future__ import annotations

import argparse
import queue
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for stamp

from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.lab import cluster
from herald.lab.demo import external_ip
from stamp import publish, stamp

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
SERVICE = """apiVersion: v1
kind: Service
metadata: {{name: bench-{index}}}
spec:
  type: LoadBalancer
  selector: {{app: web1}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""


def hop_count(line: str) -> int:
    """Next hops in one `ip -o monitor route` line (iproute2 resolves FRR's nexthop groups)."""
    return line.count("nexthop via") or line.count(" via ")


class RouteMonitor:
    """The router's route events, each with the `time.perf_counter()` it was read at."""

    def __init__(self) -> None:
        argv = ["ip", "netns", "exec", cluster.PREFIX + "router", "ip", "-o", "monitor", "route"]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.events: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put((time.perf_counter(), line))

    def wait(self, vip: str, done: Callable[[str], bool], since: float, timeout: float) -> float:
        """When the first event for `vip` after `since` that satisfies `done` arrived (VIPs
        are reused: an older event may still be queued)."""
        deadline = time.perf_counter() + timeout
        while (left := deadline - time.perf_counter()) > 0:
            try:
                at, line = self.events.get(timeout=left)
            except queue.Empty:
                break
            route = line.removeprefix("Deleted ").split(" ", 1)[0]
            if at >= since and route in (vip, f"{vip}/32") and done(line):
                return at
        raise TimeoutError(f"no route event for {vip} within {timeout} s")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=5)


def wait(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError
        time.sleep(0.002)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--router", choices=["frr", "bird"], default="frr")
    parser.add_argument(
        "--workers",
        type=int,
        default=5,
        help="workers besides k8s-master1 (fewer: less CPU contention on a small machine)",
    )
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    topology = cluster.up(args.router, args.workers, DEFAULT_MANIFESTS)
    nodes = len(topology.nodes)
    routes = RouteMonitor()
    every_node = lambda line: hop_count(line) == nodes  # noqa: E731
    gone = lambda line: line.startswith("Deleted ")  # noqa: E731
    appear: list[float] = []
    vanish: list[float] = []
    try:
        for manifest in sorted(SEED.glob("*.yaml")):
            (DEFAULT_MANIFESTS / manifest.name).write_text(manifest.read_text())
        wait(lambda: external_ip("default/web1-lb") is not None, 30)
        routes.wait(str(external_ip("default/web1-lb")), every_node, 0.0, 60)
        for index in range(args.services):
            path = DEFAULT_MANIFESTS / f"bench-{index}.yaml"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(SERVICE.format(index=index))
            start = time.perf_counter()
            temporary.rename(path)
            name = f"default/bench-{index}"
            wait(lambda name=name: external_ip(name) is not None, 10)  # type: ignore[misc]
            vip = external_ip(name)
            assert vip is not None
            appear.append(routes.wait(vip, every_node, start, 10) - start)
            start = time.perf_counter()
            path.unlink()
            vanish.append(routes.wait(vip, gone, start, 10) - start)
    finally:
        routes.close()
        cluster.down()

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(statistics.median(values) * 1000, 1),
            "p99_ms": round(percentile(values, 99) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
        }

    results = {
        **stamp("announce"),
        "router": args.router,
        "nodes": nodes,
        "services": args.services,
        "appear": summary(appear),
        "vanish": summary(vanish),
    }
    publish(results, args.json)


if __name__ == "__main__":
    main()
