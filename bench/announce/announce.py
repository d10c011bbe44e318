"""Announcement latency in the lab: from a Service appearing in the manifests to the router's
kernel FIB holding its VIP with one next hop per node, and from its deletion to the route's
removal. p50/p99 over N Services (default 200), one at a time (issue #5: p99 < 100 ms).

The chain measured is the whole system: file watch -> lab kubelet (EndpointSlice) ->
controller (LB-IPAM, status) -> every agent (plan, nftables, BGP UPDATE) -> FRR -> zebra ->
kernel. The router's FIB changes are read from one `ip -o monitor route` in the router's
namespace, each stamped when its line arrives: no polling process competes for the two CPUs
with the system under test (an earlier version ran `ip route show` in a tight loop, a
process every few milliseconds, and measured its own load too).

Where the time goes (issue #14): each agent logs one `event=applied` line per snapshot it
applied, with the Unix time its source noticed the change and its stages (agent/stages.py).
After the rounds, before the lab goes down, the agents' logs are read; for each Service the
budget is: the controller's status write and the lab kubelet's EndpointSlice write (the
files' mtimes, from the Service file's rename), the agent that finished last (its wait for
the change to reach it, then its stages) and the router (the last agent's UPDATE -> FIB).

Run as root: .venv/bin/python bench/announce/announce.py [--services 200] [--router frr]
         [--json bench/results/announce.json] [--rounds each-round.json] [--keep-logs DIR]
"""

from __future__ import annotations

import argparse
import json
import queue
import re
import shutil
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for stamp

from herald.agent.stages import STAGES, parse_stages
from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.lab import cluster
from herald.lab.demo import external_ip
from stamp import publish, stamp

SEED = Path(__file__).resolve().parents[2] / "examples" / "seed"
SERVICE = """apiVersion: v1
kind: Service
metadata: {{name: bench-{index}}}
spec:
  type: LoadBalancer
  selector: {{app: web1}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""


def hop_count(line: str) -> int:
    """Next hops in one `ip -o monitor route` line (iproute2 resolves FRR's nexthop groups)."""
    return line.count("nexthop via") or line.count(" via ")


class RouteMonitor:
    """The router's route events, each with the `time.perf_counter()` it was read at."""

    def __init__(self) -> None:
        argv = ["ip", "netns", "exec", cluster.PREFIX + "router", "ip", "-o", "monitor", "route"]
        self.process = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
        self.events: queue.Queue[tuple[float, str]] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.events.put((time.perf_counter(), line))

    def wait(self, vip: str, done: Callable[[str], bool], since: float, timeout: float) -> float:
        """When the first event for `vip` after `since` that satisfies `done` arrived (VIPs
        are reused: an older event may still be queued)."""
        deadline = time.perf_counter() + timeout
        while (left := deadline - time.perf_counter()) > 0:
            try:
                at, line = self.events.get(timeout=left)
            except queue.Empty:
                break
            route = line.removeprefix("Deleted ").split(" ", 1)[0]
            if at >= since and route in (vip, f"{vip}/32") and done(line):
                return at
        raise TimeoutError(f"no route event for {vip} within {timeout} s")

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=5)


def wait(predicate: Callable[[], bool], timeout: float) -> None:
    # Only how soon the VIP is known here, not what is measured (route events are stamped
    # by the monitor's thread): a slow poll keeps this process off the CPUs it measures.
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError
        time.sleep(0.01)


APPLIED = re.compile(r"event=applied node=(\S+) noticed=([\d.]+) stages=(\S+)")


@dataclass(frozen=True)
class Applied:
    node: str
    noticed: float  # Unix time
    stages: dict[str, float]  # seconds
    sent: float  # Unix time the bgp stage ended: the UPDATEs were on the sockets


def applied_lines(logs: Iterable[Path]) -> list[Applied]:
    found = []
    for path in logs:
        for match in APPLIED.finditer(path.read_text(errors="replace")):
            node, noticed, stages = match.groups()
            at, spans = float(noticed), parse_stages(stages)
            upto = STAGES[: STAGES.index("bgp") + 1]
            found.append(Applied(node, at, spans, at + sum(spans.get(s, 0.0) for s in upto)))
    return found


@dataclass(frozen=True)
class Round:
    start: float  # Unix time of the Service file's rename
    fib: float  # Unix time the router's FIB held every next hop
    status_written: float  # mtime of the state file
    slices_written: float  # mtime of the EndpointSlices


def slices_written(generated: Path, name: str) -> float:
    """When the lab kubelet wrote the Service's EndpointSlices: its own file, or the one
    file of all slices that kubelets before issue #14 wrote (for runs of older trees)."""
    own = generated / "endpointslices" / name
    return (own if own.exists() else generated / "endpointslices.yaml").stat().st_mtime


def budget(rounds: Sequence[Round], applied: Sequence[Applied]) -> dict[str, list[float]]:
    """Seconds by stage, over the rounds `round_budgets` could follow."""
    spans: dict[str, list[float]] = {}
    for row in round_budgets(rounds, applied):
        for stage, seconds in row.items():
            spans.setdefault(stage, []).append(seconds)
    return spans


