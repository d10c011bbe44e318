"""The agent keeps its flow reader's directory to its plan and reads the lost counter
through its own nftables handle."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Sequence

from herald.agent.run import Agent, AgentConfig
from herald.dataplane.apply import Nft
from herald.observe import rules
from herald.observe.reader import FlowReader

from .test_isolation import NODE, FakeNft, two_services


class CountingNft(FakeNft):
    """FakeNft whose `observe-lost` counter says 42."""

    def __call__(self, argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        if rules.LOST_COUNTER in argv:
            listed = {"nftables": [{"counter": {"name": rules.LOST_COUNTER, "packets": 42}}]}
            return subprocess.CompletedProcess(argv, 0, json.dumps(listed), "")
        return super().__call__(argv, stdin)


def test_the_directory_follows_the_plan_and_lost_events_are_read() -> None:
    nft = CountingNft()
    flows = FlowReader(NODE)
    runner = Agent(AgentConfig(NODE), source=None, nft=Nft(runner=nft), flows=flows)  # type: ignore[arg-type]
    asyncio.run(runner.apply_snapshot(two_services()))
    services = {info.key for info in flows.directory.services.values()}
    assert services == {"default/web1-lb", "default/web2"}
    assert flows.directory.backends["198.18.1.10"].node == NODE
    assert any("observe-prerouting" in script for script in nft.scripts)
    assert asyncio.run(flows.header())["lost"] == {
        "rate_limited": 42, "undelivered": 0, "overruns": 0, "undecodable": 0,
    }  # fmt: skip


class LimitNft(FakeNft):
    """FakeNft whose table has the default flow rate; refuses the rate change if told."""

    def __init__(self, refuse: bool = False) -> None:
        super().__init__()
        self.refuse = refuse
        self.limit_reads = 0

    def __call__(self, argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        listed: list[dict[str, object]] = []
        if rules.LIMIT in argv:
            self.limit_reads += 1
            limit = {"name": rules.LIMIT, "rate": 1000, "per": "second", "burst": 200, "inv": True}
            listed = [{"limit": limit}]
        elif rules.chain_of(rules.FORWARDED) in argv:
            listed = [{"chain": {}}, {"rule": {}}, {"rule": {}}]
        if listed:
            return subprocess.CompletedProcess(argv, 0, json.dumps({"nftables": listed}), "")
        if self.refuse and "delete limit" in stdin:
            return subprocess.CompletedProcess(argv, 1, "", "Error: refused")
        return super().__call__(argv, stdin)


def test_the_agent_sets_its_flow_rate_after_the_commit_and_says_when_it_cannot() -> None:
    rate = rules.FlowRate(20, 5)
    nft = LimitNft()
    flows = FlowReader(NODE, rate=rate)
    runner = Agent(AgentConfig(NODE), source=None, nft=Nft(runner=nft), flows=flows)  # type: ignore[arg-type]
    asyncio.run(runner.apply_snapshot(two_services()))
    assert nft.scripts[-1] == rules.rate_script(rate)  # after the datapath's transactions
    assert not runner.status().problems
    # A change that does not replace the tables leaves the kernel's rate alone, unread.
    reads, scripts = nft.limit_reads, len(nft.scripts)
    asyncio.run(runner.apply_snapshot(two_services(web2_backends=2)))
    assert len(nft.scripts) > scripts, "the change was committed"
    assert nft.limit_reads == reads and rules.rate_script(rate) not in nft.scripts[scripts:]

    refusing = LimitNft(refuse=True)
    flows = FlowReader(NODE, rate=rate)
    runner = Agent(AgentConfig(NODE), source=None, nft=Nft(runner=refusing), flows=flows)  # type: ignore[arg-type]
    asyncio.run(runner.apply_snapshot(two_services()))
    # The datapath is committed all the same; the rate is a problem of its own.
    assert sorted(runner._datapath.committed) == ["default/web1-lb", "default/web2"]  # type: ignore[union-attr]
    (problem,) = runner.status().problems
    assert problem.startswith("flow events: setting the flow-event rate") and "refused" in problem
