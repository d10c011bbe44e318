"""Real BGP routers in lab namespaces: FRR, BIRD 2, GoBGP and ExaBGP.

Each backend writes its configuration from one `RouterSpec`, starts its daemons in the
foreground through the lab (so their PIDs are known and they are ended by PID only), and
answers the same questions: which sessions are up, which routes were received with which
attributes. `kernel_routes` reads a namespace's FIB. Thin shell: no BGP logic here.
"""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from ipaddress import ip_address
from pathlib import Path
from typing import Any, Protocol

from herald.lab.netns import Lab, LabError, run


@dataclass(frozen=True)
class Neighbor:
    address: str
    asn: int
    password: str | None = None
    passive: bool = False
    ipv6: bool = True  # carry IPv6 unicast as well as IPv4 unicast
    local_address: str | None = None  # when the router has several on the segment
    bfd_interval: int | None = None  # ms: BFD with the peer, x BFD_MULTIPLIER


# Packets missed before a BFD session is Down, on every router backend (BIRD's default is 5).
BFD_MULTIPLIER = 3


@dataclass(frozen=True)
class RouterSpec:
    asn: int
    router_id: str
    neighbors: tuple[Neighbor, ...]
    hold_time: int = 9
    connect_retry: int = 1
    graceful_restart: bool = False
    restart_time: int = 30
    announce: tuple[str, ...] = ()  # prefixes the router itself originates
    next_hop: str | None = None  # next hop of announced IPv4 prefixes (GoBGP, ExaBGP)
    fib: bool = True  # install received routes in the kernel (BIRD; FRR always does)


@dataclass(frozen=True)
class ReceivedRoute:
    """A route as a router holds it, normalised across backends (addresses in Python's
    canonical text, so ::ffff:192.0.2.21 reads the same whoever printed it)."""

    prefix: str
    next_hops: tuple[str, ...]
    as_path: tuple[int, ...] = ()
    med: int | None = None
    local_pref: int | None = None
    communities: tuple[str, ...] = ()  # "64512:100"
    large_communities: tuple[str, ...] = ()  # "4200000000:1:2"

    def __post_init__(self) -> None:
        hops = tuple(sorted({str(ip_address(h)) for h in self.next_hops}))
        object.__setattr__(self, "next_hops", hops)


class Router(Protocol):
    name: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def established(self) -> int:
        """How many BGP sessions are Established."""
        ...

    def routes(self, family: str = "ipv4") -> dict[str, ReceivedRoute]: ...

    def route_count(self, family: str = "ipv4") -> int: ...


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll `check()` until it returns something truthy; bounded."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise LabError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def bfd_peer_states(shown: Any) -> dict[str, str]:
    """BFD peer address -> status ("up", "down", ...) from FRR's `show bfd peers json`."""
    return {p["peer"]: p["status"] for p in shown} if isinstance(shown, list) else {}


def bird_bfd_states(shown: str) -> dict[str, str]:
    """BFD peer address -> state ("up", "down", "init", "admindown") from BIRD's
    `show bfd sessions` (address, interface, state, since, interval, timeout)."""
    found = re.findall(r"^(\S+)\s+\S+\s+(Up|Down|Init|AdminDown)\s", shown, re.M)
    return {address: state.lower() for address, state in found}


def kernel_routes(lab: Lab, host: str, family: int = 4) -> list[dict[str, Any]]:
    """The namespace's main routing table as `ip -j route` gives it."""
    out = run(["ip", f"-{family}", "-n", lab.ns(host), "-j", "route", "show"]).stdout
    routes: list[dict[str, Any]] = json.loads(out or "[]")
    return routes


def kernel_next_hops(lab: Lab, host: str, prefix: str) -> set[str]:
    """Gateways of `prefix` in the FIB: one for a plain route, several for ECMP."""
    family = 6 if ":" in prefix else 4
    address, _, length = prefix.partition("/")
    full = {f"/{128 if family == 6 else 32}", ""}
    for route in kernel_routes(lab, host, family):
        dst = route.get("dst", "")
        if dst == prefix or (dst == address and f"/{length}" in full):
            hops = [h.get("gateway") for h in route.get("nexthops", [])] or [route.get("gateway")]
            return {h for h in hops if h}
    return set()


