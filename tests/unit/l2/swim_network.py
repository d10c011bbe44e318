"""SWIM members (`l2.swim.Swim`) wired together in memory, with a fake clock.

A discrete-event run: each member's timer fires at its own `next_deadline()`, each datagram
arrives after a latency with seeded jitter, and is lost per the sender's and receiver's loss
rates; members can be killed, restarted (a new incarnation), partitioned into groups and
healed. Seconds of cluster life for 1,000 members run in seconds, so `bench/scale/
liveness.py` uses it too.
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from herald.dataplane.model import IPAddress
from herald.l2.heartbeat import Event, PeerChanged, PeerState
from herald.l2.swim import Config, Kind, Message, Status, Swim, Update, encode

KEY = b"k" * 32


def name(index: int) -> str:
    return f"node-{index:04}"


def address(index: int) -> tuple[str, int]:
    return (f"10.{index // 62500}.{index // 250 % 250}.{index % 250 + 1}", 7946)


@dataclass
class Traffic:
    datagrams: int = 0
    bytes: int = 0


@dataclass
class SwimNetwork:
    size: int
    seed: int = 0
    latency: float = 0.0003
    jitter: float = 0.0004
    settings: dict[str, float | int] = field(default_factory=dict)
    # Loss rate of every datagram a member sends or receives.
    loss: dict[str, float] = field(default_factory=dict)
    # Extra delay of every datagram a member sends or receives (a slow node).
    delay: dict[str, float] = field(default_factory=dict)
    # Set: datagrams cross only within a group (members in no group reach nobody).
    groups: list[frozenset[str]] | None = None
    record_events: bool = True

    def __post_init__(self) -> None:
        self.random = random.Random(self.seed)
        self.names = [name(i) for i in range(self.size)]
        self.addresses = {n: address(i) for i, n in enumerate(self.names)}
        self.by_address = {a: n for n, a in self.addresses.items()}
        self.now = 0.0
        self.members: dict[str, Swim] = {}
        self.down: set[str] = set()
        self.events: list[tuple[str, Event]] = []
        self.sent: Counter[str] = Counter()
        self.sent_bytes: Counter[str] = Counter()
        self.received: Counter[str] = Counter()
        self._queue: list[tuple[float, int, str, bytes | None, tuple[str, int] | None]] = []
        self._order = itertools.count()
        self._timers: dict[str, float] = {}
        self._boots = itertools.count(1_000)
        for node in self.names:
            self.start(node)

    # -- the cluster ---------------------------------------------------------------------

    def start(self, node: str) -> Swim:
        """Starts (or restarts, with a higher incarnation) `node` now."""
        config = Config(node, KEY, next(self._boots), **self.settings)  # type: ignore[arg-type]
        member = Swim(config, started=self.now)
        member.set_peers(self.addresses)
        self.members[node] = member
        self.down.discard(node)
        self._timers.pop(node, None)
        self._reschedule(node)
        return member

    def warm(self) -> None:
        """Every member as if it had started long ago: each gets the others' records in
        SYNC datagrams (as a starting member does), settles, and the start-up news drains."""
        for j, node in enumerate(self.names):
            records = [
                Update(
                    Status.ALIVE,
                    n,
                    self.members[n].config.incarnation,
                    self.members[n].incarnation,
                    vips=tuple(sorted(self.members[n].owned, key=lambda a: (a.version, a.packed))),
                )
                for n in self.names
                if n != node
            ]
            for i in range(0, len(records), 200):
                sender = self.names[(j + 1 + i // 200) % self.size]
                boot = self.members[sender].config.incarnation
                data = encode(
                    Message(Kind.SYNC, sender, boot, 0, 0, updates=tuple(records[i : i + 200])), KEY
                )
                self.members[node].handle_datagram(data, self.addresses[sender], self.now)
        self.run_until(self.now + Config("x", KEY, 1, **self.settings).detection_time + 0.5)  # type: ignore[arg-type]

    def kill(self, node: str) -> None:
        self.down.add(node)

    def partition(self, *groups: Iterable[str]) -> None:
        self.groups = [frozenset(g) for g in groups]

    def heal(self) -> None:
        self.groups = None

    def set_owned(self, node: str, vips: Iterable[IPAddress]) -> None:
        self.members[node].set_owned(vips, self.now)
        self._flush(node)

    def leave(self, node: str) -> None:
        self.members[node].leave(self.now)
        self._flush(node)
        self.down.add(node)

    def live(self) -> list[str]:
        return [n for n in self.names if n not in self.down]

    # -- time ----------------------------------------------------------------------------

    def run_until(self, end: float) -> None:
        while self._queue and self._queue[0][0] <= end:
            at, _, node, data, source = heapq.heappop(self._queue)
            self.now = max(self.now, at)
            if node in self.down:
                continue
            member = self.members[node]
            if data is None:
                if self._timers.get(node) != at:
                    continue  # superseded
                del self._timers[node]
                self._record(node, member.handle_timer(self.now))
            else:
                assert source is not None
                self.received[node] += 1
                self._record(node, member.handle_datagram(data, source, self.now))
            self._flush(node)
        self.now = max(self.now, end)

    def _flush(self, node: str) -> None:
        member = self.members[node]
        for data, target in member.datagrams_to_send():
            self.sent[node] += 1
            self.sent_bytes[node] += len(data)
            receiver = self.by_address.get(target)
            if receiver is None or not self._crosses(node, receiver):
                continue
            delay = (
                self.latency
                + self.random.random() * self.jitter
                + self.delay.get(node, 0.0)
                + self.delay.get(receiver, 0.0)
            )
            heapq.heappush(
                self._queue,
                (self.now + delay, next(self._order), receiver, data, self.addresses[node]),
            )
        self._reschedule(node)

    def _crosses(self, sender: str, receiver: str) -> bool:
        if sender in self.down:
            return False
        if self.groups is not None and not any(sender in g and receiver in g for g in self.groups):
            return False
        lost = 1 - (1 - self.loss.get(sender, 0.0)) * (1 - self.loss.get(receiver, 0.0))
        return self.random.random() >= lost

    def _reschedule(self, node: str) -> None:
        deadline = max(self.members[node].next_deadline(), self.now)
        current = self._timers.get(node)
        if current is None or deadline < current:
            self._timers[node] = deadline
            heapq.heappush(self._queue, (deadline, next(self._order), node, None, None))

    def _record(self, node: str, events: list[Event]) -> None:
        if self.record_events:
            self.events += [(node, e) for e in events if isinstance(e, PeerChanged)]

    # -- what happened -------------------------------------------------------------------

    def declared(self, node: str, state: PeerState, since: float = 0.0) -> dict[str, float]:
        """When each observer first declared `node` in `state` at or after `since`."""
        first: dict[str, float] = {}
        for observer, event in self.events:
            if (
                isinstance(event, PeerChanged)
                and event.node == node
                and event.after is state
                and event.at >= since
            ):
                first.setdefault(observer, event.at)
        return first

    def false_deaths(self, since: float, alive: Iterable[str]) -> list[tuple[str, str, float]]:
        """(observer, node, when) for every DEAD declared after `since` about a member in
        `alive`."""
        alive = set(alive)
        return [
            (observer, e.node, e.at)
            for observer, e in self.events
            if isinstance(e, PeerChanged)
            and e.after is PeerState.DEAD
            and e.at >= since
            and e.node in alive
        ]

    def converged(self) -> bool:
        """Every running member sees exactly the running members as live."""
        running = frozenset(self.live())
        return all(self.members[n].live() == running for n in running)
