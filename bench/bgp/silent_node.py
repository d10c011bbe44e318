"""How long the router keeps sending traffic to a node that fell silent, with BFD and
without it, in the lab (FRR router, 6 nodes, the seed Service).

"Silent": every packet to or from k8s-worker5 itself is dropped (an nftables table in its
namespace), so the router sees no TCP reset and no link down; only a timer can notice. We
measure from the cut to the moment the router's FIB entry for the VIP loses the node's next
hop (polled every 20 ms), then remove the cut and wait until the node is back.

- `bfd`: the seed as it is: its BGPPeerConfig names the BFDProfile `seed-bfd` of
  300 ms x 3 (as the lab's router), graceful restart on;
- `hold`: no BFD; the seed's hold time of 9 s, graceful restart off (with it on, the
  router would keep the route as stale for the restart time on top).

Run as root (takes the machine's lab): .venv/bin/python bench/bgp/silent_node.py
    [--rounds 10] [--hold-rounds 3] [--json bench/results/bfd.json]
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for stamp

from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.lab import cluster
from herald.lab.demo import run_demo
from stamp import publish, stamp

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
VIP = "203.0.113.0"
NODES = {"192.0.2.10", "192.0.2.21", "192.0.2.22", "192.0.2.23", "192.0.2.24", "192.0.2.25"}
SILENT, SILENT_ADDRESS = "k8s-worker5", "192.0.2.25"


def hops() -> set[str]:
    return set(re.findall(r"via (\S+)", cluster.run_in("router", "ip", "route", "show", VIP)))


def configure(mode: str) -> None:
    bgp = (SEED / "bgp.yaml").read_text()
    if mode == "hold":
        bgp = bgp.replace("  bfdProfileRef: seed-bfd\n", "", 1)
        bgp = bgp.replace("enabled: true", "enabled: false")
    (DEFAULT_MANIFESTS / "bgp.yaml").write_text(bgp)


def settled(mode: str) -> bool:
    return hops() == NODES and (mode != "bfd" or cluster.router_bfd_up() == NODES)


def one_round(mode: str, limit: float) -> float | None:
    cluster.wait_until(lambda: settled(mode), 90, f"every node announcing ({mode})")
    time.sleep(1.0)  # a settled lab, not one still converging
    cluster.silence(SILENT)
    start = time.monotonic()
    try:
        while time.monotonic() - start < limit:  # bounded
            if SILENT_ADDRESS not in hops():
                return time.monotonic() - start
            time.sleep(0.02)
        return None
    finally:
        cluster.unsilence(SILENT)


def summary(values: list[float]) -> dict[str, float]:
    ms = sorted(v * 1000 for v in values)
    return {
        "p50_ms": round(statistics.median(ms), 1),
        "max_ms": round(ms[-1], 1),
        "min_ms": round(ms[0], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10, help="rounds with BFD")
    parser.add_argument("--hold-rounds", type=int, default=3, help="rounds without BFD")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results: dict[str, Any] = stamp("bgp/silent_node")
    try:
        run_demo(SEED, "frr", lambda _: None)
        for mode, count, limit in (("bfd", args.rounds, 20.0), ("hold", args.hold_rounds, 60.0)):
            configure(mode)
            times = [one_round(mode, limit) for _ in range(count)]
            found = [t for t in times if t is not None]
            results[mode] = {
                "rounds": count,
                "missed": len(times) - len(found),
                **(summary(found) if found else {}),
            }
            print(mode, results[mode], flush=True)
    finally:
        cluster.down()
    publish(results, args.json)


if __name__ == "__main__":
    main()
