"""The LB-IPAM allocator.

`allocate` is the pure function: pools and service requests in, allocations and pool usage
out. `Allocator` is the same computation kept as state so that one change after that costs
what the change touches, not what the cluster holds: the controller feeds it changes, and a
restart rebuilds it with `allocate` from the Services' status, where every address that is
still valid for its Service is restored before anything new is given out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from types import MappingProxyType

from herald.api.pool import LoadBalancerIPPool
from herald.api.selector import matches
from herald.ipam.pool import PoolState, mark_conflicts, pool_state
from herald.ipam.request import Address, ServiceRequest, address_text
from herald.ipam.result import Allocation, PoolUsage, Reason
from herald.ipam.sharing import sharing_conflict

# When no family can be satisfied, the most specific reason is reported.
_SPECIFICITY = {Reason.OUT_OF_IPS: 3, Reason.POOL_SELECTOR_MISMATCH: 2, Reason.NO_POOL: 1}

Failure = tuple[Reason, str]


def allocate(
    pools: Iterable[LoadBalancerIPPool], requests: Iterable[ServiceRequest]
) -> tuple[Mapping[str, Allocation], list[PoolUsage]]:
    allocator = Allocator(pools)
    allocator.add_all(requests)
    return allocator.allocations(), allocator.pool_usage()


class Allocator:
    def __init__(self, pools: Iterable[LoadBalancerIPPool]) -> None:
        self._pools = sorted((pool_state(pool) for pool in pools), key=lambda p: p.order)
        mark_conflicts(self._pools)
        self._serving = [pool for pool in self._pools if pool.conflicting_with is None]
        self._selector_keys = sorted(
            {key for pool in self._serving for key in _selector_keys(pool)}
        )
        self._selection_cache: dict[tuple[int | str | None, ...], tuple[PoolState, ...]] = {}
        self._requests: dict[str, ServiceRequest] = {}
        self._holders: dict[Address, list[str]] = {}
        self._pool_of: dict[Address, PoolState] = {}
        self._held: dict[str, list[Address]] = {}
        self._by_sharing_key: dict[str, set[Address]] = {}
        self._allocations: dict[str, Allocation] = {}
        self._pending: set[str] = set()
        # Services whose allocation changed during the current upsert/remove.
        self._touched: set[str] = set()

    # -- queries ---------------------------------------------------------------------------

    def allocations(self) -> Mapping[str, Allocation]:
        return MappingProxyType(self._allocations)

    def pool_usage(self) -> list[PoolUsage]:
        return [
            PoolUsage(pool.name, pool.total, pool.used, pool.conflicting_with, pool.disabled)
            for pool in sorted(self._pools, key=lambda p: p.name)
        ]

    # -- changes ---------------------------------------------------------------------------

    def add_all(self, requests: Iterable[ServiceRequest]) -> None:
        """Adds many Services: first everything they already hold, then what they lack."""
        ordered = sorted(requests, key=lambda r: r.order)
        for request in ordered:
            self._requests[request.key] = request
            self._held[request.key] = []
            if request.current:
                self._restore(request, request.current)
        # Specific requests before automatic ones, so an older Service taking "any address"
        # cannot grab the one a newer Service asked for by name.
        for request in ordered:
            if request.requested:
                self._fill(request)
        for request in ordered:
            if not request.requested:
                self._fill(request)

    def upsert(self, request: ServiceRequest) -> dict[str, Allocation]:
        """Adds or changes one Service; returns every allocation that changed."""
        self._touched.clear()
        holding = self._release_all(request.key)
        self._requests[request.key] = request
        self._held[request.key] = []
        self._restore(request, holding or request.current)
        self._fill(request)
        self._retry_pending(exclude=request.key)
        return self._changes()

    def remove(self, key: str) -> dict[str, Allocation]:
        """Removes one Service; returns the allocations of others that changed because of it."""
        self._touched.clear()
        self._release_all(key)
        self._requests.pop(key, None)
        self._held.pop(key, None)
        self._allocations.pop(key, None)
        self._pending.discard(key)
        self._touched.discard(key)
        self._retry_pending()
        return self._changes()

    # -- the algorithm ---------------------------------------------------------------------

    def _restore(self, request: ServiceRequest, addresses: Iterable[Address]) -> None:
        held = self._held[request.key]
        for address in addresses:
            if address in held or not request.wants(address[0]):
                continue
            if request.requested and address not in request.requested:
                continue
            if not request.requested and (
                any(a[0] == address[0] for a in held) or (request.policy == "SingleStack" and held)
            ):
                continue
            pool = self._serving_pool_of(address)
            if pool is None or pool not in self._selected(request, address[0]):
                continue
            if self._holder_conflict(request, address) is not None:
                continue
            self._take(request, address, pool)

    def _fill(self, request: ServiceRequest) -> None:
        held = self._held[request.key]
        held_before = len(held)
        failures: list[Failure] = []
        if request.requested:
            for address in request.requested:
                if address not in held:
                    failures.extend(self._claim_specific(request, address))
        else:
            for version in request.families:
                if request.policy == "SingleStack" and held:
                    break
                if not any(a[0] == version for a in held):
                    failures.extend(self._claim_any(request, version))
        satisfied = self._is_satisfied(request, held, failures)
        if not satisfied and (request.requested or request.policy == "RequireDualStack"):
            # All or nothing: a half-granted request would announce an address the user
            # did not ask for alone.
            for address in held[held_before:]:
                self._release(request.key, address)
        self._record(request, satisfied, failures)

    def _is_satisfied(
        self, request: ServiceRequest, held: list[Address], failures: list[Failure]
    ) -> bool:
        if request.requested or request.policy == "RequireDualStack":
            return not failures
        return bool(held)

    def _record(self, request: ServiceRequest, satisfied: bool, failures: list[Failure]) -> None:
        held = tuple(address_text(a) for a in sorted(self._held[request.key]))
        if satisfied:
            self._pending.discard(request.key)
            missing = "; ".join(message for _, message in failures)
            message = f"allocated {', '.join(held)}" + (f" ({missing})" if missing else "")
            self._set(Allocation(request.key, held, Reason.SATISFIED, message))
            return
        self._pending.add(request.key)
        reason, _ = max(failures, key=lambda f: _SPECIFICITY.get(f[0], 4))
        message = "; ".join(message for _, message in failures)
        self._set(Allocation(request.key, held, reason, message))

    def _set(self, allocation: Allocation) -> None:
        if self._allocations.get(allocation.service) != allocation:
            self._allocations[allocation.service] = allocation
            self._touched.add(allocation.service)

    def _claim_specific(self, request: ServiceRequest, address: Address) -> list[Failure]:
        text = address_text(address)
        pool = self._serving_pool_of(address)
        if pool is None:
            return [(Reason.NO_POOL, self._why_not_in_pool(address))]
        if request.pool is not None and pool.name != request.pool:
            return [
                (
                    Reason.POOL_SELECTOR_MISMATCH,
                    f"{text} is in pool {pool.name}, not in pool {request.pool} that the "
                    "Service's address-pool annotation names",
                )
            ]
        if pool not in self._selected(request, address[0]):
            return [
                (
                    Reason.POOL_SELECTOR_MISMATCH,
                    f"{text} is in pool {pool.name}, whose serviceSelector does not select "
                    "this Service",
                )
            ]
        if pool.disabled:
            return [(Reason.NO_POOL, f"{text} is in pool {pool.name}, which is disabled")]
        conflict = self._holder_conflict(request, address)
        if conflict is not None:
            reason = (
                Reason.INCOMPATIBLE_SHARING if request.sharing_key else Reason.ALREADY_ALLOCATED
            )
            return [(reason, f"{text} is already allocated: {conflict}")]
        self._take(request, address, pool)
        return []

    def _claim_any(self, request: ServiceRequest, version: int) -> list[Failure]:
        """Takes one address of `version` for `request`, or says why there is none."""
        family = f"IPv{version}"
        candidates = self._selected(request, version)
        if request.sharing_key is not None:
            for address in sorted(self._by_sharing_key.get(request.sharing_key, ())):
                pool = self._pool_of[address]
                if (
                    address[0] == version
                    and pool in candidates
                    and not pool.disabled
                    and self._holder_conflict(request, address) is None
                ):
                    self._take(request, address, pool)
                    return []
        for pool in candidates:
            if pool.disabled:
                continue
            for address_range in pool.ranges:
                if address_range.version != version:
                    continue
                value = address_range.lowest_free(self._holders.__contains__)
                if value is not None:
                    self._take(request, (version, value), pool)
                    return []
        named = self._named_pool_failure(request, version)
        if named is not None:
            return [named]
        if not any(pool.has_family(version) for pool in self._serving):
            return [(Reason.NO_POOL, f"no LoadBalancerIPPool has {family} addresses")]
        if not candidates:
            return [
                (
                    Reason.POOL_SELECTOR_MISMATCH,
                    f"no pool with {family} addresses selects this Service",
                )
            ]
        if all(pool.disabled for pool in candidates):
            names = ", ".join(pool.name for pool in candidates)
            return [(Reason.NO_POOL, f"the pools with {family} addresses are disabled: {names}")]
        names = ", ".join(pool.name for pool in candidates if not pool.disabled)
        return [(Reason.OUT_OF_IPS, f"no free {family} address in pool(s) {names}")]

    def _named_pool_failure(self, request: ServiceRequest, version: int) -> Failure | None:
        """Why the one pool a Service names gives it no `version` address; None when it
        names none, or the pool is merely full (which the general message says)."""
        name = request.pool
        if name is None:
            return None
        why = "the only pool the Service's address-pool annotation allows"
        pool = next((p for p in self._pools if p.name == name), None)
        if pool is None:
            return (
                Reason.NO_POOL,
                f"no LoadBalancerIPPool named {name!r}, which the Service's address-pool "
                "annotation names",
            )
        if pool.conflicting_with is not None:
            return (
                Reason.NO_POOL,
                f"pool {name} conflicts and serves no addresses: {pool.conflicting_with} ({why})",
            )
        if not pool.has_family(version):
            return (Reason.NO_POOL, f"pool {name} has no IPv{version} addresses ({why})")
        if not matches(pool.selector, request.labels):
            return (
                Reason.POOL_SELECTOR_MISMATCH,
                f"pool {name}'s serviceSelector does not select this Service ({why})",
            )
        if pool.disabled:
            return (Reason.NO_POOL, f"pool {name} is disabled ({why})")
        return None

    def _why_not_in_pool(self, address: Address) -> str:
        text = address_text(address)
        for pool in self._pools:
            block = pool.block_of(address)
            if block is None:
                continue
            if pool.conflicting_with is not None:
                return f"{text} is in pool {pool.name}, which conflicts: {pool.conflicting_with}"
            return (
                f"{text} is the first or last address of block {block} of pool {pool.name}, "
                "which has allowFirstLastIPs: No"
            )
        return f"{text} is in no LoadBalancerIPPool"

    # -- bookkeeping -----------------------------------------------------------------------

    def _selected(self, request: ServiceRequest, version: int) -> tuple[PoolState, ...]:
        """Serving pools with addresses of `version` that select `request`, oldest first (only
        the pool it names, if it names one)."""
        # Only the labels some selector looks at matter, so most Services share an entry.
        key = (
            version,
            request.pool,
            *(request.labels.get(label) for label in self._selector_keys),
        )
        selected = self._selection_cache.get(key)
        if selected is None:
            selected = tuple(
                pool
                for pool in self._serving
                if (request.pool is None or pool.name == request.pool)
                and pool.has_family(version)
                and matches(pool.selector, request.labels)
            )
            self._selection_cache[key] = selected
        return selected

    def _serving_pool_of(self, address: Address) -> PoolState | None:
        for pool in self._serving:
            if pool.range_of(address) is not None:
                return pool
        return None

    def _holder_conflict(self, request: ServiceRequest, address: Address) -> str | None:
        for holder in self._holders.get(address, ()):
            if holder == request.key:
                continue
            conflict = sharing_conflict(request, self._requests[holder])
            if conflict is not None:
                return conflict
        return None

    def _take(self, request: ServiceRequest, address: Address, pool: PoolState) -> None:
        holders = self._holders.setdefault(address, [])
        if not holders:
            pool.used += 1
            self._pool_of[address] = pool
        holders.append(request.key)
        self._held[request.key].append(address)
        if request.sharing_key is not None:
            self._by_sharing_key.setdefault(request.sharing_key, set()).add(address)

    def _release(self, key: str, address: Address) -> None:
        self._held[key].remove(address)
        holders = self._holders[address]
        holders.remove(key)
        if holders:
            return
        del self._holders[address]
        pool = self._pool_of.pop(address)
        pool.used -= 1
        address_range = pool.range_of(address)
        if address_range is not None:
            address_range.freed(address[1])
        sharing_key = self._requests[key].sharing_key
        if sharing_key is not None:
            self._by_sharing_key[sharing_key].discard(address)

    def _release_all(self, key: str) -> list[Address]:
        holding = list(self._held.get(key, ()))
        for address in holding:
            self._release(key, address)
        return holding

    def _retry_pending(self, exclude: str | None = None) -> None:
        for key in sorted(self._pending - {exclude}, key=lambda k: self._requests[k].order):
            self._fill(self._requests[key])

    def _changes(self) -> dict[str, Allocation]:
        return {key: self._allocations[key] for key in sorted(self._touched)}


def _selector_keys(pool: PoolState) -> set[str]:
    if pool.selector is None:
        return set()
    return set(pool.selector.match_labels) | {r.key for r in pool.selector.match_expressions}
