"""Programming cost of the datapath: a full resync of S services x B backends, then single
endpoint changes, each timed (render + transactions), in a scratch network namespace, for
each way of writing elements side by side: `text` (nft parses every element) and `netlink`
(declarations through nft, elements as netlink batches, `dataplane/netlink_nft.py`).

    sudo .venv/bin/python bench/dataplane/programming.py --services 1000 --backends 10

Also records how many named objects herald's table holds (fixed: services are elements of
shared maps), how many elements each change rewrote, the cost of a one-element
transaction at that size (nft's fixed cost per invocation), and the kernel memory the
ruleset took (slab growth over the resync). Writes the
section programming-S of bench/results/dataplane.json. Needs root (a namespace of its own).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import time
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import replace
from ipaddress import IPv4Address, ip_address
from pathlib import Path

from herald.dataplane.apply import Datapath, Nft
from herald.dataplane.model import (
    Backend,
    DataplaneService,
    NodeContext,
    Protocol,
    ServicePort,
    SessionAffinity,
)
from herald.dataplane.netlink_nft import Batch
from herald.dataplane.render import Rank, render
from herald.lab.netns import Lab
from results import record


def service(index: int, backends: int, tables: str = "shared") -> DataplaneService:
    """A Service of one port; with `tables="own"` of sessionAffinity ClientIP, which (as
    DSR) keeps a Maglev table of its own rather than one shared by index."""
    base = int(IPv4Address("198.18.0.0")) + index * backends
    affinity = SessionAffinity.CLIENT_IP if tables == "own" else SessionAffinity.NONE
    return DataplaneService(
        key=f"bench/svc-{index}",
        vips=(IPv4Address(int(IPv4Address("203.0.0.0")) + index),),
        ports=(ServicePort("http", Protocol.TCP, 80, 8080),),
        backends=tuple(Backend(IPv4Address(base + j), "n1") for j in range(backends)),
        session_affinity=affinity,
    )


def slot_elements(services: Sequence[DataplaneService], node: NodeContext) -> int:
    """Maglev slots the kernel holds for `services`: the services' own tables and the
    shared ones."""
    ruleset = render(services, node)
    own = sum(len(table.values) for rules in ruleset.services for table in rules.slots)
    shared = sum(
        line.count(" : goto ") for o in ruleset.base if o.rank is Rank.SLOT_TABLE for line in o.body
    )
    return own + shared


def slab_kib() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("Slab:"):
            return int(line.split()[1])
    raise RuntimeError("no Slab line in /proc/meminfo")


def settled_slab_kib(limit_s: float = 60.0) -> int:
    """Slab once it stops moving: the kernel frees a deleted namespace's tables and a
    transaction's bookkeeping in the background, which would count against the next run."""
    deadline = time.monotonic() + limit_s
    last = slab_kib()
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = slab_kib()
        if abs(now - last) < 1024:
            return now
        last = now
    return last


