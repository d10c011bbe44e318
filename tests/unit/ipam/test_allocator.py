"""LB-IPAM behaviour a Cilium or MetalLB user expects, one rule per test."""

from __future__ import annotations

import dataclasses

from herald.ipam import Allocator, Reason, allocate
from herald.ipam.request import to_address

from .helpers import pool, service


def ips(result: object, key: str) -> tuple[str, ...]:
    allocations, _ = result  # type: ignore[misc]
    return allocations[key].ips  # type: ignore[no-any-return]


def test_seed_first_service_gets_the_pools_first_address() -> None:
    result = allocate([pool("seed", "203.0.113.0/24")], [service("web1-lb")])
    assert ips(result, "default/web1-lb") == ("203.0.113.0",)
    allocations, _ = result
    assert allocations["default/web1-lb"].reason is Reason.SATISFIED


def test_allow_first_last_no_keeps_network_and_broadcast_back() -> None:
    pools = [pool("p", "203.0.113.0/30", allowFirstLastIPs="No")]
    allocations, usage = allocate(pools, [service(f"s{i}") for i in range(3)])
    assert allocations["default/s0"].ips == ("203.0.113.1",)
    assert allocations["default/s1"].ips == ("203.0.113.2",)
    assert allocations["default/s2"].reason is Reason.OUT_OF_IPS
    assert (usage[0].total, usage[0].used, usage[0].available) == (2, 2, 0)


def test_small_blocks_are_whole_even_without_first_last() -> None:
    pools = [pool("p", "203.0.113.7/32", "203.0.113.8/31", allowFirstLastIPs="No")]
    allocations, usage = allocate(pools, [service(f"s{i}") for i in range(3)])
    assert sorted(a.ips[0] for a in allocations.values()) == [
        "203.0.113.7",
        "203.0.113.8",
        "203.0.113.9",
    ]
    assert usage[0].total == 3


def test_start_stop_ranges_and_ipv6() -> None:
    pools = [pool("p", "198.51.100.10-198.51.100.11", "2001:db8::/126")]
    reqs = [service("a", ipFamilyPolicy="SingleStack", ipFamilies=["IPv6"]), service("b")]
    allocations, usage = allocate(pools, reqs)
    assert allocations["default/a"].ips == ("2001:db8::",)
    assert allocations["default/b"].ips == ("198.51.100.10",)
    assert usage[0].total == 6


def test_disabled_pool_keeps_existing_but_gives_nothing_new() -> None:
    pools = [pool("p", "203.0.113.0/24", disabled=True)]
    old = service("old", status_ips=("203.0.113.5",))
    allocations, usage = allocate(pools, [old, service("new")])
    assert allocations["default/old"].ips == ("203.0.113.5",)
    assert allocations["default/new"].reason is Reason.NO_POOL
    assert "disabled" in allocations["default/new"].message
    assert usage[0].available == 0


def test_service_selector_with_namespace_and_name_keys() -> None:
    pools = [
        pool(
            "prod",
            "203.0.113.0/28",
            serviceSelector={"matchLabels": {"io.kubernetes.service.namespace": "prod"}},
        ),
        pool(
            "named",
            "203.0.113.16/28",
            serviceSelector={"matchLabels": {"io.kubernetes.service.name": "special"}},
        ),
    ]
    allocations, _ = allocate(
        pools, [service("a", "prod"), service("special", "dev"), service("other", "dev")]
    )
    assert allocations["prod/a"].ips == ("203.0.113.0",)
    assert allocations["dev/special"].ips == ("203.0.113.16",)
    assert allocations["dev/other"].reason is Reason.POOL_SELECTOR_MISMATCH


def test_overlapping_pools_newer_conflicts_older_serves() -> None:
    older = pool("older", "203.0.113.0/24", created="2026-01-01T00:00:00Z")
    newer = pool("newer", "203.0.113.128/25", created="2026-02-01T00:00:00Z")
    allocations, usage = allocate([newer, older], [service("a")])
    by_name = {u.name: u for u in usage}
    assert by_name["older"].conflicting_with is None
    assert by_name["newer"].conflicting_with == (
        "block 203.0.113.128/25 overlaps block 203.0.113.0/24 of pool older"
    )
    assert by_name["newer"].available == 0
    assert allocations["default/a"].ips == ("203.0.113.0",)


