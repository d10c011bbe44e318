"""Forwarding cost: the same backend reached through the VIP (snat, dsr) and directly, side by
side in one run, with iperf3 (one TCP stream, bandwidth) and wrk (new connection per request:
the HTTP/1.0 test backend closes each one, so every request takes the first-packet path).

    sudo .venv/bin/python bench/dataplane/throughput.py [--rounds 5]

All three paths cross r1, n1 and n2 to the pod p2a on n2; only herald's rules differ.
Rounds alternate between paths, in a rotating order, so a noisy neighbour and the TIME_WAIT
state that piles up hurt all of them alike; each figure is the median over the rounds.
Writes the section throughput of bench/results/dataplane.json.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "interop"))

from dataplane_cluster import BACKENDS, VIP, Cluster, running_cluster, web

from herald.dataplane.model import DataplaneService, ForwardingMode, Protocol, ServicePort
from results import record

POD = "198.18.2.2"
SECONDS = 3


def iperf(cluster: Cluster, target: str) -> float:
    out = cluster.lab.exec("c1", "iperf3", "-c", target, "-t", str(SECONDS), "-J").stdout
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"]) / 1e9


def wrk(cluster: Cluster, target: str, port: int) -> dict[str, float]:
    url = f"http://{target}:{port}/"
    out = cluster.lab.exec("c1", "wrk", "-t1", "-c8", f"-d{SECONDS}s", "--latency", url).stdout
    latency = {}
    for percentile, value, unit in re.findall(r"^\s+(50|99)%\s+([\d.]+)(us|ms|s)$", out, re.M):
        latency[percentile] = float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None or len(latency) != 2:
        raise RuntimeError(f"unexpected wrk output: {out}")
    return {
        "requests_per_s": float(rate.group(1)),
        "p50_ms": latency["50"],
        "p99_ms": latency["99"],
    }


def services(mode: ForwardingMode) -> list[DataplaneService]:
    """HTTP and iperf3 (which listens on 5201 itself) on the pod p2a only, on node n2."""
    remote = (BACKENDS[2],)
    iperf_port = (ServicePort("iperf", Protocol.TCP, 5201, 5201),)
    return [
        web(backends=remote, forwarding_mode=mode),
        web(key="bench/iperf", ports=iperf_port, backends=remote, forwarding_mode=mode),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    rounds = parser.parse_args().rounds
    paths = {
        "direct": [],
        "snat": services(ForwardingMode.SNAT),
        "dsr": services(ForwardingMode.DSR),
    }
    samples: dict[str, list[dict[str, float]]] = {path: [] for path in paths}
    with tempfile.TemporaryDirectory() as scratch, running_cluster(Path(scratch)) as cluster:
        cluster.lab.route("r1", "198.18.0.0/16", "via", "192.0.2.21")
        cluster.lab.spawn("p2a", ["iperf3", "-s"])
        order = list(paths)
        for round_number in range(rounds):
            # Rotate the order: later runs meet more TIME_WAIT state on client and pod.
            rotated = order[round_number % 3 :] + order[: round_number % 3]
            for path in rotated:
                wanted = paths[path]
                cluster.apply(wanted)
                target, port = (VIP, 80) if wanted else (POD, 8080)
                sample = wrk(cluster, target, port)
                sample["iperf_gbit_s"] = iperf(cluster, target)
                samples[path].append(sample)
    summary = {
        path: {key: statistics.median(s[key] for s in runs) for key in runs[0]}
        for path, runs in samples.items()
    }
    direct = summary["direct"]
    for path in ("snat", "dsr"):
        summary[path]["requests_vs_direct"] = round(
            summary[path]["requests_per_s"] / direct["requests_per_s"], 3
        )
        summary[path]["iperf_vs_direct"] = round(
            summary[path]["iperf_gbit_s"] / direct["iperf_gbit_s"], 3
        )
    record(
        "throughput",
        {
            "rounds": rounds,
            "seconds_per_run": SECONDS,
            "wrk": "-t1 -c8, HTTP/1.0 (a new connection per request), Python backend",
            "summary": summary,
            "samples": samples,
        },
    )


if __name__ == "__main__":
    main()
