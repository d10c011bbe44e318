"""Facts derived from the API objects, each decided here and only here (pure).

IPAM, the node plan, the L2 policy and the datapath all ask the same questions of a
snapshot: is this Service herald's, which addresses does it hold, which labels do
selectors see, which of its endpoints may take new connections, may this node serve it,
what are a node's addresses. Answering them in one place is what keeps BGP, L2 and the
datapath from disagreeing (a datapath that forwards while BGP withdraws).

The endpoint rule is Kubernetes' own (ProxyTerminatingEndpoints, see
`dataplane/endpoints.py`): ready endpoints; when none is ready, the ones still serving
while terminating. A Service is announced exactly while that rule leaves it a backend, so
a rolling update that leaves only terminating pods keeps its route and drains.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Sequence

from herald.addresses import address_order
from herald.api.core import (
    HERALD_LB_CLASSES,
    EndpointConditions,
    EndpointSlice,
    Node,
    ObjectReference,
    Service,
)
from herald.api.pool import SERVICE_NAME_KEY, SERVICE_NAMESPACE_KEY
from herald.dataplane.endpoints import usable
from herald.dataplane.model import Backend, IPAddress, TrafficPolicy

__all__ = [
    "backends",
    "can_serve",
    "heartbeat_address",
    "internal_addresses",
    "is_handled",
    "lb_addresses",
    "node_addresses",
    "parse_address",
    "router_id",
    "serves",
    "service_labels",
    "serving_nodes",
]


# Every plan reads every address of the snapshot again, mostly the same strings as the last
# plan: parsing them was a third of a 10,000-Service plan (bench/scale/plan.py). Addresses
# are immutable; the bound holds a cluster's endpoints and VIPs (about 30 MiB when full).
@functools.lru_cache(maxsize=1 << 17)
def parse_address(text: str) -> IPAddress:
    """`ipaddress.ip_address`, remembered; raises ValueError for text that is no address."""
    return ipaddress.ip_address(text)


# -- Services -----------------------------------------------------------------------------


def is_handled(service: Service) -> bool:
    """LoadBalancer Services with no class or one of herald's classes."""
    spec = service.spec
    return spec.type == "LoadBalancer" and (
        spec.load_balancer_class is None or spec.load_balancer_class in HERALD_LB_CLASSES
    )


def service_labels(service: Service) -> dict[str, str]:
    """Labels as selectors see a Service: its own plus its namespace and name."""
    return {
        **service.metadata.labels,
        SERVICE_NAMESPACE_KEY: service.metadata.namespace or "default",
        SERVICE_NAME_KEY: service.metadata.name,
    }


def lb_addresses(service: Service) -> tuple[IPAddress, ...]:
    """The load-balancer addresses in the Service's status (the ones IPAM gave it)."""
    found: list[IPAddress] = []
    for ingress in service.status.load_balancer.ingress:
        if ingress.ip:
            try:
                found.append(parse_address(ingress.ip))
            except ValueError:
                continue  # a status another controller wrote; IPAM replaces it
    return tuple(dict.fromkeys(found))


# -- endpoints ----------------------------------------------------------------------------


def backends(slices: Iterable[EndpointSlice]) -> tuple[Backend, ...]:
    """Every address of every endpoint of the slices, with its conditions, in address order
    (one entry per address and node: a moving endpoint may be in two slices at once)."""
    found: dict[tuple[IPAddress, str], Backend] = {}
    for eps in slices:
        if eps.address_type == "FQDN":
            continue
        for endpoint in eps.endpoints:
            ready, serving, terminating = _conditions(endpoint.conditions)
            node = endpoint.node_name or ""
            pod = _pod(endpoint.target_ref, eps.metadata.namespace or "default")
            for address in endpoint.addresses:
                ip = parse_address(address)
                found[(ip, node)] = Backend(ip, node, ready, serving, terminating, pod=pod)
    return tuple(found[key] for key in sorted(found, key=lambda k: (*address_order(k[0]), k[1])))


def can_serve(service: Service, slices: Iterable[EndpointSlice], node: str) -> bool:
    """Whether `node` can forward new connections of `service` to some backend: with policy
    Cluster while the Service has a usable backend anywhere, with Local while this node has
    one."""
    return serves(service, backends(slices), node)


def serves(service: Service, found: Sequence[Backend], node: str) -> bool:
    """`can_serve` for the Service's `backends`, already read from its slices."""
    return bool(usable(found, _policy(service), node))


def serving_nodes(slices: Iterable[EndpointSlice]) -> frozenset[str]:
    """Nodes with a backend that may take new connections by the one endpoint rule applied
    node by node, as policy Local does ("" for endpoints without a node name)."""
    found = backends(slices)
    return frozenset(n for n in {b.node for b in found} if usable(found, TrafficPolicy.LOCAL, n))


def _conditions(conditions: EndpointConditions) -> tuple[bool, bool, bool]:
    # Kubernetes: nil `ready` means ready; nil `serving` follows `ready`; nil terminating
    # is false.
    ready = True if conditions.ready is None else conditions.ready
    serving = ready if conditions.serving is None else conditions.serving
    return ready, serving, bool(conditions.terminating)


def _pod(ref: ObjectReference | None, namespace: str) -> str:
    if ref is None or ref.kind != "Pod" or not ref.name:
        return ""
    return f"{ref.namespace or namespace}/{ref.name}"


def _policy(service: Service) -> TrafficPolicy:
    return TrafficPolicy(service.spec.external_traffic_policy)


# -- nodes --------------------------------------------------------------------------------


def internal_addresses(node: Node) -> tuple[IPAddress, ...]:
    """The node's InternalIPs, IPv4 first, in the order the Node lists them."""
    found = []
    for address in node.status.addresses:
        if address.type != "InternalIP":
            continue
        try:
            found.append(ipaddress.ip_address(address.address))
        except ValueError:
            continue  # validation reports it; the node is then treated as having none
    return tuple(sorted(found, key=lambda a: a.version))


def heartbeat_address(node: Node) -> IPAddress | None:
    """The address L2 heartbeats go to: the first InternalIP, IPv4 preferred."""
    found = internal_addresses(node)
    return found[0] if found else None


def router_id(node: Node) -> str | None:
    """A BGP identifier for the node when its instance names none: its IPv4 InternalIP."""
    found = [a for a in internal_addresses(node) if a.version == 4]
    return str(found[0]) if found else None


def node_addresses(nodes: Iterable[Node]) -> tuple[tuple[str, IPAddress], ...]:
    """(node name, InternalIP) of every node, sorted by name then family."""
    pairs = [(node.metadata.name, a) for node in nodes for a in internal_addresses(node)]
    return tuple(sorted(pairs, key=lambda p: (p[0], p[1].version)))
