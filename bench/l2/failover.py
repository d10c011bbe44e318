"""L2 failover time in the lab (issue #6: p99 under 1 s): the owner of a VIP dies while a
client on the segment sends one HTTP request every 10 ms (new connection each, overlapping,
1 s timeout each), and we measure

- recovery: from the death to the end of the first successful request through the new
  owner (the pod reports the address the request entered by);
- the failed window: from the first failed request's start to the start of the first
  successful one after the last failure, and the number of failed requests.

The Service has one pod, on a node that may not own its IP, so a cut link loses no backend.
Two kinds of death, N rounds each (default 20): `agent` (the owner's agent SIGKILLed: its
datapath rules stay, so the old owner keeps forwarding what still reaches it) and `link`
(the owner's segment link cut at the switch: what still goes to its MAC is lost). After
each round the node is restored (agent restarted / link up) and the lab waits until every
agent hears every other again.

Run as root (takes the machine's lab): .venv/bin/python bench/l2/failover.py
    [--rounds 20] [--json bench/results/l2.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for stamp

from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.lab import cluster
from herald.lab.demo import external_ip
from herald.lab.failover import (
    FAILOVER_MANIFESTS,
    FAILOVER_SERVICE,
    Kind,
    all_live,
    fail_owner,
    owner_of,
    restore,
)
from herald.lab.topology import Topology
from stamp import publish, stamp

L2_SEED = Path(__file__).resolve().parents[2] / "examples" / "l2-seed"


def summary(values: list[float]) -> dict[str, float]:
    ms = [v * 1000 for v in values]
    return {
        "p50_ms": round(statistics.median(ms), 1),
        # 20 rounds: the 99th percentile is interpolated between the two largest.
        "p99_ms": round(statistics.quantiles(ms, n=100, method="inclusive")[98], 1),
        "max_ms": round(max(ms), 1),
        "min_ms": round(min(ms), 1),
    }


def rounds(topology: Topology, vip: str, kind: Kind, count: int) -> dict[str, Any]:
    recovered: list[float] = []
    windows: list[float] = []
    failed: list[float] = []
    control: list[int] = []
    missed = 0
    moves = []
    for index in range(count):  # bounded: `count` failovers
        round_ = fail_owner(topology, vip, kind, before=0.5, duration=2.5)
        restore(round_.old, kind)
        result = round_.result
        moves.append(f"{round_.old}->{round_.new}")
        if result.recovered_after is None:
            missed += 1
        else:
            recovered.append(result.recovered_after)
        windows.append(result.failed_window)
        failed.append(result.failed)
        control.append(result.failed_before)
        after = result.recovered_after
        print(
            f"{kind} {index + 1:2}/{count}: {round_.old} -> {round_.new} recovered "
            f"{'never' if after is None else f'{after * 1000:.0f} ms'}, "
            f"{result.failed}/{result.requests} failed, "
            f"window {result.failed_window * 1000:.0f} ms, "
            f"{result.failed_before} failed before the death",
            flush=True,
        )
        cluster.wait_until(lambda: all_live(len(topology.nodes)), 60, "every agent live again")
        owner_of(vip)
    return {
        "rounds": count,
        "recovery": summary(recovered) if recovered else None,
        "never_recovered": missed,
        "failed_window": summary(windows),
        "failed_requests": {
            "p50": statistics.median(failed),
            "max": max(failed),
        },
        # Requests that failed in the 0.5 s before the death: the control.
        "failed_before_death": sum(control),
        "moves": moves,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    load_before = os.getloadavg()
    topology = cluster.up(mode="l2")
    results: dict[str, Any] = {}
    try:
        # The seed's pool, and a Service whose one pod is on a node that never owns its IP
        # (so a cut link loses no backend; see FAILOVER_MANIFESTS).
        manifests = {"pool.yaml": (L2_SEED / "pool.yaml").read_text()}
        manifests["failover.yaml"] = FAILOVER_MANIFESTS
        for name, text in manifests.items():
            target = DEFAULT_MANIFESTS / name
            target.with_suffix(".tmp").write_text(text)
            target.with_suffix(".tmp").rename(target)
        vip = cluster.wait_until(lambda: external_ip(FAILOVER_SERVICE), 30, "an IP")
        cluster.wait_until(lambda: all_live(len(topology.nodes)), 60, "every agent live")
        owner_of(vip, timeout=30)
        started = time.monotonic()
        for kind in ("agent", "link"):
            results[kind] = rounds(topology, vip, kind, args.rounds)  # type: ignore[arg-type]
        took = time.monotonic() - started
    finally:
        cluster.down()

    report = {
        **stamp("l2-failover"),
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "nodes": len(topology.nodes),
        "heartbeat": {"interval_ms": 100, "multiplier": 5},
        "client": {"interval_ms": 10, "timeout_ms": 1000},
        "seconds": round(took, 1),
        **results,
    }
    publish(report, args.json)


if __name__ == "__main__":
    main()
