"""Property tests of LB-IPAM over generated pools and Services (fixed seed, bounded)."""

from __future__ import annotations

import dataclasses
import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from herald.api.pool import LoadBalancerIPPool
from herald.api.selector import matches
from herald.ipam import Allocator, ServiceRequest, allocate
from herald.ipam.request import to_address
from herald.ipam.sharing import sharing_conflict

from .helpers import pool, service

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, derandomize=True)


@st.composite
def pools(draw: st.DrawFn) -> list[LoadBalancerIPPool]:
    count = draw(st.integers(1, 3))
    result = []
    for index in range(count):
        v4 = draw(st.integers(0, 7))
        blocks = [f"203.0.113.{v4 * 8}/29"]
        if draw(st.booleans()):
            blocks.append(f"2001:db8::{index * 8:x}/125")
        selector = draw(st.sampled_from([None, {"matchLabels": {"team": "a"}}]))
        result.append(
            pool(
                f"pool{index}",
                *blocks,
                created=str(index),
                serviceSelector=selector,
                allowFirstLastIPs=draw(st.sampled_from(["Yes", "No"])),
                disabled=draw(st.booleans()) and draw(st.booleans()),
            )
        )
    return result


@st.composite
def services(draw: st.DrawFn) -> list[ServiceRequest]:
    count = draw(st.integers(1, 14))
    result = []
    for index in range(count):
        annotations = {}
        key = draw(st.sampled_from([None, "k1", "k2"]))
        if key:
            annotations["herald.io/sharing-key"] = key
        if draw(st.integers(0, 4)) == 0:
            annotations["herald.io/ips"] = f"203.0.113.{draw(st.integers(0, 63))}"
        spec = {
            "ipFamilyPolicy": draw(
                st.sampled_from(["SingleStack", "PreferDualStack", "RequireDualStack"])
            ),
            "externalTrafficPolicy": draw(st.sampled_from(["Cluster", "Local"])),
        }
        result.append(
            service(
                f"s{index}",
                draw(st.sampled_from(["default", "other"])),
                labels={"team": draw(st.sampled_from(["a", "b"]))},
                annotations=annotations,
                ports=(("TCP", draw(st.sampled_from([80, 443, 53]))),),
                created=f"{index:03}",
                **spec,
            )
        )
    return result


def _check_invariants(pool_list: list[LoadBalancerIPPool], allocator: Allocator) -> None:
    allocations = allocator.allocations()
    requests = {r.key: r for r in allocator._requests.values()}
    usage = {u.name: u for u in allocator.pool_usage()}
    holders: dict[str, list[str]] = {}
    for key, allocation in allocations.items():
        for ip in allocation.ips:
            holders.setdefault(ip, []).append(key)
            address = ipaddress.ip_address(ip)
            serving = [
                p
                for p in pool_list
                if usage[p.metadata.name].conflicting_with is None
                and any(
                    address in ipaddress.ip_network(b.cidr)
                    for b in p.spec.blocks
                    if b.cidr is not None
                )
            ]
            assert serving, f"{ip} of {key} lies in no serving pool"
            assert any(matches(p.spec.service_selector, requests[key].labels) for p in serving)
    for ip, keys in holders.items():
        for a in keys:
            for b in keys:
                if a != b:
                    assert sharing_conflict(requests[a], requests[b]) is None, (ip, a, b)
    for name, pool_usage in usage.items():
        used = sum(
            1
            for ip in holders
            if any(
                ipaddress.ip_address(ip) in ipaddress.ip_network(b.cidr)
                for p in pool_list
                if p.metadata.name == name
                for b in p.spec.blocks
                if b.cidr is not None
            )
        )
        if pool_usage.conflicting_with is None:
            assert pool_usage.used == used


@PROPERTY_SETTINGS
@given(pools(), services())
def test_no_conflicting_holders_and_every_address_in_a_selecting_pool(
    pool_list: list[LoadBalancerIPPool], requests: list[ServiceRequest]
) -> None:
    allocator = Allocator(pool_list)
    allocator.add_all(requests)
    _check_invariants(pool_list, allocator)


@PROPERTY_SETTINGS
@given(pools(), services(), st.randoms(use_true_random=False))
def test_deterministic_whatever_the_input_order(
    pool_list: list[LoadBalancerIPPool], requests: list[ServiceRequest], rng: object
) -> None:
    first, usage = allocate(pool_list, requests)
    shuffled_requests, shuffled_pools = list(requests), list(pool_list)
    rng.shuffle(shuffled_requests)  # type: ignore[attr-defined]
    rng.shuffle(shuffled_pools)  # type: ignore[attr-defined]
    second, usage_again = allocate(shuffled_pools, shuffled_requests)
    assert dict(first) == dict(second)
    assert usage == usage_again


@PROPERTY_SETTINGS
@given(pools(), services(), st.data())
def test_incremental_changes_then_restart_keep_every_valid_address(
    pool_list: list[LoadBalancerIPPool], requests: list[ServiceRequest], data: st.DataObject
) -> None:
    allocator = Allocator(pool_list)
    for request in requests:
        allocator.upsert(request)
    removed = data.draw(st.sets(st.sampled_from([r.key for r in requests])))
    for key in sorted(removed):
        allocator.remove(key)
    _check_invariants(pool_list, allocator)
    live = allocator.allocations()
    # A restart rebuilds from status: everything still held must come back unchanged.
    with_status = [
        dataclasses.replace(r, current=tuple(map(to_address, live[r.key].ips)))
        for r in requests
        if r.key not in removed
    ]
    restarted, _ = allocate(pool_list, with_status)
    for key, allocation in live.items():
        if allocation.satisfied:
            assert restarted[key].ips == allocation.ips, key


@settings(max_examples=500, deadline=None, derandomize=True)
@given(
    st.ip_addresses()
    | st.integers(0, 2**32 - 1).map(lambda v: ipaddress.IPv6Address(0xFFFF << 32 | v))
    | st.integers(0, 2**32 - 1).map(ipaddress.IPv6Address)
)
def test_address_text_matches_ipaddress(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address,
) -> None:
    from herald.ipam.request import address_text

    assert address_text((address.version, int(address))) == str(address)
