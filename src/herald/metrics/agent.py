"""An agent's metrics: its status, read when a scrape comes, and the events it counts.

Almost everything is already in `AgentStatus` (sessions, BFD, L2 owners, the frontends
the kernel holds with their nft counters), so `status_families` turns one status into
metric families (pure) and nothing is counted twice. Only what a reading cannot recover is
counted as it happens: each datapath apply (duration and failure). Counters of events
(UPDATE messages, L2 ownership changes, flow events) are counted where the event happens
and read like the rest: `flow_families` turns the flow reader's header into families.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from herald.agent.status import AgentStatus, L2Status, SessionStatus

# A datapath apply takes ~1 ms for one Service and seconds for a resync of thousands.
APPLY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
# Stages of the path from a change to the UPDATE (agent/stages.py): most take a few ms.
STAGE_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30)

_SESSION = ("node", "peer", "peer_name", "vrouter")


def status_families(status: AgentStatus) -> list[Metric]:
    """The metric families of one agent's status (pure)."""
    node = status.node
    up = GaugeMetricFamily(
        "herald_bgp_session_up", "BGP session Established (1) or not (0)", labels=_SESSION
    )
    uptime = GaugeMetricFamily(
        "herald_bgp_session_uptime_seconds",
        "Seconds since the BGP session was Established (absent while it is not)",
        labels=_SESSION,
    )
    announced = GaugeMetricFamily(
        "herald_bgp_announced_prefixes",
        "Prefixes currently advertised to the peer",
        labels=_SESSION,
    )
    received = GaugeMetricFamily(
        "herald_bgp_received_prefixes", "Prefixes currently received from the peer", labels=_SESSION
    )
    unsent = GaugeMetricFamily(
        "herald_bgp_unsent_prefixes",
        "Prefixes the plan announces that the session cannot carry: family not negotiated",
        labels=_SESSION,
    )
    updates_sent = CounterMetricFamily(
        "herald_bgp_updates",
        "BGP UPDATE messages sent to the peer (every connection of the session)",
        labels=_SESSION,
    )
    updates_received = CounterMetricFamily(
        "herald_bgp_updates_received",
        "BGP UPDATE messages received from the peer (every connection of the session)",
        labels=_SESSION,
    )
    bfd = GaugeMetricFamily(
        "herald_bfd_session_up",
        "BFD session of a BGP peer Up (1) or not (0); only peers with a BFD profile",
        labels=_SESSION,
    )
    for session in status.peers:
        labels = _session_labels(node, session)
        up.add_metric(labels, 1 if session.established else 0)
        if session.established and session.uptime_seconds is not None:
            uptime.add_metric(labels, session.uptime_seconds)
        announced.add_metric(labels, session.advertised)
        received.add_metric(labels, session.received)
        unsent.add_metric(labels, session.unsent)
        updates_sent.add_metric(labels, session.updates_sent)
        updates_received.add_metric(labels, session.updates_received)
        if session.bfd is not None:
            bfd.add_metric(labels, 1 if session.bfd == "up" else 0)
    return [
        up,
        uptime,
        announced,
        received,
        unsent,
        updates_sent,
        updates_received,
        bfd,
        *_l2_families(node, status.l2),
        *_service_families(status),
        _node_gauge(
            "herald_agent_problems",
            "Problems the agent shows in `herald status` (0 when all is applied)",
            node,
            len(status.problems),
        ),
        *_applied_at(status),
    ]


def _session_labels(node: str, session: SessionStatus) -> list[str]:
    return [node, session.peer, session.name, str(session.local_as)]


def _l2_families(node: str, l2: L2Status | None) -> list[Metric]:
    owned = _node_gauge(
        "herald_l2_vips_owned",
        "L2 VIPs this node answers ARP/NDP for",
        node,
        sum(1 for o in l2.owners if o.answering) if l2 else 0,
    )
    if l2 is None:  # no announcer runs: no count to show
        return [owned]
    changed = CounterMetricFamily(
        "herald_l2_ownership_changes",
        "Times an L2 VIP's owner became another node, as this node decided",
        labels=("node",),
    )
    changed.add_metric([node], l2.ownership_changes)
    return [owned, changed]


def _service_families(status: AgentStatus) -> list[Metric]:
    node = status.node
    backends = GaugeMetricFamily(
        "herald_service_backends",
        "Backends of a Service in the kernel's rules, by state (active, terminating, not-ready)",
        labels=("node", "service", "state"),
    )
    packets = CounterMetricFamily(
        "herald_service_packets",
        "Packets to a Service's frontends (nft counters, since its rules were created)",
        labels=("node", "service"),
    )
    octets = CounterMetricFamily(
        "herald_service_bytes",
        "Bytes to a Service's frontends (nft counters, since its rules were created)",
        labels=("node", "service"),
    )
    services: dict[str, tuple[int | None, int | None]] = {}
    states: dict[str, Tally[str]] = {}
    seen: set[tuple[str, str, int, str]] = set()
    for row in status.frontends:
        # The counters are the Service's (every frontend together): taken once.
        services.setdefault(row.service, (row.packets, row.bytes))
        tally = states.setdefault(row.service, Tally())
        for b in row.backends:
            key = (row.service, b.address, b.port, b.state)
            if key not in seen:
                seen.add(key)
                tally[b.state] += 1
    for service, (counted_packets, counted_bytes) in sorted(services.items()):
        for state, count in sorted(states[service].items()):
            backends.add_metric([node, service, state], count)
        if counted_packets is not None:
            packets.add_metric([node, service], counted_packets)
            octets.add_metric([node, service], counted_bytes or 0)
    programmed = _node_gauge(
        "herald_services_programmed",
        "Services whose rules the kernel holds on this node",
        node,
        len(services),
    )
    planned = _node_gauge(
        "herald_services_planned", "Services the node's plan forwards", node, len(status.services)
    )
    return [programmed, planned, backends, packets, octets]