class _Daemon:
    """Shared life cycle: a work directory and foreground processes started through the lab."""

    def __init__(self, lab: Lab, host: str, spec: RouterSpec, workdir: Path) -> None:
        self.lab = lab
        self.host = host
        self.name = host
        self.spec = spec
        self.workdir = workdir
        self.processes: list[subprocess.Popen[bytes]] = []
        workdir.mkdir(parents=True, exist_ok=True)

    def spawn(self, argv: list[str], log_name: str) -> None:
        log_file = (self.workdir / log_name).open("ab")
        process = subprocess.Popen(
            ["ip", "netns", "exec", self.lab.ns(self.host), *argv],
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        log_file.close()
        self.lab.processes.append(process)
        self.processes.append(process)

    def stop(self) -> None:
        for process in reversed(self.processes):
            self.lab.stop(process)
        self.processes.clear()

    def kill(self) -> None:
        """SIGKILL by PID: a crash, for restart tests."""
        for process in reversed(self.processes):
            process.kill()
            process.wait(timeout=5)
            self.lab.processes.remove(process)
        self.processes.clear()

    def exec(self, *argv: str) -> str:
        return self.lab.exec(self.host, *argv).stdout


# --- FRR ---------------------------------------------------------------------------------


class Frr(_Daemon):
    """zebra + bgpd with a path space (-N) per namespace, config in /etc/frr/NAME/."""

    def __init__(self, lab: Lab, host: str, spec: RouterSpec, workdir: Path) -> None:
        super().__init__(lab, host, spec, workdir)
        self.pathspace = lab.ns(host)
        self.etc = Path("/etc/frr") / self.pathspace
        self.run_dir = Path("/var/run/frr") / self.pathspace

    def config(self) -> str:
        s = self.spec
        lines = [
            "frr defaults traditional",
            f"hostname {self.host}",
            f"log file {self.run_dir / 'frr.log'}",
            "!",
            *self._bfd_profiles(),
            f"router bgp {s.asn}",
            f" bgp router-id {s.router_id}",
            " no bgp ebgp-requires-policy",
            " bgp bestpath as-path multipath-relax",
            f" timers bgp {max(s.hold_time // 3, 1)} {s.hold_time}",
        ]
        if s.graceful_restart:
            lines += [
                " bgp graceful-restart",
                f" bgp graceful-restart restart-time {s.restart_time}",
            ]
        for n in s.neighbors:
            lines += [
                f" neighbor {n.address} remote-as {n.asn}",
                f" neighbor {n.address} timers connect {s.connect_retry}",
            ]
            if n.password:
                lines.append(f" neighbor {n.address} password {n.password}")
            if n.passive:
                lines.append(f" neighbor {n.address} passive")
            if n.local_address:
                lines.append(f" neighbor {n.address} update-source {n.local_address}")
            if n.bfd_interval:
                lines.append(f" neighbor {n.address} bfd profile ms{n.bfd_interval}")
        for family in ("ipv4", "ipv6"):
            lines.append(f" address-family {family} unicast")
            lines += [" maximum-paths 16", " maximum-paths ibgp 16"]
            for n in s.neighbors:
                if family == "ipv4" or n.ipv6:
                    lines.append(f"  neighbor {n.address} activate")
            lines += [f"  network {p}" for p in s.announce if (":" in p) == (family == "ipv6")]
            lines.append(" exit-address-family")
        return "\n".join(lines) + "\n"

    def _bfd_profiles(self) -> list[str]:
        intervals = sorted({n.bfd_interval for n in self.spec.neighbors if n.bfd_interval})
        lines = ["bfd"] if intervals else []
        for ms in intervals:
            lines += [
                f" profile ms{ms}",
                f"  detect-multiplier {BFD_MULTIPLIER}",
                f"  transmit-interval {ms}",
                f"  receive-interval {ms}",
            ]
        return [*lines, "!"] if lines else []

    def start(self) -> None:
        for directory in (self.etc, self.run_dir):
            directory.mkdir(parents=True, exist_ok=True)
            shutil.chown(directory, "frr", "frr")
        conf = self.etc / "frr.conf"
        conf.write_text(self.config())
        (self.etc / "vtysh.conf").write_text("")
        for path in (conf, self.etc / "vtysh.conf"):
            shutil.chown(path, "frr", "frr")
        bfd = any(n.bfd_interval for n in self.spec.neighbors)
        for daemon in ("zebra", "bfdd", "bgpd") if bfd else ("zebra", "bgpd"):
            self.spawn(
                [f"/usr/lib/frr/{daemon}", "-N", self.pathspace, "-f", str(conf), "-u", "frr",
                 "-g", "frr"],
                f"{daemon}.out",
            )  # fmt: skip
            ready = self.run_dir / ("zserv.api" if daemon == "zebra" else f"{daemon}.vty")
            wait_for(ready.exists, 10, f"{daemon}'s socket {ready}")

    def stop(self) -> None:
        super().stop()
        with contextlib.suppress(OSError):  # keep the log for the test's report
            shutil.copy(self.run_dir / "frr.log", self.workdir / "frr.log")
        shutil.rmtree(self.etc, ignore_errors=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)

    def vtysh(self, command: str) -> Any:
        result = self.lab.exec(self.host, "vtysh", "-N", self.pathspace, "-c", command, check=False)
        return json.loads(result.stdout or "{}") if result.returncode == 0 else {}

    def established(self) -> int:
        summary = self.vtysh("show bgp ipv4 unicast summary json")
        peers = summary.get("peers", {})
        return sum(1 for p in peers.values() if p.get("state") == "Established")

    def bfd_peers(self) -> dict[str, str]:
        return bfd_peer_states(self.vtysh("show bfd peers json"))

    def routes(self, family: str = "ipv4") -> dict[str, ReceivedRoute]:
        table = self.vtysh(f"show bgp {family} unicast json").get("routes", {})
        out = {}
        for prefix in table:
            detail = self.vtysh(f"show bgp {family} unicast {prefix} json")
            paths = detail.get("paths", [])
            if not paths:
                continue
            first = paths[0]
            out[prefix] = ReceivedRoute(
                prefix,
                tuple(sorted(h["ip"] for p in paths for h in p.get("nexthops", [])[:1])),
                _as_numbers(first.get("aspath", {}).get("string", "")),
                first.get("metric"),
                first.get("locPrf", first.get("localpref")),
                tuple(first.get("community", {}).get("string", "").split()),
                tuple(first.get("largeCommunity", {}).get("string", "").split()),
            )
        return out

    def route_count(self, family: str = "ipv4") -> int:
        summary = self.vtysh(f"show bgp {family} unicast summary json")
        return sum(int(p.get("pfxRcd", 0)) for p in summary.get("peers", {}).values())


# --- BIRD 2 ------------------------------------------------------------------------------


class Bird(_Daemon):
    """bird with its own control socket and pid file; kernel export with merged paths."""

    @property
    def ctl(self) -> str:
        return str(self.workdir / "bird.ctl")

    def config(self) -> str:
        s = self.spec
        out = [f"router id {s.router_id};", "protocol device {}"]
        if s.fib:
            out += [
                "protocol direct { ipv4; ipv6; }",
                "protocol kernel { ipv4 { export all; import none; }; merge paths on; }",
                "protocol kernel { ipv6 { export all; import none; }; merge paths on; }",
            ]
        for family, v6 in (("ipv4", False), ("ipv6", True)):
            routes = "\n".join(f"route {p} unreachable;" for p in s.announce if (":" in p) == v6)
            if routes:
                out.append(f"protocol static announced_{family} {{ {family};\n{routes}\n}}")
        intervals = [n.bfd_interval for n in s.neighbors if n.bfd_interval]
        if intervals:
            # BIRD sets BFD timers per interface, not per neighbor: the shortest asked for.
            ms = min(intervals)
            out.append(
                f'protocol bfd {{ interface "*" {{ min rx interval {ms} ms; '
                f"min tx interval {ms} ms; multiplier {BFD_MULTIPLIER}; }}; }}"
            )
        # Routes we originate need our address as next hop; received ones keep theirs.
        hop = "next hop self" if s.announce else "next hop keep"
        for index, n in enumerate(s.neighbors):
            options = [
                f"local as {s.asn};",
                f"neighbor {n.address} as {n.asn};",
                f"hold time {s.hold_time};",
                f"connect retry time {s.connect_retry};",
                f"error wait time {s.connect_retry},{max(s.connect_retry, 2)};",
                "direct;" if n.asn == s.asn else "",
                "passive on;" if n.passive else "",
                f'password "{n.password}";' if n.password else "",
                f"source address {n.local_address};" if n.local_address else "",
                "graceful restart on;" if s.graceful_restart else "",
                # A BFD Down ends the session (no `bfd graceful`): herald's BFD runs apart
                # from its BGP (C bit), so Down means the path failed (RFC 5882 §4.3.2).
                "bfd on;" if n.bfd_interval else "",
                f"ipv4 {{ import all; export all; {hop}; extended next hop on; }};",
                f"ipv6 {{ import all; export all; {hop}; }};" if n.ipv6 else "",
            ]
            body = " ".join(o for o in options if o)
            out.append(f"protocol bgp peer{index} {{ {body} }}")
        return "\n".join(out) + "\n"

    def start(self) -> None:
        conf = self.workdir / "bird.conf"
        conf.write_text(self.config())
        self.spawn(
            ["bird", "-f", "-c", str(conf), "-s", self.ctl, "-P", str(self.workdir / "bird.pid")],
            "bird.out",
        )
        wait_for(lambda: Path(self.ctl).exists(), 10, "BIRD's control socket")

    def birdc(self, command: str) -> str:
        result = self.lab.exec(self.host, "birdc", "-s", self.ctl, command, check=False)
        return result.stdout

    def bfd_peers(self) -> dict[str, str]:
        return bird_bfd_states(self.birdc("show bfd sessions"))

    def established(self) -> int:
        protocols = self.birdc("show protocols")
        return len(re.findall(r"^peer\d+\s+BGP\s+\S+\s+up\s.*Established", protocols, re.M))

    def routes(self, family: str = "ipv4") -> dict[str, ReceivedRoute]:
        table = "master6" if family == "ipv6" else "master4"
        return _parse_bird_routes(self.birdc(f"show route table {table} all"))

    def route_count(self, family: str = "ipv4") -> int:
        table = "master6" if family == "ipv6" else "master4"
        text = self.birdc(f"show route table {table} count")
        found = re.search(r"(\d+) of \d+ routes", text)
        return int(found.group(1)) if found else 0


def _parse_bird_routes(text: str) -> dict[str, ReceivedRoute]:
    """`show route all`: a prefix line, its `via` lines and `BGP.*` attribute lines; a
    continuation entry (same prefix, another path) starts with whitespace."""
    routes: dict[str, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in text.splitlines():
        head = re.match(r"^(\S+/\d+)\s+\S+\s+\[(\S+)", line)
        if head:
            current = routes.setdefault(head.group(1), {"hops": [], "attrs": {}})
            continue
        if current is None:
            continue
        via = re.match(r"^\s+via (\S+)", line)
        if via:
            current["hops"].append(via.group(1))
        attr = re.match(r"^\s+BGP\.(\w+): (.*)$", line)
        if attr and attr.group(1) not in current["attrs"]:
            current["attrs"][attr.group(1)] = attr.group(2).strip()
    out = {}
    for prefix, r in routes.items():
        if not r["attrs"]:
            continue  # not from BGP (direct, static)
        a = r["attrs"]
        out[prefix] = ReceivedRoute(
            prefix,
            tuple(sorted(set(r["hops"]))),
            _as_numbers(a.get("as_path", "")),
            int(a["med"]) if "med" in a else None,
            int(a["local_pref"]) if "local_pref" in a else None,
            tuple(re.sub(r"[()\s]", "", c).replace(",", ":") for c in
                  re.findall(r"\(\d+,\s*\d+\)", a.get("community", ""))),
            tuple(re.sub(r"[()\s]", "", c).replace(",", ":") for c in
                  re.findall(r"\(\d+,\s*\d+,\s*\d+\)", a.get("large_community", ""))),
        )  # fmt: skip
    return out


# --- GoBGP -------------------------------------------------------------------------------


class GoBgp(_Daemon):
    """gobgpd with a TOML config; the API on 127.0.0.1:50051 of the namespace's loopback."""

    def config(self) -> str:
        s = self.spec
        out = [
            "[global.config]",
            f"  as = {s.asn}",
            f'  router-id = "{s.router_id}"',
        ]
        for n in s.neighbors:
            out += [
                "[[neighbors]]",
                "  [neighbors.config]",
                f'    neighbor-address = "{n.address}"',
                f"    peer-as = {n.asn}",
            ]
            if n.password:
                out.append(f'    auth-password = "{n.password}"')
            out += [
                "  [neighbors.timers.config]",
                f"    hold-time = {s.hold_time}",
                f"    keepalive-interval = {max(s.hold_time // 3, 1)}",
                f"    connect-retry = {s.connect_retry}",
                "    idle-hold-time-after-reset = 1",
                "  [neighbors.transport.config]",
                f"    passive-mode = {'true' if n.passive else 'false'}",
            ]
            if n.local_address:
                out.append(f'    local-address = "{n.local_address}"')
            families = ["ipv4-unicast"] + (["ipv6-unicast"] if n.ipv6 else [])
            for family in families:
                out += [
                    "  [[neighbors.afi-safis]]",
                    "    [neighbors.afi-safis.config]",
                    f'      afi-safi-name = "{family}"',
                ]
            if s.graceful_restart:
                out += [
                    "  [neighbors.graceful-restart.config]",
                    "    enabled = true",
                    f"    restart-time = {s.restart_time}",
                ]
        return "\n".join(out) + "\n"

    def start(self) -> None:
        conf = self.workdir / "gobgpd.toml"
        conf.write_text(self.config())
        self.spawn(
            ["gobgpd", "-f", str(conf), "--api-hosts=127.0.0.1:50051", "-p", "--pprof-disable"],
            "gobgpd.out",
        )
        wait_for(lambda: self._api_up(), 10, "GoBGP's API")
        if self.spec.announce:
            self.add_routes(self.spec.announce)

    def _api_up(self) -> bool:
        return self.lab.exec(self.host, "gobgp", "global", check=False).returncode == 0

    def add_routes(self, prefixes: tuple[str, ...] | list[str]) -> None:
        """Originate prefixes, one CLI call each (benchmarks inject in bulk their own way)."""
        hop = self.spec.next_hop or "0.0.0.0"
        for prefix in prefixes:
            family = "ipv6" if ":" in prefix else "ipv4"
            self.exec("gobgp", "global", "rib", "-a", family, "add", prefix, "nexthop", hop)

    def gobgp(self, *args: str) -> Any:
        return json.loads(self.exec("gobgp", "-j", *args) or "null")

    def established(self) -> int:
        neighbors = self.gobgp("neighbor") or []
        return sum(1 for n in neighbors if n.get("state", {}).get("session_state") == 6)

    def routes(self, family: str = "ipv4") -> dict[str, ReceivedRoute]:
        table = self.gobgp("global", "rib", "-a", family) or {}
        out = {}
        for prefix, paths in table.items():
            hops, first = [], paths[0]
            for path in paths:
                for attr in path.get("attrs", []):
                    if attr["type"] == 3:
                        hops.append(attr["nexthop"])
                    if attr["type"] == 14:
                        hops.append(attr["nexthop"])
            out[prefix] = _gobgp_route(prefix, tuple(sorted(hops)), first.get("attrs", []))
        return out

    def route_count(self, family: str = "ipv4") -> int:
        summary = self.exec("gobgp", "global", "rib", "summary", "-a", family)
        found = re.search(r"Destination:\s*(\d+)", summary)
        return int(found.group(1)) if found else 0


def _gobgp_route(prefix: str, hops: tuple[str, ...], attrs: list[dict[str, Any]]) -> ReceivedRoute:
    by_type = {a["type"]: a for a in attrs}
    as_path: tuple[int, ...] = ()
    if 2 in by_type:
        as_path = tuple(asn for seg in by_type[2].get("as_paths", []) for asn in seg["asns"])
    communities = tuple(
        f"{c >> 16}:{c & 0xFFFF}" for c in by_type.get(8, {}).get("communities", [])
    )
    large = tuple(
        f"{c['ASN']}:{c['LocalData1']}:{c['LocalData2']}"
        for c in by_type.get(32, {}).get("value", [])
    )
    return ReceivedRoute(
        prefix,
        hops,
        as_path,
        by_type.get(4, {}).get("metric"),
        by_type.get(5, {}).get("value"),
        communities,
        large,
    )


# --- ExaBGP ------------------------------------------------------------------------------


@dataclass
class _ExaState:
    routes: dict[str, ReceivedRoute] = field(default_factory=dict)
    up: set[str] = field(default_factory=set)
    offset: int = 0


class ExaBgp(_Daemon):
    """exabgp in the foreground; what it receives goes as JSON lines to a file we read."""

    def __init__(self, lab: Lab, host: str, spec: RouterSpec, workdir: Path) -> None:
        super().__init__(lab, host, spec, workdir)
        self.received = workdir / "received.jsonl"
        self._state = _ExaState()

    def config(self) -> str:
        s = self.spec
        out = [
            "process receiver {",
            f'  run /bin/sh -c "cat >> {self.received}";',
            "  encoder json;",
            "}",
        ]
        for n in self.spec.neighbors:
            families = "ipv4 unicast; " + ("ipv6 unicast; " if n.ipv6 else "")
            local = n.local_address or "0.0.0.0"  # exabgp needs one; the lab sets it
            out += [
                f"neighbor {n.address} {{",
                f"  router-id {s.router_id};",
                f"  local-address {local};",
                f"  local-as {s.asn};",
                f"  peer-as {n.asn};",
                f"  hold-time {s.hold_time};",
                f"  passive {'true' if n.passive else 'false'};",
                f"  family {{ {families}}}",
                "  capability { route-refresh; graceful-restart "
                + (str(s.restart_time) if s.graceful_restart else "0")
                + "; }",
                "  api { processes [ receiver ]; receive { parsed; update; } neighbor-changes; }",
            ]
            if n.password:
                out.append(f"  md5-password {n.password};")
            hop = s.next_hop or local
            if s.announce:
                routes = " ".join(f"route {p} next-hop {hop};" for p in s.announce)
                out.append(f"  static {{ {routes} }}")
            out.append("}")
        return "\n".join(out) + "\n"

    def start(self) -> None:
        self.received.unlink(missing_ok=True)  # a restart begins with an empty view
        self._state = _ExaState()
        conf = self.workdir / "exabgp.conf"
        conf.write_text(self.config())
        env = self.workdir / "exabgp.env"
        env.write_text(
            "[exabgp.daemon]\nuser = 'root'\ndaemonize = false\ndrop = false\n"
            "[exabgp.log]\ndestination = 'stdout'\nlevel = INFO\n"
            f"[exabgp.api]\npipename = '{self.lab.ns(self.host)}'\n"
            "[exabgp.tcp]\nacl = false\n"
            "[exabgp.reactor]\nspeed = 0.1\n"
        )
        self.spawn(["exabgp", "--env", str(env), str(conf)], "exabgp.out")

    def _read(self) -> _ExaState:
        if not self.received.exists():
            return self._state
        with self.received.open() as f:
            f.seek(self._state.offset)
            for line in f:
                if not line.endswith("\n"):
                    break
                self._state.offset += len(line.encode())
                self._apply(json.loads(line))
        return self._state

    def _apply(self, event: dict[str, Any]) -> None:
        neighbor = event.get("neighbor", {})
        peer = neighbor.get("address", {}).get("peer", "")
        if event.get("type") == "state":
            if neighbor.get("state") == "up":
                self._state.up.add(peer)
            else:
                self._state.up.discard(peer)
            return
        update = neighbor.get("message", {}).get("update", {})
        for family_routes in update.get("withdraw", {}).values():
            for entry in family_routes:
                self._state.routes.pop(entry["nlri"], None)
        attributes = update.get("attribute", {})
        for family_hops in update.get("announce", {}).values():
            for hop, entries in family_hops.items():
                for entry in entries:
                    self._state.routes[entry["nlri"]] = _exa_route(entry["nlri"], hop, attributes)

    def established(self) -> int:
        return len(self._read().up)

    def routes(self, family: str = "ipv4") -> dict[str, ReceivedRoute]:
        v6 = family == "ipv6"
        return {p: r for p, r in self._read().routes.items() if (":" in p) == v6}

    def route_count(self, family: str = "ipv4") -> int:
        return len(self.routes(family))


def _exa_route(prefix: str, hop: str, a: dict[str, Any]) -> ReceivedRoute:
    return ReceivedRoute(
        prefix,
        (hop,),
        tuple(a.get("as-path", [])),
        a.get("med"),
        a.get("local-preference"),
        tuple(f"{x}:{y}" for x, y in a.get("community", [])),
        tuple(f"{x}:{y}:{z}" for x, y, z in a.get("large-community", [])),
    )


def _as_numbers(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in re.findall(r"\d+", text))


BACKENDS: dict[str, type[Frr] | type[Bird] | type[GoBgp] | type[ExaBgp]] = {
    "frr": Frr,
    "bird": Bird,
    "gobgp": GoBgp,
    "exabgp": ExaBgp,
}


# --- herald itself -----------------------------------------------------------------------


class HeraldSpeaker(_Daemon):
    """`herald bgp speak` in a namespace, as a subprocess; its output goes to speak.log."""

    def __init__(
        self, lab: Lab, host: str, argv: list[str], workdir: Path, herald: str = "herald"
    ) -> None:
        super().__init__(lab, host, RouterSpec(0, "0.0.0.0", ()), workdir)
        self.argv = argv
        self.herald = herald
        self.log = workdir / "speak.log"

    def start(self) -> None:
        self.spawn([self.herald, "bgp", "speak", *self.argv], "speak.log")

    def output(self) -> str:
        return self.log.read_text() if self.log.exists() else ""
