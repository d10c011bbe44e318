"""The Kubernetes core objects herald reads, with only the fields herald uses.

Unknown fields are tolerated: these are the same manifests a user applies with kubectl.
The annotations herald reads on a Service are checked here (what they mean is decided in
`herald.annotations`), so a malformed one is reported where it was written instead of
surfacing later as an allocation failure.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from herald.annotations import ipam_settings
from herald.api.base import Condition, CoreModel, ObjectMeta

# The load balancer classes herald serves; a Service with no class is served too.
LB_CLASS_BGP = "herald.io/bgp"
LB_CLASS_L2 = "herald.io/l2"
HERALD_LB_CLASSES = (LB_CLASS_BGP, LB_CLASS_L2)

ANNOTATION_FORWARDING_MODE = "herald.io/forwarding-mode"
FORWARDING_MODES = ("snat", "dsr")
# "false": the VIP does not answer ping (ICMP/ICMPv6 echo), which it does by default.
ANNOTATION_ICMP_ECHO = "herald.io/icmp-echo"
ICMP_ECHO_VALUES = ("true", "false")

Protocol = Literal["TCP", "UDP", "SCTP"]
IPFamily = Literal["IPv4", "IPv6"]


class ServicePort(CoreModel):
    name: str | None = None
    protocol: Protocol = "TCP"
    port: int = Field(ge=1, le=65535)
    target_port: int | str | None = None
    node_port: int | None = None


class ServiceSpec(CoreModel):
    type: Literal["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"] = "ClusterIP"
    selector: dict[str, str] | None = None
    ports: tuple[ServicePort, ...] = ()
    cluster_ip: str | None = Field(default=None, alias="clusterIP")
    cluster_ips: tuple[str, ...] = Field(default=(), alias="clusterIPs")
    load_balancer_class: str | None = None
    load_balancer_ip: str | None = Field(default=None, alias="loadBalancerIP")
    load_balancer_source_ranges: tuple[str, ...] = ()
    external_ips: tuple[str, ...] = Field(default=(), alias="externalIPs")
    external_traffic_policy: Literal["Cluster", "Local"] = "Cluster"
    session_affinity: Literal["None", "ClientIP"] = "None"
    ip_families: tuple[IPFamily, ...] = ()
    ip_family_policy: Literal["SingleStack", "PreferDualStack", "RequireDualStack"] = "SingleStack"

    @field_validator("load_balancer_ip")
    @classmethod
    def _ip(cls, value: str | None) -> str | None:
        if value:
            _parse_ip(value)
        return value or None

    @field_validator("load_balancer_source_ranges")
    @classmethod
    def _cidrs(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for cidr in value:
            try:
                ipaddress.ip_network(cidr.strip(), strict=False)
            except ValueError:
                raise ValueError(f"{cidr!r} is not a CIDR such as 198.51.100.0/24") from None
        return value


class LoadBalancerIngress(CoreModel):
    ip: str | None = None
    hostname: str | None = None
    ip_mode: Literal["VIP", "Proxy"] | None = None


class LoadBalancerStatus(CoreModel):
    ingress: tuple[LoadBalancerIngress, ...] = ()


class ServiceStatus(CoreModel):
    load_balancer: LoadBalancerStatus = LoadBalancerStatus()
    conditions: tuple[Condition, ...] = ()


class Service(CoreModel):
    api_version: Literal["v1"] = "v1"
    kind: Literal["Service"] = "Service"
    metadata: ObjectMeta
    spec: ServiceSpec = ServiceSpec()
    status: ServiceStatus = ServiceStatus()

    @field_validator("metadata")
    @classmethod
    def _forwarding_mode(cls, meta: ObjectMeta) -> ObjectMeta:
        mode = meta.annotations.get(ANNOTATION_FORWARDING_MODE)
        if mode is not None and mode not in FORWARDING_MODES:
            raise ValueError(
                f"annotation {ANNOTATION_FORWARDING_MODE}: {mode!r} is not a forwarding mode; "
                f"allowed: {', '.join(FORWARDING_MODES)}"
            )
        echo = meta.annotations.get(ANNOTATION_ICMP_ECHO)
        if echo is not None and echo not in ICMP_ECHO_VALUES:
            raise ValueError(
                f"annotation {ANNOTATION_ICMP_ECHO}: {echo!r} is not one of "
                f"{', '.join(ICMP_ECHO_VALUES)}"
            )
        return meta

    @model_validator(mode="after")
    def _ipam_annotations(self) -> Service:
        # Imported here: facts owns "is this Service herald's", and facts imports this module.
        from herald.facts import is_handled

        # Cilium's and MetalLB's annotations are theirs on Services herald does not serve (a
        # cluster migrating runs both), so only there are they checked.
        settings = ipam_settings(
            self.metadata.annotations, self.spec.load_balancer_ip, foreign=is_handled(self)
        )
        if settings.errors:
            # One at a time, like every other check on the metadata.
            first = settings.errors[0]
            raise ValueError(f"annotation {first.annotation}: {first.message}")
        return self

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace or 'default'}/{self.metadata.name}"


def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an IP address; write one such as 203.0.113.10 or 2001:db8::10"
        ) from None


class EndpointConditions(CoreModel):
    # Kubernetes: a nil `ready` means ready, a nil `serving` follows `ready`.
    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


class ObjectReference(CoreModel):
    kind: str | None = None
    namespace: str | None = None
    name: str | None = None


class Endpoint(CoreModel):
    addresses: tuple[str, ...] = Field(min_length=1)
    conditions: EndpointConditions = EndpointConditions()
    node_name: str | None = None
    target_ref: ObjectReference | None = None
    hostname: str | None = None
    zone: str | None = None


class EndpointPort(CoreModel):
    name: str | None = None
    protocol: Protocol = "TCP"
    port: int | None = Field(default=None, ge=1, le=65535)


SERVICE_NAME_LABEL = "kubernetes.io/service-name"


class EndpointSlice(CoreModel):
    api_version: Literal["discovery.k8s.io/v1"] = "discovery.k8s.io/v1"
    kind: Literal["EndpointSlice"] = "EndpointSlice"
    metadata: ObjectMeta
    address_type: Literal["IPv4", "IPv6", "FQDN"]
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()

    @field_validator("metadata")
    @classmethod
    def _names_its_service(cls, meta: ObjectMeta) -> ObjectMeta:
        if not meta.labels.get(SERVICE_NAME_LABEL):
            raise ValueError(
                f"labels: {SERVICE_NAME_LABEL} must name the Service this slice belongs to"
            )
        return meta

    @property
    def service_key(self) -> str:
        return f"{self.metadata.namespace or 'default'}/{self.metadata.labels[SERVICE_NAME_LABEL]}"


class NodeAddress(CoreModel):
    type: str
    address: str


class NodeSpec(CoreModel):
    pod_cidr: str | None = Field(default=None, alias="podCIDR")
    pod_cidrs: tuple[str, ...] = Field(default=(), alias="podCIDRs")
    unschedulable: bool = False


class NodeStatus(CoreModel):
    addresses: tuple[NodeAddress, ...] = ()
    conditions: tuple[Condition, ...] = ()


class Node(CoreModel):
    api_version: Literal["v1"] = "v1"
    kind: Literal["Node"] = "Node"
    metadata: ObjectMeta
    spec: NodeSpec = NodeSpec()
    status: NodeStatus = NodeStatus()


class Secret(CoreModel):
    """Holds BGP passwords (key `password`), referenced by BGPPeerConfig.authSecretRef."""

    api_version: Literal["v1"] = "v1"
    kind: Literal["Secret"] = "Secret"
    metadata: ObjectMeta
    data: dict[str, str] = Field(default_factory=dict, description="Base64-encoded values.")
    string_data: dict[str, str] = Field(default_factory=dict)
