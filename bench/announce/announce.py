"""Announcement latency in the lab: from a Service appearing in the manifests to the router's
kernel FIB holding its VIP with one next hop per node, and from its deletion to the route's
removal. p50/p99 over N Services (default 200), one at a time (issue #5: p99 < 100 ms).

The chain measured is the whole system: file watch -> lab kubelet (EndpointSlice) ->
controller (LB-IPAM, status) -> every agent (plan, nftables, BGP UPDATE) -> FRR -> zebra ->
kernel. The router's FIB is read with `ip route show VIP` in a tight loop (each read takes a
few milliseconds, which bounds the resolution).

Run as root: .venv/bin/python bench/announce/announce.py [--services 200] [--router frr]
         [--json bench/results/announce.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.lab import cluster
from herald.lab.demo import external_ip

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
SERVICE = """apiVersion: v1
kind: Service
metadata: {{name: bench-{index}}}
spec:
  type: LoadBalancer
  selector: {{app: web1}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""


def hop_count(vip: str) -> int:
    """Next hops of the router's route to `vip`, as `ip route` resolves them (FRR installs
    nexthop groups, which a plain netlink route dump shows only by id)."""
    text = cluster.run_in("router", "ip", "route", "show", vip)
    return text.count("nexthop via") or text.count(" via ")


def wait(predicate: Callable[[], bool], timeout: float) -> float:
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if predicate():
            return time.perf_counter() - start
        time.sleep(0.001)
    raise TimeoutError


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
    for manifest in sorted(SEED.glob("*.yaml")):
        (DEFAULT_MANIFESTS / manifest.name).write_text(manifest.read_text())
    wait(lambda: external_ip("default/web1-lb") is not None, 30)
    wait(lambda: hop_count(str(external_ip("default/web1-lb"))) == nodes, 60)
    appear: list[float] = []
    vanish: list[float] = []
    try:
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
            wait(lambda vip=vip: hop_count(vip) == nodes, 10)  # type: ignore[misc]
            appear.append(time.perf_counter() - start)
            start = time.perf_counter()
            path.unlink()
            wait(lambda vip=vip: hop_count(vip) == 0, 10)  # type: ignore[misc]
            vanish.append(time.perf_counter() - start)
    finally:
        cluster.down()

    def summary(values: list[float]) -> dict[str, float]:
        return {
            "p50_ms": round(statistics.median(values) * 1000, 1),
            "p99_ms": round(percentile(values, 99) * 1000, 1),
            "max_ms": round(max(values) * 1000, 1),
        }

    results = {
        "benchmark": "announce",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {platform.python_implementation()} "
        f"{platform.python_version()}, {platform.system()} {platform.release()}",
        "router": args.router,
        "nodes": nodes,
        "services": args.services,
        "appear": summary(appear),
        "vanish": summary(vanish),
    }
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
