"""The cost of flow events: requests/s through the VIP with herald's flow-event rules and
the agent's reader on, with the rules but no reader (the kernel's share), and with the
rules removed, side by side in one run; and the reader's CPU time per 1,000 events.

    sudo .venv/bin/python bench/observe/flows.py [--rounds 5] [--json bench/results/observe.json]

The network is tests/interop/observe_cluster.py's (c1 -> n1 -> pod p2 on n2, snat). wrk
(`-t1 -c8`, HTTP/1.0: a new connection per request, about 10 logged packets each) runs
for SECONDS per mode; each round runs the three modes in a rotating order, so a noisy
neighbour hurts them alike.
With events on, the default limit (1,000 events/s) lets most packets through unlogged and
counted; the reader's CPU is read from /proc for the rounds with events on, and divided by
the events it received (ring total) in them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "interop"))
sys.path.insert(0, str(ROOT / "bench"))

from observe_cluster import VIP, WEB, ObserveCluster, running  # noqa: E402

from herald.dataplane.render import INET_BASE, declare  # noqa: E402
from herald.observe.reader import ObserveRequest  # noqa: E402
from stamp import publish, stamp  # noqa: E402

SECONDS = 3
MODES = ["on", "rules", "off"]
OBSERVE_CHAINS = [o for o in INET_BASE if o.name in ("observe-prerouting", "observe-output")]
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def wrk(cluster: ObserveCluster) -> float:
    url = f"http://{VIP}/"
    out = cluster.lab.exec("c1", "wrk", "-t1", "-c8", f"-d{SECONDS}s", url).stdout
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    if rate is None:
        raise RuntimeError(f"unexpected wrk output: {out}")
    return float(rate.group(1))


def events_on(cluster: ObserveCluster, on: bool) -> None:
    """Add or delete herald's two observe base chains (the only ones the hooks run)."""
    nft = ["ip", "netns", "exec", cluster.lab.ns("n1"), "nft", "-f", "-"]
    if on:
        script = declare(OBSERVE_CHAINS, {})
    else:
        script = "".join(f"delete chain inet herald {o.name}\n" for o in OBSERVE_CHAINS)
    subprocess.run(nft, input=script, text=True, check=True)


def ring_total(cluster: ObserveCluster) -> tuple[int, int]:
    """Events the reader received, and those the limit withheld, so far."""
    with socket.socket(socket.AF_UNIX) as conn:
        conn.settimeout(5)
        conn.connect(str(cluster.socket))
        conn.sendall(ObserveRequest().encode())
        header = json.loads(conn.makefile().readline())
    return int(header["ring"]["total"]), int(header["lost"]["rate_limited"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    services = [replace(WEB, backends=tuple(b for b in WEB.backends if b.node == "n2"))]
    samples: dict[str, list[float]] = {mode: [] for mode in MODES}
    cpu, received, limited = 0.0, 0, 0
    with tempfile.TemporaryDirectory() as scratch, running(Path(scratch)) as cluster:
        cluster.apply(services)
        # Thousands of short connections a second: without these, TIME_WAIT entries fill
        # the client's ports and n1's conntrack table within a few rounds, and every mode
        # collapses to a few hundred requests/s.
        cluster.lab.sysctl("c1", "net.ipv4.tcp_tw_reuse", "1")
        cluster.lab.sysctl("n1", "net.netfilter.nf_conntrack_tcp_timeout_time_wait", "1")
        cluster.lab.sysctl("n2", "net.netfilter.nf_conntrack_tcp_timeout_time_wait", "1")
        chains = True  # as herald renders them
        for round_number in range(args.rounds):
            # Rotate the order, so that no mode always follows another.
            order = MODES[round_number % 3 :] + MODES[: round_number % 3]
            for mode in order:
                if (mode != "off") != chains:
                    chains = mode != "off"
                    events_on(cluster, chains)
                reading = cluster.runner is not None
                if mode == "on" and not reading:
                    cluster.start_runner(services)
                elif mode != "on" and reading:
                    assert cluster.runner is not None
                    cluster.lab.stop(cluster.runner)
                    cluster.runner = None
                    cluster.socket.unlink(missing_ok=True)
                time.sleep(0.2)
                if mode != "on":
                    samples[mode].append(wrk(cluster))
                    continue
                assert cluster.runner is not None
                pid = cluster.runner.pid
                before_cpu, (before_events, before_limited) = cpu_seconds(pid), ring_total(cluster)
                samples[mode].append(wrk(cluster))
                time.sleep(0.2)  # the last batch
                after_events, after_limited = ring_total(cluster)
                cpu += cpu_seconds(pid) - before_cpu
                received += after_events - before_events
                limited += after_limited - before_limited
    medians = {mode: statistics.median(runs) for mode, runs in samples.items()}
    seconds_on = args.rounds * SECONDS
    result = {
        **stamp("observe-flows"),
        "load_average_1m_at_end": round(os.getloadavg()[0], 2),
        "rounds": args.rounds,
        "seconds_per_run": SECONDS,
        "wrk": "-t1 -c8, HTTP/1.0 (a new connection per request), Python backend on n2",
        "modes": {
            "on": "rules and the reader",
            "rules": "rules, no reader bound to the group (the kernel's share)",
            "off": "the observe base chains removed",
        },
        "requests_per_s": medians,
        "on_vs_off": round(medians["on"] / medians["off"], 3),
        "rules_vs_off": round(medians["rules"] / medians["off"], 3),
        "events_received": received,
        "events_per_s": round(received / seconds_on, 1),
        "events_rate_limited": limited,
        "reader_cpu_s": round(cpu, 3),
        "reader_cpu_ms_per_1000_events": round(cpu / received * 1000 * 1000, 2)
        if received
        else None,
        "samples": samples,
    }
    publish(result, args.json)


if __name__ == "__main__":
    main()
