"""The web view under load, measured in headless Chromium: 1,000 Services x 6 nodes (every
agent lists 1,000 frontends with 6 backends each, over its real status socket) and 1,000
flow events/s spread over the six agents' rings (real `FlowReader`s, followed by the view).

    .venv/bin/python bench/ui/responsiveness.py [--services 1000] [--rate 1000]
        [--seconds 20] [--json bench/results/ui.json]

Measured in the page (window.herald.stats, app.js): time to first render (navigation
start to the first drawn model), each redraw's cost, and the update lag: for each batch
of flows drawn, the age of its newest event (the time from the agent recording it to the
row being in the table). The flow table is the visible tab while flows are measured, then
the map. No lab needed (loopback and unix sockets only).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "unit"))
sys.path.insert(0, str(ROOT / "bench"))

from ui.browser import chromium, tab  # noqa: E402
from ui.harness import NODES, agent_status, flow, frontend, running, wait_for  # noqa: E402

from stamp import publish, stamp  # noqa: E402


def big_status(services: int) -> Any:
    """Each node's status with `services` Services of one frontend and six backends."""
    rows = tuple(
        frontend(
            service=f"bench/svc-{i:04d}",
            vip=f"10.{100 + i // 65536}.{(i // 256) % 256}.{i % 256}",
            pods=[(f"bench/svc-{i:04d}-{n}", f"10.244.{n}.{i % 250 + 2}", NODES[n - 1])
                  for n in range(1, 7)],
        )
        for i in range(services)
    )  # fmt: skip

    def status(node: str) -> Any:
        return agent_status(node).model_copy(update={"frontends": rows})

    return status


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else float("nan")


def summary(values: list[float]) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), 1) if values else float("nan"),
        "p95": round(percentile(values, 0.95), 1),
        "max": round(max(values), 1) if values else float("nan"),
        "samples": len(values),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=1000)
    parser.add_argument("--rate", type=int, default=1000, help="flow events per second")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, running(Path(tmp), None, big_status(args.services), 2.0) as cluster, chromium() as driver:  # fmt: skip  # noqa: E501
        started = time.monotonic()
        driver.get(cluster.url)
        wait_for(
            lambda: driver.execute_script("return window.herald.stats.firstRenderMs"), 60,
            "the first render",
        )  # fmt: skip
        load_wall = time.monotonic() - started
        stats = driver.execute_script("return window.herald.stats")
        first_render = stats["firstRenderMs"]
        drawn = driver.execute_script("return document.querySelectorAll('#map g.box').length")

        def generate(seconds: float) -> int:
            """`rate` events/s into the six rings, in 10 ms steps, from the cluster's loop."""

            async def feed() -> int:
                sent = 0
                begin = time.monotonic()
                while (elapsed := time.monotonic() - begin) < seconds:
                    due = int(elapsed * args.rate)
                    now = time.time()
                    for k in range(sent, due):
                        event = flow(NODES[k % 6], f"198.51.100.{k % 200}", k % 6, when=now,
                                     port=1024 + k % 60000)  # fmt: skip
                        cluster.readers[event.node].ring.append(event)
                    for reader in cluster.readers.values():
                        # What `FlowReader.take` does after decoding a datagram: wake the
                        # followers (appending to the ring alone leaves them polling at 1 s).
                        reader._arrived.set()
                    sent = due
                    await asyncio.sleep(0.01)
                return sent

            sent: int = cluster.run(feed(), timeout=seconds + 30)
            return sent

        driver.execute_script("window.herald.stats.lagMs = []; window.herald.stats.drawMs = [];")
        tab(driver, "flows")
        sent_flows = generate(args.seconds)
        time.sleep(1.5)
        flows_stats = driver.execute_script("return window.herald.stats")
        tab(driver, "map")
        driver.execute_script("window.herald.stats.lagMs = []; window.herald.stats.drawMs = [];")
        sent_map = generate(args.seconds / 2)
        time.sleep(1.5)
        map_stats = driver.execute_script("return window.herald.stats")
        # Responsiveness: how long a trivial script waits for the page's main thread.
        probe = []
        for _ in range(10):
            t0 = time.monotonic()
            driver.execute_script("return 1")
            probe.append((time.monotonic() - t0) * 1000)
        rows = driver.execute_script("return document.querySelectorAll('#flows tbody tr').length")

    results = {
        **stamp("ui-responsiveness"),
        "services": args.services,
        "nodes": len(NODES),
        "rate_events_per_s": args.rate,
        "seconds": args.seconds,
        "first_render_ms": round(first_render, 1),
        "page_load_to_first_render_wall_s": round(load_wall, 2),
        "map_boxes_drawn": drawn,
        "flows_tab": {
            "events_sent": sent_flows,
            "events_shown": flows_stats["flowsShown"],
            "lost_messages": flows_stats["lost"],
            "update_lag_ms": summary(flows_stats["lagMs"]),
            "redraw_ms": summary(flows_stats["drawMs"]),
            "table_rows": rows,
        },
        "map_tab": {
            "events_sent": sent_map,
            "update_lag_ms": summary(map_stats["lagMs"]),
            "redraw_ms": summary(map_stats["drawMs"]),
        },
        "script_roundtrip_ms": summary(probe),
    }
    publish(results, args.json)


if __name__ == "__main__":
    main()
