"""A heartbeat process that ends (killed, crashed) is not the end of the node's L2 work:
the agent says so, and starts a new announcer with back-off, with what it was last asked."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Iterable
from typing import Any, ClassVar

import pytest

from herald.agent import l2
from herald.agent.l2 import L2Announcements, L2Config
from herald.agent.plan import plan_node
from herald.l2.policy import Announcement

from .test_run_l2 import NODE, VIP1, snapshot

KEY = b"0123456789abcdef0123"


class FakeAnnouncer:
    """Records what it is given; `opened` lists every instance the agent opened."""

    opened: ClassVar[list[FakeAnnouncer]] = []

    def __init__(self, node: str, links: Any) -> None:
        self.on_failed: Any = None
        self.announced: tuple[Announcement, ...] = ()
        self.closed = False
        self.links = links
        self.ownership_changes = 0
        self.view: dict[Any, Any] = {}

    def owned(self) -> dict[str, frozenset[Any]]:
        return {}

    def live(self) -> frozenset[str]:
        return frozenset()

    async def open(self, config: Any, peers: Any, bind: Any) -> None:
        FakeAnnouncer.opened.append(self)

    def set_peers(self, peers: Any) -> None:
        pass

    def set_announced(self, announced: Iterable[Announcement]) -> None:
        self.announced = tuple(announced)

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def fake_announcer(monkeypatch: pytest.MonkeyPatch) -> None:
    FakeAnnouncer.opened = []
    monkeypatch.setattr(l2, "Announcer", FakeAnnouncer)
    monkeypatch.setattr(l2, "RESTART_FIRST", 0.05)


def test_an_ended_heartbeat_process_is_said_and_started_again_with_back_off() -> None:
    plan = plan_node(snapshot(VIP1), NODE).l2
    served = {ipaddress.ip_address(VIP1)}
    announcements = L2Announcements(NODE, L2Config(KEY), links=dict)

    async def scenario() -> None:
        assert await announcements.apply(plan, served) == []
        first = FakeAnnouncer.opened[-1]
        first.on_failed(EOFError("heartbeat process gone"))
        (problem,) = announcements.problems()
        assert "heartbeat process ended" in problem and "starting again in" in problem
        assert not announcements.running
        # The agent's calls meanwhile are remembered, not applied on a stopped announcer.
        assert await announcements.apply(plan, served) == []
        await asyncio.sleep(0.2)
        second = FakeAnnouncer.opened[-1]
        assert second is not first and announcements.running
        assert announcements.problems() == []
        assert [a.vip for a in second.announced] == [ipaddress.ip_address(VIP1)]
        # Failing again soon after: the next start waits twice as long.
        second.on_failed(EOFError("again"))
        assert "starting again in 0.1 s (failure 2)" in announcements.problems()[0]
        await asyncio.sleep(0.05)
        assert FakeAnnouncer.opened[-1] is second
        await asyncio.sleep(0.2)
        assert FakeAnnouncer.opened[-1] is not second
        announcements.close()

    asyncio.run(scenario())


def test_ownership_changes_count_on_across_a_restart_of_the_announcer() -> None:
    plan = plan_node(snapshot(VIP1), NODE).l2
    served = {ipaddress.ip_address(VIP1)}
    announcements = L2Announcements(NODE, L2Config(KEY), links=dict)

    async def scenario() -> None:
        await announcements.apply(plan, served)
        first = FakeAnnouncer.opened[-1]
        first.ownership_changes = 3
        status = announcements.status()
        assert status is not None and status.ownership_changes == 3
        first.on_failed(EOFError("heartbeat process gone"))
        await asyncio.sleep(0.2)
        second = FakeAnnouncer.opened[-1]
        assert second is not first
        second.ownership_changes = 2
        status = announcements.status()
        assert status is not None and status.ownership_changes == 5
        announcements.close()

    asyncio.run(scenario())
