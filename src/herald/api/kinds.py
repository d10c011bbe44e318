"""The kinds herald reads, by apiVersion and kind, and which of them are namespaced."""

from __future__ import annotations

from pydantic import BaseModel

from herald.api.bfd import BFDProfile
from herald.api.bgp import BGPAdvertisement, BGPClusterConfig, BGPPeerConfig
from herald.api.core import EndpointSlice, Node, Secret, Service
from herald.api.l2 import L2AnnouncementPolicy
from herald.api.pool import LoadBalancerIPPool

HERALD_GROUP_VERSION = "herald.io/v1alpha1"

HERALD_KINDS: tuple[type[BaseModel], ...] = (
    LoadBalancerIPPool,
    BGPClusterConfig,
    BGPPeerConfig,
    BGPAdvertisement,
    L2AnnouncementPolicy,
    BFDProfile,
)
CORE_KINDS: tuple[type[BaseModel], ...] = (Service, EndpointSlice, Node, Secret)

NAMESPACED = frozenset({"Service", "EndpointSlice", "Secret"})

# Kinds of Cilium and MetalLB that have a herald equivalent: named in errors so a user
# converting manifests learns what to write instead.
PEER_EQUIVALENTS = {
    "CiliumLoadBalancerIPPool": "LoadBalancerIPPool",
    "CiliumBGPClusterConfig": "BGPClusterConfig",
    "CiliumBGPPeerConfig": "BGPPeerConfig",
    "CiliumBGPAdvertisement": "BGPAdvertisement",
    "CiliumL2AnnouncementPolicy": "L2AnnouncementPolicy",
    "IPAddressPool": "LoadBalancerIPPool",
    "BGPPeer": "BGPClusterConfig and BGPPeerConfig",
    "L2Advertisement": "L2AnnouncementPolicy",
}


def kind_name(model: type[BaseModel]) -> str:
    return str(model.model_fields["kind"].default)


def api_version(model: type[BaseModel]) -> str:
    return str(model.model_fields["api_version"].default)


KINDS: dict[tuple[str, str], type[BaseModel]] = {
    (api_version(model), kind_name(model)): model for model in HERALD_KINDS + CORE_KINDS
}
KIND_BY_NAME: dict[str, type[BaseModel]] = {kind: model for (_, kind), model in KINDS.items()}
