"""First-packet latency: TCP connect time of new connections to S LoadBalancer services
through herald's ruleset and through a kube-proxy-iptables-style ruleset for the same
services, side by side in one run, with the same client, backends and path shape.

    apt-get install -y iptables      # iptables-restore; not part of scripts/setup.sh
    sudo .venv/bin/python bench/dataplane/first_packet.py --services 10000

         ┌── n1 (herald, nftables) ─────────────┐
    c1 ──┤                                      ├── p1 (backends 198.18.1.2-11 on lo, :8080)
         └── n2 (kube-proxy-style iptables) ────┘

c1 reaches the VIPs (203.0.113.1-250, ports 1000+) through n1 or n2 by switching one
route; n1 and n2 DNAT to the same backends in p1 and masquerade. Every connection is new,
so its SYN takes the first-packet path through the nat hooks; the client closes with a
reset so no TIME_WAIT piles up. Rounds rotate between herald, iptables and direct (to a
backend, through n1, no DNAT). Writes the section
first-packet-nft (or -legacy, with `--iptables iptables-legacy-restore`) of
bench/results/dataplane.json.

The kube-proxy-style ruleset is what kube-proxy's iptables mode writes for a LoadBalancer
IP: KUBE-SERVICES matches `-d VIP -p tcp --dport P` one rule per service and port, jumps
to KUBE-EXT (mark for masquerade) and KUBE-SVC, which picks an endpoint chain with
`-m statistic --mode random --probability 1/(n-i)`; KUBE-SEP DNATs. (Comments, the
filter-table chains and health-check rules are left out: they are not on this path.)
"""

from __future__ import annotations

import argparse
import json
import random
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from ipaddress import IPv4Address, ip_address
from pathlib import Path

from herald.dataplane.apply import Datapath, Nft
from herald.dataplane.model import Backend, DataplaneService, NodeContext, Protocol, ServicePort
from herald.lab.netns import Lab
from results import record

VIPS = 250  # 203.0.113.1-250; services beyond that use further ports
FIRST_PORT = 1000
TARGET_PORT = 8080
PODS = tuple(IPv4Address("198.18.1.2") + i for i in range(10))


def target(index: int) -> tuple[str, int]:
    """The VIP and port of service `index`."""
    return f"203.0.113.{index % VIPS + 1}", FIRST_PORT + index // VIPS


def services(count: int, backends: int) -> list[DataplaneService]:
    result = []
    for i in range(count):
        vip, port = target(i)
        result.append(
            DataplaneService(
                key=f"bench/svc-{i}",
                vips=(ip_address(vip),),
                ports=(ServicePort("http", Protocol.TCP, port, TARGET_PORT),),
                backends=tuple(Backend(pod, "n1") for pod in PODS[:backends]),
            )
        )
    return result


def kube_proxy_rules(count: int, backends: int) -> str:
    """An iptables-restore file for the nat table in kube-proxy's iptables-mode layout."""
    chains = [":KUBE-SERVICES - [0:0]", ":KUBE-MARK-MASQ - [0:0]", ":KUBE-POSTROUTING - [0:0]"]
    rules = [
        "-A PREROUTING -j KUBE-SERVICES",
        "-A OUTPUT -j KUBE-SERVICES",
        "-A POSTROUTING -j KUBE-POSTROUTING",
        "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000",
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0",
        "-A KUBE-POSTROUTING -j MASQUERADE --random-fully",
    ]
    for i in range(count):
        vip, port = target(i)
        svc, ext = f"KUBE-SVC-{i:016X}", f"KUBE-EXT-{i:016X}"
        chains += [f":{svc} - [0:0]", f":{ext} - [0:0]"]
        rules += [
            f"-A KUBE-SERVICES -d {vip}/32 -p tcp -m tcp --dport {port} -j {ext}",
            f"-A {ext} -j KUBE-MARK-MASQ",
            f"-A {ext} -j {svc}",
        ]
        for j, pod in enumerate(PODS[:backends]):
            sep = f"KUBE-SEP-{i:012X}{j:04X}"
            chains.append(f":{sep} - [0:0]")
            left = backends - j
            rules.append(
                f"-A {svc} -m statistic --mode random --probability {1 / left:.11f} -j {sep}"
                if left > 1
                else f"-A {svc} -j {sep}"
            )
            rules += [
                f"-A {sep} -s {pod}/32 -j KUBE-MARK-MASQ",
                f"-A {sep} -p tcp -m tcp -j DNAT --to-destination {pod}:{TARGET_PORT}",
            ]
    head = ["*nat", ":PREROUTING ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"]
    return "\n".join([*head, *chains, *rules, "COMMIT", ""])


# -- inside the namespaces ----------------------------------------------------------------


def listen() -> None:
    """p1: accept and drop connections on every address, forever (ended by pid)."""
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("0.0.0.0", TARGET_PORT))
    server.listen(4096)
    while True:
        connection, _ = server.accept()
        connection.close()


def probe(targets: list[tuple[str, int]], out: str) -> None:
    """c1: one new connection per target, its connect time in microseconds."""
    linger = struct.pack("ii", 1, 0)  # close with a reset: no TIME_WAIT
    times, errors = [], 0
    for address, port in targets:
        sock = socket.socket()
        sock.settimeout(2)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, linger)
        started = time.perf_counter_ns()
        try:
            sock.connect((address, port))
            times.append((time.perf_counter_ns() - started) / 1000)
        except OSError:
            errors += 1
        finally:
            sock.close()
    Path(out).write_text(json.dumps({"us": times, "errors": errors}))


