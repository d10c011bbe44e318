"""Whole L2 agents in memory on one segment, with a fake clock: per node the heartbeat core
(`heartbeat.Heartbeat`) and the ownership core (`ownership.Ownership`), wired as the shell
wires them (`announcer.Announcer`), and a record of every announcement sent on the segment.

Time jumps from one deadline to the next (a heartbeat timer, an ownership timer, a datagram
arriving), so seconds of cluster life run in milliseconds. Heartbeat paths can be dropped
one direction at a time, which is how a test orders a heal adversely; the segment itself
(ARP/NDP) is never cut here: these are the partitions where both sides reach the clients.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from ipaddress import IPv4Address

from herald.dataplane.model import IPAddress
from herald.l2.heartbeat import ClaimsChanged, Config, Heartbeat, PeerChanged
from herald.l2.ownership import Ownership
from herald.l2.policy import Announcement, Candidate

KEY = b"k" * 32
LINKS = {"eth0": ()}


def announcements(vips: Iterable[IPAddress], nodes: Iterable[str]) -> tuple[Announcement, ...]:
    candidates = tuple(Candidate(n, ("^eth0$",)) for n in nodes)
    return tuple(Announcement(vip, ("default/s",), candidates) for vip in vips)


@dataclass(frozen=True)
class Frame:
    """A gratuitous ARP / unsolicited NA on the segment."""

    at: float
    node: str
    vip: IPAddress


class Segment:
    def __init__(
        self,
        nodes: Iterable[str],
        announced: Iterable[Announcement],
        interval: float = 0.1,
        multiplier: int = 5,
        latency: float = 0.0005,
    ) -> None:
        self.nodes = tuple(nodes)
        self.announced = tuple(announced)
        self.interval, self.multiplier, self.latency = interval, multiplier, latency
        self.addresses = {n: (f"192.0.2.{21 + i}", 7946) for i, n in enumerate(self.nodes)}
        self.by_address = {a: n for n, a in self.addresses.items()}
        self.now = 0.0
        self.beats: dict[str, Heartbeat] = {}
        self.cores: dict[str, Ownership] = {}
        self.up: set[str] = set()
        # Heartbeat paths that lose every datagram: (sender, receiver).
        self.dropped: set[tuple[str, str]] = set()
        self.frames: list[Frame] = []
        # (when, node, what it answers for from then on)
        self.changes: list[tuple[float, str, frozenset[IPAddress]]] = []
        self.answering: dict[str, frozenset[IPAddress]] = {n: frozenset() for n in self.nodes}
        self.quiet: dict[str, bool] = {n: False for n in self.nodes}
        self._flight: list[tuple[float, int, str, bytes, tuple[str, int]]] = []
        self._order = itertools.count()
        self._incarnation = itertools.count(1)
        self._settles: dict[str, float] = {}

    # -- the cluster -------------------------------------------------------------------

    def start(self, node: str) -> None:
        config = Config(node, KEY, next(self._incarnation), self.interval, self.multiplier)
        beat = Heartbeat(config, started=self.now)
        beat.set_peers({n: a for n, a in self.addresses.items() if n != node})
        self.beats[node] = beat
        self.cores[node] = Ownership(node, self.interval, config.detection_time)
        # As the announcer does: decide once the start grace is over, event or not.
        self._settles[node] = self.now + config.detection_time
        self.answering[node] = frozenset()
        self.up.add(node)

    def crash(self, node: str) -> None:
        self.up.discard(node)
        self.answering[node] = frozenset()

    def cut(self, a: Iterable[str], b: Iterable[str]) -> None:
        """Drop every heartbeat between the groups, both ways."""
        for x, y in itertools.product(a, b):
            self.dropped |= {(x, y), (y, x)}

    def heal(self, sender: str, receiver: str) -> None:
        self.dropped.discard((sender, receiver))

    # -- running -----------------------------------------------------------------------

    def run_until(self, end: float) -> None:
        for _ in range(10_000_000):
            at = min(self._deadlines(), default=end + 1)
            if at > end:
                break
            self.now = max(self.now, at)
            self._step()
        else:
            raise AssertionError("the cluster does not settle: a deadline that never passes")
        self.now = max(self.now, end)

    def run_for(self, seconds: float) -> None:
        self.run_until(round(self.now + seconds, 9))

    def _deadlines(self) -> Iterable[float]:
        for node in self.up:
            yield self.beats[node].next_deadline()
            core = self.cores[node].next_deadline()
            if core is not None:
                yield core
            if node in self._settles:
                yield self._settles[node]
        if self._flight:
            yield self._flight[0][0]

    def _step(self) -> None:
        now = self.now
        woken: set[str] = set()
        while self._flight and self._flight[0][0] <= now:
            _, _, sender, data, address = heapq.heappop(self._flight)
            receiver = self.by_address[address]
            if receiver in self.up and (sender, receiver) not in self.dropped:
                events = self.beats[receiver].handle_datagram(data, self.addresses[sender], now)
                if any(isinstance(e, PeerChanged | ClaimsChanged) for e in events):
                    woken.add(receiver)
        for node in sorted(self.up):
            beat = self.beats[node]
            if beat.next_deadline() <= now:
                if beat.handle_timer(now):
                    woken.add(node)
                self._send(node)
        for node in sorted(self.up):
            core = self.cores[node].next_deadline()
            settles = self._settles.get(node)
            if settles is not None and settles <= now:
                del self._settles[node]
                woken.add(node)
            if node in woken or (core is not None and core <= now):
                self.decide(node)

    def decide(self, node: str) -> None:
        """One pass of the agent's update: what the shell does with a decision."""
        beat = self.beats[node]
        decision = self.cores[node].update(self.now, beat.view(self.now), self.announced, LINKS)
        if decision.mine != self.answering[node]:
            self.changes.append((self.now, node, decision.mine))
        self.answering[node] = decision.mine
        self.frames += [Frame(self.now, node, vip) for vip in sorted(decision.announce, key=str)]
        if decision.quiet != self.quiet[node]:
            self.quiet[node] = decision.quiet
            beat.set_quiet(decision.quiet, self.now)
        beat.set_owned(decision.mine, self.now)
        self._send(node)

    def _send(self, node: str) -> None:
        for data, address in self.beats[node].datagrams_to_send():
            arrival = round(self.now + self.latency, 9)
            heapq.heappush(self._flight, (arrival, next(self._order), node, data, address))

    # -- what the segment saw ----------------------------------------------------------

    def owner_of(self, vip: IPAddress) -> str | None:
        owners = [n for n in sorted(self.up) if vip in self.answering[n]]
        assert len(owners) <= 1, f"{vip} answered by {owners}"
        return owners[0] if owners else None

    def answers_per_vip(self) -> dict[IPAddress, list[str]]:
        found: dict[IPAddress, list[str]] = {}
        for node in sorted(self.up):
            for vip in self.answering[node]:
                found.setdefault(vip, []).append(node)
        return found

    def last_announcer(self, vip: IPAddress) -> str | None:
        """Whose MAC a client that heard every announcement holds for `vip`."""
        senders = [f.node for f in self.frames if f.vip == vip]
        return senders[-1] if senders else None

    def answered_since(self, node: str, start: float) -> frozenset[IPAddress]:
        """Every VIP `node` answered for at some moment from `start` on."""
        found = set(self.answering[node])
        for at, who, vips in self.changes:
            if who == node and at >= start:
                found |= vips
        return frozenset(found)

    def announced_vips(self) -> list[IPAddress]:
        return [a.vip for a in self.announced]

    def announced_since(self, start: float) -> list[Frame]:
        return [f for f in self.frames if f.at >= start]


def vips(count: int) -> tuple[IPv4Address, ...]:
    return tuple(IPv4Address(f"203.0.113.{i}") for i in range(1, count + 1))
