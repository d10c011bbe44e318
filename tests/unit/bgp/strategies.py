"""Hypothesis strategies for well-formed codec values."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from hypothesis import strategies as st

from herald.bgp.wire import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AddPath,
    AddPathFamily,
    AddPathMode,
    Aggregator,
    AsPath,
    AsPathSegment,
    Capability,
    ExtendedMessage,
    Family,
    FourOctetAs,
    GracefulRestart,
    GracefulRestartFamily,
    Keepalive,
    LargeCommunity,
    Message,
    MpReach,
    MpUnreach,
    MultiProtocol,
    Negotiated,
    Notification,
    Open,
    Origin,
    PathAttributes,
    Prefix,
    RouteRefresh,
    RouteRefreshCapability,
    SegmentType,
    UnknownAttribute,
    UnknownCapability,
    Update,
)
from herald.bgp.wire.attributes import AttributeType
from herald.bgp.wire.capabilities import CapabilityCode

BOTH = frozenset({IPV4_UNICAST, IPV6_UNICAST})
SESSIONS = [
    Negotiated(families=BOTH),
    Negotiated(families=BOTH, add_path_receive=BOTH, add_path_send=BOTH, extended_message=True),
    Negotiated(four_octet_as=False, families=BOTH),
]

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
small = {"max_size": 4}
families = st.sampled_from([IPV4_UNICAST, IPV6_UNICAST])
ipv4 = st.builds(IPv4Address, u32)
unicast_ipv4 = st.builds(IPv4Address, st.integers(1, 0xDFFF_FFFF))
ipv6 = st.builds(IPv6Address, st.integers(0, 2**128 - 1))


def _v4(value: int, length: int) -> IPv4Network:
    return IPv4Network((value, length), strict=False)


def _v6(value: int, length: int) -> IPv6Network:
    return IPv6Network((value, length), strict=False)


def prefixes(family: Family, add_path: bool) -> st.SearchStrategy[Prefix]:
    network = (
        st.builds(_v4, u32, st.integers(0, 32))
        if family == IPV4_UNICAST
        else st.builds(_v6, st.integers(0, 2**128 - 1), st.integers(0, 128))
    )
    return st.builds(Prefix, network, u32 if add_path else st.none())


def prefix_lists(family: Family, add_path: bool) -> st.SearchStrategy[tuple[Prefix, ...]]:
    return st.lists(prefixes(family, add_path), **small).map(tuple)


def as_paths(plain: bool) -> st.SearchStrategy[AsPath]:
    kinds = [SegmentType.AS_SEQUENCE, SegmentType.AS_SET]
    if not plain:
        kinds += [SegmentType.AS_CONFED_SEQUENCE, SegmentType.AS_CONFED_SET]
    segment = st.builds(
        AsPathSegment,
        st.sampled_from(kinds),
        st.lists(u32, min_size=1, max_size=6).map(tuple),
    )
    return st.lists(segment, **small).map(lambda s: AsPath(tuple(s)))


@st.composite
def path_attributes(
    draw: st.DrawFn, negotiated: Negotiated, *, nlri: bool, reach: MpReach | None
) -> PathAttributes:
    def maybe(strategy: st.SearchStrategy[object], needed: bool = False) -> object:
        return draw(strategy if needed else st.none() | strategy)

    announces = nlri or (reach is not None and bool(reach.nlri))
    two_octet = not negotiated.four_octet_as
    unknown_codes = st.integers(100, 255)
    return PathAttributes(
        origin=maybe(st.sampled_from(Origin), announces),  # type: ignore[arg-type]
        as_path=maybe(as_paths(two_octet), announces),  # type: ignore[arg-type]
        next_hop=maybe(unicast_ipv4, nlri),  # type: ignore[arg-type]
        med=maybe(u32),  # type: ignore[arg-type]
        local_pref=maybe(u32),  # type: ignore[arg-type]
        atomic_aggregate=draw(st.booleans()),
        # Towards a 2-octet speaker an AGGREGATOR below 65536 marks AS4_PATH stale (RFC
        # 6793 §4.2.3), so a round trip only holds without one.
        aggregator=None if two_octet else maybe(st.builds(Aggregator, u32, ipv4)),  # type: ignore[arg-type]
        communities=maybe(st.lists(u32, min_size=1, max_size=4).map(tuple)),  # type: ignore[arg-type]
        originator_id=maybe(ipv4),  # type: ignore[arg-type]
        cluster_list=maybe(st.lists(ipv4, min_size=1, max_size=4).map(tuple)),  # type: ignore[arg-type]
        mp_reach=reach,
        mp_unreach=maybe(mp_unreach(negotiated)),  # type: ignore[arg-type]
        large_communities=maybe(  # type: ignore[arg-type]
            st.lists(st.builds(LargeCommunity, u32, u32, u32), min_size=1, max_size=4).map(tuple)
        ),
        unknown=tuple(
            draw(
                st.lists(
                    st.builds(UnknownAttribute, unknown_codes, st.binary(max_size=8)),
                    unique_by=lambda u: u.type_code,
                    **small,
                ).filter(lambda us: all(u.type_code not in set(AttributeType) for u in us))
            )
        ),
    )


@st.composite
def mp_reach(draw: st.DrawFn, negotiated: Negotiated) -> MpReach:
    family = draw(families)
    hops = st.tuples(ipv4) if family == IPV4_UNICAST else st.lists(ipv6, min_size=1, max_size=2)
    nlri = draw(prefix_lists(family, family in negotiated.add_path_send))
    return MpReach(family, tuple(draw(hops)), nlri)


@st.composite
def mp_unreach(draw: st.DrawFn, negotiated: Negotiated) -> MpUnreach:
    family = draw(families)
    return MpUnreach(family, draw(prefix_lists(family, family in negotiated.add_path_send)))


@st.composite
def updates(draw: st.DrawFn, negotiated: Negotiated) -> Update:
    add_path = IPV4_UNICAST in negotiated.add_path_send
    nlri = draw(prefix_lists(IPV4_UNICAST, add_path))
    reach = draw(st.none() | mp_reach(negotiated))
    attributes = draw(path_attributes(negotiated, nlri=bool(nlri), reach=reach))
    return Update(draw(prefix_lists(IPV4_UNICAST, add_path)), attributes, nlri)


capabilities: st.SearchStrategy[Capability] = st.one_of(
    st.builds(MultiProtocol, families),
    st.just(RouteRefreshCapability()),
    st.just(ExtendedMessage()),
    st.builds(
        GracefulRestart,
        st.integers(0, 0xFFF),
        st.booleans(),
        st.booleans(),
        st.lists(st.builds(GracefulRestartFamily, families, st.booleans()), **small).map(tuple),
    ),
    st.builds(
        AddPath,
        st.lists(st.builds(AddPathFamily, families, st.sampled_from(AddPathMode)), **small).map(
            tuple
        ),
    ),
    st.builds(
        UnknownCapability,
        u8.filter(lambda c: c not in set(CapabilityCode)),
        st.binary(max_size=6),
    ),
)


@st.composite
def opens(draw: st.DrawFn) -> Open:
    asn = draw(u32)
    caps = draw(st.lists(capabilities, max_size=6))
    if asn > 0xFFFF or draw(st.booleans()):
        caps.insert(draw(st.integers(0, len(caps))), FourOctetAs(asn))
    return Open(asn, draw(u16), draw(ipv4), tuple(caps), 4)


def messages(negotiated: Negotiated) -> st.SearchStrategy[Message]:
    return st.one_of(
        opens(),
        updates(negotiated),
        st.builds(Notification, u8, u8, st.binary(max_size=20)),
        st.just(Keepalive()),
        st.builds(RouteRefresh, st.builds(Family, u16, u8), u8),
    )
