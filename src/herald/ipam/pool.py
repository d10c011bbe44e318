"""A pool's address space, never materialised: ranges with a free-address cursor each.

Finding the lowest free address costs O(log n) amortised whatever the pool's size: below a
range's `high` mark every address is either taken or remembered in `holes`, so a /8 or an
IPv6 /64 costs no more than the addresses actually given out.
"""

from __future__ import annotations

import heapq
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field

from herald.api.base import LabelSelector
from herald.api.pool import LoadBalancerIPPool
from herald.ipam.request import Address


@dataclass
class AddressRange:
    version: int
    first: int
    last: int
    high: int = -1
    holes: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.high < 0:
            self.high = self.first

    @property
    def size(self) -> int:
        return max(0, self.last - self.first + 1)

    def contains(self, value: int) -> bool:
        return self.first <= value <= self.last

    def lowest_free(self, taken: Callable[[Address], bool]) -> int | None:
        while self.holes:
            hole = self.holes[0]
            if not taken((self.version, hole)):
                return hole
            heapq.heappop(self.holes)
        while self.high <= self.last and taken((self.version, self.high)):
            self.high += 1
        return self.high if self.high <= self.last else None

    def freed(self, value: int) -> None:
        if value < self.high:
            heapq.heappush(self.holes, value)


@dataclass
class PoolState:
    name: str
    order: tuple[str, str]
    selector: LabelSelector | None
    disabled: bool
    # Whole blocks as written (for overlap and "is this address in the pool" messages).
    blocks: list[tuple[int, int, int, str]]
    ranges: list[AddressRange]
    used: int = 0
    conflicting_with: str | None = None

    @property
    def total(self) -> int:
        return sum(r.size for r in self.ranges)

    def has_family(self, version: int) -> bool:
        return any(r.version == version and r.size for r in self.ranges)

    def range_of(self, address: Address) -> AddressRange | None:
        version, value = address
        for candidate in self.ranges:
            if candidate.version == version and candidate.contains(value):
                return candidate
        return None

    def block_of(self, address: Address) -> str | None:
        version, value = address
        for block_version, first, last, text in self.blocks:
            if block_version == version and first <= value <= last:
                return text
        return None


def pool_state(pool: LoadBalancerIPPool) -> PoolState:
    spec = pool.spec
    blocks: list[tuple[int, int, int, str]] = []
    ranges: list[AddressRange] = []
    for block in spec.blocks:
        version, first, last = block.bounds()
        text = block.cidr or f"{block.start}-{block.stop or block.start}"
        blocks.append((version, first, last, text))
        if block.cidr is not None and spec.allow_first_last_ips == "No":
            prefix = ipaddress.ip_network(block.cidr).prefixlen
            # /31, /32, /127 and /128 have no network and broadcast address to keep back.
            if prefix < (31 if version == 4 else 127):
                first, last = first + 1, last - 1
        ranges.append(AddressRange(version, first, last))
    ranges.sort(key=lambda r: (r.version, r.first))
    return PoolState(
        name=pool.metadata.name,
        order=(pool.metadata.creation_timestamp or "", pool.metadata.name),
        selector=spec.service_selector,
        disabled=spec.disabled,
        blocks=blocks,
        ranges=ranges,
    )


def mark_conflicts(pools: list[PoolState]) -> None:
    """Oldest first, a pool overlapping an older serving pool is marked conflicting."""
    serving: list[PoolState] = []
    for pool in sorted(pools, key=lambda p: p.order):
        pool.conflicting_with = None
        for older in serving:
            overlap = _overlap(pool, older)
            if overlap is not None:
                pool.conflicting_with = (
                    f"block {overlap[0]} overlaps block {overlap[1]} of pool {older.name}"
                )
                break
        else:
            serving.append(pool)


def _overlap(a: PoolState, b: PoolState) -> tuple[str, str] | None:
    for version, first, last, text in a.blocks:
        for other_version, other_first, other_last, other_text in b.blocks:
            if version == other_version and first <= other_last and other_first <= last:
                return text, other_text
    return None
