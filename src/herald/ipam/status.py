"""What LB-IPAM writes back: Service status and pool conditions, as Kubernetes objects."""

from __future__ import annotations

from herald.api.base import Condition
from herald.api.core import LoadBalancerIngress, LoadBalancerStatus, ServiceStatus
from herald.ipam.result import Allocation, PoolUsage

CONDITION_SATISFIED = "herald.io/IPAMRequestSatisfied"
CONDITION_POOL_CONFLICT = "herald.io/PoolConflict"
CONDITION_IPS_AVAILABLE = "herald.io/IPsAvailable"


def service_status(allocation: Allocation, now: str | None = None) -> ServiceStatus:
    condition = Condition(
        type=CONDITION_SATISFIED,
        status="True" if allocation.satisfied else "False",
        reason=allocation.reason.value,
        message=allocation.message,
        last_transition_time=now,
    )
    return ServiceStatus(
        load_balancer=LoadBalancerStatus(
            ingress=tuple(LoadBalancerIngress(ip=ip) for ip in allocation.ips)
        ),
        conditions=(condition,),
    )


def pool_conditions(usage: PoolUsage, now: str | None = None) -> tuple[Condition, ...]:
    conflict = Condition(
        type=CONDITION_POOL_CONFLICT,
        status="True" if usage.conflicting_with else "False",
        reason="overlap" if usage.conflicting_with else "no_overlap",
        message=(
            f"pool serves no addresses: {usage.conflicting_with}"
            if usage.conflicting_with
            else "no overlap with older pools"
        ),
        last_transition_time=now,
    )
    counts = [
        Condition(type=f"herald.io/IPs{name}", status="Unknown", reason="count", message=str(n))
        for name, n in (
            ("Total", usage.total),
            ("Used", usage.used),
            ("Available", usage.available),
        )
    ]
    return (conflict, *counts)
