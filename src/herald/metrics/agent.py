"""An agent's metrics: its status, read when a scrape comes, and the events it counts.

Almost everything is already in `AgentStatus` (sessions, BFD, L2 owners, the frontends
the kernel holds with their nft counters), so `status_families` turns one status into
metric families (pure) and nothing is counted twice. Only what a reading cannot recover is
counted as it happens: each datapath apply (duration and failure). L2 ownership changes
are seen between readings (see `OwnershipChanges`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from herald.agent.status import AgentStatus, L2Status, SessionStatus

# A datapath apply takes ~1 ms for one Service and seconds for a resync of thousands.
APPLY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)

_SESSION = ("node", "peer", "peer_name", "vrouter")


def status_families(status: AgentStatus, ownership_changes: int = 0) -> list[Metric]:
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
        if session.bfd is not None:
            bfd.add_metric(labels, 1 if session.bfd == "up" else 0)
    return [
        up,
        uptime,
        announced,
        received,
        unsent,
        bfd,
        *_l2_families(node, status.l2, ownership_changes),
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


def _l2_families(node: str, l2: L2Status | None, changes: int) -> list[Metric]:
    owned = _node_gauge(
        "herald_l2_vips_owned",
        "L2 VIPs this node answers ARP/NDP for",
        node,
        sum(1 for o in l2.owners if o.answering) if l2 else 0,
    )
    changed = CounterMetricFamily(
        "herald_l2_ownership_changes",
        "Changes of an L2 VIP's owner seen by this node between readings of its status",
        labels=("node",),
    )
    changed.add_metric([node], changes)
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


class OwnershipChanges:
    """Counts L2 owner changes from successive statuses: a VIP whose owner, or the time
    its owner took it, differs from the last reading changed hands (several changes
    between two readings count once; a VIP seen for the first time is no change)."""

    def __init__(self) -> None:
        self.total = 0
        self._seen: dict[str, tuple[str | None, float | None]] = {}

    def observe(self, l2: L2Status | None) -> int:
        now = {o.vip: (o.owner, o.since) for o in l2.owners} if l2 else {}
        self.total += sum(1 for vip, held in now.items() if self._seen.get(vip, held) != held)
        self._seen = now
        return self.total


class _StatusCollector:
    """The families of the status read for the current scrape."""

    def __init__(self) -> None:
        self.status: AgentStatus | None = None
        self.changes = 0

    def collect(self) -> Iterable[Metric]:
        return status_families(self.status, self.changes) if self.status is not None else []


class AgentMetrics:
    """One agent's registry. `exposition` reads the status (with `read`, which must not
    block the loop) and renders it in a worker thread."""

    def __init__(self, node: str, read: Callable[[], Awaitable[AgentStatus]]) -> None:
        self.node = node
        self.registry = CollectorRegistry()
        self._read = read
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
        self._ownership = OwnershipChanges()
        self._status = _StatusCollector()
        self.registry.register(self._status)

    def datapath_applied(self, seconds: float, failed: bool) -> None:
        self._apply_seconds.observe(seconds)
        if failed:
            self._apply_failures.inc()

    def observe(self, status: AgentStatus) -> None:
        self._status.changes = self._ownership.observe(status.l2)
        self._status.status = status

    async def exposition(self) -> bytes:
        with _no_collection():
            self.observe(await self._read())
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