def round_budgets(rounds: Sequence[Round], applied: Sequence[Applied]) -> list[dict[str, float]]:
    """Seconds by stage for each round, along the critical path: the agent that finished
    last (its last applied snapshot before the FIB held the route). Rounds without an
    applied line are left out."""
    rows = []
    for r in rounds:
        last: dict[str, Applied] = {}
        for a in applied:
            if r.start <= a.noticed and a.sent <= r.fib + 0.002:
                last[a.node] = a  # logs are in time order per node
        if not last:
            continue
        critical = max(last.values(), key=lambda a: a.sent)
        row: dict[str, float] = {}
        row["controller status written"] = r.status_written - r.start
        row["kubelet slices written"] = r.slices_written - r.start
        row["last agent: change reached it"] = critical.noticed - r.start
        for stage in STAGES:
            row[f"last agent: {stage}"] = critical.stages.get(stage, 0.0)
        row["router: last UPDATE -> FIB"] = r.fib - critical.sent
        row["appear"] = r.fib - r.start
        rows.append(row)
    return rows


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def summary(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of `values` (seconds) in milliseconds."""
    return {
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p99_ms": round(percentile(values, 99) * 1000, 1),
        "max_ms": round(max(values) * 1000, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--router", choices=["frr", "bird"], default="frr")
    parser.add_argument(
        "--workers",
        type=int,
        default=5,
        help="workers besides k8s-master1 (fewer: less CPU contention on a small machine)",
    )
    parser.add_argument(
        "--settle",
        type=float,
        default=0.3,
        help="seconds between a removal and the next Service: the agents commit a removal "
        "after withdrawing it, and a Service written meanwhile would measure that commit too",
    )
    parser.add_argument("--json", type=Path)
    parser.add_argument("--keep-logs", type=Path, help="copy the lab's logs here before it goes")
    parser.add_argument("--rounds", type=Path, help="write each round's budget here (JSON)")
    args = parser.parse_args()

    topology = cluster.up(args.router, args.workers, DEFAULT_MANIFESTS)
    nodes = len(topology.nodes)
    routes = RouteMonitor()
    every_node = lambda line: hop_count(line) == nodes  # noqa: E731
    gone = lambda line: line.startswith("Deleted ")  # noqa: E731
    appear: list[float] = []
    vanish: list[float] = []
    rounds: list[Round] = []
    applied: list[Applied] = []
    state = DEFAULT_MANIFESTS / ".herald" / "state.json"
    generated = DEFAULT_MANIFESTS / cluster.GENERATED
    try:
        for manifest in sorted(SEED.glob("*.yaml")):
            (DEFAULT_MANIFESTS / manifest.name).write_text(manifest.read_text())
        wait(lambda: external_ip("default/web1-lb") is not None, 30)
        routes.wait(str(external_ip("default/web1-lb")), every_node, 0.0, 60)
        for index in range(args.services):
            path = DEFAULT_MANIFESTS / f"bench-{index}.yaml"
            temporary = path.with_suffix(".tmp")
            temporary.write_text(SERVICE.format(index=index))
            start, start_wall = time.perf_counter(), time.time()
            temporary.rename(path)
            name = f"default/bench-{index}"
            wait(lambda name=name: external_ip(name) is not None, 10)  # type: ignore[misc]
            vip = external_ip(name)
            assert vip is not None
            appear.append(routes.wait(vip, every_node, start, 10) - start)
            rounds.append(
                Round(
                    start_wall,
                    start_wall + appear[-1],
                    state.stat().st_mtime,
                    slices_written(generated, f"default.bench-{index}.yaml"),
                )
            )
            start = time.perf_counter()
            path.unlink()
            vanish.append(routes.wait(vip, gone, start, 10) - start)
            time.sleep(args.settle)
        applied = applied_lines(sorted(cluster.LOGS.glob("agent-*.log")))
        if args.keep_logs is not None:
            shutil.copytree(cluster.LOGS, args.keep_logs, dirs_exist_ok=True)
    finally:
        routes.close()
        cluster.down()

    results = {
        **stamp("announce"),
        "router": args.router,
        "nodes": nodes,
        "services": args.services,
        "settle_s": args.settle,
        "appear": summary(appear),
        "vanish": summary(vanish),
        "appear_budget": {
            stage: {
                "p50_ms": round(statistics.median(v) * 1000, 1),
                "p99_ms": round(percentile(v, 99) * 1000, 1),
            }
            for stage, v in budget(rounds, applied).items()
            if stage != "appear"
        },
    }
    if args.rounds is not None:
        rows = round_budgets(rounds, applied)
        ms = [{k: round(v * 1000, 1) for k, v in row.items()} for row in rows]
        args.rounds.write_text(json.dumps(ms, indent=1))
    publish(results, args.json)


if __name__ == "__main__":
    main()
