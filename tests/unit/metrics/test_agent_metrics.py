"""An agent's metric families from a constructed status: names, labels, values."""

from __future__ import annotations

import asyncio
import gc

import pytest
from prometheus_client.parser import text_string_to_metric_families

from herald.agent.status import (
    AgentStatus,
    BackendStatus,
    FrontendStatus,
    L2Owner,
    L2Status,
    SessionStatus,
)
from herald.metrics.agent import AgentMetrics

UP = SessionStatus(
    name="default/tor",
    local_as=64512,
    peer="192.0.2.1",
    peer_as=64512,
    state="Established",
    uptime_seconds=42.0,
    received=3,
    advertised=7,
    bfd="up",
    unsent=2,
    unsent_families=("ipv6-unicast",),
    updates_sent=9,
    updates_received=4,
)
DOWN = SessionStatus(
    name="default/tor2",
    local_as=64512,
    peer="192.0.2.2",
    peer_as=64513,
    state="Active",
    uptime_seconds=None,
    bfd="down",
)


def _frontend(frontend: str, backends: tuple[BackendStatus, ...]) -> FrontendStatus:
    return FrontendStatus(
        service="default/web",
        frontend=frontend,
        mode="snat",
        traffic_policy="Cluster",
        backends=backends,
        packets=120,
        bytes=9000,
    )


BACKENDS = (
    BackendStatus(address="198.18.1.2", port=8080, node="w1", pod="default/web-0"),
    BackendStatus(
        address="198.18.2.2", port=8080, node="w2", pod="default/web-1", state="terminating"
    ),
)
STATUS = AgentStatus(
    node="w1",
    applied_at=1700000000.0,
    services=("default/web", "default/other"),
    peers=(UP, DOWN),
    l2=L2Status(
        owners=(
            L2Owner(vip="192.0.2.200", owner="w1", answering=True, since=10.0),
            L2Owner(vip="192.0.2.201", owner="w2", answering=False, since=11.0),
        ),
        ownership_changes=5,
    ),
    problems=("plan: something",),
    # Two frontends of one Service (two ports): its counters and backends count once.
    frontends=(
        _frontend("203.0.113.0:80/TCP", BACKENDS),
        _frontend("203.0.113.0:443/TCP", BACKENDS),
    ),
)


def _scrape(
    status: AgentStatus,
    applies: tuple[tuple[float, bool], ...] = (),
    flows: dict[str, object] | None = None,
) -> dict[str, dict]:
    """name -> {frozenset(labels): value} of what the registry exposes, parsed back."""

    async def read() -> AgentStatus:
        return status

    async def header() -> dict[str, object]:
        assert flows is not None
        return flows

    metrics = AgentMetrics(status.node, read, header if flows is not None else None)
    for seconds, failed in applies:
        metrics.datapath_applied(seconds, failed)
    text = asyncio.run(metrics.exposition()).decode()
    found: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return found


def _labels(**labels: str) -> frozenset[tuple[str, str]]:
    return frozenset(labels.items())


SESSION_UP = _labels(node="w1", peer="192.0.2.1", peer_name="default/tor", vrouter="64512")
SESSION_DOWN = _labels(node="w1", peer="192.0.2.2", peer_name="default/tor2", vrouter="64512")


def test_bgp_sessions_state_uptime_and_prefixes() -> None:
    found = _scrape(STATUS)
    assert found["herald_bgp_session_up"] == {SESSION_UP: 1, SESSION_DOWN: 0}
    # Uptime only while established: a down session has none, not a stale one.
    assert found["herald_bgp_session_uptime_seconds"] == {SESSION_UP: 42.0}
    assert found["herald_bgp_announced_prefixes"] == {SESSION_UP: 7, SESSION_DOWN: 0}
    assert found["herald_bgp_received_prefixes"] == {SESSION_UP: 3, SESSION_DOWN: 0}
    assert found["herald_bgp_unsent_prefixes"][SESSION_UP] == 2


def test_bfd_state_per_peer() -> None:
    found = _scrape(STATUS)
    assert found["herald_bfd_session_up"] == {SESSION_UP: 1, SESSION_DOWN: 0}
    without = STATUS.model_copy(update={"peers": (UP.model_copy(update={"bfd": None}),)})
    assert "herald_bfd_session_up" not in _scrape(without)  # no BFD profile: no series


