"""Two nodes in network namespaces for the flow-event tests (namespaces `obs<pid>-*`).

    c1 198.51.100.10 ── n1 (eth1 198.51.100.1, eth0 192.0.2.21) ── n2 (eth0 192.0.2.22)
                         └ cbr0 ── p1 198.18.1.2                    └ cbr0 ── p2 198.18.2.2

Every link also carries IPv6 (2001:db8:100::/64 client, 2001:db8:2::/64 nodes,
2001:db8:18:N::/64 pods: `v6`).

The client's default route is n1, so n1 receives every VIP. n1 runs herald's datapath
(`Datapath`, the rules `dataplane/render.py` renders, flow-event rules included) and
`observe_runner.py` (the agent's flow reader and status socket). Pods run traffic.py's
backend on port 8080. Teardown (namespaces, processes by pid) always runs.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

from dataplane_cluster import dual_address, dual_route, v6

from herald.dataplane.apply import Datapath, Nft
from herald.dataplane.model import Backend, DataplaneService, NodeContext, Protocol, ServicePort
from herald.lab.netns import Lab

HERE = Path(__file__).parent
TRAFFIC = str(HERE / "traffic.py")
RUNNER = str(HERE / "observe_runner.py")
CLIENT = "198.51.100.10"
NODES = {"n1": "192.0.2.21", "n2": "192.0.2.22"}
PODS = {"p1": ("n1", "198.18.1.2"), "p2": ("n2", "198.18.2.2")}
VIP = "203.0.113.10"
VIP6 = "2001:db8:113::10"
EMPTY_VIP = "203.0.113.11"
RESTRICTED_VIP = "203.0.113.12"
SEED = 0x5EED


# HTTP, and UDP to the backends' echo on the same port; both families.
WEB = DataplaneService(
    key="default/web",
    vips=(ip_address(VIP), ip_address(VIP6)),
    ports=(
        ServicePort("http", Protocol.TCP, 80, 8080),
        ServicePort("echo", Protocol.UDP, 80, 8080),
    ),
    backends=tuple(
        Backend(ip_address(a), node, pod=f"default/{pod}")
        for pod, (node, address) in PODS.items()
        for a in (address, v6(address))
    ),
)


@dataclass
class ObserveCluster:
    lab: Lab
    datapath: Datapath
    scratch: Path
    runner: subprocess.Popen[bytes] | None = None

    @property
    def socket(self) -> Path:
        return self.scratch / "n1.sock"

    def apply(self, services: Sequence[DataplaneService]) -> None:
        self.datapath.sync(services)

    def start_runner(
        self, services: Sequence[DataplaneService], capture: Path | None = None
    ) -> None:
        """The flow reader in n1, knowing `services` (as the agent's plan would)."""
        if self.runner is not None:
            self.lab.stop(self.runner)
            self.socket.unlink(missing_ok=True)
        directory = self.scratch / "services.json"
        directory.write_text(json.dumps([describe(s) for s in services]))
        argv = [sys.executable, RUNNER, "--node", "n1", "--socket", str(self.socket),
                "--directory", str(directory)]  # fmt: skip
        if capture is not None:
            argv += ["--capture", str(capture)]
        self.runner = self.lab.spawn("n1", argv, log=self.scratch / "runner.log")
        deadline = time.monotonic() + 10
        while not self.socket.exists():
            if time.monotonic() > deadline or self.runner.poll() is not None:
                log = (self.scratch / "runner.log").read_text()
                raise RuntimeError(f"the flow reader did not start: {log}")
            time.sleep(0.05)

    def curl(self, url: str) -> int:
        """One request from c1; curl's exit code (7: refused, 28: timed out)."""
        result = self.lab.exec("c1", "curl", "-s", "-o", "/dev/null", "-m", "2", url, check=False)
        return result.returncode

    def connect(
        self, count: int, vip: str = VIP, udp: bool = False, sport: int = 0
    ) -> dict[str, object]:
        """`count` requests from c1 (traffic.py: backends that answered, errors)."""
        out = self.scratch / f"connect-{time.monotonic_ns()}.json"
        argv = [sys.executable, TRAFFIC, "connect", "--vip", vip, "--count", str(count),
                "--timeout", "2", "--out", str(out), "--sport", str(sport)]  # fmt: skip
        if udp:
            argv.append("--udp")
        self.lab.exec("c1", *argv)
        result: dict[str, object] = json.loads(out.read_text())
        return result


def describe(service: DataplaneService) -> dict[str, object]:
    return {
        "key": service.key,
        "vips": [str(v) for v in service.vips],
        "ports": [[p.protocol.value, p.port, p.target_port] for p in service.ports],
        "backends": [[str(b.address), b.node, b.pod] for b in service.backends],
        "mode": service.forwarding_mode.value,
    }


def build(lab: Lab) -> None:
    lab.host("c1")
    for node in NODES:
        lab.host(node, forwarding=True)
    lab.link("c1", "eth0", "n1", "eth1")
    dual_address(lab, "c1", "eth0", CLIENT)
    dual_route(lab, "c1", "default", "198.51.100.1")
    dual_address(lab, "n1", "eth1", "198.51.100.1")
    lab.link("n1", "eth0", "n2", "eth0")
    for node, address in NODES.items():
        dual_address(lab, node, "eth0", address)
    dual_route(lab, "n2", "default", NODES["n1"])
    lab.route("n1", "198.18.2.0/24", "via", NODES["n2"])
    lab.route("n1", "2001:db8:18:2::/64", "via", v6(NODES["n2"]))
    for pod, (node, address) in PODS.items():
        gateway = address.rsplit(".", 1)[0] + ".1"
        if lab.exec(node, "ip", "link", "show", "cbr0", check=False).returncode != 0:
            lab.bridge(node, "cbr0")
            dual_address(lab, node, "cbr0", gateway)
        lab.host(pod)
        lab.link(node, pod, pod, "eth0")
        lab.ip(node, "link", "set", pod, "master", "cbr0")
        dual_address(lab, pod, "eth0", address)
        dual_route(lab, pod, "default", gateway)
        lab.spawn(pod, [sys.executable, TRAFFIC, "serve", "--name", pod])
    for pod in PODS:
        deadline = time.monotonic() + 10
        while lab.exec(pod, "ss", "-ltunH").stdout.count(":8080") < 4:
            if time.monotonic() > deadline:
                raise RuntimeError(f"backend in {pod} did not start listening")
            time.sleep(0.05)


@contextmanager
def running(scratch: Path) -> Iterator[ObserveCluster]:
    with Lab(prefix="obs") as lab:
        build(lab)
        addresses = tuple((n, ip_address(x)) for n, a in NODES.items() for x in (a, v6(a)))
        datapath = Datapath(NodeContext("n1", SEED, addresses, "eth0"), Nft(lab.ns("n1")))
        yield ObserveCluster(lab, datapath, scratch)
