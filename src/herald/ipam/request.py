"""ServiceRequest: what one Service asks of LB-IPAM, reduced from the API object.

The allocator works on these small records rather than on the API models so that its cost
does not depend on everything else a Service carries.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from herald.annotations import IPAMSettings, ipam_settings
from herald.api.core import Service
from herald.facts import is_handled, service_labels

# An address as (IP version, integer value): cheaper to hash and compare than ipaddress objects.
Address = tuple[int, int]


def to_address(text: str) -> Address:
    ip = ipaddress.ip_address(text)
    return ip.version, int(ip)


def address_text(address: Address) -> str:
    # inet_ntop writes the same RFC 5952 text as the ipaddress module, many times faster.
    version, value = address
    if version == 4:
        return socket.inet_ntop(socket.AF_INET, value.to_bytes(4, "big"))
    if value >> 48 == 0:
        # ::/96 and ::ffff:0:0/96, which inet_ntop writes with dotted quads.
        return str(ipaddress.IPv6Address(value))
    return socket.inet_ntop(socket.AF_INET6, value.to_bytes(16, "big"))


@dataclass(frozen=True, slots=True)
class ServiceRequest:
    key: str
    namespace: str
    # Labels as pool selectors see them: the Service's own plus its namespace and name.
    labels: Mapping[str, str]
    # Explicitly requested addresses (an IPs annotation or spec.loadBalancerIP).
    requested: tuple[Address, ...] = ()
    # Wanted IP versions, in order of preference, and how many of them must be satisfied.
    families: tuple[int, ...] = (4, 6)
    policy: str = "SingleStack"
    sharing_key: str | None = None
    # Namespaces this Service may share with besides its own ("*": any).
    sharing_namespaces: frozenset[str] = frozenset()
    ports: frozenset[tuple[str, int]] = frozenset()
    load_balancer_class: str | None = None
    traffic_policy: str = "Cluster"
    selector: tuple[tuple[str, str], ...] | None = None
    # Addresses the Service holds now (its status): kept while still valid.
    current: tuple[Address, ...] = ()
    # Processing order: older Services first, then by key.
    order: tuple[str, str] = ("", "")
    # The only pool to take addresses from (MetalLB's address-pool annotation); None: any
    # pool whose serviceSelector selects the Service.
    pool: str | None = None

    def wants(self, version: int) -> bool:
        if self.requested:
            return any(v == version for v, _ in self.requested)
        return version in self.families


def settings_of(service: Service) -> IPAMSettings:
    """What the Service's annotations ask of LB-IPAM (`herald.annotations` decides), read as
    they are for a Service herald serves."""
    return ipam_settings(service.metadata.annotations, service.spec.load_balancer_ip)


def request_for(service: Service) -> ServiceRequest:
    meta, spec = service.metadata, service.spec
    namespace = meta.namespace or "default"
    settings = settings_of(service)
    families = tuple(4 if family == "IPv4" else 6 for family in spec.ip_families) or (4, 6)
    if spec.ip_family_policy == "SingleStack" and spec.ip_families:
        # A single stack named explicitly is that family only; unnamed, IPv4 is preferred
        # and IPv6 taken when no IPv4 pool serves the Service.
        families = families[:1]
    current = tuple(
        to_address(ingress.ip)
        for ingress in service.status.load_balancer.ingress
        if ingress.ip and _is_ip(ingress.ip)
    )
    return ServiceRequest(
        key=f"{namespace}/{meta.name}",
        namespace=namespace,
        labels=service_labels(service),
        requested=tuple((ip.version, int(ip)) for ip in settings.requested),
        families=families,
        policy=spec.ip_family_policy,
        sharing_key=settings.sharing_key,
        sharing_namespaces=settings.sharing_namespaces,
        ports=frozenset((port.protocol, port.port) for port in spec.ports),
        load_balancer_class=spec.load_balancer_class,
        traffic_policy=spec.external_traffic_policy,
        selector=tuple(sorted(spec.selector.items())) if spec.selector is not None else None,
        current=current,
        order=(meta.creation_timestamp or "", f"{namespace}/{meta.name}"),
        pool=settings.pool,
    )


def requests_from_services(services: Iterable[Service]) -> list[ServiceRequest]:
    return [request_for(service) for service in services if is_handled(service)]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
