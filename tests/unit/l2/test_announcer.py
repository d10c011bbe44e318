"""The announcer shell carries out the ownership core's decisions in order: a VIP given up
is no longer answered before anything is said or claimed, an announcement goes out only for
a VIP answered, claims follow, and a flapping node stops answering before it goes quiet.
Liveness and responders are recorded stand-ins; the clock is the event loop's."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from ipaddress import IPv4Address, ip_network
from typing import Any

import pytest

from herald.dataplane.model import IPAddress
from herald.l2 import announcer as announcer_module
from herald.l2.announcer import Announcer, changed_owners
from herald.l2.heartbeat import ClaimsChanged, Config, PeerChanged, PeerState, View
from herald.l2.owners import Owner, weight
from herald.l2.ownership import Damping
from herald.l2.policy import Announcement, Candidate

NODES = ("n1", "n2", "n3")
VIPS = tuple(IPv4Address(f"203.0.113.{i}") for i in range(1, 61))
LINKS = {"eth0": [ip_network("203.0.113.0/24")]}
Log = list[tuple[Any, ...]]


class Liveness:
    def __init__(self, log: Log, on_event: Any) -> None:
        self.log, self.on_event = log, on_event
        self.started = asyncio.get_running_loop().time() - 1.0
        self.current = View(frozenset(NODES), frozenset(NODES[1:]), 2, {}, True)
        self.claimed: list[frozenset[IPAddress]] = []

    def view(self) -> View:
        return self.current

    def set_owned(self, vips: Iterable[IPAddress]) -> None:
        if not self.claimed or frozenset(vips) != self.claimed[-1]:
            self.log.append(("claim", frozenset(vips)))
            self.claimed.append(frozenset(vips))

    def set_quiet(self, quiet: bool) -> None:
        self.log.append(("quiet", quiet))

    def set_peers(self, peers: Mapping[str, Any]) -> None:
        pass

    def close(self, leave: bool = True) -> None:
        self.log.append(("close", leave))


class Responder:
    def __init__(self, log: Log, interface: str) -> None:
        self.log, self.interface = log, interface
        self.owned: frozenset[IPAddress] = frozenset()

    def open(self) -> None:
        pass

    def set_owned(self, vips: Iterable[IPAddress], announce: bool = True) -> None:
        assert not announce, "the announcer keeps the schedule"
        owned = frozenset(vips)
        if owned != self.owned:
            self.log.append(("answer", self.interface, owned))
        self.owned = owned

    def send_announcements(self, vips: Iterable[IPAddress]) -> None:
        sent = frozenset(vips) & self.owned
        if sent:
            self.log.append(("announce", self.interface, sent))

    def close(self) -> None:
        self.set_owned((), announce=False)


async def opened(
    monkeypatch: pytest.MonkeyPatch, log: Log, view: View | None = None, **kwargs: Any
) -> tuple[Announcer, Liveness]:
    made: list[Liveness] = []

    class Opener:
        @staticmethod
        async def open(
            config: Config, peers: Any, bind: Any, on_event: Any, on_failure: Any
        ) -> Liveness:
            made.append(Liveness(log, on_event))
            if view is not None:
                made[0].current = view
            return made[0]

    monkeypatch.setattr(announcer_module, "Liveness", Opener)
    monkeypatch.setattr(announcer_module, "Responder", lambda name, at: Responder(log, name))
    announcer = Announcer("n1", LINKS, **kwargs)
    await announcer.open(Config("n1", b"k" * 32, 1), {}, ("192.0.2.21", 7946))
    announcer.set_announced(
        Announcement(vip, ("default/s",), tuple(map(Candidate, NODES))) for vip in VIPS
    )
    return announcer, made[0]


def mine(log: Log) -> frozenset[IPAddress]:
    return next(entry[2] for entry in reversed(log) if entry[0] == "answer")


def test_takeovers_are_answered_then_announced_then_claimed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run() -> None:
        log: Log = []
        announcer, _ = await opened(monkeypatch, log, announce_at=(0.0, 0.05))
        owned = mine(log)
        assert owned and [e[0] for e in log] == ["answer", "announce", "claim"]
        assert log[1] == ("announce", "eth0", owned) and log[2] == ("claim", owned)
        await asyncio.sleep(0.1)
        assert log[3] == ("announce", "eth0", owned), "the repeat, on the core's deadline"
        announcer.close()

    asyncio.run(run())


def test_a_vip_lost_to_a_heavier_claim_is_released_before_the_claim_changes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run() -> None:
        log: Log = []
        # n2 is down: n1 takes VIPs n2 is heavier for.
        without_n2 = View(frozenset({"n1", "n3"}), frozenset({"n3"}), 2, {}, True)
        announcer, liveness = await opened(monkeypatch, log, without_n2)
        owned = mine(log)
        lost = next(v for v in owned if weight("n2", v) > weight("n1", v))
        liveness.current = View(
            frozenset(NODES), frozenset(NODES[1:]), 2, {"n2": frozenset({lost})}, True
        )
        del log[:]
        liveness.on_event(ClaimsChanged("n2", frozenset({lost})))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert log[0] == ("answer", "eth0", owned - {lost})
        assert log[-1] == ("claim", owned - {lost})
        assert not [e for e in log if e[0] == "announce" and lost in e[2]]
        announcer.close()

    asyncio.run(run())


def test_a_flapping_node_stops_answering_before_it_goes_quiet(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def run() -> None:
        log: Log = []
        announcer, liveness = await opened(monkeypatch, log, damping=Damping(limit=1))
        assert mine(log)
        liveness.current = View(frozenset(NODES), frozenset(), 2, {}, True)
        liveness.on_event(PeerChanged("n2", PeerState.ALIVE, PeerState.SUSPECT, 0.0))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        del log[:]
        liveness.current = View(frozenset(NODES), frozenset(NODES[1:]), 2, {}, True)
        liveness.on_event(PeerChanged("n2", PeerState.SUSPECT, PeerState.ALIVE, 0.0))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert log == [("answer", "eth0", frozenset()), ("quiet", True), ("claim", frozenset())]
        announcer.close()

    asyncio.run(run())


def test_changed_owners_counts_vips_that_went_to_another_node() -> None:
    a, b = VIPS[0], VIPS[1]
    before = {a: Owner("n1", since=1.0), b: Owner("n2")}
    assert changed_owners({}, before) == 0  # first sight: no change
    assert changed_owners(before, {a: Owner("n1", since=5.0), b: Owner("n2")}) == 0
    assert changed_owners(before, {a: Owner("n3"), b: Owner("n1"), VIPS[2]: Owner("n1")}) == 2


def test_ownership_changes_are_counted_as_decided(monkeypatch: pytest.MonkeyPatch) -> None:
    async def run() -> None:
        log: Log = []
        announcer, liveness = await opened(monkeypatch, log)
        assert announcer.ownership_changes == 0  # first sight of every VIP: no change
        before = dict(announcer.view)
        assert "n2" in {o.node for o in before.values()}
        # n2 dies: each VIP it owned changes hands once.
        liveness.current = View(frozenset({"n1", "n3"}), frozenset({"n3"}), 2, {}, True)
        liveness.on_event(PeerChanged("n2", PeerState.ALIVE, PeerState.DEAD, 0.0))
        for _ in range(3):
            await asyncio.sleep(0)
        after = announcer.view
        assert all(o.node != "n2" for o in after.values())
        # n2's VIPs, and any the load cap rebalanced between n1 and n3 at the same time.
        moved = sum(1 for vip, o in after.items() if before[vip].node != o.node)
        assert moved >= sum(1 for o in before.values() if o.node == "n2") > 0
        assert announcer.ownership_changes == moved
        announcer.close()

    asyncio.run(run())