# -- the run --------------------------------------------------------------------------------


def build(lab: Lab) -> None:
    for host in ("c1", "p1"):
        lab.host(host)
    for node in ("n1", "n2"):
        lab.host(node, forwarding=True)
    for index, node in enumerate(("n1", "n2")):
        lab.link("c1", f"eth{index}", node, "eth1")
        lab.address("c1", f"eth{index}", f"198.51.100.{10 + 128 * index}/25")
        lab.address(node, "eth1", f"198.51.100.{1 + 128 * index}/25")
        lab.link(node, "eth2", "p1", f"eth{index}")
        lab.address(node, "eth2", f"192.0.2.{1 + 16 * index}/28")
        lab.address("p1", f"eth{index}", f"192.0.2.{2 + 16 * index}/28")
        lab.route(node, "198.18.1.0/24", "via", f"192.0.2.{2 + 16 * index}")
    for pod in PODS:
        lab.address("p1", "lo", f"{pod}/32")
    lab.route("c1", "198.18.1.0/24", "via", "198.51.100.1")
    lab.route("p1", "198.51.100.0/25", "via", "192.0.2.1")  # direct replies, through n1


def via(lab: Lab, node: str) -> None:
    lab.route("c1", "203.0.113.0/24", "via", "198.51.100.1" if node == "n1" else "198.51.100.129")


def measure(lab: Lab, scratch: Path, targets: list[tuple[str, int]]) -> dict[str, object]:
    spec = scratch / "targets.json"
    out = scratch / "probe.json"
    spec.write_text(json.dumps(targets))
    lab.exec("c1", sys.executable, __file__, "probe", str(spec), str(out))
    result: dict[str, object] = json.loads(out.read_text())
    return result


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "listen":
        listen()
        return
    if len(sys.argv) > 1 and sys.argv[1] == "probe":
        probe([tuple(t) for t in json.loads(Path(sys.argv[2]).read_text())], sys.argv[3])
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--backends", type=int, default=10)
    parser.add_argument("--connections", type=int, default=500, help="per path and round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iptables", default="iptables-restore")
    args = parser.parse_args()
    rng = random.Random(20261121)
    version = subprocess.run([args.iptables, "-V"], capture_output=True, text=True).stdout
    samples: dict[str, list[float]] = {"herald": [], "iptables": [], "direct": []}
    round_p50: dict[str, list[float]] = {path: [] for path in samples}
    errors = dict.fromkeys(samples, 0)
    with tempfile.TemporaryDirectory() as scratch, Lab(prefix="hd-fp") as lab:
        build(lab)
        lab.spawn("p1", [sys.executable, __file__, "listen"])
        started = time.monotonic()
        Datapath(NodeContext("n1", 0x5EED), Nft(lab.ns("n1"))).resync(
            services(args.services, args.backends)
        )
        herald_load = time.monotonic() - started
        rules = Path(scratch) / "kube-proxy.rules"
        rules.write_text(kube_proxy_rules(args.services, args.backends))
        started = time.monotonic()
        lab.exec("n2", args.iptables, str(rules))
        iptables_load = time.monotonic() - started
        paths = list(samples)
        for round_number in range(args.rounds):
            for path in paths[round_number % 3 :] + paths[: round_number % 3]:
                if path == "direct":
                    targets = [(str(rng.choice(PODS)), TARGET_PORT)] * args.connections
                else:
                    via(lab, "n1" if path == "herald" else "n2")
                    targets = [
                        target(rng.randrange(args.services)) for _ in range(args.connections)
                    ]
                result = measure(lab, Path(scratch), targets)
                times = result["us"]
                assert isinstance(times, list) and isinstance(result["errors"], int)
                samples[path] += times
                if not times:
                    raise RuntimeError(f"{path}: no connection succeeded")
                round_p50[path].append(statistics.median(times))
                errors[path] += result["errors"]
    summary = {
        path: {
            "connect_us_p50": round(statistics.median(values), 1),
            "connect_us_p99": round(percentile(values, 0.99), 1),
            "round_p50s_us": [round(v, 1) for v in round_p50[path]],
            "connections": len(values),
            "errors": errors[path],
        }
        for path, values in samples.items()
    }
    herald, iptables = summary["herald"], summary["iptables"]
    result = {
        "services": args.services,
        "backends": args.backends,
        "iptables": version.strip(),
        "herald_load_s": round(herald_load, 1),
        "iptables_load_s": round(iptables_load, 1),
        "summary": summary,
        "iptables_vs_herald_p50": round(iptables["connect_us_p50"] / herald["connect_us_p50"], 2),
        "iptables_vs_herald_p99": round(iptables["connect_us_p99"] / herald["connect_us_p99"], 2),
        "note": "shared 2-CPU VM, other jobs running; connect time measured in Python "
        "(perf_counter around connect), the same overhead on every path",
    }
    record(f"first-packet-{'legacy' if 'legacy' in version else 'nft'}", result)


if __name__ == "__main__":
    main()
