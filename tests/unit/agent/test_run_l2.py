"""The agent's order for L2: a VIP is answered for only once its datapath rules are committed,
and released before the rules that serve it are removed (or when their commit fails)."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import subprocess
from collections.abc import Collection, Sequence
from typing import Any

from herald.agent.plan import L2Plan
from herald.agent.run import Agent, AgentConfig
from herald.api.snapshot import ClusterState
from herald.dataplane.apply import Nft
from herald.dataplane.model import IPAddress

from .test_plan import state
from .test_plan_l2 import l2_files

NODE = "k8s-worker2"
VIP1, VIP2 = "192.0.2.200", "192.0.2.201"


class Recorder:
    """Stands for both nft and the L2 announcer, in one event list."""

    def __init__(self, refuse: str | None = None) -> None:
        self.events: list[tuple[str, Any]] = []
        self.refuse = refuse
        self.running = False

    def nft(self, argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        if "list" in argv:
            return subprocess.CompletedProcess(argv, 0, json.dumps({"nftables": []}), "")
        failed = self.refuse is not None and self.refuse in stdin
        if not failed:
            self.events.append(("nft", {v for v in (VIP1, VIP2) if v in stdin}))
        return subprocess.CompletedProcess(argv, int(failed), "", "Error: refused" * failed)

    async def apply(self, plan: L2Plan | None, served: Collection[IPAddress]) -> list[str]:
        self.events.append(("l2", {str(v) for v in served}))
        self.running = plan is not None
        return []

    def close(self) -> None:
        pass

    def problems(self) -> list[str]:
        return []

    def status(self) -> None:
        return None


def agent(recorder: Recorder) -> Agent:
    runner = Agent(AgentConfig(NODE), source=None, nft=Nft(runner=recorder.nft))  # type: ignore[arg-type]
    runner._l2 = recorder  # type: ignore[assignment]
    return runner


def snapshot(vip: str, ready: bool = True) -> ClusterState:
    files = l2_files()
    if not ready:
        files["eps.yaml"] = files["eps.yaml"].replace("ready: true", "ready: false")
    return state(files, {"default/web1-l2": vip})


def test_answers_only_after_the_rules_are_committed() -> None:
    """A starting agent does not even start its announcer (whose heartbeats make it a
    candidate for peers) before its first commit."""
    recorder = Recorder()
    asyncio.run(agent(recorder).apply_snapshot(snapshot(VIP1)))
    kinds = [kind for kind, _ in recorder.events]
    assert kinds[0] == "nft" and kinds.count("l2") == 1
    assert any(k == "nft" and VIP1 in v for k, v in recorder.events)
    assert recorder.events[-1] == ("l2", {VIP1})


def test_releases_a_vip_before_its_rules_go() -> None:
    recorder = Recorder()
    runner = agent(recorder)
    asyncio.run(runner.apply_snapshot(snapshot(VIP1)))
    recorder.events.clear()
    asyncio.run(runner.apply_snapshot(snapshot(VIP2)))
    # First the announcer loses VIP1 (old and new rules do not both serve it), then nft.
    assert recorder.events[0] == ("l2", set())
    assert any(kind == "nft" for kind, _ in recorder.events[1:-1])
    assert recorder.events[-1] == ("l2", {VIP2})


def test_failed_commit_keeps_announcing_only_what_the_old_rules_serve() -> None:
    recorder = Recorder()
    runner = agent(recorder)
    asyncio.run(runner.apply_snapshot(snapshot(VIP1)))
    recorder.events.clear()
    recorder.refuse = VIP2
    asyncio.run(runner.apply_snapshot(snapshot(VIP2)))
    assert recorder.events[-1] == ("l2", {VIP1})
    assert ipaddress.ip_address(VIP2) not in runner._applied.served


def test_rules_that_reject_do_not_count_as_serving() -> None:
    """The Service's rules were committed while it had no ready endpoint (they reject): when
    its first endpoint turns ready, the VIP is answered for only once the rules that forward
    to it are in, not on the strength of the rules that reject."""
    recorder = Recorder()
    runner = agent(recorder)
    asyncio.run(runner.apply_snapshot(snapshot(VIP1, ready=False)))
    assert recorder.events[-1] == ("l2", set()) and recorder.running
    recorder.events.clear()
    asyncio.run(runner.apply_snapshot(snapshot(VIP1)))
    assert recorder.events[0] == ("l2", set())
    assert any(kind == "nft" for kind, _ in recorder.events[1:-1])
    assert recorder.events[-1] == ("l2", {VIP1})
