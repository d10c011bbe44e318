"""A three-node cluster in network namespaces for the datapath tests.

    c1 (198.51.100.10, .20) ── r1 ── sw/br0 ──┬── n1 (192.0.2.21) ── cbr0 ── p1a 198.18.1.2
                                              │                        └── p1b 198.18.1.3
                                              ├── n2 (192.0.2.22) ── cbr0 ── p2a 198.18.2.2
                                              └── n3 (192.0.2.23) ── cbr0 ── p3a 198.18.3.2

The test service's backends are p1a, p1b and p2a (`BACKENDS`); p3a serves the failover
tests (`BACKENDS3`), which cut n3's link.

Every link also carries IPv6 (2001:db8:100::/64 clients, 2001:db8:2::/64 nodes,
2001:db8:18:N::/64 pods). r1 routes the VIP ranges 203.0.113.0/24 and 2001:db8:113::/64 to
one node at a time (`Cluster.via`). Every pod runs traffic.py's backend on port 8080, and
bench/chaos/sessions.py's server of long-lived connections on port 9090 (both on IPv4 and
IPv6).
Teardown (namespaces, processes by pid) always runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from ipaddress import ip_address
from pathlib import Path
from typing import Any

from herald.dataplane.apply import Datapath, Nft
from herald.dataplane.model import (
    Backend,
    DataplaneService,
    NodeContext,
    Protocol,
    ServicePort,
)
from herald.lab.netns import Lab

TRAFFIC = str(Path(__file__).with_name("traffic.py"))
SESSIONS = str(Path(__file__).resolve().parents[2] / "bench" / "chaos" / "sessions.py")
SESSION_PORT = 9090
SEED = 0x5EED
NODES = {"n1": ("192.0.2.21", 1), "n2": ("192.0.2.22", 2), "n3": ("192.0.2.23", 3)}
PODS = {
    "p1a": ("n1", "198.18.1.2"),
    "p1b": ("n1", "198.18.1.3"),
    "p2a": ("n2", "198.18.2.2"),
    "p3a": ("n3", "198.18.3.2"),
}
CLIENT = "198.51.100.10"
OTHER_CLIENT = "198.51.100.20"
VIP = "203.0.113.10"
CLIENT6 = "2001:db8:100::10"
VIP6 = "2001:db8:113::10"
BACKENDS = tuple(Backend(ip_address(PODS[p][1]), PODS[p][0]) for p in ("p1a", "p1b", "p2a"))
BACKENDS3 = (*BACKENDS, Backend(ip_address(PODS["p3a"][1]), "n3"))


def v6(v4: str) -> str:
    """The IPv6 twin of a lab address: 198.18.1.2 -> 2001:db8:18:1::2, 192.0.2.21 ->
    2001:db8:2::21, 198.51.100.10 -> 2001:db8:100::10."""
    a, b, c, d = v4.split(".")
    if a == "198" and b == "18":
        return f"2001:db8:18:{c}::{d}"
    return f"2001:db8:{c}::{d}"


BACKENDS6 = tuple(Backend(ip_address(v6(b.address.exploded)), b.node) for b in BACKENDS)
WEB = DataplaneService(
    key="default/web",
    vips=(ip_address(VIP),),
    ports=(ServicePort("http", Protocol.TCP, 80, 8080),),
    backends=BACKENDS,
)


def web(**changes: object) -> DataplaneService:
    """The test service, with `changes` to its fields."""
    return replace(WEB, **changes)  # type: ignore[arg-type]


def web_port(protocol: Protocol, port: int, **changes: object) -> DataplaneService:
    """The test service on one other port, still served by the backends' port 8080."""
    return web(ports=(ServicePort(f"{protocol}-{port}", protocol, port, 8080),), **changes)


@dataclass
class Cluster:
    lab: Lab
    nodes: dict[str, Datapath]
    scratch: Path

    def apply(self, services: Sequence[DataplaneService]) -> None:
        for datapath in self.nodes.values():
            datapath.sync(services)

    def via(self, node: str) -> None:
        self.lab.route("r1", "203.0.113.0/24", "via", NODES[node][0])
        self.lab.route("r1", "2001:db8:113::/64", "via", v6(NODES[node][0]))

    def client_argv(self, mode: str, out: Path, count: int, **options: object) -> list[str]:
        argv = [sys.executable, TRAFFIC, mode, "--count", str(count), "--out", str(out)]
        for key, value in {"vip": VIP, **options}.items():
            argv += [f"--{key}"] if value is True else [f"--{key}", str(value)]
        return argv

    def connect(self, count: int, host: str = "c1", **options: object) -> dict[str, object]:
        out = self.scratch / f"connect-{time.monotonic_ns()}.json"
        self.lab.exec(host, *self.client_argv("connect", out, count, **options))
        result: dict[str, object] = json.loads(out.read_text())
        return result

    def start(
        self, mode: str, count: int, **options: object
    ) -> tuple[Path, subprocess.Popen[bytes]]:
        out = self.scratch / f"{mode}-{time.monotonic_ns()}.json"
        process = self.lab.spawn("c1", self.client_argv(mode, out, count, **options))
        return out, process

    def hold(self, count: int, duration: float, vip: str = VIP) -> Sessions:
        """`count` long-lived connections to `vip`:80 (IPv4 or IPv6; the service must send
        them to the session servers' port), one request each every 100 ms for `duration`
        seconds; returns once they are open."""
        out = self.scratch / f"hold-{time.monotonic_ns()}.json"
        argv = [sys.executable, SESSIONS, "hold", "--vip", vip, "--count", str(count),
                "--duration", str(duration), "--out", str(out)]  # fmt: skip
        sessions = Sessions(out, self.lab.spawn("c1", argv))
        deadline = time.monotonic() + 20
        while not sessions.ready.exists():
            if time.monotonic() > deadline or sessions.process.poll() is not None:
                sessions.process.kill()
                raise RuntimeError("the long-lived connections did not open")
            time.sleep(0.05)
        return sessions

    def set_link(self, node: str, up: bool) -> None:
        """The switch side of `node`'s uplink, up or down: a cut cable."""
        self.lab.ip("sw", "link", "set", node, "up" if up else "down")

    def packets(self, node: str) -> int:
        """Frames received and sent on `node`'s uplink so far."""
        raw = self.lab.exec(node, "ip", "-j", "-s", "link", "show", "eth0").stdout
        stats = json.loads(raw)[0]["stats64"]
        return int(stats["rx"]["packets"]) + int(stats["tx"]["packets"])


