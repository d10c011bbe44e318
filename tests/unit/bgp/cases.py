"""The golden cases: what each golden file in golden/ was made from.

Valid cases give a message; their hex comes from our encoder, except the ones that also give
`hex`, written by hand from the RFC layouts, which pin the encoder to the RFCs. Malformed
cases give hand-built bytes and what the decoder must conclude (`error` or `treatments`);
`make_goldens.py` refuses to write a file whose case the decoder disagrees with.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

from herald.bgp.wire import (
    INITIAL,
    IPV4_UNICAST,
    IPV6_UNICAST,
    AddPath,
    AddPathFamily,
    AddPathMode,
    Aggregator,
    AsPath,
    AsPathSegment,
    ExtendedMessage,
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
    Treatment,
    UnknownAttribute,
    UnknownCapability,
    Update,
)
from herald.bgp.wire.attributes import NO_EXPORT

MARKER = "ff" * 16
TWO_OCTET = Negotiated(four_octet_as=False)
DUAL = Negotiated(families=frozenset({IPV4_UNICAST, IPV6_UNICAST}))
ADD_PATH = Negotiated(
    families=frozenset({IPV4_UNICAST, IPV6_UNICAST}),
    add_path_receive=frozenset({IPV4_UNICAST, IPV6_UNICAST}),
    add_path_send=frozenset({IPV4_UNICAST, IPV6_UNICAST}),
)
EXTENDED = Negotiated(extended_message=True)


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    message: Message | None = None
    hex: str | None = None
    negotiated: Negotiated = INITIAL
    error: tuple[int, int] | None = None
    treatments: tuple[tuple[Treatment, int], ...] = ()
    extra: dict[str, str] = field(default_factory=dict)


def frame(message_type: int, body: str) -> str:
    return MARKER + f"{19 + len(body) // 2:04x}{message_type:02x}" + body


def update_hex(attributes: str, nlri: str = "", withdrawn: str = "") -> str:
    """An UPDATE frame around hand-written fields; only the length fields are computed."""
    return frame(
        2,
        f"{len(withdrawn) // 2:04x}{withdrawn}{len(attributes) // 2:04x}{attributes}{nlri}",
    )


def attr(flags: int, code: int, value: str) -> str:
    return f"{flags:02x}{code:02x}{len(value) // 2:02x}{value}"


# Well-formed attributes for the malformed cases to break one at a time.
ORIGIN_IGP = attr(0x40, 1, "00")
AS_PATH_64512 = attr(0x40, 2, "0201" + "0000fc00")
NEXT_HOP = attr(0x40, 3, "c0000215")
NLRI_VIP = "20cb00710a"  # 203.0.113.10/32
BASE = ORIGIN_IGP + AS_PATH_64512 + NEXT_HOP

VIP = Prefix(IPv4Network("203.0.113.10/32"))
VIP6 = Prefix(IPv6Network("2001:db8:10::a/128"))
ROUTER_ID = IPv4Address("192.0.2.21")
BASIC = PathAttributes(
    origin=Origin.IGP, as_path=AsPath.sequence(64512), next_hop=IPv4Address("192.0.2.21")
)
WITHDRAW = (Treatment.TREAT_AS_WITHDRAW,)
TAW = Treatment.TREAT_AS_WITHDRAW
DISCARD = Treatment.ATTRIBUTE_DISCARD
DISABLE = Treatment.AFI_SAFI_DISABLE
V6_REACH = MpReach(
    IPV6_UNICAST,
    (IPv6Address("2001:db8::21"), IPv6Address("fe80::21")),
    (VIP6, Prefix(IPv6Network("2001:db8:20::/48"))),
)

VALID: list[Case] = [
    Case(
        "keepalive",
        "KEEPALIVE: a bare header (RFC 4271 §4.4); hex by hand",
        Keepalive(),
        hex=MARKER + "0013" + "04",
    ),
    Case(
        "open-as4-ipv6",
        "OPEN from AS 4200000000: AS_TRANS in My AS, the real AS in capability 65, "
        "MP IPv6 unicast; hex by hand from RFC 4271 §4.2, RFC 5492, RFC 4760 §8, RFC 6793",
        Open(4200000000, 90, ROUTER_ID, (MultiProtocol(IPV6_UNICAST), FourOctetAs(4200000000))),
        hex=MARKER
        + "002d01"
        + "04"  # version
        + "5ba0"  # My AS = AS_TRANS 23456
        + "005a"  # hold time 90
        + "c0000215"  # BGP identifier 192.0.2.21
        + "10"  # optional parameters length
        + "0206"
        + "0104"
        + "00020001"  # capability 1: AFI 2, reserved, SAFI 1
        + "0206"
        + "4104"
        + "fa56ea00",  # capability 65: 4200000000
    ),
    Case(
        "open-2octet-no-capabilities",
        "OPEN of an old speaker: AS 64512, hold 180, no optional parameters; hex by hand",
        Open(64512, 180, IPv4Address("192.0.2.1")),
        hex=frame(1, "04" + "fc00" + "00b4" + "c0000201" + "00"),
    ),
    Case(
        "open-every-capability",
        "OPEN with every capability herald knows, and one it does not (70, kept raw)",
        Open(
            64512,
            0,
            ROUTER_ID,
            (
                MultiProtocol(IPV4_UNICAST),
                MultiProtocol(IPV6_UNICAST),
                RouteRefreshCapability(),
                FourOctetAs(64512),
                GracefulRestart(
                    120,
                    restarting=True,
                    notification=True,
                    families=(
                        GracefulRestartFamily(IPV4_UNICAST, True),
                        GracefulRestartFamily(IPV6_UNICAST, False),
                    ),
                ),
                ExtendedMessage(),
                AddPath(
                    (
                        AddPathFamily(IPV4_UNICAST, AddPathMode.BOTH),
                        AddPathFamily(IPV6_UNICAST, AddPathMode.RECEIVE),
                    )
                ),
                UnknownCapability(70, b""),
            ),
        ),
    ),
    Case(
        "update-communities",
        "UPDATE announcing 203.0.113.10/32 with ORIGIN, AS_PATH (4-octet), NEXT_HOP and "
        "COMMUNITIES 64488:100 NO_EXPORT; hex by hand from RFC 4271 §4.3, RFC 1997",
        Update(
            attributes=PathAttributes(
                origin=Origin.IGP,
                as_path=AsPath.sequence(64512),
                next_hop=ROUTER_ID,
                communities=(0xFDE80064, NO_EXPORT),
            ),
            nlri=(VIP,),
        ),
        hex=MARKER
        + "003b02"
        + "0000"  # withdrawn routes length
        + "001f"  # total path attribute length 31
        + "40010100"  # ORIGIN IGP
        + "400206"
        + "0201"
        + "0000fc00"  # AS_PATH: one AS_SEQUENCE of 64512
        + "400304c0000215"  # NEXT_HOP 192.0.2.21
        + "c00808"
        + "fde80064"
        + "ffffff01"  # COMMUNITIES
        + "20cb00710a",  # NLRI 203.0.113.10/32
    ),
    Case(
        "update-every-attribute",
        "UPDATE with every attribute herald interprets, plus an unknown optional transitive "
        "one (type 99), re-sent with the Partial bit",
        Update(
            attributes=PathAttributes(
                origin=Origin.INCOMPLETE,
                as_path=AsPath(
                    (
                        AsPathSegment(SegmentType.AS_SEQUENCE, (64512, 4200000000)),
                        AsPathSegment(SegmentType.AS_SET, (64513, 64514)),
                    )
                ),
                next_hop=ROUTER_ID,
                med=100,
                local_pref=200,
                atomic_aggregate=True,
                aggregator=Aggregator(64512, IPv4Address("192.0.2.21")),
                communities=(0xFDE80064,),
                originator_id=IPv4Address("192.0.2.22"),
                cluster_list=(IPv4Address("192.0.2.1"), IPv4Address("192.0.2.2")),
                large_communities=(LargeCommunity(4200000000, 1, 2),),
                unknown=(UnknownAttribute(99, bytes.fromhex("0102")),),
            ),
            nlri=(VIP, Prefix(IPv4Network("198.51.100.0/24")), Prefix(IPv4Network("0.0.0.0/0"))),
        ),
    ),
    Case(
        "update-large-communities",
        "LARGE_COMMUNITIES 4200000000:1:2 (RFC 8092 §3); attribute hex by hand",
        Update(
            attributes=replace(BASIC, large_communities=(LargeCommunity(4200000000, 1, 2),)),
            nlri=(VIP,),
        ),
        hex=update_hex(BASE + "c0200c" + "fa56ea00" + "00000001" + "00000002", NLRI_VIP),
    ),
    Case(
        "update-as4-to-old-speaker",
        "Towards a 2-octet speaker: AS_PATH and AGGREGATOR carry AS_TRANS, AS4_PATH and "
        "AS4_AGGREGATOR the real 4200000000 (RFC 6793 §4.2.2); decoding merges them back",
        Update(
            attributes=PathAttributes(
                origin=Origin.IGP,
                as_path=AsPath.sequence(64512, 4200000000, 64513),
                next_hop=ROUTER_ID,
                aggregator=Aggregator(4200000000, IPv4Address("192.0.2.21")),
            ),
            nlri=(VIP,),
        ),
        negotiated=TWO_OCTET,
        hex=update_hex(
            ORIGIN_IGP
            + attr(0x40, 2, "0203" + "fc00" + "5ba0" + "fc01")
            + NEXT_HOP
            + attr(0xC0, 7, "5ba0" + "c0000215")
            + attr(0xC0, 17, "0203" + "0000fc00" + "fa56ea00" + "0000fc01")
            + attr(0xC0, 18, "fa56ea00" + "c0000215"),
            NLRI_VIP,
        ),
    ),
    Case(
        "update-2octet-no-as4",
        "Towards a 2-octet speaker with only 2-octet AS numbers: no AS4_PATH is added",
        Update(attributes=BASIC, nlri=(VIP,)),
        negotiated=TWO_OCTET,
        hex=update_hex(ORIGIN_IGP + attr(0x40, 2, "0201fc00") + NEXT_HOP, NLRI_VIP),
    ),
    Case(
        "update-withdraw-ipv4",
        "UPDATE withdrawing two IPv4 prefixes, no attributes",
        Update(withdrawn=(VIP, Prefix(IPv4Network("198.51.100.128/25")))),
        hex=update_hex("", withdrawn="20cb00710a" + "19c6336480"),
    ),
    Case(
        "update-mp-reach-ipv6",
        "MP_REACH_NLRI for IPv6 with a global and a link-local next hop (RFC 2545)",
        Update(
            attributes=PathAttributes(
                origin=Origin.IGP, as_path=AsPath.sequence(64512), mp_reach=V6_REACH
            )
        ),
        negotiated=DUAL,
    ),
    Case(
        "update-mp-unreach-ipv6",
        "MP_UNREACH_NLRI withdrawing an IPv6 prefix; attribute hex by hand (RFC 4760 §4)",
        Update(attributes=PathAttributes(mp_unreach=MpUnreach(IPV6_UNICAST, (VIP6,)))),
        negotiated=DUAL,
        hex=update_hex(attr(0x80, 15, "000201" + "80" + "20010db80010" + "00" * 9 + "0a")),
    ),
    Case(
        "update-add-path",
        "Add-path (RFC 7911): path identifiers before IPv4 NLRI and MP_REACH IPv6 NLRI",
        Update(
            withdrawn=(Prefix(VIP.network, 7),),
            attributes=PathAttributes(
                origin=Origin.IGP,
                as_path=AsPath.sequence(64512),
                next_hop=ROUTER_ID,
                mp_reach=MpReach(
                    IPV6_UNICAST, (IPv6Address("2001:db8::21"),), (Prefix(VIP6.network, 9),)
                ),
            ),
            nlri=(Prefix(VIP.network, 1), Prefix(VIP.network, 2)),
        ),
        negotiated=ADD_PATH,
    ),
    Case(
        "end-of-rib-ipv4",
        "End-of-RIB for IPv4 unicast: an UPDATE with nothing in it (RFC 4724 §2)",
        Update.end_of_rib(IPV4_UNICAST),
        hex=update_hex(""),
    ),
    Case(
        "end-of-rib-ipv6",
        "End-of-RIB for IPv6 unicast: only an empty MP_UNREACH_NLRI",
        Update.end_of_rib(IPV6_UNICAST),
        negotiated=DUAL,
        hex=update_hex(attr(0x80, 15, "000201")),
    ),
    Case(
        "update-extended-length",
        "100 communities need the Extended Length flag (400-octet value)",
        Update(
            attributes=replace(BASIC, communities=tuple(range(100))),
            nlri=(VIP,),
        ),
    ),
    Case(
        "update-extended-message",
        "With extended messages agreed (RFC 8654), an UPDATE above 4096 octets",
        Update(
            attributes=BASIC,
            nlri=tuple(Prefix(IPv4Network(f"10.{i // 256}.{i % 256}.0/24")) for i in range(1200)),
        ),
        negotiated=EXTENDED,
    ),
    Case(
        "notification-hold-timer",
        "NOTIFICATION hold timer expired (code 4); hex by hand",
        Notification(4, 0),
        hex=MARKER + "0015" + "03" + "0400",
    ),
    Case(
        "notification-with-data",
        "NOTIFICATION OPEN error, bad peer AS, with data",
        Notification(2, 2, bytes.fromhex("fc01")),
        hex=frame(3, "0202fc01"),
    ),
    Case(
        "route-refresh-ipv6",
        "ROUTE-REFRESH for IPv6 unicast (RFC 2918 §3); hex by hand",
        RouteRefresh(IPV6_UNICAST),
        hex=frame(5, "0002" + "00" + "01"),
    ),
]


MALFORMED: list[Case] = [
    # header
    Case(
        "header-bad-marker", "marker not all ones", hex="00" + MARKER[2:] + "001304", error=(1, 1)
    ),
    Case("header-short-length", "length 18", hex=MARKER + "001204", error=(1, 2)),
    Case("header-bad-type", "type 9", hex=MARKER + "001309", error=(1, 3)),
    Case("header-long-keepalive", "KEEPALIVE of 20 octets", hex=frame(4, "00"), error=(1, 2)),
    Case(
        "header-update-too-long",
        "UPDATE above 4096 octets without extended messages",
        hex=MARKER + "1001" + "02" + "00" * 4078,
        error=(1, 2),
    ),
    # OPEN
    Case(
        "open-unsupported-parameter",
        "optional parameter 1 (authentication, deprecated)",
        hex=frame(1, "04fc0000b4c0000201" + "03" + "0101ff"),
        error=(2, 4),
    ),
    Case(
        "open-truncated-capability",
        "capability length runs past the parameter",
        hex=frame(1, "04fc0000b4c0000201" + "04" + "0202" + "4104"),
        error=(2, 0),
    ),
    # ROUTE-REFRESH
    Case("route-refresh-length", "five-octet body", hex=frame(5, "0001000100"), error=(7, 1)),
    # UPDATE framing: session reset
    Case(
        "update-withdrawn-overrun",
        "withdrawn routes length past the message",
        hex=frame(2, "00ff0000"),
        error=(3, 1),
    ),
    Case(
        "update-nlri-bad-length",
        "NLRI prefix length 33",
        hex=update_hex(BASE, "21cb00710a00"),
        error=(3, 10),
    ),
    Case(
        "update-unknown-well-known",
        "unrecognised well-known attribute 99 (RFC 4271 §6.3)",
        hex=update_hex(BASE + attr(0x40, 99, "00"), NLRI_VIP),
        error=(3, 2),
    ),
    Case(
        "update-mp-reach-twice",
        "MP_REACH_NLRI twice (RFC 7606 §3(g))",
        hex=update_hex(attr(0x80, 14, "000201100000") * 2),
        negotiated=DUAL,
        error=(3, 1),
    ),
    Case(
        "update-mp-reach-no-family",
        "MP_REACH_NLRI of 2 octets: no AFI/SAFI to disable (RFC 7606 §7.11)",
        hex=update_hex(attr(0x80, 14, "0002")),
        error=(3, 9),
    ),
    # RFC 7606 treatments
    Case(
        "origin-bad-value",
        "ORIGIN 3",
        hex=update_hex(attr(0x40, 1, "03") + AS_PATH_64512 + NEXT_HOP, NLRI_VIP),
        treatments=((TAW, 1),),
    ),
    Case(
        "origin-bad-length",
        "ORIGIN of 2 octets",
        hex=update_hex(attr(0x40, 1, "0000") + AS_PATH_64512 + NEXT_HOP, NLRI_VIP),
        treatments=((TAW, 1),),
    ),
    Case(
        "origin-bad-flags",
        "ORIGIN with the optional bit (RFC 7606 §3(c))",
        hex=update_hex(attr(0xC0, 1, "00") + AS_PATH_64512 + NEXT_HOP, NLRI_VIP),
        treatments=((TAW, 1),),
    ),
    Case(
        "as-path-bad-segment-type",
        "AS_PATH segment type 5",
        hex=update_hex(ORIGIN_IGP + attr(0x40, 2, "0501" + "0000fc00") + NEXT_HOP, NLRI_VIP),
        treatments=((TAW, 2),),
    ),
    Case(
        "as-path-empty-segment",
        "AS_PATH segment with zero ASNs (RFC 7606 §7.2)",
        hex=update_hex(ORIGIN_IGP + attr(0x40, 2, "0200") + NEXT_HOP, NLRI_VIP),
        treatments=((TAW, 2),),
    ),
    Case(
        "as-path-overrun-segment",
        "AS_PATH segment claims two ASNs, holds one",
        hex=update_hex(ORIGIN_IGP + attr(0x40, 2, "0202" + "0000fc00") + NEXT_HOP, NLRI_VIP),
        treatments=((TAW, 2),),
    ),
    Case(
        "next-hop-bad-length",
        "NEXT_HOP of 5 octets",
        hex=update_hex(ORIGIN_IGP + AS_PATH_64512 + attr(0x40, 3, "c000021500"), NLRI_VIP),
        treatments=((TAW, 3),),
    ),
    Case(
        "next-hop-unspecified",
        "NEXT_HOP 0.0.0.0 is not a host address (RFC 4271 §6.3, RFC 7606 §7.3)",
        hex=update_hex(ORIGIN_IGP + AS_PATH_64512 + attr(0x40, 3, "00000000"), NLRI_VIP),
        treatments=((TAW, 3),),
    ),
    Case(
        "communities-empty",
        "COMMUNITIES of length 0 (RFC 7606 §7.8: a non-zero multiple of 4)",
        hex=update_hex(BASE + attr(0xC0, 8, ""), NLRI_VIP),
        treatments=((TAW, 8),),
    ),
    Case(
        "large-communities-empty",
        "LARGE_COMMUNITIES of length 0 (RFC 8092 §5)",
        hex=update_hex(BASE + attr(0xC0, 32, ""), NLRI_VIP),
        treatments=((TAW, 32),),
    ),
    Case(
        "cluster-list-empty",
        "CLUSTER_LIST of length 0 (RFC 7606 §7.10)",
        hex=update_hex(BASE + attr(0x80, 10, ""), NLRI_VIP),
        treatments=((TAW, 10),),
    ),
    Case(
        "med-bad-length",
        "MULTI_EXIT_DISC of 3 octets",
        hex=update_hex(BASE + attr(0x80, 4, "000001"), NLRI_VIP),
        treatments=((TAW, 4),),
    ),
    Case(
        "local-pref-bad-length",
        "LOCAL_PREF of 2 octets",
        hex=update_hex(BASE + attr(0x40, 5, "0064"), NLRI_VIP),
        treatments=((TAW, 5),),
    ),
    Case(
        "atomic-aggregate-bad-length",
        "ATOMIC_AGGREGATE with a value (RFC 7606 §7.6: discard)",
        hex=update_hex(BASE + attr(0x40, 6, "00"), NLRI_VIP),
        treatments=((DISCARD, 6),),
    ),
    Case(
        "aggregator-bad-length",
        "AGGREGATOR of 5 octets (RFC 7606 §7.7: discard)",
        hex=update_hex(BASE + attr(0xC0, 7, "00fc000001"), NLRI_VIP),
        treatments=((DISCARD, 7),),
    ),
    Case(
        "communities-bad-length",
        "COMMUNITIES of 5 octets",
        hex=update_hex(BASE + attr(0xC0, 8, "fde8006400"), NLRI_VIP),
        treatments=((TAW, 8),),
    ),
    Case(
        "originator-id-bad-length",
        "ORIGINATOR_ID of 3 octets",
        hex=update_hex(BASE + attr(0x80, 9, "c00002"), NLRI_VIP),
        treatments=((TAW, 9),),
    ),
    Case(
        "cluster-list-bad-length",
        "CLUSTER_LIST of 6 octets",
        hex=update_hex(BASE + attr(0x80, 10, "c0000201c000"), NLRI_VIP),
        treatments=((TAW, 10),),
    ),
    Case(
        "large-communities-bad-length",
        "LARGE_COMMUNITIES of 8 octets (RFC 8092 §5)",
        hex=update_hex(BASE + attr(0xC0, 32, "fa56ea0000000001"), NLRI_VIP),
        treatments=((TAW, 32),),
    ),
    Case(
        "mp-reach-bad-next-hop",
        "MP_REACH_NLRI IPv6 with a 5-octet next hop: disable IPv6 unicast",
        hex=update_hex(ORIGIN_IGP + AS_PATH_64512 + attr(0x80, 14, "00020105" + "00" * 5 + "00")),
        negotiated=DUAL,
        treatments=((DISABLE, 14),),
    ),
    Case(
        "mp-unreach-bad-prefix",
        "MP_UNREACH_NLRI IPv6 with prefix length 129: disable IPv6 unicast",
        hex=update_hex(attr(0x80, 15, "000201" + "81" + "00" * 17)),
        negotiated=DUAL,
        treatments=((DISABLE, 15),),
    ),
    Case(
        "mp-reach-unnegotiated-family",
        "MP_REACH_NLRI for IPv6 on an IPv4-only session: disable the family",
        hex=update_hex(ORIGIN_IGP + AS_PATH_64512 + attr(0x80, 14, "00020110" + "00" * 16 + "00")),
        treatments=((DISABLE, 14),),
    ),
    Case(
        "as4-path-malformed",
        "AS4_PATH with a truncated segment from a 2-octet speaker (RFC 6793 §6: discard)",
        hex=update_hex(
            ORIGIN_IGP + attr(0x40, 2, "0201fc00") + NEXT_HOP + attr(0xC0, 17, "0202fa56ea00"),
            NLRI_VIP,
        ),
        negotiated=TWO_OCTET,
        treatments=((DISCARD, 17),),
    ),
    Case(
        "as4-aggregator-bad-length",
        "AS4_AGGREGATOR of 6 octets: discard",
        hex=update_hex(
            ORIGIN_IGP
            + attr(0x40, 2, "0201fc00")
            + NEXT_HOP
            + attr(0xC0, 7, "5ba0c0000215")
            + attr(0xC0, 18, "fa56ea00c000"),
            NLRI_VIP,
        ),
        negotiated=TWO_OCTET,
        treatments=((DISCARD, 18),),
    ),
    Case(
        "duplicate-communities",
        "COMMUNITIES twice: the second is discarded (RFC 7606 §3(g))",
        hex=update_hex(BASE + attr(0xC0, 8, "fde80064") + attr(0xC0, 8, "fde80065"), NLRI_VIP),
        treatments=((DISCARD, 8),),
    ),
    Case(
        "missing-origin",
        "NLRI without ORIGIN (RFC 7606 §3(d))",
        hex=update_hex(AS_PATH_64512 + NEXT_HOP, NLRI_VIP),
        treatments=((TAW, 1),),
    ),
    Case(
        "missing-next-hop",
        "IPv4 NLRI without NEXT_HOP",
        hex=update_hex(ORIGIN_IGP + AS_PATH_64512, NLRI_VIP),
        treatments=((TAW, 3),),
    ),
    Case(
        "attribute-overrun",
        "last attribute's length runs past the attribute field (RFC 7606 §4)",
        hex=update_hex(BASE + "c00808fde80064", NLRI_VIP),
        treatments=((TAW, 8),),
    ),
    Case(
        "mp-reach-treat-as-withdraw",
        "bad COMMUNITIES next to MP_REACH_NLRI: the IPv6 routes become MP_UNREACH",
        hex=update_hex(
            attr(
                0x80, 14, "000201" + "10" + "20010db8" + "00" * 11 + "21" + "00" + "3020010db80020"
            )
            + ORIGIN_IGP
            + AS_PATH_64512
            + attr(0xC0, 8, "fde800")
        ),
        negotiated=DUAL,
        treatments=((TAW, 8),),
    ),
    Case(
        "treat-as-withdraw-mixed-families",
        "treat-as-withdraw with MP_REACH IPv6 and MP_UNREACH IPv4: one UPDATE cannot say "
        "both withdrawals, so herald resets the session (a documented limitation)",
        hex=update_hex(
            attr(
                0x80, 14, "000201" + "10" + "20010db8" + "00" * 11 + "21" + "00" + "3020010db80020"
            )
            + attr(0x80, 15, "000101" + NLRI_VIP)
            + ORIGIN_IGP
            + AS_PATH_64512
            + attr(0xC0, 8, "fde800")
        ),
        negotiated=DUAL,
        error=(3, 1),
    ),
    Case(
        "unknown-optional-transitive-no-partial",
        "unknown optional transitive attribute without Partial: kept, Partial set on re-send",
        hex=update_hex(BASE + attr(0xC0, 99, "0102"), NLRI_VIP),
    ),
    Case(
        "unknown-optional-non-transitive",
        "unknown optional non-transitive attribute: dropped quietly (RFC 4271 §5)",
        hex=update_hex(BASE + attr(0x80, 99, "0102"), NLRI_VIP),
    ),
]

ALL = VALID + MALFORMED
