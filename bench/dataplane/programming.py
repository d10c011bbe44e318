"""Programming cost of the datapath: a full resync of S services x B backends, then single
endpoint changes, each timed (render + nft transaction), in a scratch network namespace.

    sudo .venv/bin/python bench/dataplane/programming.py --services 1000 --backends 10

Also records how many named objects herald's table holds (fixed: services are elements of
shared maps), how many elements each change rewrote, the cost of a one-element
transaction at that size (nft's fixed cost per invocation), and the kernel memory the
ruleset took (slab growth over the resync). Writes the
section programming-S of bench/results/dataplane.json. Needs root (a namespace of its own).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from collections.abc import Sequence
from dataclasses import replace
from ipaddress import IPv4Address, ip_address
from pathlib import Path

from herald.dataplane import maglev
from herald.dataplane.apply import Datapath, Nft
from herald.dataplane.model import Backend, DataplaneService, NodeContext, Protocol, ServicePort
from herald.lab.netns import Lab
from results import record


def service(index: int, backends: int) -> DataplaneService:
    base = int(IPv4Address("198.18.0.0")) + index * backends
    return DataplaneService(
        key=f"bench/svc-{index}",
        vips=(IPv4Address(int(IPv4Address("203.0.0.0")) + index),),
        ports=(ServicePort("http", Protocol.TCP, 80, 8080),),
        backends=tuple(Backend(IPv4Address(base + j), "n1") for j in range(backends)),
    )


def slab_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            return int(line.split()[1])
    raise RuntimeError("no Slab line in /proc/meminfo")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--backends", type=int, default=10)
    parser.add_argument("--changes", type=int, default=30)
    args = parser.parse_args()
    services = [service(i, args.backends) for i in range(args.services)]
    with Lab(prefix="hd-bench") as lab:
        lab.host("n1")
        nft = Nft(lab.ns("n1"))
        datapath = Datapath(NodeContext("n1", 0x5EED), nft)
        slab_before = slab_kib()
        started = time.monotonic()
        datapath.resync(services)
        full = time.monotonic() - started
        slab_growth = slab_kib() - slab_before
        # What herald declared; listing the kernel's table would dump every element (a
        # netlink dump of a 1M-element map took 84 s here, most of it in the kernel).
        objects = len(datapath.base)
        in_nft: list[float] = []
        scripts: list[str] = []
        run_nft = nft.runner

        def timed(argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
            started = time.monotonic()
            try:
                return run_nft(argv, stdin)
            finally:
                in_nft.append(time.monotonic() - started)
                scripts.append(stdin)

        nft.runner = timed
        changes = []
        elements = []
        for n in range(args.changes):
            victim = (n * 7919) % len(services)
            moved = Backend(ip_address(f"198.19.{n // 250}.{n % 250 + 1}"), "n1")
            services[victim] = replace(
                services[victim], backends=(*services[victim].backends[1:], moved)
            )
            scripts.clear()
            started = time.monotonic()
            datapath.sync(services)
            changes.append(time.monotonic() - started)
            elements.append(sum(s.count(",") + s.count("{") for s in scripts))
        changed_nft = list(in_nft)
        in_nft.clear()
        # nft's fixed cost at this size: one element added and deleted again.
        for _ in range(args.changes):
            nft.transaction(
                "add element inet herald vips-v4 { 192.0.2.99 }\n"
                "delete element inet herald vips-v4 { 192.0.2.99 }\n"
            )
        one_element = list(in_nft)
    ms = 1000
    result = {
        "services": args.services,
        "backends": args.backends,
        "maglev_map_elements": args.services * maglev.table_size(args.backends),
        "named_objects_in_table": objects,
        "full_resync_s": round(full, 1),
        "kernel_slab_growth_mib": round(slab_growth / 1024),
        "one_change_ms_p50": round(statistics.median(changes) * ms, 1),
        "one_change_ms_p90": round(sorted(changes)[int(len(changes) * 0.9)] * ms, 1),
        "one_change_ms_max": round(max(changes) * ms, 1),
        "one_change_nft_ms_p50": round(statistics.median(changed_nft) * ms, 1),
        "one_change_elements_p50": statistics.median(elements),
        "one_element_transaction_ms_p50": round(statistics.median(one_element) * ms, 1),
        "note": "shared 2-CPU machine, other jobs running: +-30%; a change is one backend "
        "replaced in one service (Maglev moves ~1/N of its slots twice)",
    }
    record(f"programming-{args.services}", result)


if __name__ == "__main__":
    main()
