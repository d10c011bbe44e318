"""When two Services may share one address (MetalLB's rules, made explicit)."""

from __future__ import annotations

from herald.ipam.request import ServiceRequest


def sharing_conflict(a: ServiceRequest, b: ServiceRequest) -> str | None:
    """None when `a` and `b` may share an address, else why not (for the condition message)."""
    if a.sharing_key is None or b.sharing_key is None:
        return f"{b.key} holds it without a sharing key"
    if a.sharing_key != b.sharing_key:
        return f"{b.key} holds it with sharing key {b.sharing_key!r}, not {a.sharing_key!r}"
    if a.namespace != b.namespace and not (_allows(a, b.namespace) and _allows(b, a.namespace)):
        return (
            f"{b.key} is in another namespace; both must allow it with annotation "
            "herald.io/sharing-cross-namespace"
        )
    overlap = sorted(a.ports & b.ports)
    if overlap:
        ports = ", ".join(f"{protocol}/{port}" for protocol, port in overlap)
        return f"{b.key} uses the same port(s) {ports}"
    if a.load_balancer_class != b.load_balancer_class:
        return f"{b.key} has loadBalancerClass {b.load_balancer_class}"
    if a.traffic_policy != b.traffic_policy:
        return f"{b.key} has externalTrafficPolicy {b.traffic_policy}"
    if a.traffic_policy == "Local" and a.selector != b.selector:
        return f"{b.key} has externalTrafficPolicy Local with a different pod selector"
    return None


def _allows(service: ServiceRequest, namespace: str) -> bool:
    return "*" in service.sharing_namespaces or namespace in service.sharing_namespaces