def test_only_herald_classes_are_served() -> None:
    from herald.api.core import Service
    from herald.ipam import requests_from_services

    def svc(name: str, **spec: object) -> Service:
        return Service.model_validate({"metadata": {"name": name}, "spec": spec})

    requests = requests_from_services(
        [
            svc("none", type="LoadBalancer"),
            svc("bgp", type="LoadBalancer", loadBalancerClass="herald.io/bgp"),
            svc("l2", type="LoadBalancer", loadBalancerClass="herald.io/l2"),
            svc("other", type="LoadBalancer", loadBalancerClass="example.com/lb"),
            svc("cluster", type="ClusterIP"),
        ]
    )
    assert sorted(r.key for r in requests) == ["default/bgp", "default/l2", "default/none"]


def test_requested_ips_by_annotation_and_spec() -> None:
    pools = [pool("p", "203.0.113.0/24", "2001:db8::/64")]
    reqs = [
        service("spec", loadBalancerIP="203.0.113.50"),
        service("anno", annotations={"herald.io/ips": "203.0.113.60,2001:db8::60"}),
    ]
    allocations, _ = allocate(pools, reqs)
    assert allocations["default/spec"].ips == ("203.0.113.50",)
    assert allocations["default/anno"].ips == ("203.0.113.60", "2001:db8::60")


def test_requested_ip_failures_have_reasons() -> None:
    pools = [
        pool("p", "203.0.113.0/24", allowFirstLastIPs="No"),
        pool("q", "198.51.100.0/24", serviceSelector={"matchLabels": {"team": "q"}}),
    ]
    reqs = [
        service("holder", loadBalancerIP="203.0.113.9", created="1"),
        service("taken", loadBalancerIP="203.0.113.9", created="2"),
        service("outside", loadBalancerIP="192.0.2.200"),
        service("edge", loadBalancerIP="203.0.113.255"),
        service("unselected", loadBalancerIP="198.51.100.9"),
    ]
    allocations, _ = allocate(pools, reqs)
    assert allocations["default/holder"].ips == ("203.0.113.9",)
    taken = allocations["default/taken"]
    assert (taken.reason, taken.ips) == (Reason.ALREADY_ALLOCATED, ())
    assert "default/holder" in taken.message
    assert allocations["default/outside"].reason is Reason.NO_POOL
    assert allocations["default/outside"].message == "192.0.2.200 is in no LoadBalancerIPPool"
    assert allocations["default/edge"].reason is Reason.NO_POOL
    assert "allowFirstLastIPs: No" in allocations["default/edge"].message
    assert allocations["default/unselected"].reason is Reason.POOL_SELECTOR_MISMATCH


def test_requested_ips_are_all_or_nothing() -> None:
    pools = [pool("p", "203.0.113.0/24")]
    reqs = [
        service("holder", loadBalancerIP="203.0.113.9", created="1"),
        service("both", annotations={"herald.io/ips": "203.0.113.8,203.0.113.9"}, created="2"),
    ]
    allocations, usage = allocate(pools, reqs)
    assert allocations["default/both"].ips == ()
    assert usage[0].used == 1


def test_ip_family_policies() -> None:
    dual = [pool("v4", "203.0.113.0/24"), pool("v6", "2001:db8::/64")]
    only4 = [pool("v4", "203.0.113.0/24")]
    single = service("single")
    prefer = service("prefer", ipFamilyPolicy="PreferDualStack")
    require = service("require", ipFamilyPolicy="RequireDualStack")
    six = service("six", ipFamilyPolicy="SingleStack", ipFamilies=["IPv6"])
    allocations, _ = allocate(dual, [single, prefer, require, six])
    # Processed in key order (no creation timestamps): prefer, require, single, six.
    assert allocations["default/prefer"].ips == ("203.0.113.0", "2001:db8::")
    assert allocations["default/require"].ips == ("203.0.113.1", "2001:db8::1")
    assert allocations["default/single"].ips == ("203.0.113.2",)
    assert allocations["default/six"].ips == ("2001:db8::2",)
    allocations, usage = allocate(only4, [prefer, require, six])
    assert allocations["default/prefer"].ips == ("203.0.113.0",)
    assert allocations["default/prefer"].satisfied
    assert allocations["default/require"].ips == ()
    assert allocations["default/require"].reason is Reason.NO_POOL
    assert allocations["default/six"].reason is Reason.NO_POOL
    assert usage[0].used == 1


