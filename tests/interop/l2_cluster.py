"""Three nodes running the L2 announcer (`l2_announcer_runner.py`: heartbeats, ownership,
responders) on one segment with a client, for the netns failover and partition tests.

    sw/br0 ──┬── c1 (192.0.2.10)    client; the VIPs are on-link
             ├── n1 (192.0.2.21) ┐
             ├── n2 (192.0.2.22) ├─ announcers, every node a candidate for every VIP
             └── n3 (192.0.2.23) ┘

Processes are ended by pid and the namespaces removed by the Lab, even when a test fails.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from l2_segment import Segment, build_segment

from herald.l2.key import create_key_file
from herald.l2.liveness import DEFAULT_PORT
from herald.lab.netns import Lab, crash

RUNNER = str(Path(__file__).with_name("l2_announcer_runner.py"))
NODES = {"n1": "21", "n2": "22", "n3": "23"}
VIPS = [f"203.0.113.{i}" for i in range(10, 16)] + ["2001:db8:113::10", "2001:db8:113::11"]


class Cluster:
    def __init__(self, segment: Segment, scratch: Path) -> None:
        self.segment, self.scratch = segment, scratch
        self.key = scratch / "key"
        create_key_file(self.key)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: str) -> None:
        self.status_file(node).write_text("")
        peers = [f"{n}=192.0.2.{last}" for n, last in NODES.items() if n != node]
        argv = [
            sys.executable, RUNNER, node, f"192.0.2.{NODES[node]}", str(self.key),
            str(self.status_file(node)), ",".join(VIPS), *peers,
        ]  # fmt: skip
        self.processes[node] = self.segment.lab.spawn(node, argv)

    def end(self, node: str, how: signal.Signals) -> tuple[float, subprocess.Popen[bytes]]:
        """Sends `how` to the node's agent (SIGKILL: to its heartbeat process too, a node's
        crash); returns when, and the process to reap later (reaping waits for the
        interpreter to exit, which is not part of the failover)."""
        process = self.processes.pop(node)
        sent = time.monotonic()
        if how is signal.SIGKILL:
            crash(process.pid)
        else:
            os.kill(process.pid, how)
        return sent, process

    def cut_heartbeats(self, node: str, hears: Sequence[str] = (), heard: bool = False) -> None:
        """Drop the heartbeats to and from `node` in its namespace (nftables), except those
        from the peers it `hears`, and, when `heard`, those it sends; ARP/NDP and everything
        else still pass. Called again, it replaces the rules at once."""
        port = DEFAULT_PORT
        sources = ", ".join(f"192.0.2.{NODES[peer]}" for peer in hears)
        keep = f"ip saddr != {{ {sources} }} " if sources else ""
        chains = [f"chain in {{ type filter hook input priority 0; {keep}udp dport {port} drop; }}"]
        if not heard:
            chains.append(
                f"chain out {{ type filter hook output priority 0; udp dport {port} drop; }}"
            )
        rules = self.scratch / "cut.nft"
        rules.write_text(
            "table inet hd_cut\ndelete table inet hd_cut\n"
            f"table inet hd_cut {{\n  {chr(10).join(chains)}\n}}\n"
        )
        self.segment.lab.exec(node, "nft", "-f", str(rules))

    def heal_heartbeats(self, node: str) -> None:
        self.segment.lab.exec(node, "nft", "delete", "table", "inet", "hd_cut")

    def status_file(self, node: str) -> Path:
        return self.scratch / f"{node}.status"

    def owned(self) -> dict[str, set[str]]:
        return {n: set(self.status_file(n).read_text().split()) for n in self.processes}

    def owner_of(self, vip: str) -> str:
        (owner,) = [n for n, vips in self.owned().items() if vip in vips]
        return owner

    def wait_one_owner_each(self, limit: float = 5.0, spread: bool = False) -> dict[str, set[str]]:
        """Until every VIP has one owner; with `spread`, until every node owns one too (a
        node that started first owns them all until it hears the others)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            owned = self.owned()
            if sorted(v for vips in owned.values() for v in vips) == sorted(VIPS) and (
                not spread or all(owned.values())
            ):
                return owned
            time.sleep(0.01)
        what = "one owner per VIP, every node owning one" if spread else "one owner per VIP"
        raise AssertionError(f"not {what}: {self.owned()}\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(
            f"{n}: {self.status_file(n).with_name(f'{n}.status.log').read_text()[-4000:]}"
            for n in NODES
            if self.status_file(n).with_name(f"{n}.status.log").exists()
        )

    def wait_moved(self, host: str, vip: str, away_from: str, limit: float = 3.0) -> str:
        """Waits until `host`'s neighbour entry for `vip` names another node; returns it."""
        others = {self.segment.macs[n]: n for n in NODES if n != away_from}
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            mac = self.segment.neighbour(host, vip)
            if mac in others:
                return others[mac]
            time.sleep(0.005)
        raise AssertionError(f"{host}: {vip} still at {self.segment.neighbour(host, vip)}")


@contextmanager
def running_cluster(scratch: Path, prefix: str, start: bool = True) -> Iterator[Cluster]:
    """The segment with the client; with `start`, every node's announcer started and every
    VIP owned."""
    with Lab(prefix=prefix) as lab:
        build_segment(lab, {"c1": "10", **NODES})
        lab.route("c1", "203.0.113.0/24", "dev", "eth0")
        lab.route("c1", "2001:db8:113::/64", "dev", "eth0")
        segment = Segment(lab, scratch)
        for host in ("c1", *NODES):
            segment.macs[host] = segment.mac_of(host)
        built = Cluster(segment, scratch)
        if start:
            for node in NODES:
                built.start(node)
            built.wait_one_owner_each()
        yield built
