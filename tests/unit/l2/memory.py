"""Agents' heartbeats wired together in memory, with a fake clock, crashes and cuts."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from herald.l2.heartbeat import Config, Event, Heartbeat, PeerChanged, PeerState

KEY = b"k" * 32
ADDRESSES = {"n1": ("192.0.2.21", 7946), "n2": ("192.0.2.22", 7946), "n3": ("192.0.2.23", 7946)}


def agent(
    node: str,
    now: float = 0.0,
    incarnation: int = 1,
    nodes: tuple[str, ...] = tuple(ADDRESSES),
    **config: object,
) -> Heartbeat:
    beat = Heartbeat(Config(node, KEY, incarnation, **config), started=now)  # type: ignore[arg-type]
    beat.set_peers({name: ADDRESSES[name] for name in nodes})
    return beat


@dataclass
class Network:
    """Agents by address; `down` ones neither send nor receive, `cut` pairs do not reach
    each other. Time moves in 1 ms steps, each agent's timer fires at its own deadline, and
    `tick` (the agents' own work) runs for every agent that is up after each step."""

    agents: dict[str, Heartbeat]
    now: float = 0.0
    down: set[str] = field(default_factory=set)
    events: list[tuple[str, Event]] = field(default_factory=list)
    # (receiver, sender) -> when the receiver last got a datagram from the sender
    heard: dict[tuple[str, str], float] = field(default_factory=dict)
    cut: set[frozenset[str]] = field(default_factory=set)
    tick: Callable[[str, float], None] | None = None

    def run_until(self, end: float) -> None:
        while self.now < end:
            self.now = round(self.now + 0.001, 6)
            for name, beat in self.agents.items():
                if name not in self.down and beat.next_deadline() <= self.now:
                    self.events += [(name, e) for e in beat.handle_timer(self.now)]
                    self.deliver(name)
            for name in self.agents:
                if self.tick is not None and name not in self.down:
                    self.tick(name, self.now)
                    self.deliver(name)

    def deliver(self, sender: str) -> None:
        by_address = {ADDRESSES[n]: n for n in self.agents}
        for data, address in self.agents[sender].datagrams_to_send():
            receiver = by_address.get(address)
            if (
                receiver is not None
                and receiver not in self.down
                and frozenset((sender, receiver)) not in self.cut
            ):
                beat = self.agents[receiver]
                self.heard[(receiver, sender)] = self.now
                events = beat.handle_datagram(data, ADDRESSES[sender], self.now)
                self.events += [(receiver, e) for e in events]

    def changed_at(self, observer: str, node: str, state: PeerState) -> float:
        times = [
            e.at
            for who, e in self.events
            if who == observer
            and isinstance(e, PeerChanged)
            and e.node == node
            and e.after is state
        ]
        assert times, f"{observer} never saw {node} {state}"
        return times[-1]
