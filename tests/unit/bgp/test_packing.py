"""UPDATE packing, export attributes and socket option layouts: pure, no sockets."""

from __future__ import annotations

import socket
import struct
from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest

from herald.bgp.export import ExportContext, RouteAttributes, export_attributes, next_hops
from herald.bgp.packing import announcements, encode_all, withdrawals
from herald.bgp.sockopts import md5sig, minimum_ttl
from herald.bgp.wire import (
    INITIAL,
    IPV4_UNICAST,
    IPV6_UNICAST,
    LargeCommunity,
    Negotiated,
    Prefix,
    Update,
    decode_message,
)

BOTH = Negotiated(families=frozenset({IPV4_UNICAST, IPV6_UNICAST}))
EXTENDED = Negotiated(families=BOTH.families, extended_message=True)
IBGP = ExportContext(64512, True, IPv4Address("192.0.2.21"), IPv6Address("2001:db8:2::21"))
EBGP = ExportContext(4200000000, False, IPv4Address("192.0.2.21"), IPv6Address("2001:db8:2::21"))


def v4_prefixes(n: int) -> list[Prefix]:
    return [Prefix(ip_network(f"198.18.{i // 256}.{i % 256}/32")) for i in range(n)]


def decoded_nlri(frames: list[bytes], negotiated: Negotiated) -> list[Prefix]:
    out: list[Prefix] = []
    for frame in frames:
        update = decode_message(frame, negotiated).message
        assert isinstance(update, Update)
        out += update.nlri
        if update.attributes.mp_reach is not None:
            out += update.attributes.mp_reach.nlri
    return out


@pytest.mark.parametrize("negotiated", [BOTH, EXTENDED])
def test_announcements_fill_messages_to_the_limit_and_lose_nothing(negotiated: Negotiated) -> None:
    attributes = export_attributes(RouteAttributes(communities=(1, 2)), IPV4_UNICAST, IBGP)
    routes = dict.fromkeys(v4_prefixes(20000), attributes)
    frames = encode_all(announcements(routes, IPV4_UNICAST, negotiated), negotiated)
    assert all(len(f) <= negotiated.max_message_size for f in frames)
    # Every message but the last is full: no room for one more /32 (5 octets).
    assert all(len(f) > negotiated.max_message_size - 5 for f in frames[:-1])
    assert sorted(decoded_nlri(frames, negotiated)) == sorted(routes)


def test_ipv6_announcements_and_withdrawals_use_mp_attributes() -> None:
    attributes = export_attributes(RouteAttributes(), IPV6_UNICAST, EBGP)
    prefixes = [Prefix(ip_network(f"2001:db8:10::{i:x}/128")) for i in range(3000)]
    frames = encode_all(
        announcements(dict.fromkeys(prefixes, attributes), IPV6_UNICAST, BOTH), BOTH
    )
    assert all(len(f) <= 4096 for f in frames) and len(frames) == 3000 // 237 + 1
    assert sorted(decoded_nlri(frames, BOTH)) == prefixes
    gone = encode_all(withdrawals(prefixes, IPV6_UNICAST, BOTH), BOTH)
    withdrawn = []
    for frame in gone:
        update = decode_message(frame, BOTH).message
        assert isinstance(update, Update) and update.attributes.mp_unreach is not None
        withdrawn += update.attributes.mp_unreach.withdrawn
        assert len(frame) <= 4096
    assert withdrawn == prefixes


def test_withdrawals_of_ipv4_fill_the_withdrawn_field() -> None:
    frames = encode_all(withdrawals(v4_prefixes(2000), IPV4_UNICAST, INITIAL), INITIAL)
    assert len(frames) == 3  # (4096 - 23) // 5 = 814 per message


def test_each_attribute_set_gets_its_own_updates() -> None:
    a = export_attributes(RouteAttributes(med=1), IPV4_UNICAST, IBGP)
    b = export_attributes(RouteAttributes(med=2), IPV4_UNICAST, IBGP)
    prefixes = v4_prefixes(4)
    updates = announcements(
        {prefixes[0]: a, prefixes[1]: b, prefixes[2]: a, prefixes[3]: b}, IPV4_UNICAST, BOTH
    )
    assert [(u.attributes.med, len(u.nlri)) for u in updates] == [(1, 2), (2, 2)]


def test_export_local_pref_only_to_ibgp_and_as_path_only_to_ebgp() -> None:
    route = RouteAttributes(local_pref=300, med=5, large_communities=(LargeCommunity(1, 2, 3),))
    inside = export_attributes(route, IPV4_UNICAST, IBGP)
    outside = export_attributes(route, IPV4_UNICAST, EBGP)
    assert inside.local_pref == 300 and outside.local_pref is None
    assert inside.as_path is not None and inside.as_path.segments == ()
    assert outside.as_path is not None and outside.as_path.segments[0].asns == (4200000000,)
    assert inside.next_hop == IPv4Address("192.0.2.21") and outside.med == 5
    assert export_attributes(RouteAttributes(), IPV4_UNICAST, IBGP).local_pref == 100


def test_next_hops_per_transport() -> None:
    router_id = IPv4Address("192.0.2.21")
    assert next_hops(IPv4Address("192.0.2.21"), router_id, None, None) == (
        IPv4Address("192.0.2.21"), IPv6Address("::ffff:192.0.2.21"),
    )  # fmt: skip
    assert next_hops(IPv6Address("2001:db8::5"), router_id, None, None) == (
        router_id, IPv6Address("2001:db8::5"),
    )  # fmt: skip
    configured = IPv6Address("2001:db8::9")
    assert next_hops(IPv4Address("192.0.2.21"), router_id, None, configured)[1] == configured


def test_md5sig_layout() -> None:
    raw = md5sig(IPv4Address("192.0.2.1"), "s3cret", socket.AF_INET)
    assert len(raw) == 128 + 8 + 80
    family, _, address = struct.unpack_from("=HH4s", raw)
    assert (family, address) == (socket.AF_INET, bytes([192, 0, 2, 1]))
    assert struct.unpack_from("=BBHi", raw, 128) == (0, 0, 6, 0)
    assert raw[136:142] == b"s3cret"
    mapped = md5sig(IPv4Address("192.0.2.1"), None, socket.AF_INET6)
    family6, _, _, address6 = struct.unpack_from("=HHI16s", mapped)
    assert family6 == socket.AF_INET6 and IPv6Address(address6) == IPv6Address("::ffff:192.0.2.1")
    with pytest.raises(ValueError):
        md5sig(IPv6Address("2001:db8::1"), "x", socket.AF_INET)


def test_gtsm_minimum_ttl() -> None:
    assert minimum_ttl(1) == 255 and minimum_ttl(3) == 253
    with pytest.raises(ValueError):
        minimum_ttl(0)
