"""What a route looks like towards one peer: the export attributes and next-hop self. Pure."""

from __future__ import annotations

from dataclasses import dataclass, replace
from ipaddress import IPv4Address, IPv6Address

from herald.addresses import IPAddress, IPNetwork
from herald.bgp.wire import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPath,
    Family,
    LargeCommunity,
    MpReach,
    Origin,
    PathAttributes,
)

Network = IPNetwork

DEFAULT_LOCAL_PREF = 100


@dataclass(frozen=True)
class RouteAttributes:
    """What the agent says about one announced prefix; the speaker adds the rest per peer.

    `local_pref` goes only to iBGP peers (RFC 4271 §5.1.5). `next_hop` overrides next-hop
    self when it is of the prefix's family.
    """

    communities: tuple[int, ...] = ()
    large_communities: tuple[LargeCommunity, ...] = ()
    med: int | None = None
    local_pref: int | None = None
    next_hop: IPAddress | None = None


@dataclass(frozen=True)
class ExportContext:
    """The session facts that shape exported attributes."""

    local_as: int
    ibgp: bool
    ipv4_next_hop: IPv4Address | None
    ipv6_next_hop: IPv6Address | None


def family_of(network: Network) -> Family:
    return IPV4_UNICAST if network.version == 4 else IPV6_UNICAST


def next_hops(
    local_address: IPAddress,
    router_id: IPv4Address,
    ipv4_configured: IPv4Address | None,
    ipv6_configured: IPv6Address | None,
) -> tuple[IPv4Address | None, IPv6Address]:
    """Next-hop self per family for a session whose local end is `local_address`.

    IPv4 routes over IPv6 transport need an IPv4 address: the configured one, else the
    router id (which herald's nodes take from their IPv4 address). IPv6 routes over IPv4
    transport take the configured IPv6 next hop, else the IPv4-mapped local address, which
    FRR resolves over the IPv4 route to us.
    """
    if isinstance(local_address, IPv4Address):
        v4: IPv4Address | None = ipv4_configured or local_address
        v6 = ipv6_configured or IPv6Address(f"::ffff:{local_address}")
    else:
        v4 = ipv4_configured or router_id
        v6 = ipv6_configured or local_address
    return v4, v6


def export_attributes(
    route: RouteAttributes, family: Family, context: ExportContext
) -> PathAttributes:
    """The attributes of `route` towards the peer; IPv6 goes in MP_REACH without NLRI yet."""
    as_path = AsPath() if context.ibgp else AsPath.sequence(context.local_as)
    local_pref = None
    if context.ibgp:
        local_pref = route.local_pref if route.local_pref is not None else DEFAULT_LOCAL_PREF
    common = PathAttributes(
        origin=Origin.IGP,
        as_path=as_path,
        med=route.med,
        local_pref=local_pref,
        communities=tuple(sorted(set(route.communities))) or None,
        large_communities=tuple(sorted(set(route.large_communities), key=_large_key)) or None,
    )
    if family == IPV4_UNICAST:
        hop = route.next_hop if isinstance(route.next_hop, IPv4Address) else context.ipv4_next_hop
        return replace(common, next_hop=hop)
    hop6 = route.next_hop if isinstance(route.next_hop, IPv6Address) else context.ipv6_next_hop
    assert hop6 is not None
    return replace(common, mp_reach=MpReach(family, (hop6,)))


def _large_key(community: LargeCommunity) -> tuple[int, int, int]:
    return community.global_admin, community.local_data1, community.local_data2
