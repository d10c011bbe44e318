"""BGP throughput: herald vs GoBGP vs ExaBGP, side by side in one run, in namespaces.

1. announce: a speaker holds N /32s (198.18.0.0/15) and a receiving BIRD connects; the time
   from BIRD's session reaching Established until BIRD holds all N routes.
2. receive: a sending BIRD holds N IPv6 /64s (2001:db8::/32; no IPv4 documentation range
   holds a million prefixes) and connects; the time from the receiver's Established until
   the receiver holds all N.
3. For the speaker under test: CPU seconds (user+system, from /proc) spent in that window,
   and peak RSS (VmHWM) of the process.

Two namespaces joined by one veth: tx (192.0.2.21, 2001:db8:2::21) and rx (192.0.2.1,
2001:db8:2::1). Every run builds fresh namespaces and ends its processes by PID.

Run (root): .venv/bin/python bench/bgp/throughput.py [--announce 10000,100000]
    [--receive 1000000] [--speakers herald,gobgp,exabgp] [--json bench/results/bgp.json]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # bench/, for stamp

from herald.bgp.wire import AsPath, Negotiated, Origin, PathAttributes
from herald.bgp.wire.attributes import encode_attributes
from herald.lab.netns import Lab
from herald.lab.routers import Bird, ExaBgp, GoBgp, HeraldSpeaker, Neighbor, RouterSpec
from stamp import publish, stamp

HERALD = str(Path(sys.executable).parent / "herald")
TX_V4, RX_V4 = "192.0.2.21", "192.0.2.1"
TX_V6, RX_V6 = "2001:db8:2::21", "2001:db8:2::1"
TX_AS, RX_AS = 4200000000, 64512
POLL = 0.05
LOG_LEVEL = os.environ.get("HERALD_LOG", "WARNING")  # DEBUG to see what herald does
COUNT_POLL = 0.25  # polling a receiver's table costs it CPU: not too often
QUIET = 1.0  # seconds without CPU after which a receiver counts as done (GoBGP)


def v4_prefixes(n: int) -> list[str]:
    base = int(IPv4Address("198.18.0.0"))
    if n > 1 << 17:
        raise SystemExit("198.18.0.0/15 holds 131072 /32s; use --receive for more")
    return [f"{IPv4Address(base + i)}/32" for i in range(n)]


def v6_prefixes(n: int) -> list[str]:
    return [f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::/64" for i in range(n)]


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0  # utime, stime in clock ticks


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def wait(check: Callable[[], bool], timeout: float, what: str, poll: float = POLL) -> float:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(poll)
    return time.monotonic()


def quiet_then(pid: int, count: Callable[[], int]) -> Callable[[], int]:
    """`count`, asked only after `pid` has used no CPU for a second; 0 before that."""
    seen = {"cpu": -1.0, "since": time.monotonic()}

    def counted() -> int:
        cpu = cpu_seconds(pid)
        if cpu - seen["cpu"] > 0.02:
            seen.update(cpu=cpu, since=time.monotonic())
            return 0
        if time.monotonic() - seen["since"] < QUIET:
            return 0
        return count()

    return counted


def window(
    pid: int,
    established: Callable[[], bool],
    done: Callable[[], bool],
    what: str,
    poll: float,
    daemons: list[Any],
    settle: float = 0.0,
) -> dict[str, Any]:
    """Wall time from Established to done, and the CPU the process `pid` spent meanwhile;
    the daemons are stopped (by PID) whatever happens. `settle` is subtracted from the end:
    the idle second a quiet_then counter waits before it asks."""
    try:
        t0 = wait(established, 300, f"{what}: session", poll=0.005)
        cpu0 = cpu_seconds(pid)
        t1 = wait(done, 900, f"{what}: all routes", poll=poll) - settle
        result = {
            "seconds": round(t1 - t0, 3),
            "cpu_seconds": round(cpu_seconds(pid) - cpu0, 3),
            "peak_rss_mb": round(peak_rss_mb(pid), 1),
        }
    finally:
        for daemon in daemons:
            daemon.stop()
    print(f"{what}: {result}", flush=True)
    return result


def topology(lab: Lab) -> None:
    for host in ("tx", "rx"):
        lab.host(host)
    lab.link("tx", "eth0", "rx", "eth0")
    for host, v4, v6 in (("tx", TX_V4, TX_V6), ("rx", RX_V4, RX_V6)):
        lab.address(host, "eth0", f"{v4}/24")
        lab.address(host, "eth0", f"{v6}/64")


def mrt_table_dump(prefixes: list[str], next_hop: str) -> bytes:
    """RFC 6396 TABLE_DUMP_V2: a peer index table and one RIB_IPV4_UNICAST record per
    prefix, for `gobgp mrt inject global` (GoBGP's fast way to hold many routes)."""

    def record(subtype: int, body: bytes) -> bytes:
        return struct.pack("!IHHI", 0, 13, subtype, len(body)) + body

    peer = struct.pack("!B4s4sI", 0x02, IPv4Address(TX_V4).packed, IPv4Address(TX_V4).packed,
                       TX_AS)  # fmt: skip
    out = [record(1, IPv4Address(TX_V4).packed + struct.pack("!HH", 0, 1) + peer)]
    attributes = encode_attributes(
        PathAttributes(origin=Origin.IGP, as_path=AsPath(), next_hop=IPv4Address(next_hop)),
        Negotiated(four_octet_as=True),
    )
    entry = struct.pack("!HIH", 0, 0, len(attributes)) + attributes
    for sequence, text in enumerate(prefixes):
        network = IPv4Network(text)
        length = network.prefixlen
        packed = network.network_address.packed[: (length + 7) // 8]
        body = struct.pack("!IB", sequence, length) + packed + struct.pack("!H", 1) + entry
        out.append(record(2, body))
    return b"".join(out)


# --- announce ----------------------------------------------------------------------------


def start_announcer(kind: str, lab: Lab, prefixes: list[str], work: Path) -> Any:
    neighbor = (Neighbor(RX_V4, RX_AS, ipv6=False, local_address=TX_V4),)
    spec = RouterSpec(TX_AS, TX_V4, neighbor, hold_time=90, connect_retry=1, next_hop=TX_V4)
    work.mkdir(parents=True, exist_ok=True)
    if kind == "herald":
        routes = work / "routes.json"
        routes.write_text(json.dumps(prefixes))
        speaker = HeraldSpeaker(
            lab, "tx",
            ["--local-as", str(TX_AS), "--router-id", TX_V4, "--peer", f"{RX_V4}:{RX_AS}",
             "--connect-retry", "1", "--file", str(routes), "--log-level", LOG_LEVEL],
            work, HERALD,
        )  # fmt: skip
        speaker.start()
        return speaker
    if kind == "gobgp":
        gobgp = GoBgp(lab, "tx", spec, work)
        gobgp.start()
        # `gobgp mrt inject` (3.10) drops the last paths of its stream when it exits; the
        # file ends with a repeat of its first prefixes so that what is lost is a duplicate,
        # and injecting again fills any gap (before the session: it is not measured).
        dump = work / "rib.mrt"
        dump.write_bytes(mrt_table_dump(prefixes + prefixes[:2000], TX_V4))
        for _ in range(10):
            if gobgp.route_count("ipv4") >= len(prefixes):
                break
            lab.exec("tx", "gobgp", "mrt", "inject", "global", str(dump))
        wait(lambda: gobgp.route_count("ipv4") >= len(prefixes), 60, "GoBGP to load")
        return gobgp
    exa = ExaBgp(lab, "tx", replace(spec, announce=tuple(prefixes)), work)
    exa.start()
    return exa


def announce(kind: str, n: int) -> dict[str, Any]:
    prefixes = v4_prefixes(n)
    with tempfile.TemporaryDirectory() as tmp, Lab(prefix="hbb-") as lab:
        topology(lab)
        work = Path(tmp)
        speaker = start_announcer(kind, lab, prefixes, work / kind)
        pid = speaker.processes[0].pid
        bird = Bird(
            lab, "rx",
            RouterSpec(RX_AS, RX_V4, (Neighbor(TX_V4, TX_AS, ipv6=False),), hold_time=90,
                       connect_retry=1, fib=False),
            work / "bird",
        )  # fmt: skip
        bird.start()
        return window(
            pid, lambda: bird.established() == 1, lambda: bird.route_count("ipv4") >= n,
            f"announce {kind:7} n={n:>7}", POLL, [bird, speaker],
        )  # fmt: skip


# --- receive -----------------------------------------------------------------------------


def start_receiver(kind: str, lab: Lab, work: Path) -> tuple[Any, Callable[[], int]]:
    neighbor = (Neighbor(RX_V6, RX_AS, local_address=TX_V6, ipv6=True),)
    spec = RouterSpec(TX_AS, TX_V4, neighbor, hold_time=90, connect_retry=1)
    work.mkdir(parents=True, exist_ok=True)
    if kind == "herald":
        speaker = HeraldSpeaker(
            lab, "tx",
            ["--local-as", str(TX_AS), "--router-id", TX_V4, "--peer", f"[{RX_V6}]:{RX_AS}",
             "--status-interval", "0.1", "--log-level", "WARNING",
             # A million received routes: past the default limit of 10,000.
             "--max-prefixes", "0"],
            work, HERALD,
        )  # fmt: skip
        speaker.start()

        def herald_count() -> int:
            lines = [ln for ln in speaker.output().splitlines() if " received=" in ln]
            return int(lines[-1].split(" received=")[1].split()[0]) if lines else 0

        return speaker, herald_count
    if kind == "gobgp":
        gobgp = GoBgp(lab, "tx", spec, work)
        gobgp.start()

        # Every way of asking gobgpd how many routes it holds (RIB summary, neighbor
        # counters) walks its table, and asking often inflated its time by a third; so we
        # watch its CPU and ask once it has been idle for a second.
        return gobgp, quiet_then(gobgp.processes[0].pid, lambda: gobgp.route_count("ipv6"))
    exa = ExaBgp(lab, "tx", spec, work)
    exa.start()
    seen = {"offset": 0, "routes": 0}

    def exa_count() -> int:
        # Counting "nlri" keys in what ExaBGP wrote is far cheaper than decoding its JSON,
        # so the measurement does not lag behind ExaBGP (the run has no withdrawals).
        if exa.received.exists():
            with exa.received.open("rb") as f:
                f.seek(seen["offset"])
                data = f.read()
            whole = data.rfind(b"\n") + 1
            seen["offset"] += whole
            seen["routes"] += data[:whole].count(b'"nlri"')
        return seen["routes"]

    return exa, exa_count


def receive(kind: str, n: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp, Lab(prefix="hbb-") as lab:
        topology(lab)
        work = Path(tmp)
        # The sender loads its routes first and waits (passive) for the receiver.
        sender = Bird(
            lab, "rx",
            RouterSpec(RX_AS, RX_V4, (Neighbor(TX_V6, TX_AS, passive=True, ipv6=True),),
                       hold_time=90, connect_retry=1, announce=tuple(v6_prefixes(n)), fib=False),
            work / "bird",
        )  # fmt: skip
        sender.start()
        wait(lambda: sender.route_count("ipv6") >= n, 600, "the sending BIRD to load")
        receiver, count = start_receiver(kind, lab, work / kind)
        pid = receiver.processes[0].pid
        # The sender's view of Established is the same clock for every receiver (some
        # receivers report their own state only after they have read the first burst).
        return window(
            pid, lambda: sender.established() == 1, lambda: count() >= n,
            f"receive {kind:7} n={n:>7}", COUNT_POLL, [sender, receiver],
            QUIET if kind == "gobgp" else 0.0,
        )  # fmt: skip


def repeated(
    measure: Callable[[str, int], dict[str, Any]], kind: str, n: int, times: int
) -> dict[str, Any]:
    """The run with the median time of `times` runs (the speakers interleave with other
    load on a shared machine), and every run's seconds."""
    runs = []
    for _ in range(times):
        try:
            runs.append(measure(kind, n))
        except TimeoutError as e:
            return {"error": f"timed out: {e}"}
    runs.sort(key=lambda r: float(r["seconds"]))
    return {**runs[len(runs) // 2], "all_seconds": [r["seconds"] for r in runs]}


def ratios(table: dict[str, Any]) -> dict[str, float]:
    """How many times longer each speaker took than herald (above 1: herald was faster)."""
    base = table["herald"].get("seconds")
    return {
        kind: round(float(r["seconds"]) / base, 2)
        for kind, r in table.items()
        if kind != "herald" and "seconds" in r and base
    }


def main() -> None:
    # SIGTERM (a timeout) unwinds like Ctrl-C, so every lab is torn down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--announce", default="10000,100000")
    parser.add_argument("--receive", default="1000000")
    parser.add_argument("--speakers", default="herald,gobgp,exabgp")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median counts")
    args = parser.parse_args()
    speakers = [s for s in args.speakers.split(",") if s]
    results: dict[str, Any] = {**stamp("bgp"), "announce": {}, "receive": {}}
    results["repeats"] = args.repeat
    for name, measure, sizes in (
        ("announce", announce, args.announce),
        ("receive", receive, args.receive),
    ):
        for n in [int(x) for x in sizes.split(",") if x]:
            table = results[name][str(n)] = {}
            for kind in speakers:
                table[kind] = repeated(measure, kind, n, args.repeat)
            if "herald" in table:
                table["ratios_to_herald"] = ratios(table)
    publish(results, args.json)


if __name__ == "__main__":
    main()
