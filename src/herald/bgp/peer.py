"""What herald is told about one BGP peer: transport, timers, security, families, limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from herald.bfd.session import Timers
from herald.bgp.wire import IPV4_UNICAST, IPV6_UNICAST, Family

IPAddress = IPv4Address | IPv6Address

BGP_PORT = 179


@dataclass(frozen=True)
class PeerConfig:
    """One peer. `address` is the key the speaker knows it by.

    - `passive`: only accept the peer's connections, never connect.
    - `local_address`: source address of our connections (and the next hop we announce).
    - `connect_retry_time`: the cap of the reconnect back-off, as RFC 4271's ConnectRetryTime.
    - `ebgp_multihop`: TTL of an eBGP session (default 1: directly connected, as FRR).
    - `ttl_security_hops`: GTSM; send TTL 255, accept only TTL >= 256 - hops.
    - `graceful_restart_time`: advertised restart time; None disables graceful restart.
    - `ipv4_next_hop` / `ipv6_next_hop`: next hop for a family the transport cannot supply
      (IPv4 routes over IPv6 transport, IPv6 routes over IPv4 transport).
    - `bfd`: run a single-hop BFD session with the peer; when it goes down, so does the BGP
      session (without waiting for the hold timer).
    """

    address: IPAddress
    peer_as: int
    passive: bool = False
    port: int = BGP_PORT
    local_address: IPAddress | None = None
    hold_time: int = 90
    connect_retry_time: float = 120.0
    password: str | None = None
    ebgp_multihop: int | None = None
    ttl_security_hops: int | None = None
    families: frozenset[Family] = field(
        default_factory=lambda: frozenset({IPV4_UNICAST, IPV6_UNICAST})
    )
    max_prefixes: int | None = None
    graceful_restart_time: int | None = 120
    ipv4_next_hop: IPv4Address | None = None
    ipv6_next_hop: IPv6Address | None = None
    bfd: Timers | None = None

    def __post_init__(self) -> None:
        if self.hold_time in (1, 2) or not 0 <= self.hold_time <= 0xFFFF:
            raise ValueError(f"peer {self.address}: hold time {self.hold_time}; use 0 or 3..65535")
        if not 1 <= self.peer_as <= 0xFFFFFFFF:
            raise ValueError(f"peer {self.address}: AS {self.peer_as} outside 1..4294967295")
        if self.ebgp_multihop is not None and self.ttl_security_hops is not None:
            raise ValueError(
                f"peer {self.address}: ebgp_multihop and ttl_security exclude each other"
            )
        if self.connect_retry_time <= 0:
            raise ValueError(f"peer {self.address}: connect retry time must be positive")
