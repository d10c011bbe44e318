"""The controller's metrics: LB-IPAM as its last reconciliation left it.

Pool usage and the Services per IPAM reason are read from the last decision when a scrape
comes; an allocation failure is an event (a Service that becomes unsatisfied, or
unsatisfied for another reason) and is counted when the controller decides it. A standby
controller (not leading) decides nothing and shows no pool.
"""

from __future__ import annotations

from collections import Counter as Tally
from collections.abc import Iterable, Mapping, Sequence

from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from herald.ipam import Allocation, PoolUsage, Reason


def ipam_families(usage: Sequence[PoolUsage], reasons: Mapping[Reason, int]) -> list[Metric]:
    """Pool and Service gauges of one IPAM decision (pure)."""
    total = GaugeMetricFamily(
        "herald_ipam_addresses",
        "Usable addresses of the pool (0 while it conflicts with an older pool or is disabled)",
        labels=("pool",),
    )
    used = GaugeMetricFamily(
        "herald_ipam_addresses_in_use", "Addresses of the pool given to Services", labels=("pool",)
    )
    available = GaugeMetricFamily(
        "herald_ipam_addresses_available",
        "Addresses of the pool still free to give",
        labels=("pool",),
    )
    conflicting = GaugeMetricFamily(
        "herald_ipam_pool_conflicting",
        "1 when the pool overlaps an older pool and serves no address",
        labels=("pool",),
    )
    for pool in sorted(usage, key=lambda p: p.name):
        usable = 0 if pool.conflicting_with or pool.disabled else pool.total
        total.add_metric([pool.name], usable)
        used.add_metric([pool.name], pool.used)
        available.add_metric([pool.name], pool.available)
        conflicting.add_metric([pool.name], 1 if pool.conflicting_with else 0)
    services = GaugeMetricFamily(
        "herald_ipam_services",
        "LoadBalancer Services by the reason of their herald.io/IPAMRequestSatisfied condition",
        labels=("reason",),
    )
    for reason in Reason:
        services.add_metric([reason.value], reasons.get(reason, 0))
    return [total, used, available, conflicting, services]


class _DecisionCollector:
    def __init__(self) -> None:
        self.usage: Sequence[PoolUsage] = ()
        self.reasons: Mapping[Reason, int] = {}

    def collect(self) -> Iterable[Metric]:
        return ipam_families(self.usage, self.reasons)


class ControllerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._failures = Counter(
            "herald_ipam_allocation_failures",
            "Services that became unsatisfied (or unsatisfied for another reason), by reason",
            ("reason",),
            registry=self.registry,
        )
        for reason in Reason:
            if reason is not Reason.SATISFIED:
                self._failures.labels(reason.value)  # every series present from the start
        self._decision = _DecisionCollector()
        self.registry.register(self._decision)
        self._reasons: dict[str, Reason] = {}

    def observe(self, allocations: Mapping[str, Allocation], usage: Sequence[PoolUsage]) -> None:
        """One reconciliation's decision (called by the controller after each)."""
        reasons = {key: a.reason for key, a in allocations.items()}
        for key, reason in reasons.items():
            if reason is not Reason.SATISFIED and self._reasons.get(key) is not reason:
                self._failures.labels(reason.value).inc()
        self._reasons = reasons
        self._decision.usage = tuple(usage)
        self._decision.reasons = Tally(reasons.values())

    async def exposition(self) -> bytes:
        return generate_latest(self.registry)
