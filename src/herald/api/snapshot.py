"""ClusterState: one immutable snapshot of every object herald reads."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType

from herald.api.bfd import BFDProfile
from herald.api.bgp import BGPAdvertisement, BGPClusterConfig, BGPPeerConfig
from herald.api.core import EndpointSlice, Node, Secret, Service
from herald.api.l2 import L2AnnouncementPolicy
from herald.api.pool import LoadBalancerIPPool
from herald.api.problems import Location

# (kind, namespace or "", name): identifies an object within a snapshot.
ObjectRef = tuple[str, str, str]


@dataclass(frozen=True)
class ClusterState:
    services: tuple[Service, ...] = ()
    endpoint_slices: tuple[EndpointSlice, ...] = ()
    nodes: tuple[Node, ...] = ()
    secrets: tuple[Secret, ...] = ()
    pools: tuple[LoadBalancerIPPool, ...] = ()
    bgp_cluster_configs: tuple[BGPClusterConfig, ...] = ()
    bgp_peer_configs: tuple[BGPPeerConfig, ...] = ()
    bgp_advertisements: tuple[BGPAdvertisement, ...] = ()
    l2_policies: tuple[L2AnnouncementPolicy, ...] = ()
    bfd_profiles: tuple[BFDProfile, ...] = ()
    locations: Mapping[ObjectRef, Location] = field(default_factory=lambda: MappingProxyType({}))
    # Objects of kinds herald does not read (a Deployment beside a Service): kind -> count.
    ignored: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    # Why the source could not give a newer snapshot (invalid manifests): this one is the
    # last good one, and every process says so rather than only logging it.
    problems: tuple[str, ...] = ()

    @cached_property
    def services_by_key(self) -> Mapping[str, Service]:
        return MappingProxyType({svc.key: svc for svc in self.services})

    @cached_property
    def endpoint_slices_by_service(self) -> Mapping[str, tuple[EndpointSlice, ...]]:
        grouped: dict[str, list[EndpointSlice]] = {}
        for eps in self.endpoint_slices:
            grouped.setdefault(eps.service_key, []).append(eps)
        return MappingProxyType({key: tuple(slices) for key, slices in grouped.items()})

    @cached_property
    def peer_configs_by_name(self) -> Mapping[str, BGPPeerConfig]:
        return MappingProxyType({cfg.metadata.name: cfg for cfg in self.bgp_peer_configs})

    @cached_property
    def bfd_profiles_by_name(self) -> Mapping[str, BFDProfile]:
        return MappingProxyType({p.metadata.name: p for p in self.bfd_profiles})

    def counts(self) -> dict[str, int]:
        """Objects per kind, for summaries."""
        found: dict[str, int] = {}
        for kind, _, _ in self.locations:
            found[kind] = found.get(kind, 0) + 1
        return found