def test_single_stack_without_families_falls_back_to_ipv6() -> None:
    allocations, _ = allocate([pool("v6", "2001:db8::/64")], [service("a")])
    assert allocations["default/a"].ips == ("2001:db8::",)


SHARE = {"herald.io/sharing-key": "k"}


def test_sharing_same_key_different_ports() -> None:
    reqs = [
        service("tcp", annotations=SHARE, ports=(("TCP", 53),)),
        service("udp", annotations=SHARE, ports=(("UDP", 53),)),
    ]
    allocations, usage = allocate([pool("p", "203.0.113.0/24")], reqs)
    assert allocations["default/tcp"].ips == allocations["default/udp"].ips == ("203.0.113.0",)
    assert usage[0].used == 1


def test_sharing_refused_with_reasons() -> None:
    cases = {
        "port overlap": (
            service("b", annotations=SHARE, loadBalancerIP="203.0.113.0"),
            "same port(s) TCP/80",
        ),
        "other key": (
            service(
                "b",
                annotations={"herald.io/sharing-key": "x"},
                ports=(("TCP", 81),),
                loadBalancerIP="203.0.113.0",
            ),
            "sharing key 'k', not 'x'",
        ),
        "namespace": (
            service(
                "b", "other", annotations=SHARE, ports=(("TCP", 81),), loadBalancerIP="203.0.113.0"
            ),
            "another namespace",
        ),
        "traffic policy": (
            service(
                "b",
                annotations=SHARE,
                ports=(("TCP", 81),),
                loadBalancerIP="203.0.113.0",
                externalTrafficPolicy="Local",
            ),
            "externalTrafficPolicy Cluster",
        ),
    }
    first = service("a", annotations=SHARE, created="1", loadBalancerIP="203.0.113.0")
    for name, (second, expected) in cases.items():
        second = dataclasses.replace(second, order=("2", second.key))
        allocations, _ = allocate([pool("p", "203.0.113.0/24")], [first, second])
        result = allocations[second.key]
        assert result.reason is Reason.INCOMPATIBLE_SHARING, name
        assert expected in result.message, (name, result.message)


def test_sharing_local_needs_identical_selectors() -> None:
    def local(name: str, app: str, port: int) -> object:
        return service(
            name,
            annotations=SHARE,
            ports=(("TCP", port),),
            externalTrafficPolicy="Local",
            selector={"app": app},
            created=name,
        )

    allocations, _ = allocate(
        [pool("p", "203.0.113.0/24")],
        [local("a", "web", 80), local("b", "web", 81), local("c", "db", 82)],  # type: ignore[list-item]
    )
    assert allocations["default/a"].ips == allocations["default/b"].ips == ("203.0.113.0",)
    assert allocations["default/c"].ips == ("203.0.113.1",)


def test_sharing_across_namespaces_needs_both_to_opt_in() -> None:
    def svc(ns: str, allow: str | None, port: int) -> object:
        annotations = dict(SHARE)
        if allow is not None:
            annotations["herald.io/sharing-cross-namespace"] = allow
        return service("s", ns, annotations=annotations, ports=(("TCP", port),), created=ns)

    both = [svc("a", "b", 80), svc("b", "*", 81)]
    one = [svc("a", "b", 80), svc("b", None, 81)]
    allocations, _ = allocate([pool("p", "203.0.113.0/24")], both)  # type: ignore[arg-type]
    assert allocations["a/s"].ips == allocations["b/s"].ips
    allocations, _ = allocate([pool("p", "203.0.113.0/24")], one)  # type: ignore[arg-type]
    assert allocations["a/s"].ips != allocations["b/s"].ips


