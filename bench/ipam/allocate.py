"""LB-IPAM at scale: 100,000 Services over 10 pools, then one change.

Reports wall time (median of 3 runs) and peak memory (tracemalloc, Python allocations) of
  1. building the requests (what the controller derives from Service objects),
  2. the full allocation (as on a controller start),
  3. a restart: the same 100,000 Services with their addresses in status,
  4. one change afterwards: a new Service, a deleted Service, an edited Service (median of 50).
Targets (issue #2): full allocation < 2 s and < 200 MB; one change < 1 ms.

Run: .venv/bin/python bench/ipam/allocate.py [--services N] [--json bench/results/ipam.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for stamp

from herald.api.pool import LoadBalancerIPPool
from herald.ipam import Allocator, ServiceRequest
from herald.ipam.request import to_address
from stamp import publish, stamp

POOLS = 10


def make_pools() -> list[LoadBalancerIPPool]:
    pools = []
    for index in range(POOLS):
        # Half the pools are IPv4 /18s of the benchmarking range 198.18.0.0/15, half are
        # IPv6 /64s: none is ever materialised, so their size does not matter.
        blocks = (
            [{"cidr": f"198.{18 + index // 8}.{index // 2 % 4 * 64}.0/18"}]
            if index % 2 == 0
            else [{"cidr": f"2001:db8:{index:x}::/64"}]
        )
        pools.append(
            LoadBalancerIPPool.model_validate(
                {
                    "metadata": {"name": f"pool-{index}"},
                    "spec": {
                        "blocks": blocks,
                        "serviceSelector": {"matchLabels": {"pool": str(index)}},
                    },
                }
            )
        )
    return pools


def make_requests(count: int) -> list[ServiceRequest]:
    requests = []
    for index in range(count):
        pool = index % POOLS
        namespace = f"ns{index % 100}"
        name = f"svc{index}"
        requests.append(
            ServiceRequest(
                key=f"{namespace}/{name}",
                namespace=namespace,
                labels={
                    "pool": str(pool),
                    "io.kubernetes.service.namespace": namespace,
                    "io.kubernetes.service.name": name,
                },
                families=(4,) if pool % 2 == 0 else (6,),
                ports=frozenset({("TCP", 80)}),
                order=(f"{index:08}", f"{namespace}/{name}"),
            )
        )
    return requests


REPEATS = 3


CPU_SECONDS: dict[str, float] = {}


def measure(action: Any, name: str = "") -> tuple[Any, float, int]:
    """Median wall time of REPEATS runs (its CPU time goes to CPU_SECONDS[name]: on a shared
    machine, CPU time is the steadier figure), then the peak memory of one more run
    (tracing slows it down, so it is never timed)."""
    times, cpu = [], []
    for _ in range(REPEATS):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = action()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
        del result
    elapsed = statistics.median(times)
    CPU_SECONDS[name] = statistics.median(cpu)
    tracemalloc.start()
    result = action()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return result, elapsed, peak


def build(pools: list[LoadBalancerIPPool], requests: list[ServiceRequest]) -> Allocator:
    allocator = Allocator(pools)
    allocator.add_all(requests)
    return allocator


def one_change(allocator: Allocator, requests: list[ServiceRequest]) -> dict[str, float]:
    timings: dict[str, list[float]] = {"add": [], "delete": [], "edit": []}
    for round_ in range(50):
        new = dataclasses.replace(
            requests[round_], key=f"bench/new{round_}", order=("z", f"bench/new{round_}")
        )
        start = time.perf_counter()
        allocator.upsert(new)
        timings["add"].append(time.perf_counter() - start)

        victim = requests[1000 + round_].key
        start = time.perf_counter()
        allocator.remove(victim)
        timings["delete"].append(time.perf_counter() - start)

        edited = dataclasses.replace(requests[2000 + round_], ports=frozenset({("TCP", 8080)}))
        start = time.perf_counter()
        allocator.upsert(edited)
        timings["edit"].append(time.perf_counter() - start)
    return {kind: statistics.median(values) * 1000 for kind, values in timings.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=100_000)
    parser.add_argument("--json", type=Path, help="write results to this file")
    args = parser.parse_args()

    pools = make_pools()
    requests, request_seconds, request_peak = measure(
        lambda: make_requests(args.services), "build_requests"
    )
    allocator, full_seconds, full_peak = measure(lambda: build(pools, requests), "full_allocation")
    held = allocator.allocations()
    with_status = [
        dataclasses.replace(r, current=tuple(map(to_address, held[r.key].ips))) for r in requests
    ]
    restarted, restart_seconds, restart_peak = measure(lambda: build(pools, with_status), "restart")
    assert all(a.satisfied for a in allocator.allocations().values())
    assert all(restarted.allocations()[r.key].ips == held[r.key].ips for r in requests)
    changes = one_change(allocator, requests)

    results = {
        **stamp("ipam"),
        "services": args.services,
        "pools": POOLS,
        "build_requests_seconds": round(request_seconds, 3),
        "build_requests_peak_mb": round(request_peak / 2**20, 1),
        "full_allocation_seconds": round(full_seconds, 3),
        "full_allocation_peak_mb": round(full_peak / 2**20, 1),
        "restart_seconds": round(restart_seconds, 3),
        "restart_peak_mb": round(restart_peak / 2**20, 1),
        "cpu_seconds": {k: round(v, 3) for k, v in CPU_SECONDS.items()},
        "one_change_ms_median": {k: round(v, 4) for k, v in changes.items()},
    }
    publish(results, args.json)


if __name__ == "__main__":
    main()
