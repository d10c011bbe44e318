"""BGP configuration kinds (Cilium's BGP Control Plane v2 kinds).

BGPClusterConfig says which nodes run BGP instances and with which peers; BGPPeerConfig holds
the per-session settings peers share; BGPAdvertisement says what is announced with which
path attributes. All three are cluster-scoped.

Numeric ranges come from `herald.bgp.limits`, which the speaker's `PeerConfig` checks too:
whatever passes `herald validate` is something the speaker can run.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

from pydantic import Field, field_validator, model_validator

from herald.api.base import HeraldModel, LabelSelector, ObjectMeta
from herald.bgp.limits import (
    AS_NUMBER,
    CONNECT_RETRY_TIME,
    EBGP_MULTIHOP,
    GRACEFUL_RESTART_TIME,
    HOLD_TIME,
    PORT,
)

WELL_KNOWN_COMMUNITIES = {
    "internet": 0x00000000,
    "graceful-shutdown": 0xFFFF0000,
    "accept-own": 0xFFFF0001,
    "llgr-stale": 0xFFFF0006,
    "no-llgr": 0xFFFF0007,
    "blackhole": 0xFFFF029A,
    "no-export": 0xFFFFFF01,
    "no-advertise": 0xFFFFFF02,
    "no-export-subconfed": 0xFFFFFF03,
    "no-peer": 0xFFFFFF04,
}


def parse_standard_community(text: str) -> int:
    """'65000:100' or a decimal 32-bit number, as FRR and Cilium accept them."""
    high, sep, low = text.partition(":")
    try:
        if not sep:
            value = int(text)
            if not 0 <= value <= 0xFFFFFFFF:
                raise ValueError
            return value
        high_value, low_value = int(high), int(low)
        if not (0 <= high_value <= 0xFFFF and 0 <= low_value <= 0xFFFF):
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{text!r} is not a standard community; write ASN:value with both parts "
            "0..65535 (e.g. 64512:100), or one 32-bit number"
        ) from None
    return high_value << 16 | low_value


def parse_large_community(text: str) -> tuple[int, int, int]:
    """'global:local1:local2', each part 0..4294967295 (RFC 8092)."""
    parts = text.split(":")
    try:
        if len(parts) != 3:
            raise ValueError
        a, b, c = (int(part) for part in parts)
        if not all(0 <= part <= 0xFFFFFFFF for part in (a, b, c)):
            raise ValueError
    except ValueError:
        raise ValueError(
            f"{text!r} is not a large community; write three numbers 0..4294967295 "
            "separated by colons (e.g. 4200000000:1:2)"
        ) from None
    return a, b, c


def _as_number(value: int) -> int:
    problem = AS_NUMBER.problem(value)
    if problem is not None:
        raise ValueError(problem)
    return value


def _ip_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise ValueError(
            f"{value!r} is not an IP address; write one such as 192.0.2.1 or 2001:db8::1"
        ) from None
    return value


def _require_unique(field: str, values: list[str], what: str) -> None:
    seen: set[str] = set()
    for index, value in enumerate(values):
        if value in seen:
            raise ValueError(f"{field}[{index}]: {what} {value!r} appears twice; it must be unique")
        seen.add(value)


class PeerConfigReference(HeraldModel):
    name: str = Field(min_length=1, description="Name of a BGPPeerConfig.")


class BGPPeer(HeraldModel):
    name: str = Field(min_length=1, description="Name of the peer, unique in its instance.")
    peer_address: str = Field(description="The peer's IPv4 or IPv6 address.")
    peer_asn: int = Field(
        ge=AS_NUMBER.low,
        le=AS_NUMBER.high,
        alias="peerASN",
        description=(
            "The peer's AS number, checked against its OPEN. Not 23456 (AS_TRANS); unlike "
            "Cilium, 0 (accept any AS) is not supported."
        ),
    )
    peer_config_ref: PeerConfigReference | None = Field(
        default=None, description="Session settings; none uses BGPPeerConfig defaults."
    )

    @field_validator("peer_address")
    @classmethod
    def _address(cls, value: str) -> str:
        return _ip_address(value)

    @field_validator("peer_asn", mode="before")
    @classmethod
    def _no_any_as(cls, value: object) -> object:
        # Before the range check, so that Cilium's "0: any AS" gets an answer of its own.
        if value == 0 and type(value) is int:
            raise ValueError(
                "0 (accept any AS, as Cilium reads it) is not supported: herald checks the "
                f"peer's OPEN against its AS; write the peer's AS number, {AS_NUMBER.allowed}"
            )
        return value

    @field_validator("peer_asn")
    @classmethod
    def _peer_as(cls, value: int) -> int:
        return _as_number(value)


class BGPInstance(HeraldModel):
    name: str = Field(min_length=1, description="Name of the instance, unique on a node.")
    local_asn: int = Field(
        ge=AS_NUMBER.low,
        le=AS_NUMBER.high,
        alias="localASN",
        description="This node's AS number; not 23456 (AS_TRANS).",
    )
    router_id: str | None = Field(
        default=None,
        alias="routerID",
        description="BGP identifier (an IPv4 address); default: the node's IPv4 address.",
    )
    local_port: int = Field(
        default=179,
        ge=PORT.low,
        le=PORT.high,
        description="TCP port herald listens on for this instance.",
    )
    peers: tuple[BGPPeer, ...] = Field(default=(), description="The routers to peer with.")

    @field_validator("local_asn")
    @classmethod
    def _local_as(cls, value: int) -> int:
        return _as_number(value)

    @field_validator("router_id")
    @classmethod
    def _router_id(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise ValueError(
                f"{value!r} is not a router ID; write an IPv4 address such as 192.0.2.21"
            ) from None
        if value == "0.0.0.0":
            raise ValueError("0.0.0.0 is not a valid router ID")
        return value

    @model_validator(mode="after")
    def _unique_peers(self) -> BGPInstance:
        _require_unique("peers", [peer.name for peer in self.peers], "name")
        _require_unique("peers", [peer.peer_address for peer in self.peers], "peerAddress")
        return self


class BGPClusterConfigSpec(HeraldModel):
    node_selector: LabelSelector | None = Field(
        default=None, description="Nodes that run these BGP instances; none selects all."
    )
    bgp_instances: tuple[BGPInstance, ...] = Field(
        min_length=1, description="BGP instances on each selected node."
    )

    @model_validator(mode="after")
    def _unique_instances(self) -> BGPClusterConfigSpec:
        _require_unique("bgpInstances", [inst.name for inst in self.bgp_instances], "name")
        return self


class BGPClusterConfig(HeraldModel):
    """Which nodes speak BGP, as which AS, to which peers."""

    api_version: Literal["herald.io/v1alpha1"] = "herald.io/v1alpha1"
    kind: Literal["BGPClusterConfig"] = "BGPClusterConfig"
    metadata: ObjectMeta
    spec: BGPClusterConfigSpec


class Transport(HeraldModel):
    peer_port: int = Field(
        default=179, ge=PORT.low, le=PORT.high, description="The peer's TCP port."
    )
    source_address: str | None = Field(
        default=None,
        description="Local address to connect from; default: chosen by the kernel's routing.",
    )

    @field_validator("source_address")
    @classmethod
    def _source_address(cls, value: str | None) -> str | None:
        return None if value is None else _ip_address(value)


class Timers(HeraldModel):
    connect_retry_time_seconds: int = Field(
        default=120,
        ge=CONNECT_RETRY_TIME.low,
        le=CONNECT_RETRY_TIME.high,
        description="Upper bound of the back-off between connection attempts.",
    )
    hold_time_seconds: int = Field(
        default=90,
        ge=HOLD_TIME.low,
        le=HOLD_TIME.high,
        description="Proposed hold time; 0 disables keepalives and hold expiry, else >= 3.",
    )
    keep_alive_time_seconds: int = Field(
        default=30,
        ge=1,
        le=65535,
        description="Keepalive interval; at most the hold time (one third of it is usual).",
    )

    @model_validator(mode="after")
    def _hold_and_keepalive(self) -> Timers:
        if HOLD_TIME.problem(self.hold_time_seconds) is not None:
            raise ValueError(
                f"holdTimeSeconds {self.hold_time_seconds} is not allowed: "
                "use 0 (no hold timer) or 3..65535 (RFC 4271 §4.2)"
            )
        if self.hold_time_seconds and self.keep_alive_time_seconds > self.hold_time_seconds:
            raise ValueError(
                f"keepAliveTimeSeconds {self.keep_alive_time_seconds} exceeds "
                f"holdTimeSeconds {self.hold_time_seconds}; it must be at most the hold time"
            )
        return self


class GracefulRestart(HeraldModel):
    enabled: bool = Field(default=False, description="Enables graceful restart (RFC 4724).")
    restart_time_seconds: int = Field(
        default=120,
        ge=GRACEFUL_RESTART_TIME.low,
        le=GRACEFUL_RESTART_TIME.high,
        description="How long the peer keeps herald's routes while herald restarts.",
    )


class Family(HeraldModel):
    afi: Literal["ipv4", "ipv6"] = Field(description="Address family.")
    safi: Literal["unicast"] = Field(default="unicast", description="Subsequent family.")
    advertisements: LabelSelector | None = Field(
        default=None,
        description="Selects BGPAdvertisement objects by label; none announces nothing.",
    )


DEFAULT_FAMILIES = (Family(afi="ipv4"), Family(afi="ipv6"))


class BGPPeerConfigSpec(HeraldModel):
    transport: Transport = Field(default=Transport(), description="TCP settings.")
    timers: Timers = Field(default=Timers(), description="Session timers.")
    auth_secret_ref: str | None = Field(
        default=None,
        description=(
            "Name of a Secret (namespace `herald-system`, or `default` with manifests) whose "
            "key `password` is the TCP-MD5 password (RFC 2385)."
        ),
    )
    ebgp_multihop: int = Field(
        default=1,
        ge=EBGP_MULTIHOP.low,
        le=EBGP_MULTIHOP.high,
        description="TTL of packets to eBGP peers; 1 means directly connected.",
    )
    ttl_security: bool = Field(
        default=False,
        description="GTSM (RFC 5082): send with TTL 255 and accept only 255 minus hops.",
    )
    graceful_restart: GracefulRestart = Field(
        default=GracefulRestart(), description="Graceful restart."
    )
    families: tuple[Family, ...] = Field(
        default=DEFAULT_FAMILIES,
        min_length=1,
        description="Address families to negotiate; default IPv4 and IPv6 unicast.",
    )
    bfd_profile_ref: str | None = Field(
        default=None, description="Name of a BFDProfile; none runs no BFD (herald addition)."
    )
    enforce_first_as: bool = Field(
        default=True,
        alias="enforceFirstAS",
        description=(
            "For eBGP peers: an UPDATE whose AS_PATH does not start with the peer's AS ends "
            "the session (NOTIFICATION UPDATE Message Error / Malformed AS_PATH, RFC 4271 "
            "§6.3), as FRR's enforce-first-as. Turn off for route servers (RFC 7947), which "
            "do not prepend their AS (herald addition)."
        ),
    )

    @model_validator(mode="after")
    def _unique_families(self) -> BGPPeerConfigSpec:
        _require_unique("families", [f"{f.afi}/{f.safi}" for f in self.families], "afi/safi")
        if self.ttl_security and self.ebgp_multihop != 1:
            raise ValueError("ttlSecurity and ebgpMultihop > 1 exclude each other; choose one")
        return self


class BGPPeerConfig(HeraldModel):
    """Settings shared by the BGP sessions that refer to it."""

    api_version: Literal["herald.io/v1alpha1"] = "herald.io/v1alpha1"
    kind: Literal["BGPPeerConfig"] = "BGPPeerConfig"
    metadata: ObjectMeta
    spec: BGPPeerConfigSpec = BGPPeerConfigSpec()


class Communities(HeraldModel):
    standard: tuple[str, ...] = Field(
        default=(), description="RFC 1997 communities, `ASN:value` (e.g. 64512:100)."
    )
    well_known: tuple[str, ...] = Field(
        default=(),
        description=f"Well-known communities by name: {', '.join(WELL_KNOWN_COMMUNITIES)}.",
    )
    large: tuple[str, ...] = Field(
        default=(), description="RFC 8092 large communities, `global:local1:local2`."
    )

    @field_validator("standard")
    @classmethod
    def _standard(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            parse_standard_community(text)
        return value

    @field_validator("well_known")
    @classmethod
    def _well_known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for name in value:
            if name not in WELL_KNOWN_COMMUNITIES:
                raise ValueError(
                    f"{name!r} is not a well-known community; allowed: "
                    + ", ".join(WELL_KNOWN_COMMUNITIES)
                )
        return value

    @field_validator("large")
    @classmethod
    def _large(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for text in value:
            parse_large_community(text)
        return value


# The path attributes a BGPAdvertisement attaches (YAML: `attributes`). Not named
# PathAttributes: that is the speaker's on-wire form (herald.bgp.wire). No docstring, since
# it would become the CRD's description of `attributes`.
class AdvertisementAttributes(HeraldModel):
    communities: Communities | None = Field(default=None, description="Communities to attach.")
    local_preference: int | None = Field(
        default=None, ge=0, le=4294967295, description="LOCAL_PREF, sent to iBGP peers only."
    )
    med: int | None = Field(
        default=None, ge=0, le=4294967295, description="MULTI_EXIT_DISC (herald addition)."
    )


class ServiceAddresses(HeraldModel):
    addresses: tuple[Literal["LoadBalancerIP", "ClusterIP", "ExternalIP"], ...] = Field(
        default=("LoadBalancerIP",), description="Which addresses of a Service to announce."
    )


class Advertisement(HeraldModel):
    advertisement_type: Literal["Service", "PodCIDR"] = Field(
        description="What to announce: Service addresses, or the node's pod CIDR."
    )
    service: ServiceAddresses | None = Field(
        default=None, description="For type Service: which addresses (default LoadBalancerIP)."
    )
    selector: LabelSelector | None = Field(
        default=None, description="For type Service: which Services; none selects all."
    )
    attributes: AdvertisementAttributes | None = Field(
        default=None, description="Path attributes attached to these routes."
    )
    aggregation_length: int | None = Field(
        default=None,
        ge=0,
        le=32,
        description="For type Service: announce the covering IPv4 prefix of this length "
        "(as MetalLB's aggregationLength) instead of one /32 per address, while a Service "
        "inside it can be served from the node; addresses inside it that no Service holds "
        "are unreachable on the node (never routed back). Default: /32 per address.",
    )
    aggregation_length_v6: int | None = Field(
        default=None,
        ge=0,
        le=128,
        description="The same for IPv6 addresses (default: /128 per address).",
    )

    @model_validator(mode="after")
    def _fits_type(self) -> Advertisement:
        if self.advertisement_type == "PodCIDR" and (
            self.service
            or self.selector
            or self.aggregation_length is not None
            or self.aggregation_length_v6 is not None
        ):
            raise ValueError(
                "`service`, `selector` and the aggregation lengths apply to "
                "advertisementType Service only"
            )
        return self

    def prefix_length(self, version: int) -> int:
        """The length each address of `version` is announced with."""
        length = self.aggregation_length if version == 4 else self.aggregation_length_v6
        return length if length is not None else (32 if version == 4 else 128)


class BGPAdvertisementSpec(HeraldModel):
    advertisements: tuple[Advertisement, ...] = Field(
        min_length=1, description="What to announce, each with its attributes."
    )


class BGPAdvertisement(HeraldModel):
    """Routes to announce to the peers whose families select this object by label."""

    api_version: Literal["herald.io/v1alpha1"] = "herald.io/v1alpha1"
    kind: Literal["BGPAdvertisement"] = "BGPAdvertisement"
    metadata: ObjectMeta
    spec: BGPAdvertisementSpec
