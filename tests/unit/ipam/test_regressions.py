"""The stability bugs Cilium and MetalLB users reported, reproduced against herald's IPAM.

Each test names the upstream issue whose class of failure it reproduces. A "restart" is
`allocate` over Services whose status carries the addresses the previous run gave them, in
whatever order the source happens to list them.
"""

from __future__ import annotations

import dataclasses

from herald.ipam import Allocation, Reason, ServiceRequest, allocate
from herald.ipam.request import to_address

from .helpers import pool, service


def restart(
    pools: list, requests: list[ServiceRequest], before: dict[str, Allocation]
) -> dict[str, Allocation]:
    with_status = [
        dataclasses.replace(r, current=tuple(map(to_address, before[r.key].ips)))
        for r in reversed(requests)  # a different listing order than before
    ]
    after, _ = allocate(pools, with_status)
    return dict(after)


def test_full_pool_with_pending_services_survives_restart_cilium_40358_43131() -> None:
    pools = [pool("small", "203.0.113.10-203.0.113.11")]
    # The pending Service is the oldest: a naive restart would hand it an address first.
    requests = [
        service("late-a", created="2"),
        service("late-b", created="3"),
    ]
    before, _ = allocate(pools, requests)
    pending = service("early", created="1")
    requests_with_pending = [pending, *requests]
    before = dict(before)
    before["default/early"] = Allocation("default/early", (), Reason.OUT_OF_IPS, "")
    after = restart(pools, requests_with_pending, before)
    assert after["default/late-a"].ips == before["default/late-a"].ips
    assert after["default/late-b"].ips == before["default/late-b"].ips
    assert after["default/early"].reason is Reason.OUT_OF_IPS


def test_single_address_is_never_given_twice_after_restart_metallb_1774() -> None:
    pools = [pool("one", "203.0.113.2/32")]
    svc1, svc2 = service("svc1", created="2"), service("svc2", created="1")
    before, _ = allocate(pools, [svc1])
    # svc2 appears while svc1 holds the only address; it sorts first but must stay pending.
    snapshot = dict(before)
    snapshot["default/svc2"] = Allocation("default/svc2", (), Reason.OUT_OF_IPS, "")
    after = restart(pools, [svc1, svc2], snapshot)
    assert after["default/svc1"].ips == ("203.0.113.2",)
    assert after["default/svc2"].ips == ()
    assert after["default/svc2"].reason is Reason.OUT_OF_IPS


def test_requested_address_stays_with_its_holder_metallb_1984() -> None:
    pools = [pool("p", "203.0.113.0/30")]
    holder = service("holder", loadBalancerIP="203.0.113.1", created="2")
    others = [service(f"o{i}", created=f"1{i}") for i in range(5)]
    before, _ = allocate(pools, [holder, *others])
    for _ in range(3):
        before = restart(pools, [holder, *others], before)
        assert before["default/holder"].ips == ("203.0.113.1",)


def test_shared_address_stays_shared_after_restart_cilium_30700() -> None:
    share = {"herald.io/sharing-key": "web"}
    requests = [
        service("http", annotations=share, ports=(("TCP", 80),), created="1"),
        service("alt", annotations=share, ports=(("TCP", 8080),), created="2"),
    ]
    pools = [pool("p", "203.0.113.0/24")]
    before, _ = allocate(pools, requests)
    assert before["default/http"].ips == before["default/alt"].ips
    after = restart(pools, requests, dict(before))
    assert after["default/http"].ips == after["default/alt"].ips == before["default/http"].ips


def test_one_sharing_key_on_several_addresses_survives_restart_cilium_46262() -> None:
    share = {"herald.io/sharing-key": "web"}
    # Same port: they cannot share, so one key spans two addresses.
    requests = [
        service("a", annotations=share, ports=(("TCP", 80),), created="1"),
        service("b", annotations=share, ports=(("TCP", 80),), created="2"),
        service("c", annotations=share, ports=(("TCP", 443),), created="3"),
    ]
    pools = [pool("p", "203.0.113.0/24")]
    before, _ = allocate(pools, requests)
    assert before["default/a"].ips != before["default/b"].ips
    after = restart(pools, requests, dict(before))
    assert {k: a.ips for k, a in after.items()} == {k: a.ips for k, a in before.items()}


def test_deleting_a_service_moves_no_other_dual_stack_address_metallb_2723() -> None:
    from herald.ipam import Allocator

    pools = [pool("v4", "203.0.113.0/24"), pool("v6", "2001:db8::/64")]
    allocator = Allocator(pools)
    requests = [
        service(f"s{i}", ipFamilyPolicy="RequireDualStack", created=str(i)) for i in range(4)
    ]
    allocator.add_all(requests)
    before = dict(allocator.allocations())
    assert allocator.remove("default/s0") == {}
    assert {k: before[k] for k in allocator.allocations()} == dict(allocator.allocations())
    # And a restart after the deletion changes nothing either.
    after = restart(pools, requests[1:], before)
    assert {k: after[k].ips for k in after} == {k: before[k].ips for k in after}


def test_shrinking_a_pool_by_unused_addresses_moves_nothing_cilium_41458() -> None:
    wide = [pool("p", "203.0.113.9-203.0.113.50")]
    requests = [service(f"s{i}", created=f"{i:02}") for i in range(25)]
    before, _ = allocate(wide, requests)
    shrunk = [pool("p", "203.0.113.9-203.0.113.39", "203.0.113.49-203.0.113.50")]
    after = restart(shrunk, requests, dict(before))
    assert {k: a.ips for k, a in after.items()} == {k: a.ips for k, a in before.items()}
