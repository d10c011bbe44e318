"""What LB-IPAM decides: one Allocation per Service, one PoolUsage per pool."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Reason(StrEnum):
    """Reasons of the herald.io/IPAMRequestSatisfied condition."""

    SATISFIED = "satisfied"
    NO_POOL = "no_pool"
    OUT_OF_IPS = "out_of_ips"
    POOL_SELECTOR_MISMATCH = "pool_selector_mismatch"
    ALREADY_ALLOCATED = "already_allocated"
    INCOMPATIBLE_SHARING = "incompatible_sharing"


@dataclass(frozen=True, slots=True)
class Allocation:
    service: str
    ips: tuple[str, ...]
    reason: Reason
    message: str

    @property
    def satisfied(self) -> bool:
        return self.reason is Reason.SATISFIED


@dataclass(frozen=True, slots=True)
class PoolUsage:
    name: str
    total: int
    used: int
    conflicting_with: str | None = None
    disabled: bool = False

    @property
    def available(self) -> int:
        return 0 if self.conflicting_with or self.disabled else self.total - self.used