@dataclass
class Sessions:
    out: Path
    process: subprocess.Popen[bytes]

    @property
    def ready(self) -> Path:
        return Path(f"{self.out}.ready")

    def result(self, timeout: float = 60) -> list[dict[str, Any]]:
        """Per connection: backends, answers, stalls, how it ended (sessions.py)."""
        self.process.wait(timeout=timeout)
        connections: list[dict[str, Any]] = json.loads(self.out.read_text())["connections"]
        return connections


def build(lab: Lab) -> None:
    for host in ("sw", "c1"):
        lab.host(host)
    for host in ("r1", *NODES):
        lab.host(host, forwarding=True)
    for node in NODES:
        # The kernel sends a client at most six ICMP errors at once (then one a second):
        # tests that count rejected datagrams would count the rate limit instead.
        lab.sysctl(node, "net.ipv4.icmp_ratelimit", "0")
        lab.sysctl(node, "net.ipv6.icmp.ratelimit", "0")
    lab.link("c1", "eth0", "r1", "eth1")
    dual_address(lab, "c1", "eth0", CLIENT)
    lab.address("c1", "eth0", f"{OTHER_CLIENT}/24")
    dual_route(lab, "c1", "default", "198.51.100.1")
    dual_address(lab, "r1", "eth1", "198.51.100.1")
    segment = []
    for host, address in (("r1", "192.0.2.1"), *((n, a) for n, (a, _) in NODES.items())):
        lab.link("sw", host, host, "eth0")
        dual_address(lab, host, "eth0", address)
        segment.append(host)
    lab.bridge("sw", "br0", segment)
    for node, (_, index) in NODES.items():
        lab.bridge(node, "cbr0")
        dual_address(lab, node, "cbr0", f"198.18.{index}.1")
        dual_route(lab, node, "default", "192.0.2.1")
        for other, (address, other_index) in NODES.items():
            if other != node:
                lab.route(node, f"198.18.{other_index}.0/24", "via", address)
                lab.route(node, f"2001:db8:18:{other_index}::/64", "via", v6(address))
    for pod, (node, address) in PODS.items():
        lab.host(pod)
        lab.link(node, pod, pod, "eth0")
        lab.ip(node, "link", "set", pod, "master", "cbr0")
        # As bridge CNIs do (hairpinMode): with br_netfilter loaded, a pod's connection to a
        # VIP that DNATs back to the pod itself must leave by the port it came in on.
        lab.ip(node, "link", "set", pod, "type", "bridge_slave", "hairpin", "on")
        dual_address(lab, pod, "eth0", address)
        dual_route(lab, pod, "default", address.rsplit(".", 1)[0] + ".1")
        lab.spawn(pod, [sys.executable, TRAFFIC, "serve", "--name", pod])
        lab.spawn(pod, [sys.executable, SESSIONS, "serve", "--name", pod])
    for pod in PODS:
        wait_listening(lab, pod)


def dual_address(lab: Lab, host: str, device: str, address: str) -> None:
    lab.address(host, device, f"{address}/24")
    lab.address(host, device, f"{v6(address)}/64")


def dual_route(lab: Lab, host: str, destination: str, gateway: str) -> None:
    lab.route(host, destination, "via", gateway)
    lab.route(host, "::/0" if destination == "default" else destination, "via", v6(gateway))


def wait_listening(lab: Lab, pod: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        listening = lab.exec(pod, "ss", "-ltunH").stdout
        if listening.count(":8080") == 4 and f":{SESSION_PORT}" in listening:
            return
        time.sleep(0.05)
    raise RuntimeError(f"backend in {pod} did not start listening")


@contextmanager
def running_cluster(scratch: Path) -> Iterator[Cluster]:
    with Lab(prefix="hd-dp") as lab:
        build(lab)
        addresses = tuple(
            (n, ip_address(address)) for n, (a, _) in NODES.items() for address in (a, v6(a))
        )
        nodes = {
            node: Datapath(NodeContext(node, SEED, addresses, "eth0"), Nft(lab.ns(node)))
            for node in NODES
        }
        cluster = Cluster(lab, nodes, scratch)
        cluster.via("n1")
        yield cluster
