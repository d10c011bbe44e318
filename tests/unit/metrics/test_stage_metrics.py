"""herald_agent_stage_seconds: one histogram series per stage of the agent's path."""

from __future__ import annotations

import asyncio

from prometheus_client.exposition import generate_latest

from herald.agent.status import AgentStatus
from herald.metrics.agent import AgentMetrics


async def _status() -> AgentStatus:
    return AgentStatus(node="n1")


def test_each_stage_is_a_series_of_its_own() -> None:
    metrics = AgentMetrics("n1", _status)
    metrics.stages_observed([("source", 0.003), ("datapath", 0.040)])
    metrics.stages_observed([("source", 0.002)])
    text = generate_latest(metrics.registry).decode()
    assert 'herald_agent_stage_seconds_count{node="n1",stage="source"} 2.0' in text
    assert 'herald_agent_stage_seconds_count{node="n1",stage="datapath"} 1.0' in text
    assert 'herald_agent_stage_seconds_bucket{le="0.05",node="n1",stage="datapath"} 1.0' in text
    assert asyncio.run(metrics.exposition())  # the status collector still renders beside it