# -- stability: the classes of Cilium #40358/#43131 and MetalLB #1774/#2723 -----------------


def test_restart_keeps_every_address_even_when_an_older_service_appears() -> None:
    pools = [pool("p", "203.0.113.0/24")]
    first, _ = allocate(pools, [service("b", created="2"), service("c", created="3")])
    # After a restart, a Service created earlier than both shows up in the same snapshot.
    restored = [
        service("a", created="1"),
        service("b", created="2", status_ips=first["default/b"].ips),
        service("c", created="3", status_ips=first["default/c"].ips),
    ]
    again, _ = allocate(pools, restored)
    assert again["default/b"].ips == first["default/b"].ips
    assert again["default/c"].ips == first["default/c"].ips
    assert again["default/a"].ips == ("203.0.113.2",)


def test_pool_widening_keeps_addresses() -> None:
    reqs = [service(f"s{i}", created=str(i)) for i in range(4)]
    before, _ = allocate([pool("p", "203.0.113.128/30")], reqs)
    with_status = [
        dataclasses.replace(r, current=tuple(map(to_address, before[r.key].ips))) for r in reqs
    ]
    after, _ = allocate([pool("p", "203.0.113.0/24")], with_status)
    assert {k: a.ips for k, a in after.items()} == {k: a.ips for k, a in before.items()}


def test_selector_edit_that_still_matches_keeps_addresses() -> None:
    req = service("web", labels={"team": "a", "tier": "front"}, status_ips=("203.0.113.77",))
    edited = pool(
        "p",
        "203.0.113.0/24",
        serviceSelector={"matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]},
    )
    allocations, _ = allocate([edited], [service("x", created="0"), req])
    assert allocations["default/web"].ips == ("203.0.113.77",)


def test_address_outside_shrunk_pool_is_replaced() -> None:
    req = service("web", status_ips=("203.0.113.200",))
    allocations, _ = allocate([pool("p", "203.0.113.0/25")], [req])
    assert allocations["default/web"].ips == ("203.0.113.0",)


def test_deleting_unrelated_service_moves_nothing() -> None:
    allocator = Allocator([pool("p", "203.0.113.0/24")])
    allocator.add_all([service(f"s{i}", created=str(i)) for i in range(5)])
    before = dict(allocator.allocations())
    changed = allocator.remove("default/s2")
    assert changed == {}
    after = allocator.allocations()
    assert {k: before[k] for k in after} == dict(after)
    # The freed address is the lowest free one, so it is reused first.
    allocator.upsert(service("new", created="9"))
    assert allocator.allocations()["default/new"].ips == before["default/s2"].ips


def test_freed_address_satisfies_a_waiting_service() -> None:
    allocator = Allocator([pool("p", "203.0.113.0/31")])
    allocator.add_all([service("a", created="1"), service("b", created="2")])
    waiting = allocator.upsert(service("c", created="3"))
    assert waiting["default/c"].reason is Reason.OUT_OF_IPS
    changed = allocator.remove("default/a")
    assert changed["default/c"].ips == ("203.0.113.0",)


def test_upsert_with_unchanged_request_changes_nothing() -> None:
    allocator = Allocator([pool("p", "203.0.113.0/24")])
    reqs = [service(f"s{i}", created=str(i)) for i in range(3)]
    allocator.add_all(reqs)
    assert allocator.upsert(reqs[1]) == {}


def test_huge_pools_are_never_materialised() -> None:
    import tracemalloc

    pools = [pool("eight", "10.0.0.0/8"), pool("v6", "2001:db8::/64")]
    reqs = [
        service(f"s{i}", ipFamilyPolicy="PreferDualStack", created=f"{i:05}") for i in range(500)
    ]
    tracemalloc.start()
    allocations, usage = allocate(pools, reqs)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert allocations["default/s499"].ips == ("10.0.1.243", "2001:db8::1f3")
    by_name = {u.name: u for u in usage}
    assert by_name["eight"].total == 2**24
    assert by_name["v6"].total == 2**64
    assert by_name["v6"].available == 2**64 - 500
    assert peak < 5 * 1024 * 1024
