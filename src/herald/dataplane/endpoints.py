"""Which of a Service's endpoints may receive new connections on a node: the one rule
that BGP, L2 and the datapath all follow (`herald.facts` applies it to API objects).

Kubernetes' rules (ProxyTerminatingEndpoints): ready endpoints; when none is ready, the
ones that are still serving while terminating (so a rolling update that leaves no ready
pod drains instead of failing); with externalTrafficPolicy Local, only this node's
endpoints are considered at all.
"""

from __future__ import annotations

from collections.abc import Sequence

from herald.dataplane.model import Backend, DataplaneService, TrafficPolicy


def usable(backends: Sequence[Backend], policy: TrafficPolicy, node: str) -> tuple[Backend, ...]:
    """The backends new flows may go to, sorted so that every node sees the same order."""
    candidates = backends
    if policy is TrafficPolicy.LOCAL:
        candidates = tuple(b for b in candidates if b.node == node)
    ready = tuple(b for b in candidates if b.ready)
    if not ready:
        ready = tuple(b for b in candidates if b.serving and b.terminating)
    # One entry per address: EndpointSlices may list an endpoint twice while it moves
    # between slices, and Maglev needs unique names.
    by_address = {b.address: b for b in sorted(ready, key=lambda b: (b.node, b.weight))}
    return tuple(sorted(by_address.values(), key=lambda b: (b.version, b.address.packed)))


def usable_backends(service: DataplaneService, node: str) -> tuple[Backend, ...]:
    """`usable` for a Service as the datapath holds it."""
    return usable(service.backends, service.external_traffic_policy, node)
