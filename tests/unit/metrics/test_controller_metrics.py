"""The controller's IPAM metrics from its decisions."""

from __future__ import annotations

import asyncio

from prometheus_client.parser import text_string_to_metric_families

from herald.ipam import Allocation, PoolUsage, Reason
from herald.metrics.controller import ControllerMetrics


def _samples(metrics: ControllerMetrics) -> dict[str, dict[frozenset[tuple[str, str]], float]]:
    text = asyncio.run(metrics.exposition()).decode()
    found: dict[str, dict[frozenset[tuple[str, str]], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, {})[frozenset(sample.labels.items())] = sample.value
    return found


def _pool(name: str) -> frozenset[tuple[str, str]]:
    return frozenset({("pool", name)})


def _reason(reason: Reason) -> frozenset[tuple[str, str]]:
    return frozenset({("reason", reason.value)})


OK = Allocation("default/web", ("203.0.113.0",), Reason.SATISFIED, "")
NONE = Allocation("default/orphan", (), Reason.NO_POOL, "no pool selects it")
USAGE = [
    PoolUsage("blue", total=256, used=3),
    PoolUsage("red", total=16, used=0, conflicting_with="overlaps blue"),
]


def test_pool_usage_in_use_and_available() -> None:
    metrics = ControllerMetrics()
    metrics.observe({OK.service: OK, NONE.service: NONE}, USAGE)
    found = _samples(metrics)
    assert found["herald_ipam_addresses"] == {_pool("blue"): 256, _pool("red"): 0}
    assert found["herald_ipam_addresses_in_use"] == {_pool("blue"): 3, _pool("red"): 0}
    assert found["herald_ipam_addresses_available"] == {_pool("blue"): 253, _pool("red"): 0}
    assert found["herald_ipam_pool_conflicting"] == {_pool("blue"): 0, _pool("red"): 1}
    services = found["herald_ipam_services"]
    assert services[_reason(Reason.SATISFIED)] == 1 and services[_reason(Reason.NO_POOL)] == 1
    assert services[_reason(Reason.OUT_OF_IPS)] == 0


def test_a_failure_is_counted_when_it_starts_not_on_every_decision() -> None:
    metrics = ControllerMetrics()
    failures = "herald_ipam_allocation_failures_total"
    assert _samples(metrics)[failures][_reason(Reason.NO_POOL)] == 0  # present from the start
    metrics.observe({NONE.service: NONE}, USAGE)
    metrics.observe({NONE.service: NONE}, USAGE)  # the same failure again: not a new one
    assert _samples(metrics)[failures][_reason(Reason.NO_POOL)] == 1
    exhausted = Allocation(NONE.service, (), Reason.OUT_OF_IPS, "pool blue is exhausted")
    metrics.observe({NONE.service: exhausted}, USAGE)  # failing for another reason
    metrics.observe({NONE.service: OK}, USAGE)
    metrics.observe({NONE.service: NONE}, USAGE)  # failing again after being satisfied
    found = _samples(metrics)[failures]
    assert found[_reason(Reason.NO_POOL)] == 2 and found[_reason(Reason.OUT_OF_IPS)] == 1
    assert _reason(Reason.SATISFIED) not in found


def test_a_standby_controller_shows_no_pool() -> None:
    found = _samples(ControllerMetrics())
    assert "herald_ipam_addresses" not in found
