"""Which VIPs are announced on the local segment, by which nodes, on which interfaces (pure).

`announcements(state)` reads the L2AnnouncementPolicy objects of a snapshot and returns one
`Announcement` per VIP: the Services behind it (Services sharing an IP share one entry, and
so one owner) and the nodes eligible to answer for it with the interface patterns each may
use. A node is eligible when a policy selecting the Service also selects the node and, for
every Service of the VIP with externalTrafficPolicy Local, the node has a usable endpoint
of it (`facts`: the endpoint rule BGP and the datapath follow too). Services with no usable
endpoint anywhere are not counted; a VIP none of whose Services can be served has no
eligible node: herald never announces what it cannot forward.

Whether a node is alive is not decided here: `owners.choose_owners` takes the live set.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from herald.api.core import LB_CLASS_L2, Service
from herald.api.l2 import L2AnnouncementPolicy
from herald.api.selector import matches
from herald.api.snapshot import ClusterState
from herald.dataplane.model import IPAddress, IPNetwork
from herald.facts import is_handled, lb_addresses, service_labels, serving_nodes

# Interface patterns of a candidate; empty means "every interface with an address in the
# VIP's subnet" (the policy's documented default).
AnyInterface: tuple[str, ...] = ()


@dataclass(frozen=True, order=True)
class Candidate:
    """A node that may answer for a VIP, and the interface name patterns it may use."""

    node: str
    interfaces: tuple[str, ...] = AnyInterface


@dataclass(frozen=True)
class Announcement:
    vip: IPAddress
    services: tuple[str, ...]
    candidates: tuple[Candidate, ...]

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(c.node for c in self.candidates)

    def interfaces_of(self, node: str) -> tuple[str, ...]:
        for candidate in self.candidates:
            if candidate.node == node:
                return candidate.interfaces
        return AnyInterface


def is_l2_service(service: Service) -> bool:
    """LoadBalancer Services herald serves whose class is herald's L2 class or unset."""
    return is_handled(service) and service.spec.load_balancer_class in (None, LB_CLASS_L2)


def announcements(state: ClusterState) -> tuple[Announcement, ...]:
    """One Announcement per VIP some policy announces, sorted by address."""
    node_labels = {node.metadata.name: node.metadata.labels for node in state.nodes}
    slices = state.endpoint_slices_by_service
    # vip -> services, and vip -> node -> interface patterns (None: any interface)
    services_of: dict[IPAddress, list[str]] = {}
    selected: dict[IPAddress, dict[str, set[str] | None]] = {}
    # vip -> nodes allowed by every Local Service of it (None: no Local Service)
    local_nodes: dict[IPAddress, frozenset[str] | None] = {}
    for service in state.services:
        if not is_l2_service(service):
            continue
        ready = serving_nodes(slices.get(service.key, ()))
        if not ready:
            continue
        labels = service_labels(service)
        for policy in state.l2_policies:
            if not matches(policy.spec.service_selector, labels):
                continue
            for vip in _addresses(service, policy):
                if service.key not in services_of.setdefault(vip, []):
                    services_of[vip].append(service.key)
                nodes = selected.setdefault(vip, {})
                for name, labels_of_node in node_labels.items():
                    if matches(policy.spec.node_selector, labels_of_node):
                        nodes[name] = _union(nodes.get(name, set()), policy.spec.interfaces)
                if service.spec.external_traffic_policy == "Local":
                    before = local_nodes.get(vip)
                    local_nodes[vip] = ready if before is None else before & ready
                else:
                    local_nodes.setdefault(vip, None)
    result = []
    for vip in sorted(services_of, key=address_order):
        allowed = local_nodes.get(vip)
        candidates = tuple(
            Candidate(node, tuple(sorted(patterns)) if patterns is not None else AnyInterface)
            for node, patterns in sorted(selected[vip].items())
            if allowed is None or node in allowed
        )
        result.append(Announcement(vip, tuple(sorted(services_of[vip])), candidates))
    return tuple(result)


def matching_interfaces(
    patterns: tuple[str, ...],
    links: Mapping[str, Iterable[IPNetwork]],
    vip: IPAddress,
) -> tuple[str, ...]:
    """The node's interfaces to answer on: names matching a pattern (anywhere in the name, as
    Cilium's policy does), or with no patterns every interface with a subnet holding `vip`."""
    if patterns:
        compiled = [re.compile(p) for p in patterns]
        return tuple(name for name in sorted(links) if any(p.search(name) for p in compiled))
    return tuple(
        name
        for name, networks in sorted(links.items())
        if any(vip.version == net.version and vip in net for net in networks)
    )


def address_order(address: IPAddress) -> tuple[int, bytes]:
    return address.version, address.packed


def _addresses(service: Service, policy: L2AnnouncementPolicy) -> Iterable[IPAddress]:
    if policy.spec.load_balancer_ips:
        yield from lb_addresses(service)
    if policy.spec.external_ips:
        yield from (ipaddress.ip_address(ip) for ip in service.spec.external_ips)


def _union(patterns: set[str] | None, more: tuple[str, ...]) -> set[str] | None:
    # A policy with no patterns allows every interface, which no pattern list can narrow.
    if patterns is None or not more:
        return None
    return patterns | set(more)
