"""What a status write sends and which Events are recorded, decided without a server."""

from __future__ import annotations

from typing import Any

from herald.api.base import Condition
from herald.api.core import LoadBalancerIngress, LoadBalancerStatus, ServiceStatus
from herald.api.pool import PoolStatus
from herald.controller.events import (
    ALLOCATION_FAILED,
    SHARING_REFUSED,
    ServiceEvent,
    event_for,
    satisfied_condition,
)
from herald.sources.kube.status import pool_status_patch, service_status_patch

SATISFIED = "herald.io/IPAMRequestSatisfied"


def condition(status: str, reason: str, message: str = "m") -> Condition:
    return Condition(
        type=SATISFIED,
        status=status,  # type: ignore[arg-type]
        reason=reason,
        message=message,
        last_transition_time="2026-01-01T00:00:00Z",
    )


def status(*ips: str, cond: Condition | None = None) -> ServiceStatus:
    return ServiceStatus(
        load_balancer=LoadBalancerStatus(ingress=tuple(LoadBalancerIngress(ip=ip) for ip in ips)),
        conditions=(cond or condition("True", "satisfied"),),
    )


def service(raw_status: dict[str, Any] | None, version: str = "7") -> dict[str, Any]:
    obj: dict[str, Any] = {
        "metadata": {"name": "web", "namespace": "default", "resourceVersion": version}
    }
    if raw_status is not None:
        obj["status"] = raw_status
    return obj


def test_a_new_address_is_one_merge_patch_against_the_version_read() -> None:
    patch = service_status_patch(service(None), status("203.0.113.0"))
    assert patch is not None
    assert patch["metadata"] == {"resourceVersion": "7"}
    assert patch["status"]["loadBalancer"] == {"ingress": [{"ip": "203.0.113.0"}]}
    assert [c["type"] for c in patch["status"]["conditions"]] == [SATISFIED]


def test_what_is_already_there_is_not_written_again() -> None:
    desired = status("203.0.113.0")
    patch = service_status_patch(service(None), desired)
    assert patch is not None
    assert service_status_patch(service(patch["status"]), desired) is None


def test_other_controllers_conditions_are_kept() -> None:
    other = {"type": "example.com/Ready", "status": "True", "reason": "r", "message": ""}
    patch = service_status_patch(service({"conditions": [other]}), status("203.0.113.0"))
    assert patch is not None
    assert patch["status"]["conditions"][0] == other
    assert patch["status"]["conditions"][1]["type"] == SATISFIED


def test_an_address_taken_away_removes_the_ingress() -> None:
    before = {"loadBalancer": {"ingress": [{"ip": "203.0.113.0"}]}}
    patch = service_status_patch(service(before), status(cond=condition("False", "no_pool")))
    assert patch is not None
    assert patch["status"]["loadBalancer"] == {"ingress": None}


def test_pool_status_is_replaced_whole_and_only_when_different() -> None:
    desired = PoolStatus(
        conditions=(
            Condition(type="herald.io/IPsUsed", status="Unknown", reason="count", message="3"),
        )
    )
    pool = {"metadata": {"name": "p", "resourceVersion": "9"}}
    patch = pool_status_patch(pool, desired)
    assert patch is not None and patch["metadata"]["resourceVersion"] == "9"
    assert pool_status_patch({**pool, "status": patch["status"]}, desired) is None


def test_a_failure_is_recorded_once_and_a_different_one_again() -> None:
    failing = condition("False", "out_of_ips", "pool p is full")
    assert event_for(None, [failing]) == ServiceEvent(ALLOCATION_FAILED, "pool p is full")
    carried = satisfied_condition(
        [
            {
                "type": SATISFIED,
                "status": "False",
                "reason": "out_of_ips",
                "message": "pool p is full",
            }
        ]
    )
    assert event_for(carried, [failing]) is None
    sharing = condition("False", "incompatible_sharing", "port 80 taken")
    assert event_for(carried, [sharing]) == ServiceEvent(SHARING_REFUSED, "port 80 taken")


def test_success_records_nothing() -> None:
    assert event_for(None, [condition("True", "satisfied")]) is None
    assert satisfied_condition([]) is None
