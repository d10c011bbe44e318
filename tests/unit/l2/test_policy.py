"""Which VIPs L2AnnouncementPolicies announce, from which nodes, on which interfaces."""

from __future__ import annotations

from ipaddress import ip_address, ip_network

from herald.api.snapshot import ClusterState
from herald.l2.policy import AnyInterface, Candidate, announcements, matching_interfaces

from .objects import endpoints, node, policy, service

NODES = (node("n1", role="edge"), node("n2", role="edge"), node("n3"))


def state(*objects: object, policies: tuple[object, ...] = (policy(),)) -> ClusterState:
    return ClusterState(
        services=tuple(o for o in objects if o.kind == "Service"),  # type: ignore[attr-defined]
        endpoint_slices=tuple(o for o in objects if o.kind == "EndpointSlice"),  # type: ignore[attr-defined]
        nodes=NODES,
        l2_policies=policies,  # type: ignore[arg-type]
    )


def test_unset_and_l2_class_are_announced_bgp_class_and_foreign_classes_are_not() -> None:
    found = announcements(
        state(
            service("plain", ("203.0.113.1",)),
            service("l2", ("203.0.113.2",), lb_class="herald.io/l2"),
            service("bgp", ("203.0.113.3",), lb_class="herald.io/bgp"),
            service("other", ("203.0.113.4",), lb_class="example.com/lb"),
            *(endpoints(n, ("n1", True)) for n in ("plain", "l2", "bgp", "other")),
        )
    )
    assert [str(a.vip) for a in found] == ["203.0.113.1", "203.0.113.2"]
    assert found[0].nodes == ("n1", "n2", "n3")


def test_selectors_pick_services_and_nodes_and_interfaces_add_up() -> None:
    found = announcements(
        state(
            service("web", ("203.0.113.1",), labels={"tier": "web"}),
            service("db", ("203.0.113.2",)),
            endpoints("web", ("n1", True)),
            endpoints("db", ("n1", True)),
            policies=(
                policy(
                    "edge",
                    serviceSelector={"matchLabels": {"tier": "web"}},
                    nodeSelector={"matchLabels": {"role": "edge"}},
                    interfaces=["^eth0$"],
                ),
                policy(
                    "more", nodeSelector={"matchLabels": {"role": "edge"}}, interfaces=["^bond"]
                ),
            ),
        )
    )
    web, db = found
    assert web.candidates == (
        Candidate("n1", ("^bond", "^eth0$")),
        Candidate("n2", ("^bond", "^eth0$")),
    )
    assert db.candidates == (Candidate("n1", ("^bond",)), Candidate("n2", ("^bond",)))


def test_a_policy_without_interfaces_allows_any_interface() -> None:
    (found,) = announcements(
        state(
            service("web", ("203.0.113.1",)),
            endpoints("web", ("n1", True)),
            policies=(policy("a", interfaces=["^eth0$"]), policy("b")),
        )
    )
    assert {c.interfaces for c in found.candidates} == {AnyInterface}


def test_load_balancer_ips_and_external_ips_follow_the_policy_switches() -> None:
    svc = service("web", ("203.0.113.1",), external_ips=("203.0.113.99",))
    eps = endpoints("web", ("n1", True))
    default = announcements(state(svc, eps))
    both = announcements(state(svc, eps, policies=(policy(externalIPs=True),)))
    external_only = announcements(
        state(svc, eps, policies=(policy(externalIPs=True, loadBalancerIPs=False),))
    )
    assert [str(a.vip) for a in default] == ["203.0.113.1"]
    assert [str(a.vip) for a in both] == ["203.0.113.1", "203.0.113.99"]
    assert [str(a.vip) for a in external_only] == ["203.0.113.99"]


def test_services_sharing_an_ip_are_one_announcement() -> None:
    found = announcements(
        state(
            service("a", ("203.0.113.5",)),
            service("b", ("203.0.113.5",)),
            endpoints("a", ("n1", True)),
            endpoints("b", ("n2", True)),
        )
    )
    assert len(found) == 1
    assert found[0].services == ("default/a", "default/b")


def test_local_services_limit_candidates_to_nodes_with_a_ready_endpoint() -> None:
    found = announcements(
        state(
            service("web", ("203.0.113.1",), local=True),
            endpoints("web", ("n1", False), ("n2", True), ("n3", True)),
            service("shared", ("203.0.113.1",), local=True),
            endpoints("shared", ("n3", True)),
        )
    )
    assert found[0].nodes == ("n3",)


def test_a_vip_with_no_ready_endpoint_is_not_announced() -> None:
    found = announcements(state(service("web", ("203.0.113.1",)), endpoints("web", ("n1", False))))
    assert found == ()


def test_interfaces_by_pattern_or_by_subnet() -> None:
    links = {
        "eth0": [ip_network("192.0.2.0/24"), ip_network("2001:db8:2::/64")],
        "eth1": [ip_network("198.51.100.0/24")],
        "bond0": [],
    }
    assert matching_interfaces(("^eth",), links, ip_address("192.0.2.9")) == ("eth0", "eth1")
    assert matching_interfaces(("bond|eth1",), links, ip_address("192.0.2.9")) == ("bond0", "eth1")
    assert matching_interfaces((), links, ip_address("192.0.2.9")) == ("eth0",)
    assert matching_interfaces((), links, ip_address("2001:db8:2::9")) == ("eth0",)
    assert matching_interfaces((), links, ip_address("203.0.113.9")) == ()
