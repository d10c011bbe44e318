"""What herald is told about one BGP peer: transport, timers, security, families, limits."""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import IPv4Address, IPv6Address

from herald.addresses import IPAddress
from herald.bfd.session import Timers
from herald.bgp.limits import (
    AS_NUMBER,
    CONNECT_RETRY_TIME,
    DEFAULT_MAX_PREFIXES,
    EBGP_MULTIHOP,
    GRACEFUL_RESTART_TIME,
    HOLD_TIME,
    MAX_PREFIXES,
    PORT,
    TTL_SECURITY_HOPS,
    Limit,
)
from herald.bgp.wire import IPV4_UNICAST, IPV6_UNICAST, Family
from herald.bgp.wire.negotiated import SUPPORTED_FAMILIES

BGP_PORT = 179


@dataclass(frozen=True)
class PeerConfig:
    """One peer. `address` is the key the speaker knows it by.

    - `passive`: only accept the peer's connections, never connect.
    - `local_address`: source address of our connections (and the next hop we announce).
    - `connect_retry_time`: the cap of the reconnect back-off, as RFC 4271's ConnectRetryTime.
    - `ebgp_multihop`: TTL of an eBGP session (default 1: directly connected, as FRR).
    - `ttl_security_hops`: GTSM; send TTL 255, accept only TTL >= 256 - hops.
    - `max_prefixes`: received prefixes allowed before the session is ended with Cease/1
      (RFC 4486); None: no limit. The default is `DEFAULT_MAX_PREFIXES`.
    - `graceful_restart_time`: advertised restart time; None disables graceful restart.
    - `enforce_first_as`: an eBGP peer's UPDATE whose AS_PATH does not start with the peer's
      AS ends the session with UPDATE Message Error / Malformed AS_PATH (RFC 4271 §6.3), as
      FRR's `enforce-first-as` (on by default there too). Turn off for route servers
      (RFC 7947), which do not prepend their AS.
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
    max_prefixes: int | None = DEFAULT_MAX_PREFIXES
    graceful_restart_time: int | None = 120
    ipv4_next_hop: IPv4Address | None = None
    ipv6_next_hop: IPv6Address | None = None
    bfd: Timers | None = None
    enforce_first_as: bool = True

    def __post_init__(self) -> None:
        # The API models check the same `herald.bgp.limits`, so `herald validate` refuses
        # whatever is refused here; these checks guard the other callers (CLI, tests).
        checks: list[tuple[str, Limit, int | None]] = [
            ("AS", AS_NUMBER, self.peer_as),
            ("hold time", HOLD_TIME, self.hold_time),
            ("port", PORT, self.port),
            ("ebgp_multihop", EBGP_MULTIHOP, self.ebgp_multihop),
            ("ttl_security_hops", TTL_SECURITY_HOPS, self.ttl_security_hops),
            ("max_prefixes", MAX_PREFIXES, self.max_prefixes),
            ("graceful_restart_time", GRACEFUL_RESTART_TIME, self.graceful_restart_time),
        ]
        for name, limit, value in checks:
            problem = None if value is None else limit.problem(value)
            if problem is not None:
                raise ValueError(f"peer {self.address}: {name} {problem}")
        if self.ebgp_multihop is not None and self.ttl_security_hops is not None:
            raise ValueError(
                f"peer {self.address}: ebgp_multihop and ttl_security exclude each other"
            )
        if not 0 < self.connect_retry_time <= CONNECT_RETRY_TIME.high:
            raise ValueError(
                f"peer {self.address}: connect retry time {self.connect_retry_time} must be "
                f"positive and at most {CONNECT_RETRY_TIME.high} seconds"
            )
        if not self.families or not self.families <= SUPPORTED_FAMILIES:
            supported = ", ".join(sorted(str(f) for f in SUPPORTED_FAMILIES))
            raise ValueError(f"peer {self.address}: families must be one or more of {supported}")
