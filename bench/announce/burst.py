"""What the files source costs for a burst and for one change, and while idle (issue #14).

A burst of N Service files written back to back from another thread (as `kubectl apply`
of a directory or `cp -r` would) must cost one snapshot or close to it, not N; one change
must be noticed at once; an idle watch must cost nothing. No lab: a temporary manifests
directory and the real FileSource (inotify). Prints JSON.

Run: .venv/bin/python bench/announce/burst.py [--burst 50] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from herald.sources.files import FileSource

POOL = """apiVersion: herald.io/v1alpha1
kind: LoadBalancerIPPool
metadata: {name: bench}
spec: {blocks: [{cidr: 203.0.113.0/24}]}
"""
SERVICE = """apiVersion: v1
kind: Service
metadata: {{name: burst-{index}}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{port: 80}}]
"""


async def until(done: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.perf_counter() + timeout
    while not done():
        if time.perf_counter() > deadline:
            raise TimeoutError("the source yielded no such snapshot")
        await asyncio.sleep(0.0005)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def measure(directory: Path, burst: int, rounds: int) -> dict[str, object]:
    (directory / "pool.yaml").write_text(POOL)
    source = FileSource(directory)
    snapshots = source.snapshots()
    first = await asyncio.wait_for(anext(snapshots), 10)
    assert first.pools, "the pool manifest did not load"
    counted: list[tuple[float, int]] = []

    async def consume() -> None:
        async for snapshot in snapshots:
            counted.append((time.perf_counter(), len(snapshot.services)))

    consumer = asyncio.ensure_future(consume())
    await asyncio.sleep(0.2)

    idle_before = cpu()
    await asyncio.sleep(2.0)
    idle_cpu = (cpu() - idle_before) / 2.0

    single: list[float] = []
    for index in range(rounds):
        counted.clear()
        path = directory / f"one-{index}.yaml"
        start = time.perf_counter()
        path.write_text(SERVICE.format(index=f"one-{index}"))
        await until(lambda: bool(counted))
        single.append(counted[0][0] - start)
        await asyncio.sleep(0.05)

    before = len(list(directory.glob("one-*.yaml")))
    counted.clear()

    def write() -> None:
        for index in range(burst):
            (directory / f"burst-{index}.yaml").write_text(SERVICE.format(index=index))

    start = time.perf_counter()
    writer = threading.Thread(target=write)
    writer.start()
    await until(lambda: bool(counted) and counted[-1][1] >= before + burst)
    done = counted[-1][0] - start
    await asyncio.sleep(0.3)  # anything the burst still sets off
    writer.join()
    consumer.cancel()
    await asyncio.gather(consumer, return_exceptions=True)
    await snapshots.aclose()
    return {
        "idle_cpu_percent": round(idle_cpu * 100, 2),
        "one_change_to_snapshot_ms": {
            "p50": round(statistics.median(single) * 1000, 2),
            "max": round(max(single) * 1000, 2),
        },
        "burst_files": burst,
        "burst_snapshots": len(counted),
        "burst_to_last_snapshot_ms": round(done * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--burst", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="herald-burst-") as directory:
        print(json.dumps(asyncio.run(measure(Path(directory), args.burst, args.rounds))))


if __name__ == "__main__":
    main()
