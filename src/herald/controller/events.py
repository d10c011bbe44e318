"""Which Kubernetes Events the controller records on a Service (pure).

An Event is recorded when a Service's `herald.io/IPAMRequestSatisfied` condition turns to a
failure, or to a different failure: reason `AllocationFailed` (MetalLB's name, which users
grep for) when no address could be given, `SharingRefused` when a sharing key could not be
honoured. The decision compares the condition being written with the one the Service
carries, so the same failure is recorded once however many times the controller reconciles,
and a controller taking over from another does not record again what its predecessor did.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from herald.api.base import Condition
from herald.ipam.result import Reason
from herald.ipam.status import CONDITION_SATISFIED

ALLOCATION_FAILED = "AllocationFailed"
SHARING_REFUSED = "SharingRefused"

EVENT_REASON = {
    Reason.NO_POOL: ALLOCATION_FAILED,
    Reason.OUT_OF_IPS: ALLOCATION_FAILED,
    Reason.POOL_SELECTOR_MISMATCH: ALLOCATION_FAILED,
    Reason.ALREADY_ALLOCATED: ALLOCATION_FAILED,
    Reason.INCOMPATIBLE_SHARING: SHARING_REFUSED,
}


@dataclass(frozen=True)
class ServiceEvent:
    """A Warning Event to record on one Service."""

    reason: str
    message: str


def satisfied_condition(conditions: Iterable[Mapping[str, Any]]) -> tuple[str, str, str] | None:
    """(status, reason, message) of the IPAM condition among a Service's raw conditions."""
    for condition in conditions:
        if condition.get("type") == CONDITION_SATISFIED:
            return (
                str(condition.get("status", "")),
                str(condition.get("reason", "")),
                str(condition.get("message", "")),
            )
    return None


def event_for(
    before: tuple[str, str, str] | None, after: Iterable[Condition]
) -> ServiceEvent | None:
    """The Event to record as the Service's IPAM condition goes from `before` (as the
    Service carries it) to the one among `after`; None if there is nothing new to say."""
    for condition in after:
        if condition.type != CONDITION_SATISFIED or condition.status != "False":
            continue
        now = (condition.status, condition.reason, condition.message)
        if now == before:
            return None
        try:
            reason = EVENT_REASON[Reason(condition.reason)]
        except (ValueError, KeyError):
            reason = ALLOCATION_FAILED
        return ServiceEvent(reason, condition.message)
    return None