def test_services_backends_and_counters_once_per_service() -> None:
    found = _scrape(STATUS)
    node = _labels(node="w1")
    web = {"node": "w1", "service": "default/web"}
    assert found["herald_services_programmed"] == {node: 1}
    assert found["herald_services_planned"] == {node: 2}
    assert found["herald_service_packets_total"] == {_labels(**web): 120}
    assert found["herald_service_bytes_total"] == {_labels(**web): 9000}
    assert found["herald_service_backends"] == {
        _labels(**web, state="active"): 1,
        _labels(**web, state="terminating"): 1,
    }


def test_unreadable_counters_leave_no_counter_series() -> None:
    rows = tuple(r.model_copy(update={"packets": None, "bytes": None}) for r in STATUS.frontends)
    found = _scrape(STATUS.model_copy(update={"frontends": rows}))
    assert "herald_service_packets_total" not in found
    assert found["herald_services_programmed"] == {_labels(node="w1"): 1}


def test_l2_vips_owned_problems_and_last_apply() -> None:
    found = _scrape(STATUS)
    node = _labels(node="w1")
    assert found["herald_l2_vips_owned"] == {node: 1}
    assert found["herald_l2_ownership_changes_total"] == {node: 5}
    assert found["herald_agent_problems"] == {node: 1}
    assert found["herald_agent_last_apply_timestamp_seconds"] == {node: 1700000000.0}


def test_datapath_apply_histogram_and_failures() -> None:
    found = _scrape(STATUS, applies=((0.002, False), (0.3, True), (0.004, False)))
    node = _labels(node="w1")
    assert found["herald_datapath_apply_duration_seconds_count"] == {node: 3}
    assert abs(found["herald_datapath_apply_duration_seconds_sum"][node] - 0.306) < 1e-9
    buckets = found["herald_datapath_apply_duration_seconds_bucket"]
    assert buckets[_labels(node="w1", le="0.005")] == 2
    assert buckets[_labels(node="w1", le="0.5")] == 3
    assert found["herald_datapath_apply_failures_total"] == {node: 1}


def test_update_messages_sent_and_received_per_session() -> None:
    found = _scrape(STATUS)
    assert found["herald_bgp_updates_total"] == {SESSION_UP: 9, SESSION_DOWN: 0}
    assert found["herald_bgp_updates_received_total"] == {SESSION_UP: 4, SESSION_DOWN: 0}


def test_ownership_changes_come_from_the_status_and_vanish_without_an_announcer() -> None:
    found = _scrape(STATUS.model_copy(update={"l2": None}))
    assert "herald_l2_ownership_changes_total" not in found
    assert found["herald_l2_vips_owned"] == {_labels(node="w1"): 0}


HEADER = {
    "node": "w1",
    "error": None,
    "events": {"DROPPED": 3, "FORWARDED": 40},
    "lost": {"rate_limited": 7, "undelivered": 2, "overruns": 1, "undecodable": 0},
    "ring": {"capacity": 4096, "size": 43, "total": 43},
}


def test_flow_events_by_verdict_and_lost_events_by_cause() -> None:
    found = _scrape(STATUS, flows=HEADER)
    assert found["herald_flow_events_total"] == {
        _labels(node="w1", verdict="DROPPED"): 3,
        _labels(node="w1", verdict="FORWARDED"): 40,
    }
    # Overruns are ENOBUFS reports, not events: their events are among `undelivered`.
    assert found["herald_flow_events_lost_total"] == {
        _labels(node="w1", cause="rate_limited"): 7,
        _labels(node="w1", cause="undelivered"): 2,
        _labels(node="w1", cause="undecodable"): 0,
    }
    assert "herald_flow_events_total" not in _scrape(STATUS)  # no flow reader: no series


def test_an_agent_with_nothing_applied_yet_exposes_zeros() -> None:
    found = _scrape(AgentStatus(node="w9"))
    node = _labels(node="w9")
    assert found["herald_services_programmed"] == {node: 0}
    assert found["herald_l2_vips_owned"] == {node: 0}
    assert "herald_bgp_session_up" not in found
    assert "herald_agent_last_apply_timestamp_seconds" not in found


def test_no_garbage_collection_runs_during_a_scrape_and_it_is_back_after() -> None:
    seen: list[bool] = []

    async def read() -> AgentStatus:
        seen.append(gc.isenabled())
        return STATUS

    metrics = AgentMetrics("w1", read)
    assert gc.isenabled()
    asyncio.run(metrics.exposition())
    assert seen == [False] and gc.isenabled()

    async def failing() -> AgentStatus:
        raise OSError("status unreadable")

    with pytest.raises(OSError, match="status unreadable"):
        asyncio.run(AgentMetrics("w1", failing).exposition())
    assert gc.isenabled()  # a failed scrape does not leave collection off