def cpu_s() -> float:
    """CPU time of this process and its finished children (nft, ip netns exec), user and
    system: the kernel's work on a netlink batch runs in the sending thread. Unlike wall
    time, it does not grow with other jobs on a shared machine."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


NODE = NodeContext("n1", 0x5EED)


def measure(
    path: str, services: list[DataplaneService], changes: int, labs: ExitStack
) -> dict[str, object]:
    """One path in a fresh namespace: `text` (every element through nft's parser) or
    `netlink` (declarations through nft, elements as netlink batches). The namespace stays
    until every path ran (`labs`): its tables freed in the background would otherwise
    count against the next path's kernel memory."""
    services = list(services)
    lab = labs.enter_context(Lab(prefix=f"nlnft-{path}"))
    lab.host("n1")
    nft = Nft(lab.ns("n1"))
    datapath = Datapath(NODE, nft, netlink=path == "netlink")
    assert (datapath.elements is not None) == (path == "netlink")
    in_kernel: list[float] = []
    in_netlink: list[float] = []
    elements: list[int] = []
    run_nft = nft.runner

    def timed(argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        started = time.monotonic()
        try:
            return run_nft(argv, stdin)
        finally:
            in_kernel.append(time.monotonic() - started)
            elements.append(stdin.count(",") + stdin.count("{"))

    if datapath.elements is not None:
        commit = datapath.elements.commit

        def timed_batch(batch: Batch) -> str | None:
            started = time.monotonic()
            try:
                return commit(batch)
            finally:
                in_kernel.append(time.monotonic() - started)
                in_netlink.append(in_kernel[-1])
                elements.append(batch.elements)

        datapath.elements.commit = timed_batch  # type: ignore[method-assign]
    nft.runner = timed
    slab_before = settled_slab_kib()
    cpu_before = cpu_s()
    started = time.monotonic()
    datapath.resync(services)
    full = time.monotonic() - started
    full_cpu = cpu_s() - cpu_before
    slab_growth = settled_slab_kib() - slab_before
    resync_in_kernel = sum(in_kernel)
    resync_in_netlink = sum(in_netlink)
    resync_transactions = len(in_kernel)
    # What herald declared; listing the kernel's table would dump every element (a
    # netlink dump of a 1M-element map took 84 s here, most of it in the kernel).
    objects = len(datapath.base)
    took = []
    in_kernel.clear()
    per_change = []
    changed = []
    took_cpu = []
    for n in range(changes):
        victim = (n * 7919) % len(services)
        moved = Backend(ip_address(f"198.19.{n // 250}.{n % 250 + 1}"), "n1")
        services[victim] = replace(
            services[victim], backends=(*services[victim].backends[1:], moved)
        )
        in_kernel.clear()
        elements.clear()
        cpu_before = cpu_s()
        started = time.monotonic()
        datapath.sync(services)
        took.append(time.monotonic() - started)
        took_cpu.append(cpu_s() - cpu_before)
        per_change.append(sum(in_kernel))
        changed.append(sum(elements))
    in_kernel.clear()
    # nft's fixed cost at this size: one element added and deleted again.
    for _ in range(changes):
        nft.transaction(
            "add element inet herald vips-v4 { 192.0.2.99 }\n"
            "delete element inet herald vips-v4 { 192.0.2.99 }\n"
        )
    one_element = list(in_kernel)
    ms = 1000
    return {
        "named_objects_in_table": objects,
        "full_resync_s": round(full, 1),
        "full_resync_cpu_s": round(full_cpu, 1),
        "full_resync_writing_s": round(resync_in_kernel, 1),
        "full_resync_netlink_commits_s": round(resync_in_netlink, 1),
        "full_resync_transactions": resync_transactions,
        "kernel_slab_growth_mib": round(slab_growth / 1024),
        "one_change_ms_p50": round(statistics.median(took) * ms, 1),
        "one_change_ms_p90": round(sorted(took)[int(len(took) * 0.9)] * ms, 1),
        "one_change_ms_max": round(max(took) * ms, 1),
        "one_change_cpu_ms_p50": round(statistics.median(took_cpu) * ms, 1),
        "one_change_writing_ms_p50": round(statistics.median(per_change) * ms, 1),
        "one_change_elements_p50": statistics.median(changed),
        "nft_one_element_transaction_ms_p50": round(statistics.median(one_element) * ms, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--backends", type=int, default=10)
    parser.add_argument("--changes", type=int, default=30)
    parser.add_argument("--paths", default="netlink,text", help="netlink, text or both")
    parser.add_argument(
        "--tables",
        choices=("shared", "own"),
        default="shared",
        help="shared: plain Services (one Maglev table per backend count); own: "
        "sessionAffinity ClientIP Services, each with its own table (as DSR)",
    )
    args = parser.parse_args()
    services = [service(i, args.backends, args.tables) for i in range(args.services)]
    result: dict[str, object] = {
        "services": args.services,
        "backends": args.backends,
        "tables": args.tables,
        "maglev_slot_elements": slot_elements(services, NODE),
    }
    with ExitStack() as labs:
        for path in args.paths.split(","):
            result[path] = measure(path, services, args.changes, labs)
    result["note"] = (
        "shared 2-CPU machine, other jobs running: +-30%; a change is one backend replaced "
        "in one service (own tables: Maglev moves ~1/N of its slots twice; shared: the "
        "service's member elements and its entry); text: every element through "
        "nft's parser (the nft command), netlink: declarations through nft, elements as "
        "netlink batches (netlink_nft); *_writing_*: time inside nft or the netlink commit"
    )
    suffix = "" if args.tables == "shared" else f"-{args.tables}"
    record(f"programming-{args.services}{suffix}", result)


if __name__ == "__main__":
    main()
