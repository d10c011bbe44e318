"""One Ethernet segment for the L2 responder tests.

    sw/br0 ──┬── c1 (192.0.2.10, 2001:db8:2::10)   client; 203.0.113.0/24 and
             │                                      2001:db8:113::/64 are on-link
             ├── n1 (192.0.2.21, 2001:db8:2::21)   runs l2_runner.py on eth0
             └── n2 (192.0.2.22, 2001:db8:2::22)   runs l2_runner.py on eth0

The VIPs are addresses of no namespace: only the responders make them reachable. A node is
told what it owns through its state file (`Segment.own`). Teardown (namespaces, processes by
pid) always runs.
"""

from __future__ import annotations

import json
import re
import struct
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from herald.lab.netns import Lab

RUNNER = str(Path(__file__).with_name("l2_runner.py"))
HOSTS = {"c1": "10", "n1": "21", "n2": "22"}
NODES = ("n1", "n2")


@dataclass
class Segment:
    lab: Lab
    scratch: Path
    macs: dict[str, str] = field(default_factory=dict)

    def own(self, node: str, vips: Sequence[str], timeout: float = 5.0) -> None:
        """Make `node` own exactly `vips`; returns once its responder applied them."""
        state = self.scratch / f"{node}.owned"
        text = "".join(f"{vip}\n" for vip in vips)
        state.write_text(text)
        applied = state.with_name(state.name + ".applied")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if applied.exists() and applied.read_text() == text:
                return
            time.sleep(0.01)
        log = state.with_name(state.name + ".log")
        raise AssertionError(
            f"{node} did not apply {vips}: {log.read_text() if log.exists() else ''}"
        )

    def mac_of(self, host: str) -> str:
        return str(json.loads(self.lab.ip(host, "-j", "link", "show", "eth0").stdout)[0]["address"])

    def neighbour(self, host: str, address: str) -> str | None:
        """The MAC `host`'s kernel holds for `address`, if any."""
        family = "-6" if ":" in address else "-4"
        out = self.lab.exec(host, "ip", "-j", family, "neigh", "show", address).stdout
        entries = [e for e in json.loads(out or "[]") if e.get("lladdr")]
        return entries[0]["lladdr"] if entries else None

    def wait_neighbour(self, host: str, address: str, mac: str, timeout: float = 4.0) -> float:
        """Seconds until `host` holds `mac` for `address`."""
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if self.neighbour(host, address) == mac:
                return time.monotonic() - start
            time.sleep(0.01)
        raise AssertionError(f"{host}: {address} is at {self.neighbour(host, address)}, not {mac}")

    def resolve(self, host: str, address: str) -> None:
        """Make `host`'s kernel resolve `address` (the ping itself gets no answer: no
        namespace has the VIP)."""
        family = "-6" if ":" in address else "-4"
        self.lab.exec(host, "ping", family, "-c", "1", "-W", "1", address, check=False)

    def arping(self, address: str, count: int = 1) -> list[str]:
        """MACs that answered `count` ARP requests from the client (arping 2.x)."""
        # 0.2 s apart, with a deadline that leaves room for every request and its answer.
        deadline = str(1 + count * 0.2)
        out = self.lab.exec(
            "c1", "arping", "-i", "eth0", "-c", str(count), "-W", "0.2", "-w", deadline, address,
            check=False,
        ).stdout  # fmt: skip
        return re.findall(r"bytes from ([0-9a-f:]{17})", out)

    def ndisc(self, address: str) -> str | None:
        """The link-layer address a neighbour solicitation from the client gets, if any."""
        result = self.lab.exec(
            "c1", "ndisc6", "-1", "-r", "2", "-w", "500", address, "eth0", check=False
        )
        found = re.search(r"Target link-layer address: ([0-9A-Fa-f:]{17})", result.stdout)
        return found.group(1).lower() if found else None

    @contextmanager
    def capture(self, path: Path) -> Iterator[Path]:
        """tcpdump on the bridge (every frame of the segment) while the block runs.
        Immediate mode: otherwise frames wait in the capture ring for up to a second and the
        last ones are lost when tcpdump is ended."""
        process = self.lab.spawn(
            "sw",
            [
                "tcpdump",
                "-i",
                "br0",
                "--immediate-mode",
                "-U",
                "-nn",
                "-w",
                str(path),
                "arp or icmp6",
            ],
        )
        deadline = time.monotonic() + 5
        while not (path.exists() and path.stat().st_size >= 24):
            assert time.monotonic() < deadline, "tcpdump did not start"
            time.sleep(0.02)
        time.sleep(0.2)  # the header is written before the socket is attached
        try:
            yield path
        finally:
            time.sleep(0.1)
            self.lab.stop(process)

    def decode(self, path: Path) -> str:
        return self.lab.exec("sw", "tcpdump", "-r", str(path), "-nn", "-e", "-v").stdout


def frames(path: Path) -> list[bytes]:
    """The frames of a classic pcap file (what tcpdump -w writes)."""
    data = path.read_bytes()
    order = "<" if data[:4] == b"\xd4\xc3\xb2\xa1" else ">"
    found, offset = [], 24
    while offset + 16 <= len(data):
        _, _, length, _ = struct.unpack_from(f"{order}IIII", data, offset)
        found.append(data[offset + 16 : offset + 16 + length])
        offset += 16 + length
    return found


def build_segment(lab: Lab, hosts: Mapping[str, str]) -> None:
    """Switch `sw` with bridge br0, and per host (name: last part of its addresses) an eth0
    on it with 192.0.2.<last>/24 and 2001:db8:2::<last>/64."""
    lab.host("sw")
    lab.bridge("sw", "br0")
    for host, last in hosts.items():
        lab.host(host)
        lab.link("sw", f"{host}-eth0", host, "eth0")
        lab.ip("sw", "link", "set", f"{host}-eth0", "master", "br0")
        lab.address(host, "eth0", f"192.0.2.{last}/24")
        lab.address(host, "eth0", f"2001:db8:2::{last}/64")


@contextmanager
def running_segment(scratch: Path) -> Iterator[Segment]:
    with Lab(prefix="hd-l2") as lab:
        build_segment(lab, HOSTS)
        lab.route("c1", "203.0.113.0/24", "dev", "eth0")
        lab.route("c1", "2001:db8:113::/64", "dev", "eth0")
        segment = Segment(lab, scratch)
        for host in HOSTS:
            segment.macs[host] = segment.mac_of(host)
        for node in NODES:
            lab.spawn(node, [sys.executable, RUNNER, "eth0", str(scratch / f"{node}.owned")])
            segment.own(node, ())
        yield segment
