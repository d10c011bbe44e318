"""The controller reuses what did not change (requests of Services handed on, statuses the
snapshot already holds): it must decide exactly as a controller that reads everything again.

Two reconcilers see the same random sequence of snapshots: one gets the Services that did
not change as the same objects (as the Kubernetes source hands them on) and its own
statuses echoed back (as a source does once they are written), the other a fresh copy of
every object each time, so nothing it remembers can be reused, and its statuses are built
by `statuses` with nothing remembered. Their allocations and statuses must be equal after
every step.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from herald.api.core import Service, ServiceStatus
from herald.api.pool import LoadBalancerIPPool
from herald.api.snapshot import ClusterState
from herald.controller.reconcile import IPAMReconciler, statuses

POOLS = (
    LoadBalancerIPPool.model_validate(
        {"metadata": {"name": "small"}, "spec": {"blocks": [{"cidr": "203.0.113.0/29"}]}}
    ),
    LoadBalancerIPPool.model_validate(
        {
            "metadata": {"name": "team-a"},
            "spec": {
                "blocks": [{"cidr": "198.51.100.0/30"}],
                "serviceSelector": {"matchLabels": {"team": "a"}},
            },
        }
    ),
)


def service(name: str, rng: random.Random) -> Service:
    annotations: dict[str, str] = {}
    if rng.random() < 0.3:
        annotations["herald.io/sharing-key"] = rng.choice(["k1", "k2"])
    labels = {"team": "a"} if rng.random() < 0.3 else {}
    spec: dict[str, Any] = {
        "type": rng.choice(["LoadBalancer", "LoadBalancer", "LoadBalancer", "ClusterIP"]),
        "ports": [{"port": rng.choice([80, 443, 8080])}],
    }
    return Service.model_validate(
        {
            "metadata": {"name": name, "annotations": annotations, "labels": labels},
            "spec": spec,
        }
    )


def echoed(svc: Service, status: ServiceStatus | None) -> Service:
    return svc if status is None else svc.model_copy(update={"status": status})


def copied(state: ClusterState) -> ClusterState:
    return ClusterState(
        services=tuple(s.model_copy(deep=True) for s in state.services), pools=state.pools
    )


@pytest.mark.parametrize("seed", range(8))
def test_reusing_decides_as_reading_everything_again(seed: int) -> None:
    rng = random.Random(seed)
    reusing, reading = IPAMReconciler(), IPAMReconciler()
    services = {f"s{i}": service(f"s{i}", rng) for i in range(12)}
    written: dict[str, ServiceStatus] = {}
    pools_written: dict[str, Any] = {}
    reused = 0
    for now in range(1, 41):
        action = rng.random()
        name = f"s{rng.randrange(16)}"
        if action < 0.3:
            services[name] = service(name, rng)  # added or edited
        elif action < 0.45:
            services.pop(name, None)
        elif action < 0.6 and name in services:
            # Someone else rewrote its status (or a stale echo): ours is written again.
            services[name] = services[name].model_copy(update={"status": ServiceStatus()})
        # else: only the echo of the last statuses (or nothing) changes
        services = {
            n: echoed(s, written.get(f"default/{n}")) if rng.random() < 0.8 and n != name else s
            for n, s in services.items()
        }
        state = ClusterState(services=tuple(services.values()), pools=POOLS)
        stamp = f"2026-12-03T10:{now // 60:02}:{now % 60:02}Z"
        got, usage = reusing.reconcile(state)
        want, want_usage = reading.reconcile(copied(state))
        assert {k: (a.ips, a.satisfied, a.reason) for k, a in got.items()} == {
            k: (a.ips, a.satisfied, a.reason) for k, a in want.items()
        }
        assert usage == want_usage
        mine, pools = reusing.statuses(got, usage, state, pools_written, stamp)
        fresh, fresh_pools = statuses(want, want_usage, copied(state), pools_written, stamp)
        assert mine == fresh
        assert pools == fresh_pools
        reused += sum(mine[s.key] is s.status for s in state.services if s.key in mine)
        written, pools_written = mine, pools
    assert reused > 0, "the run exercised the reuse"


def test_an_unchanged_status_is_reused_and_a_changed_one_is_not() -> None:
    reconciler = IPAMReconciler()
    first = Service.model_validate(
        {"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
    )
    state = ClusterState(services=(first,), pools=POOLS)
    allocations, usage = reconciler.reconcile(state)
    written, _ = reconciler.statuses(allocations, usage, state, {}, "2026-12-03T10:00:00Z")
    echo = ClusterState(services=(echoed(first, written["default/web"]),), pools=POOLS)
    allocations, usage = reconciler.reconcile(echo)
    again, _ = reconciler.statuses(allocations, usage, echo, {}, "2026-12-03T10:00:05Z")
    assert again == written, "the time of a condition that holds is kept"
    allocations, usage = reconciler.reconcile(echo)
    third, _ = reconciler.statuses(allocations, usage, echo, {}, "2026-12-03T10:00:09Z")
    assert third["default/web"] is echo.services[0].status, "the snapshot's own status"
    # Its pool gone (the other one does not select it): a new status, new time.
    gone = ClusterState(services=echo.services, pools=POOLS[1:])
    allocations, usage = reconciler.reconcile(gone)
    fourth, _ = reconciler.statuses(allocations, usage, gone, {}, "2026-12-03T10:00:12Z")
    assert fourth["default/web"] != written["default/web"]
    condition = fourth["default/web"].conditions[0]
    assert condition.last_transition_time == "2026-12-03T10:00:12Z"
