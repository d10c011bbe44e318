"""The kinds herald reads from the Kubernetes API: where each is served and where it goes.

Every kind is read as plain JSON into herald's own models (`herald.api`), the same ones the
manifests directory fills, so the two sources cannot disagree on what a field means. The
lightkube resource classes below only tell the client the URL of each collection; they are
not registered in lightkube's global registry, so code elsewhere that decodes typed objects
with lightkube keeps its typed classes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from lightkube.generic_resource import (
    GenericGlobalResource,
    GenericGlobalStatus,
    GenericNamespacedResource,
    GenericNamespacedStatus,
    create_api_info,
)
from pydantic import BaseModel

from herald.api.bfd import BFDProfile
from herald.api.bgp import BGPAdvertisement, BGPClusterConfig, BGPPeerConfig
from herald.api.core import EndpointSlice, Node, Secret, Service
from herald.api.l2 import L2AnnouncementPolicy
from herald.api.pool import LoadBalancerIPPool

DEFAULT_NAMESPACE = "herald-system"


@dataclass(frozen=True)
class Kind:
    """One collection herald lists and watches."""

    name: str
    group: str
    version: str
    plural: str
    namespaced: bool
    model: type[BaseModel]
    # The ClusterState field its objects go to.
    field: str
    # Read in herald's namespace only (Secrets), not across the cluster.
    own_namespace_only: bool = False

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def resource(self) -> Any:
        """lightkube's class for the collection (objects decoded as dicts)."""
        return _resource(self, status=False)

    def status_resource(self) -> Any:
        """lightkube's class for the status subresource."""
        return _resource(self, status=True)


_RESOURCES: dict[tuple[str, str, bool], Any] = {}


def generic_resource(
    group: str, version: str, kind: str, plural: str, namespaced: bool, status: bool = False
) -> Any:
    """A lightkube resource class whose objects are plain dicts (made once per kind)."""
    key = (f"{group}/{version}", kind, status)
    found = _RESOURCES.get(key)
    if found is not None:
        return found
    info = create_api_info(group, version, kind, plural)
    if status:
        base: type = GenericNamespacedStatus if namespaced else GenericGlobalStatus
        info = type(info)(
            resource=info.resource,
            parent=info.resource,
            plural=plural,
            verbs=["get", "patch", "put"],
            action="status",
        )
    else:
        base = GenericNamespacedResource if namespaced else GenericGlobalResource
    made = type(kind + ("Status" if status else ""), (base,), {"_api_info": info})
    _RESOURCES[key] = made
    return made


def _resource(kind: Kind, status: bool) -> Any:
    return generic_resource(
        kind.group, kind.version, kind.name, kind.plural, kind.namespaced, status
    )


# What the controller writes besides status.
LEASE_RESOURCE = generic_resource("coordination.k8s.io", "v1", "Lease", "leases", True)
EVENT_RESOURCE = generic_resource("", "v1", "Event", "events", True)

SERVICE = Kind("Service", "", "v1", "services", True, Service, "services")
ENDPOINT_SLICE = Kind(
    "EndpointSlice",
    "discovery.k8s.io",
    "v1",
    "endpointslices",
    True,
    EndpointSlice,
    "endpoint_slices",
)
NODE = Kind("Node", "", "v1", "nodes", False, Node, "nodes")
SECRET = Kind("Secret", "", "v1", "secrets", True, Secret, "secrets", own_namespace_only=True)
POOL = Kind(
    "LoadBalancerIPPool",
    "herald.io",
    "v1alpha1",
    "loadbalancerippools",
    False,
    LoadBalancerIPPool,
    "pools",
)
BGP_CLUSTER_CONFIG = Kind(
    "BGPClusterConfig",
    "herald.io",
    "v1alpha1",
    "bgpclusterconfigs",
    False,
    BGPClusterConfig,
    "bgp_cluster_configs",
)
BGP_PEER_CONFIG = Kind(
    "BGPPeerConfig",
    "herald.io",
    "v1alpha1",
    "bgppeerconfigs",
    False,
    BGPPeerConfig,
    "bgp_peer_configs",
)
BGP_ADVERTISEMENT = Kind(
    "BGPAdvertisement",
    "herald.io",
    "v1alpha1",
    "bgpadvertisements",
    False,
    BGPAdvertisement,
    "bgp_advertisements",
)
L2_POLICY = Kind(
    "L2AnnouncementPolicy",
    "herald.io",
    "v1alpha1",
    "l2announcementpolicies",
    False,
    L2AnnouncementPolicy,
    "l2_policies",
)
BFD_PROFILE = Kind(
    "BFDProfile", "herald.io", "v1alpha1", "bfdprofiles", False, BFDProfile, "bfd_profiles"
)

# What an agent plans from: everything.
AGENT_KINDS: tuple[Kind, ...] = (
    SERVICE,
    ENDPOINT_SLICE,
    NODE,
    SECRET,
    POOL,
    BGP_CLUSTER_CONFIG,
    BGP_PEER_CONFIG,
    BGP_ADVERTISEMENT,
    L2_POLICY,
    BFD_PROFILE,
)
# What LB-IPAM decides from: Services and pools alone, so the controller's API load does
# not grow with endpoints or nodes.
CONTROLLER_KINDS: tuple[Kind, ...] = (SERVICE, POOL)
