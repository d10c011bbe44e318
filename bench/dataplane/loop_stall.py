"""How long an agent's event loop (which runs the BGP, BFD and heartbeat timers) goes without
running while the datapath renders a full resync of S services x B backends, as the agent
does it: `Datapath.resync` in a worker thread. nft itself is left out (a fake that accepts
every transaction): libnftables releases the GIL while it parses, so the loop's stalls come
from the Python side (rendering, Maglev tables, garbage collection of what they build).

    .venv/bin/python bench/dataplane/loop_stall.py --services 10000 --backends 10

A ticker sleeps 50 ms at a time on the loop; each gap beyond that is a stall. Writes the
section loop-stall-S of bench/results/dataplane.json. Needs no root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import time
from collections.abc import Sequence

from programming import service

from herald.dataplane.apply import Datapath, Nft
from herald.dataplane.model import DataplaneService, NodeContext
from results import record

TICK = 0.05


def accept(argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
    listing = json.dumps({"nftables": []}) if "list" in argv else ""
    return subprocess.CompletedProcess(argv, 0, listing, "")


async def measure(services: list[DataplaneService]) -> tuple[float, list[float]]:
    datapath = Datapath(NodeContext("n1", 0x48524C44), Nft(runner=accept))
    gaps: list[float] = []
    done = asyncio.Event()

    async def ticker() -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(TICK)
            now = time.monotonic()
            gaps.append(now - last - TICK)
            last = now

    running = asyncio.create_task(ticker())
    start = time.monotonic()
    await asyncio.to_thread(datapath.resync, services)
    took = time.monotonic() - start
    done.set()
    await running
    return took, sorted(gaps)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--backends", type=int, default=10)
    args = parser.parse_args()
    services = [service(i, args.backends) for i in range(args.services)]
    took, gaps = asyncio.run(measure(services))
    record(
        f"loop-stall-{args.services}",
        {
            "services": args.services,
            "backends": args.backends,
            "resync_render_s": round(took, 1),
            "ticks": len(gaps),
            "stall_max_ms": round(gaps[-1] * 1000),
            "stall_p99_ms": round(gaps[int(len(gaps) * 0.99)] * 1000),
            "stall_p50_ms": round(gaps[len(gaps) // 2] * 1000),
        },
    )


if __name__ == "__main__":
    main()
