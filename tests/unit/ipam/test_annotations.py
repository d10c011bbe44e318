"""Cilium's and MetalLB's Service annotations honoured where they stand, beside herald's own:
each one alone, who wins when several are set, and what is a warning or an error."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from pydantic import ValidationError

from herald.annotations import ipam_settings
from herald.api.core import Service
from herald.ipam import Allocator, Reason, allocate

from .helpers import pool, service

IPS = (
    "herald.io/ips",
    "lbipam.cilium.io/ips",
    "io.cilium/lb-ipam-ips",
    "metallb.io/loadBalancerIPs",
    "metallb.universe.tf/loadBalancerIPs",
)
SHARING_KEYS = (
    "herald.io/sharing-key",
    "lbipam.cilium.io/sharing-key",
    "io.cilium/lb-ipam-sharing-key",
    "metallb.io/allow-shared-ip",
    "metallb.universe.tf/allow-shared-ip",
)
CROSS_NAMESPACE = (
    "herald.io/sharing-cross-namespace",
    "lbipam.cilium.io/sharing-cross-namespace",
    "io.cilium/lb-ipam-sharing-cross-namespace",
)
ADDRESS_POOLS = ("metallb.io/address-pool", "metallb.universe.tf/address-pool")

DUAL = [pool("p", "203.0.113.0/24", "2001:db8::/120")]


def at(name: str) -> str:
    return f"metadata.annotations[{name}]"


# -- each annotation alone ----------------------------------------------------------------


@pytest.mark.parametrize("name", IPS)
def test_each_ips_annotation_alone_gets_its_addresses(name: str) -> None:
    requested = service("web", annotations={name: "2001:db8::10, 203.0.113.10"})
    allocations, _ = allocate(DUAL, [service("first"), requested])
    assert allocations["default/web"].ips == ("203.0.113.10", "2001:db8::10")
    assert allocations["default/web"].reason is Reason.SATISFIED


@pytest.mark.parametrize("name", SHARING_KEYS)
def test_each_sharing_key_annotation_alone_shares(name: str) -> None:
    a = service("a", annotations={name: "web"}, ports=(("TCP", 80),))
    b = service("b", annotations={name: "web"}, ports=(("TCP", 443),))
    allocations, _ = allocate(DUAL, [a, b])
    assert allocations["default/a"].ips == allocations["default/b"].ips == ("203.0.113.0",)


@pytest.mark.parametrize("foreign", SHARING_KEYS[1:])
def test_a_foreign_key_and_heralds_share_one_address(foreign: str) -> None:
    a = service("a", annotations={foreign: "web"}, ports=(("TCP", 80),), created="1")
    b = service(
        "b", annotations={"herald.io/sharing-key": "web"}, ports=(("UDP", 53),), created="2"
    )
    allocations, _ = allocate(DUAL, [a, b])
    assert allocations["default/a"].ips == allocations["default/b"].ips


@pytest.mark.parametrize("name", CROSS_NAMESPACE)
def test_each_cross_namespace_annotation_alone_lets_namespaces_share(name: str) -> None:
    def svc(namespace: str, allow: str | None, port: int) -> Any:
        annotations = {"lbipam.cilium.io/sharing-key": "web"}
        if allow is not None:
            annotations[name] = allow
        return service("s", namespace, annotations=annotations, ports=(("TCP", port),))

    allocations, _ = allocate(DUAL, [svc("a", "b", 80), svc("b", "*", 81)])
    assert allocations["a/s"].ips == allocations["b/s"].ips
    # Both must allow it, as in Cilium.
    allocations, _ = allocate(DUAL, [svc("a", "b", 80), svc("b", None, 81)])
    assert allocations["a/s"].ips != allocations["b/s"].ips


@pytest.mark.parametrize("name", ADDRESS_POOLS)
def test_address_pool_alone_restricts_the_choice_to_that_pool(name: str) -> None:
    pools = [pool("a", "203.0.113.0/24", created="1"), pool("b", "198.51.100.0/24", created="2")]
    allocations, usage = allocate(pools, [service("web", annotations={name: "b"})])
    assert allocations["default/web"].ips == ("198.51.100.0",)
    assert [(u.name, u.used) for u in usage] == [("a", 0), ("b", 1)]


# -- MetalLB's allow-shared-ip: herald's sharing rules, and MetalLB's namespaces ------------


def test_metallb_sharing_needs_the_same_key_and_distinct_ports() -> None:
    def svc(name: str, key: str, port: int) -> Any:
        annotations = {
            "metallb.io/allow-shared-ip": key,
            "metallb.io/loadBalancerIPs": "203.0.113.7",
        }
        return service(name, annotations=annotations, ports=(("TCP", port),), created=name)

    allocations, _ = allocate(DUAL, [svc("a", "dns", 53), svc("b", "dns", 53)])
    assert allocations["default/b"].reason is Reason.INCOMPATIBLE_SHARING
    assert "TCP/53" in allocations["default/b"].message
    allocations, _ = allocate(DUAL, [svc("a", "dns", 53), svc("b", "web", 80)])
    assert allocations["default/b"].reason is Reason.INCOMPATIBLE_SHARING
    assert "sharing key 'dns'" in allocations["default/b"].message
    allocations, _ = allocate(DUAL, [svc("a", "dns", 53), svc("b", "dns", 54)])
    assert allocations["default/a"].ips == allocations["default/b"].ips == ("203.0.113.7",)


def test_metallb_sharing_with_local_policy_needs_the_same_pods() -> None:
    def svc(name: str, app: str, port: int) -> Any:
        return service(
            name,
            annotations={"metallb.universe.tf/allow-shared-ip": "k"},
            ports=(("TCP", port),),
            externalTrafficPolicy="Local",
            selector={"app": app},
            created=name,
        )

    allocations, _ = allocate(DUAL, [svc("a", "x", 80), svc("b", "y", 81)])
    assert allocations["default/a"].ips != allocations["default/b"].ips
    allocations, _ = allocate(DUAL, [svc("a", "x", 80), svc("b", "x", 81)])
    assert allocations["default/a"].ips == allocations["default/b"].ips


def test_metallb_key_alone_shares_across_namespaces_as_metallb_does() -> None:
    def svc(namespace: str, annotations: dict[str, str], port: int) -> Any:
        return service("s", namespace, annotations=annotations, ports=(("TCP", port),))

    metallb = {"metallb.io/allow-shared-ip": "web"}
    allocations, _ = allocate(DUAL, [svc("a", metallb, 80), svc("b", metallb, 81)])
    assert allocations["a/s"].ips == allocations["b/s"].ips
    # A Service keyed by herald's annotation keeps herald's rule: its namespace only.
    herald = {"herald.io/sharing-key": "web"}
    allocations, _ = allocate(DUAL, [svc("a", metallb, 80), svc("b", herald, 81)])
    assert allocations["a/s"].ips != allocations["b/s"].ips
    # A cross-namespace annotation beside MetalLB's key is taken as written.
    narrow = {**metallb, "herald.io/sharing-cross-namespace": "c"}
    allocations, _ = allocate(DUAL, [svc("a", narrow, 80), svc("b", metallb, 81)])
    assert allocations["a/s"].ips != allocations["b/s"].ips


# -- address-pool: only that pool, or a condition that says why not --------------------------


def test_address_pool_naming_no_pool_is_unsatisfied_with_a_clear_reason() -> None:
    svc = service("web", annotations={"metallb.io/address-pool": "gold"})
    allocations, _ = allocate(DUAL, [svc])
    assert allocations["default/web"].reason is Reason.NO_POOL
    assert allocations["default/web"].ips == ()
    assert "no LoadBalancerIPPool named 'gold'" in allocations["default/web"].message


def test_address_pool_without_the_family_is_unsatisfied() -> None:
    pools = [pool("v4", "203.0.113.0/24"), pool("v6", "2001:db8::/120")]
    svc = service(
        "web",
        annotations={"metallb.io/address-pool": "v6"},
        ipFamilyPolicy="SingleStack",
        ipFamilies=["IPv4"],
    )
    allocations, _ = allocate(pools, [svc])
    assert allocations["default/web"].reason is Reason.NO_POOL
    assert "pool v6 has no IPv4 addresses" in allocations["default/web"].message


def test_address_pool_still_needs_the_pools_selector() -> None:
    pools = [pool("gold", "203.0.113.0/24", serviceSelector={"matchLabels": {"tier": "gold"}})]
    allocations, _ = allocate(
        pools, [service("web", annotations={"metallb.io/address-pool": "gold"})]
    )
    assert allocations["default/web"].reason is Reason.POOL_SELECTOR_MISMATCH
    assert "pool gold" in allocations["default/web"].message


def test_address_pool_disabled_or_conflicting_says_so() -> None:
    pools = [
        pool("a", "203.0.113.0/24", created="1"),
        pool("off", "198.51.100.0/24", created="2", disabled=True),
        pool("late", "203.0.113.128/25", created="3"),
    ]
    requests = [
        service("x", annotations={"metallb.io/address-pool": "off"}),
        service("y", annotations={"metallb.io/address-pool": "late"}),
    ]
    allocations, _ = allocate(pools, requests)
    assert allocations["default/x"].reason is Reason.NO_POOL
    assert "pool off is disabled" in allocations["default/x"].message
    assert allocations["default/y"].reason is Reason.NO_POOL
    assert "pool late conflicts" in allocations["default/y"].message


def test_address_pool_and_a_requested_address_of_another_pool_are_refused() -> None:
    pools = [pool("a", "203.0.113.0/24", created="1"), pool("b", "198.51.100.0/24", created="2")]
    annotations = {"metallb.io/address-pool": "b", "metallb.io/loadBalancerIPs": "203.0.113.9"}
    allocations, _ = allocate(pools, [service("web", annotations=annotations)])
    assert allocations["default/web"].reason is Reason.POOL_SELECTOR_MISMATCH
    assert allocations["default/web"].message == (
        "203.0.113.9 is in pool a, not in pool b that the Service's address-pool annotation names"
    )
    annotations["metallb.io/loadBalancerIPs"] = "198.51.100.9"
    allocations, _ = allocate(pools, [service("web", annotations=annotations)])
    assert allocations["default/web"].ips == ("198.51.100.9",)


def test_naming_another_pool_moves_the_service_there() -> None:
    pools = [pool("a", "203.0.113.0/24", created="1"), pool("b", "198.51.100.0/24", created="2")]
    allocator = Allocator(pools)
    allocator.add_all([service("web")])
    held = allocator.allocations()["default/web"].ips
    assert held == ("203.0.113.0",)
    moved = service("web", annotations={"metallb.io/address-pool": "b"}, status_ips=held)
    changes = allocator.upsert(moved)
    assert changes["default/web"].ips == ("198.51.100.0",)
    assert [(u.name, u.used) for u in allocator.pool_usage()] == [("a", 0), ("b", 1)]
    # A restart from that status keeps it.
    restored, _ = allocate(
        pools,
        [
            service(
                "web", annotations={"metallb.io/address-pool": "b"}, status_ips=("198.51.100.0",)
            )
        ],
    )
    assert restored["default/web"].ips == ("198.51.100.0",)


# -- who wins, and what is said about the others ---------------------------------------------


def test_heralds_annotation_wins_with_a_warning() -> None:
    annotations = {"herald.io/ips": "203.0.113.10", "lbipam.cilium.io/ips": "203.0.113.20"}
    settings = ipam_settings(annotations)
    assert settings.requested == (ipaddress.ip_address("203.0.113.10"),)
    assert settings.errors == ()
    assert [(w.path, w.message) for w in settings.warnings] == [
        (
            at("lbipam.cilium.io/ips"),
            "ignored: herald.io/ips wins and asks for 203.0.113.10, not 203.0.113.20; "
            "remove this annotation or make it say the same",
        )
    ]
    allocations, _ = allocate(DUAL, [service("web", annotations=annotations)])
    assert allocations["default/web"].ips == ("203.0.113.10",)


def test_herald_wins_over_every_disagreeing_foreign_annotation() -> None:
    settings = ipam_settings(
        {
            "herald.io/sharing-key": "a",
            "lbipam.cilium.io/sharing-key": "b",
            "metallb.io/allow-shared-ip": "c",
            "metallb.universe.tf/allow-shared-ip": "a",
        }
    )
    assert settings.sharing_key == "a"
    assert settings.errors == ()
    assert [w.path for w in settings.warnings] == [
        at("lbipam.cilium.io/sharing-key"),
        at("metallb.io/allow-shared-ip"),
        at("metallb.universe.tf/allow-shared-ip"),
    ]


def test_annotations_that_agree_say_nothing() -> None:
    settings = ipam_settings(
        {
            "herald.io/ips": "203.0.113.10,2001:db8::10",
            "lbipam.cilium.io/ips": " 2001:db8:0::10 , 203.0.113.10",
            "metallb.io/loadBalancerIPs": "203.0.113.10,2001:db8::10",
            "herald.io/sharing-cross-namespace": "a,b",
            "lbipam.cilium.io/sharing-cross-namespace": "b, a",
        }
    )
    assert (settings.errors, settings.warnings) == ((), ())
    assert settings.sharing_namespaces == frozenset({"a", "b"})


@pytest.mark.parametrize(
    ("current", "older"),
    [
        ("lbipam.cilium.io/ips", "io.cilium/lb-ipam-ips"),
        ("metallb.io/loadBalancerIPs", "metallb.universe.tf/loadBalancerIPs"),
    ],
)
def test_one_implementations_two_names_follow_its_own_order(current: str, older: str) -> None:
    settings = ipam_settings({current: "203.0.113.10", older: "203.0.113.20"})
    assert settings.requested == (ipaddress.ip_address("203.0.113.10"),)
    assert settings.errors == ()
    assert [w.path for w in settings.warnings] == [at(older)]
    assert settings.warnings[0].message.startswith(f"ignored: {current} is read first")


def test_cilium_and_metallb_disagreeing_without_herald_is_an_error() -> None:
    settings = ipam_settings(
        {"lbipam.cilium.io/ips": "203.0.113.10", "metallb.io/loadBalancerIPs": "203.0.113.20"}
    )
    assert [(e.path, e.message) for e in settings.errors] == [
        (
            at("metallb.io/loadBalancerIPs"),
            "asks for 203.0.113.20 but lbipam.cilium.io/ips asks for 203.0.113.10, and herald "
            "cannot tell which one the Service was served by: remove one, or set herald.io/ips, "
            "which wins over both",
        )
    ]
    # herald's annotation settles it: warnings only.
    settled = ipam_settings(
        {
            "lbipam.cilium.io/ips": "203.0.113.10",
            "metallb.io/loadBalancerIPs": "203.0.113.20",
            "herald.io/ips": "203.0.113.10",
        }
    )
    assert settled.errors == ()
    assert [w.path for w in settled.warnings] == [at("metallb.io/loadBalancerIPs")]


def test_foreign_disagreement_is_a_located_validation_error() -> None:
    with pytest.raises(ValidationError) as caught:
        Service.model_validate(
            {
                "metadata": {
                    "name": "web",
                    "annotations": {
                        "io.cilium/lb-ipam-sharing-key": "a",
                        "metallb.universe.tf/allow-shared-ip": "b",
                    },
                },
                "spec": {"type": "LoadBalancer"},
            }
        )
    assert "annotation metallb.universe.tf/allow-shared-ip: asks for 'b' but " in str(caught.value)


def test_empty_foreign_annotations_are_unset_as_their_owners_read_them() -> None:
    settings = ipam_settings(
        {
            "metallb.io/allow-shared-ip": "",
            "lbipam.cilium.io/ips": "",
            "metallb.io/address-pool": " ",
        }
    )
    assert (settings.requested, settings.sharing_key, settings.pool) == ((), None, None)
    assert (settings.errors, settings.warnings) == ((), ())
    # herald's own empty annotation is a mistake, said as such.
    assert [e.path for e in ipam_settings({"herald.io/sharing-key": ""}).errors] == [
        at("herald.io/sharing-key")
    ]


@pytest.mark.parametrize("name", IPS)
def test_invalid_addresses_are_located_on_their_annotation(name: str) -> None:
    settings = ipam_settings({name: "203.0.113.10,203.0.113.x"})
    assert [(e.path, e.message) for e in settings.errors] == [
        (
            at(name),
            "'203.0.113.x' is not an IP address; write one such as 203.0.113.10 or 2001:db8::10",
        )
    ]
    assert [e.message for e in ipam_settings({name: "203.0.113.10,"}).errors] == [
        "empty entry; write a comma-separated list of IP addresses such as "
        "'203.0.113.10,2001:db8::10'"
    ]


def test_an_annotation_over_spec_load_balancer_ip_warns_when_it_leaves_it_out() -> None:
    settings = ipam_settings({"lbipam.cilium.io/ips": "203.0.113.10"}, "203.0.113.9")
    assert settings.requested == (ipaddress.ip_address("203.0.113.10"),)
    assert [(w.path, w.message) for w in settings.warnings] == [
        (
            at("lbipam.cilium.io/ips"),
            "spec.loadBalancerIP 203.0.113.9 is not requested: this annotation wins over it and "
            "does not list it; add it here or remove spec.loadBalancerIP",
        )
    ]
    listed = ipam_settings({"metallb.io/loadBalancerIPs": "203.0.113.9,2001:db8::9"}, "203.0.113.9")
    assert listed.warnings == ()
    assert ipam_settings({}, "203.0.113.9").requested == (ipaddress.ip_address("203.0.113.9"),)


def test_foreign_annotations_are_read_only_on_services_herald_serves() -> None:
    def parse(annotations: dict[str, str], **spec: Any) -> Service:
        return Service.model_validate(
            {"metadata": {"name": "s", "annotations": annotations}, "spec": spec}
        )

    bad = {"lbipam.cilium.io/ips": "not-an-ip", "metallb.io/allow-shared-ip": "x"}
    # Cilium's or MetalLB's own Services, or no load balancer at all: theirs to read.
    parse(bad, type="LoadBalancer", loadBalancerClass="io.cilium/bgp-control-plane")
    parse(bad, type="ClusterIP")
    with pytest.raises(ValidationError):
        parse(bad, type="LoadBalancer")
    with pytest.raises(ValidationError):
        parse(bad, type="LoadBalancer", loadBalancerClass="herald.io/l2")
    # herald's own annotation is checked wherever it is written, as before.
    with pytest.raises(ValidationError):
        parse({"herald.io/ips": "not-an-ip"}, type="ClusterIP")
