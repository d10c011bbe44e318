"""L2 liveness at cluster scale: what every agent heartbeating every other costs (n²), and
what SWIM-style membership (src/herald/l2/swim.py) costs and detects instead.

From the code (src/herald/l2/heartbeat.py): each agent sends one datagram to each of its
n - 1 peers every `interval` (100 ms by default), each carrying the VIPs the sender owns;
so every node sends and receives 10 x (n - 1) datagrams per second and the segment carries
10 x n x (n - 1). Sizes: the datagram as `encode` builds it, plus UDP (8), IPv4 (20) and
Ethernet (14 header + 4 FCS; + 20 preamble and gap on the wire).

Measured with the protocol's own fake clock, no network: one node with n - 1 peers runs
`--intervals` intervals; each interval it fires its timer (its heartbeats to every peer)
and takes one heartbeat from each peer, each followed by `next_deadline()` as the heartbeat
process's loop does (twice per wake-up: per datagram when they arrive one at a time, per
READ_BUDGET datagrams when they queue). The CPU time of that protocol work, plus
`sendto`/`recvfrom` on a loopback UDP socket per datagram, gives the share of one core a
node's heartbeat process needs, between those two bounds.

SWIM is run whole, every member of the cluster, on the fake-clock network of its unit
tests (tests/unit/l2/swim_network.py: 0.3-0.7 ms latency, no loss): warmed up as after a
long run (each member got the others' records in SYNC datagrams, as a starting member
does), then `--swim-seconds` of steady state give the datagrams and bytes each member
sends and receives per second and the protocol's CPU per member; then `--kills` members are
killed one after another, and for each the time from its death to each live member
declaring it DEAD is recorded (the distribution over every observer of every kill). A last
run, at the smallest size, puts 20% loss on one member for `--lossy-seconds` per seed and
counts false DEAD declarations (the rate of false positives).

    .venv/bin/python bench/scale/liveness.py --json bench/results/liveness.json
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for stamp
# tests/unit/, for the SWIM members' in-memory network (l2.swim_network)
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "unit"))

from l2.swim_network import SwimNetwork

from herald.l2.heartbeat import Config, Heartbeat, Message, PeerState, encode
from herald.l2.heartbeat_process import READ_BUDGET
from herald.l2.swim import Config as SwimConfig
from stamp import publish, stamp

KEY = b"k" * 32
UDP_IP = 8 + 20
ETHERNET = 14 + 4
WIRE_EXTRA = 20  # preamble, start delimiter, inter-frame gap


def name(index: int) -> str:
    return f"node-{index:04}"


def address(index: int) -> tuple[str, int]:
    return (f"10.0.{index // 250}.{index % 250 + 1}", 7946)


def vips_of(index: int, per_node: int) -> tuple[ipaddress.IPv4Address, ...]:
    return tuple(ipaddress.IPv4Address(0xC6120000 + index * per_node + v) for v in range(per_node))


def protocol(nodes: int, intervals: int, vips_per_node: int) -> dict[str, Any]:
    config = Config(node=name(0), key=KEY, incarnation=1)
    beat = Heartbeat(config, started=0.0)
    beat.set_peers({name(i): address(i) for i in range(1, nodes)})
    beat.set_owned(vips_of(0, vips_per_node), 0.0)
    beat.datagrams_to_send()
    # The peers' datagrams, made beforehand: their encoding is the senders' work.
    incoming = [
        [
            (
                encode(Message(name(i), 1, k + 1, k * 100, vips=vips_of(i, vips_per_node)), KEY),
                address(i),
            )
            for i in range(1, nodes)
        ]
        for k in range(intervals)
    ]
    sent = sent_bytes = received_bytes = 0
    timer_s = receive_s = deadline_s = 0.0
    for k in range(intervals):
        now = (k + 1) * config.interval
        start = time.process_time()
        beat.handle_timer(now)
        out = beat.datagrams_to_send()
        timer_s += time.process_time() - start
        sent += len(out)
        sent_bytes += sum(len(data) for data, _ in out)
        start = time.process_time()
        for data, source in incoming[k]:
            beat.handle_datagram(data, source, now + 0.001)
        receive_s += time.process_time() - start
        start = time.process_time()
        for _ in incoming[k]:
            beat.next_deadline()
        deadline_s += time.process_time() - start
        received_bytes += sum(len(data) for data, _ in incoming[k])
    alive = sum(1 for n in beat.live() if n != config.node)
    assert alive == nodes - 1, f"only {alive} of {nodes - 1} peers alive in the model"
    received = intervals * (nodes - 1)
    return {
        "sent": sent,
        "received": received,
        "payload_bytes": sent_bytes // sent,
        "timer_us_per_interval": timer_s / intervals * 1e6,
        "receive_us_per_datagram": receive_s / received * 1e6,
        "next_deadline_us": deadline_s / received * 1e6,
    }


def socket_cost(datagrams: int, size: int) -> dict[str, float]:
    """sendto and recvfrom of one heartbeat-sized datagram on loopback."""
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        receiver.bind(("127.0.0.1", 0))
        receiver.setblocking(False)
        target = receiver.getsockname()
        payload = b"x" * size
        send_s = recv_s = 0.0
        for _ in range(datagrams // 100):
            start = time.process_time()
            for _ in range(100):
                sender.sendto(payload, target)
            send_s += time.process_time() - start
            start = time.process_time()
            for _ in range(100):
                receiver.recvfrom(4096)
            recv_s += time.process_time() - start
        count = datagrams // 100 * 100
        return {"sendto_us": send_s / count * 1e6, "recvfrom_us": recv_s / count * 1e6}
    finally:
        receiver.close()
        sender.close()


def row(
    nodes: int, intervals: int, vips_per_node: int, sockets: dict[str, float]
) -> dict[str, Any]:
    model = protocol(nodes, intervals, vips_per_node)
    per_second = 1 / Config(node="x", key=KEY, incarnation=1).interval
    packets = per_second * (nodes - 1)
    frame = model["payload_bytes"] + UDP_IP + ETHERNET
    # The process's loop runs next_deadline() twice per wake-up: per datagram when they come
    # one at a time (the most), per READ_BUDGET datagrams when they queue (the least).
    base_us = (
        model["timer_us_per_interval"] * per_second
        + packets * (model["receive_us_per_datagram"] + sockets["sendto_us"])
        + packets * sockets["recvfrom_us"]
    )
    most_us = base_us + packets * 2 * model["next_deadline_us"]
    least_us = base_us + packets / READ_BUDGET * 2 * model["next_deadline_us"]
    return {
        "nodes": nodes,
        "vips_per_node": vips_per_node,
        "packets_per_node_per_s_each_way": round(packets),
        "payload_bytes": model["payload_bytes"],
        "frame_bytes": frame,
        "bits_per_node_per_s_each_way_on_wire": round(packets * (frame + WIRE_EXTRA) * 8),
        "segment_packets_per_s": round(packets * nodes),
        "segment_bits_per_s_on_wire": round(packets * nodes * (frame + WIRE_EXTRA) * 8),
        "timer_us_per_interval": round(model["timer_us_per_interval"], 1),
        "receive_us_per_datagram": round(model["receive_us_per_datagram"], 2),
        "next_deadline_us": round(model["next_deadline_us"], 2),
        "cpu_share_of_one_core_least": round(least_us / 1e6, 3),
        "cpu_share_of_one_core_most": round(most_us / 1e6, 3),
    }


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def swim_row(nodes: int, seconds: float, kills: int, vips_per_node: int) -> dict[str, Any]:
    net = SwimNetwork(nodes, seed=nodes)
    for i, node in enumerate(net.names):
        net.members[node].set_owned(vips_of(i, vips_per_node), 0.0)
    net.warm()
    assert net.converged(), "SWIM cluster did not converge while warming up"
    sent, sent_bytes, received = (
        sum(net.sent.values()),
        sum(net.sent_bytes.values()),
        sum(net.received.values()),
    )
    start, cpu = net.now, time.process_time()
    net.run_until(start + seconds)
    cpu = time.process_time() - cpu
    sent = sum(net.sent.values()) - sent
    sent_bytes = sum(net.sent_bytes.values()) - sent_bytes
    received = sum(net.received.values()) - received
    per_node_s = nodes * seconds
    payload = sent_bytes / sent
    frame = payload + UDP_IP + ETHERNET
    detection: list[float] = []
    first: list[float] = []
    steady = net.now
    for k in range(kills):
        victim = net.names[(k * 7919 + 13) % nodes]
        # Kills fall at different phases of the probe rounds.
        net.run_until(net.now + 0.5 + 0.0137 * k)
        net.kill(victim)
        killed = net.now
        net.run_until(killed + 2.0)
        declared = net.declared(victim, PeerState.DEAD, killed)
        missing = set(net.live()) - set(declared)
        assert not missing, f"{len(missing)} members never declared {victim} dead"
        times = [at - killed for at in declared.values()]
        detection += times
        first.append(min(times))
    false = net.false_deaths(steady, net.live())
    packets = sent / per_node_s
    return {
        "nodes": nodes,
        "vips_per_node": vips_per_node,
        "packets_per_node_per_s_sent": round(packets, 1),
        "packets_per_node_per_s_received": round(received / per_node_s, 1),
        "payload_bytes_mean": round(payload, 1),
        "bits_per_node_per_s_sent_on_wire": round(packets * (frame + WIRE_EXTRA) * 8),
        "segment_packets_per_s": round(packets * nodes),
        "protocol_cpu_us_per_node_per_s": round(cpu / per_node_s * 1e6),
        "kills": kills,
        "detection_s_every_observer": {
            "p50": round(percentile(detection, 0.5), 3),
            "p99": round(percentile(detection, 0.99), 3),
            "max": round(max(detection), 3),
        },
        "detection_s_first_observer": {
            "min": round(min(first), 3),
            "max": round(max(first), 3),
        },
        "false_deaths": len(false),
    }


def swim_false_positives(nodes: int, seeds: int, seconds: float, loss: float) -> dict[str, Any]:
    false = 0
    for seed in range(seeds):
        net = SwimNetwork(nodes, seed=1000 + seed, jitter=0.003)
        net.warm()
        net.loss[net.names[seed % nodes]] = loss
        start = net.now
        net.run_until(start + seconds)
        false += len(net.false_deaths(start, net.live()))
    return {
        "nodes": nodes,
        "lossy_member_loss_each_way": loss,
        "runs": seeds,
        "seconds_each": seconds,
        "false_deaths": false,
        "false_deaths_per_lossy_node_hour": round(false / (seeds * seconds) * 3600, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--vips-per-node", type=int, default=1)
    parser.add_argument("--intervals", type=int, default=10)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--swim-seconds", type=float, default=2.0)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--lossy-runs", type=int, default=20)
    parser.add_argument("--lossy-seconds", type=float, default=30.0)
    parser.add_argument("--lossy-rate", type=float, default=0.2)
    args = parser.parse_args()
    size = len(encode(Message(name(0), 1, 1, 0, vips=vips_of(0, args.vips_per_node)), KEY))
    sockets = socket_cost(20000, size)
    rows = [row(n, args.intervals, args.vips_per_node, sockets) for n in args.nodes]
    swim_rows = [swim_row(n, args.swim_seconds, args.kills, args.vips_per_node) for n in args.nodes]
    lossy = swim_false_positives(
        min(args.nodes), args.lossy_runs, args.lossy_seconds, args.lossy_rate
    )
    swim_config = SwimConfig(node="x", key=KEY, incarnation=1)
    publish(
        {
            **stamp("scale-liveness"),
            "load_average_1m_at_end": round(os.getloadavg()[0], 2),
            "interval_s": Config(node="x", key=KEY, incarnation=1).interval,
            "loopback_socket_us": {k: round(v, 2) for k, v in sockets.items()},
            "results": rows,
            "swim": {
                "config": {
                    k: getattr(swim_config, k)
                    for k in (
                        "interval",
                        "probe_timeout",
                        "indirect_probes",
                        "suspicion_min",
                        "suspicion_max",
                        "confirmations",
                        "gossip_interval",
                        "gossip_fanout",
                        "retransmit_mult",
                        "reconnect_interval",
                    )
                },
                "results": swim_rows,
                "false_positives": lossy,
            },
        },
        args.json,
    )


if __name__ == "__main__":
    main()
