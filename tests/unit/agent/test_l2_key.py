"""An agent without an L2 heartbeat key: it runs (datapath, BGP) but refuses L2, says so in
its status, and opens no heartbeat socket nor ARP/NDP responder."""

from __future__ import annotations

import asyncio
import ipaddress
from typing import Any

import pytest

from herald.agent import l2
from herald.agent.l2 import NO_KEY, L2Announcements, L2Config
from herald.agent.plan import plan_node
from herald.agent.run import Agent, AgentConfig
from herald.dataplane.apply import Nft

from .test_run_l2 import NODE, VIP1, Recorder, snapshot


class NoAnnouncer:
    """Fails the test if anything tries to start heartbeats or a responder."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("an announcer was started without a key")


def no_links() -> dict[str, list[Any]]:
    raise AssertionError("links read without a key")


@pytest.fixture(autouse=True)
def no_announcer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(l2, "Announcer", NoAnnouncer)


def test_no_key_refuses_l2_work_and_says_what_to_do() -> None:
    plan = plan_node(snapshot(VIP1), NODE).l2
    assert plan is not None
    announcements = L2Announcements(NODE, L2Config(), links=no_links)
    served = {ipaddress.ip_address(VIP1)}
    assert asyncio.run(announcements.apply(plan, served)) == [NO_KEY]
    assert NO_KEY == (
        "L2: no heartbeat key: set HERALD_L2_KEY or --l2-key-file; not answering ARP/NDP"
    )
    assert not announcements.running and announcements.status() is None


def test_no_key_and_no_l2_work_is_no_problem() -> None:
    announcements = L2Announcements(NODE, L2Config(), links=no_links)
    assert asyncio.run(announcements.apply(None, set())) == []


def test_agent_without_key_commits_its_datapath_and_reports_l2() -> None:
    recorder = Recorder()
    runner = Agent(AgentConfig(NODE), source=None, nft=Nft(runner=recorder.nft))  # type: ignore[arg-type]
    asyncio.run(runner.apply_snapshot(snapshot(VIP1)))
    assert ("nft", {VIP1}) in recorder.events
    assert runner._applied.served == {ipaddress.ip_address(VIP1)}
    status = runner.status()
    assert NO_KEY in status.problems and status.l2 is None


def test_the_key_is_not_in_the_config_repr() -> None:
    key = b"0123456789abcdef-secret"
    assert "secret" not in repr(AgentConfig(NODE, l2=L2Config(key)))
