"""Programming cost of the datapath: a full resync of S services x B backends, then single
endpoint changes, each timed (render + nft transaction), in a scratch network namespace.

    sudo .venv/bin/python bench/dataplane/programming.py --services 1000 --backends 10

Writes bench/results/dataplane-programming-S.json. Needs root (a namespace of its own).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from ipaddress import IPv4Address, ip_address
from pathlib import Path

from herald.dataplane import maglev
from herald.dataplane.apply import Datapath, Nft
from herald.dataplane.model import Backend, DataplaneService, NodeContext, Protocol, ServicePort
from herald.lab.netns import Lab

RESULTS = Path(__file__).resolve().parents[1] / "results"


def service(index: int, backends: int) -> DataplaneService:
    base = int(IPv4Address("198.18.0.0")) + index * backends
    return DataplaneService(
        key=f"bench/svc-{index}",
        vips=(IPv4Address(int(IPv4Address("203.0.0.0")) + index),),
        ports=(ServicePort("http", Protocol.TCP, 80, 8080),),
        backends=tuple(Backend(IPv4Address(base + j), "n1") for j in range(backends)),
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--backends", type=int, default=10)
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    services = [service(i, args.backends) for i in range(args.services)]
    with Lab(prefix="hd-bench") as lab:
        lab.host("n1")
        datapath = Datapath(NodeContext("n1", 0x5EED), Nft(lab.ns("n1")))
        started = time.monotonic()
        datapath.resync(services)
        full = time.monotonic() - started
        in_nft: list[float] = []
        run_nft = datapath.nft.runner

        def timed(argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
            started = time.monotonic()
            try:
                return run_nft(argv, stdin)
            finally:
                in_nft.append(time.monotonic() - started)

        datapath.nft.runner = timed
        changes = []
        for n in range(args.changes):
            victim = (n * 7919) % len(services)
            moved = Backend(ip_address(f"198.19.{n // 250}.{n % 250 + 1}"), "n1")
            services[victim] = replace(
                services[victim], backends=(*services[victim].backends[1:], moved)
            )
            started = time.monotonic()
            datapath.sync(services)
            changes.append(time.monotonic() - started)
    result = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} {platform.machine()} kernel {platform.release()}",
        "services": args.services,
        "backends": args.backends,
        "maglev_map_elements": args.services * maglev.table_size(args.backends),
        "full_resync_s": round(full, 3),
        "one_change_ms_p50": round(statistics.median(changes) * 1000, 1),
        "one_change_ms_max": round(max(changes) * 1000, 1),
        "one_change_nft_ms_p50": round(statistics.median(in_nft) * 1000, 1),
        "note": "shared machine: other jobs ran at the same time; nft time grows with the "
        "number of named sets/maps in the table (its cache is fetched per invocation)",
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"dataplane-programming-{args.services}.json"
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
