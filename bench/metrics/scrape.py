"""What one /metrics scrape of an agent costs with S Services of B backends committed.

    sudo .venv/bin/python bench/metrics/scrape.py --services 1000 --backends 10

In a scratch namespace (`hd-metrics-n1`), the datapath of S Services is committed with
libnftables as the agent does it, then a scrape is made R times the agent's way
(`Agent.counted_status`: the nft counters listed and the frontends built in a worker thread;
then the families rendered in a worker thread) while a 1 ms ticker on the event loop
measures how long the loop was kept from running (its worst delay). Prints the figures as
JSON; needs root.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

# The Services of bench/dataplane/programming.py.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dataplane"))
from programming import service

from herald.agent.run import frontends
from herald.agent.status import AgentStatus
from herald.dataplane.apply import Datapath
from herald.dataplane.libnft import LibNft
from herald.dataplane.model import NodeContext
from herald.lab.netns import Lab
from herald.metrics.agent import AgentMetrics


async def scrape_many(datapath: Datapath, rounds: int) -> dict[str, object]:
    def read_frontends() -> AgentStatus:
        return AgentStatus(
            node="n1", frontends=frontends(datapath.committed.values(), datapath.counters())
        )

    timings: dict[str, list[float]] = {"status": [], "exposition": []}

    async def read() -> AgentStatus:
        started = time.perf_counter()
        status = await asyncio.to_thread(read_frontends)
        timings["status"].append(time.perf_counter() - started)
        return status

    metrics = AgentMetrics("n1", read)
    # The first scrape also pays one-time costs (imports, regular expressions compiled):
    # measured apart.
    started = time.perf_counter()
    await metrics.exposition()
    first = time.perf_counter() - started
    timings["status"].clear()
    worst = 0.0
    stop = False

    async def ticker() -> None:
        nonlocal worst
        last = time.perf_counter()
        while not stop:
            await asyncio.sleep(0.001)
            now = time.perf_counter()
            worst = max(worst, now - last - 0.001)
            last = now

    # The loop's worst delay with no scrape, over as long as the scrapes will take: what the
    # machine's load alone costs it.
    ticking = asyncio.create_task(ticker())
    await asyncio.sleep(first * rounds / 2)
    stop = True
    await ticking
    baseline, worst, stop = worst, 0.0, False
    ticking = asyncio.create_task(ticker())
    size = 0
    for _ in range(rounds):
        started = time.perf_counter()
        body = await metrics.exposition()
        timings["exposition"].append(time.perf_counter() - started)
        size = len(body)
    stop = True
    await ticking
    ms = 1000
    return {
        "first_scrape_ms": round(first * ms, 1),
        "scrape_ms_p50": round(statistics.median(timings["exposition"]) * ms, 1),
        "scrape_ms_max": round(max(timings["exposition"]) * ms, 1),
        "status_with_counters_ms_p50": round(statistics.median(timings["status"]) * ms, 1),
        "loop_worst_delay_ms": round(worst * ms, 1),
        "loop_worst_delay_without_scrapes_ms": round(baseline * ms, 1),
        "exposition_kib": round(size / 1024),
    }


def inside(services: int, backends: int, rounds: int) -> None:
    datapath = Datapath(NodeContext("n1", 0x5EED), LibNft())
    started = time.monotonic()
    datapath.resync([service(i, backends) for i in range(services)])
    result = {
        "services": services,
        "backends": backends,
        "resync_s": round(time.monotonic() - started, 1),
        **asyncio.run(scrape_many(datapath, rounds)),
        "note": "shared 2-CPU machine, other jobs running: +-30%",
    }
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--backends", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--inside", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inside:
        inside(args.services, args.backends, args.rounds)
        return
    with Lab(prefix="hd-metrics") as lab:
        lab.host("n1")
        argv = [sys.executable, str(Path(__file__).resolve()), "--inside"]
        argv += ["--services", str(args.services), "--backends", str(args.backends)]
        argv += ["--rounds", str(args.rounds)]
        subprocess.run(["ip", "netns", "exec", lab.ns("n1"), *argv], check=True, env=os.environ)


if __name__ == "__main__":
    main()
