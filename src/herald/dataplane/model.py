"""What the datapath is asked to forward, independent of the Kubernetes API models.

The agent translates Services and EndpointSlices into these values; the datapath never sees
Kubernetes objects. Everything here is immutable and hashable so that two plans can be
compared with `==` to find what changed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from herald.addresses import IPAddress, IPNetwork

__all__ = ["IPAddress", "IPNetwork"]


class Protocol(StrEnum):
    TCP = "tcp"
    UDP = "udp"
    SCTP = "sctp"


class TrafficPolicy(StrEnum):
    CLUSTER = "Cluster"
    LOCAL = "Local"


class SessionAffinity(StrEnum):
    NONE = "None"
    CLIENT_IP = "ClientIP"


class ForwardingMode(StrEnum):
    SNAT = "snat"
    DSR = "dsr"


@dataclass(frozen=True)
class Backend:
    """One endpoint address of a Service, with its EndpointSlice conditions.

    The port a backend listens on is the resolved `ServicePort.target_port`: the agent
    resolves named target ports from the EndpointSlice, where they are the same for every
    endpoint of a slice.
    """

    address: IPAddress
    node: str
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    weight: int = 1
    # "namespace/name" of the pod behind the address, for listings ("" when unknown).
    pod: str = ""

    def __post_init__(self) -> None:
        if self.weight < 1:
            raise ValueError(f"backend {self.address}: weight must be >= 1, got {self.weight}")

    @property
    def version(self) -> int:
        return self.address.version


@dataclass(frozen=True)
class ServicePort:
    name: str
    protocol: Protocol
    port: int
    target_port: int

    def __post_init__(self) -> None:
        for label, value in (("port", self.port), ("target_port", self.target_port)):
            if not 1 <= value <= 65535:
                raise ValueError(f"port {self.name!r}: {label} must be 1..65535, got {value}")


@dataclass(frozen=True)
class DataplaneService:
    """A LoadBalancer Service as this node must forward it."""

    key: str  # "namespace/name"
    vips: tuple[IPAddress, ...]
    ports: tuple[ServicePort, ...]
    backends: tuple[Backend, ...] = ()
    external_traffic_policy: TrafficPolicy = TrafficPolicy.CLUSTER
    session_affinity: SessionAffinity = SessionAffinity.NONE
    source_ranges: tuple[IPNetwork, ...] = ()
    forwarding_mode: ForwardingMode = ForwardingMode.SNAT
    maglev_size: int | None = None
    # ICMP/ICMPv6 echo requests to the VIPs are answered by the nodes that serve them.
    answer_echo: bool = True

    def __post_init__(self) -> None:
        namespace, sep, name = self.key.partition("/")
        if not sep or not namespace or not name or "/" in name:
            raise ValueError(f"service key must be 'namespace/name', got {self.key!r}")
        if not self.vips:
            raise ValueError(f"service {self.key}: needs at least one VIP")
        if len(set(self.vips)) != len(self.vips):
            raise ValueError(f"service {self.key}: a VIP is listed twice")
        if not self.ports:
            raise ValueError(f"service {self.key}: needs at least one port")
        seen = {(p.protocol, p.port) for p in self.ports}
        if len(seen) != len(self.ports):
            raise ValueError(f"service {self.key}: two ports share a protocol and port")

    def vips_of(self, version: int) -> tuple[IPAddress, ...]:
        return tuple(v for v in self.vips if v.version == version)


@dataclass(frozen=True)
class NodeContext:
    """Who this node is, and the values every node of the cluster must share.

    `hash_seed` is the one cluster-wide seed of the flow hash and of the Maglev permutation:
    nodes with the same seed and the same services choose the same backend for a flow.
    `node_addresses` and `interface` are needed by DSR only: a node forwards a flow whose
    backend lives elsewhere to that node's address, out of `interface`.
    """

    node_name: str
    hash_seed: int
    node_addresses: tuple[tuple[str, IPAddress], ...] = field(default=())
    interface: str | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.hash_seed <= 0xFFFFFFFF:
            raise ValueError(f"hash_seed must fit in 32 bits, got {self.hash_seed}")

    def address_of(self, node: str, version: int) -> IPAddress | None:
        for name, address in self.node_addresses:
            if name == node and address.version == version:
                return address
        return None


@dataclass(frozen=True)
class Peers:
    """What this node knows of the other nodes' uplinks, from its neighbour table.

    `macs`: the link-layer addresses of the other nodes' addresses on the uplink. A frame
    from one of them was forwarded by a peer, and is never forwarded again (docs/datapath.md,
    "No forwarding loops"). `unreachable`: the (node, IP version) pairs whose neighbour
    entry failed; nothing of that family is forwarded to the node, its slots stay local.
    `own_mac`: this node's uplink MAC, the source of the copies of ICMP "packet too big"
    errors it sends to the other nodes. Kept apart from `NodeContext`: it changes with the
    network, and a change touches only the shared netdev chains, never a service.
    """

    macs: frozenset[str] = frozenset()
    unreachable: frozenset[tuple[str, int]] = frozenset()
    own_mac: str | None = None


NO_PEERS = Peers()