def _applied_at(status: AgentStatus) -> Iterable[Metric]:
    if status.applied_at is not None:
        yield _node_gauge(
            "herald_agent_last_apply_timestamp_seconds",
            "When the agent last applied a plan (Unix time)",
            status.node,
            status.applied_at,
        )


def _node_gauge(name: str, documentation: str, node: str, value: float) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=("node",))
    family.add_metric([node], value)
    return family


# Causes of lost flow events a metric shows: events, not `overruns` (ENOBUFS reports).
LOST_CAUSES = ("rate_limited", "undelivered", "undecodable")


def flow_families(node: str, header: Mapping[str, Any]) -> list[Metric]:
    """The families of a flow reader's header (`FlowReader.header`, pure): events taken,
    by verdict, and events lost, by cause (as Hubble's `hubble_flows_processed_total` and
    `hubble_lost_events_total`)."""
    events = CounterMetricFamily(
        "herald_flow_events",
        "Flow events read from the datapath, by verdict (FORWARDED, DROPPED)",
        labels=("node", "verdict"),
    )
    for verdict, count in sorted((header.get("events") or {}).items()):
        events.add_metric([node, verdict], count)
    lost = CounterMetricFamily(
        "herald_flow_events_lost",
        "Flow events not read, by cause: rate_limited (the nft limit), undelivered (the "
        "socket's buffer overflowed), undecodable",
        labels=("node", "cause"),
    )
    counted = header.get("lost") or {}
    for cause in LOST_CAUSES:
        lost.add_metric([node, cause], counted.get(cause, 0))
    return [events, lost]


class _StatusCollector:
    """The families of the status (and flow header) read for the current scrape."""

    def __init__(self) -> None:
        self.status: AgentStatus | None = None
        self.flows: Mapping[str, Any] | None = None

    def collect(self) -> Iterable[Metric]:
        if self.status is None:
            return []
        found = status_families(self.status)
        if self.flows is not None:
            found += flow_families(self.status.node, self.flows)
        return found


class AgentMetrics:
    """One agent's registry. `exposition` reads the status (with `read`, which must not
    block the loop) and renders it in a worker thread."""

    def __init__(
        self,
        node: str,
        read: Callable[[], Awaitable[AgentStatus]],
        flows: Callable[[], Awaitable[Mapping[str, Any]]] | None = None,
    ) -> None:
        self.node = node
        self.registry = CollectorRegistry()
        self._read = read
        # The flow reader's header (`FlowReader.header`); None where events are not read.
        self._flows = flows
        self._apply_seconds = Histogram(
            "herald_datapath_apply_duration_seconds",
            "Time to commit a plan's datapath changes (nft transactions)",
            ("node",),
            registry=self.registry,
            buckets=APPLY_BUCKETS,
        ).labels(node)
        self._apply_failures = Counter(
            "herald_datapath_apply_failures",
            "Datapath commits that failed in part or whole (the refused Services keep their "
            "previous rules; see `herald status`)",
            ("node",),
            registry=self.registry,
        ).labels(node)
        self._stage_seconds = Histogram(
            "herald_agent_stage_seconds",
            "Time of each stage from a change being noticed to the UPDATE leaving the agent "
            "(source, plan, datapath, routes, bgp, l2; see docs/observability.md)",
            ("node", "stage"),
            registry=self.registry,
            buckets=STAGE_BUCKETS,
        )
        self._status = _StatusCollector()
        self.registry.register(self._status)

    def datapath_applied(self, seconds: float, failed: bool) -> None:
        self._apply_seconds.observe(seconds)
        if failed:
            self._apply_failures.inc()

    def stages_observed(self, stages: Iterable[tuple[str, float]]) -> None:
        for stage, seconds in stages:
            self._stage_seconds.labels(self.node, stage).observe(seconds)

    def observe(self, status: AgentStatus, flows: Mapping[str, Any] | None = None) -> None:
        self._status.status = status
        self._status.flows = flows

    async def exposition(self) -> bytes:
        with _no_collection():
            flows = await self._flows() if self._flows is not None else None
            self.observe(await self._read(), flows)
            return await asyncio.to_thread(generate_latest, self.registry)


@contextlib.contextmanager
def _no_collection() -> Iterator[None]:
    """No garbage collection while a scrape runs. Its objects (every frontend and backend
    of the status, every sample) live for the scrape only and reference counting frees
    them; a collection meanwhile would promote them to the oldest generation and soon set
    off a full collection of the agent's whole heap (the datapath's rules), which holds the
    GIL and so stalls the event loop: 100-170 ms per scrape at 1,000 Services of 10
    backends (bench/metrics/scrape.py), against a few ms with none."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
