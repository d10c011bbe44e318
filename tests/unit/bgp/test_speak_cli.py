"""`herald bgp speak` argument parsing: peers and routes files."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network

import click
import pytest

from herald.bgp.export import RouteAttributes
from herald.bgp.wire import LargeCommunity
from herald.cli.bgp import parse_peer, parse_routes


def test_peer_forms() -> None:
    assert parse_peer("192.0.2.1:64512") == (IPv4Address("192.0.2.1"), 64512, False)
    assert parse_peer("192.0.2.1:4200000000:passive") == (
        IPv4Address("192.0.2.1"), 4200000000, True,
    )  # fmt: skip
    assert parse_peer("[2001:db8::1]:64512") == (IPv6Address("2001:db8::1"), 64512, False)
    assert parse_peer("2001:db8::1:64512:passive") == (IPv6Address("2001:db8::1"), 64512, True)
    with pytest.raises(click.BadParameter, match="ADDRESS:AS"):
        parse_peer("192.0.2.1")


def test_routes_file_fields_override_command_line_defaults() -> None:
    defaults = RouteAttributes(med=5)
    routes = parse_routes(
        {
            "routes": [
                "203.0.113.10/32",
                {
                    "prefix": "2001:db8::10/128",
                    "communities": ["64512:100"],
                    "largeCommunities": ["4200000000:1:2"],
                    "localPref": 300,
                },
            ]
        },
        defaults,
    )
    assert routes[ip_network("203.0.113.10/32")] == defaults
    v6 = routes[ip_network("2001:db8::10/128")]
    assert v6.med == 5 and v6.local_pref == 300
    assert v6.communities == (64512 << 16 | 100,)
    assert v6.large_communities == (LargeCommunity(4200000000, 1, 2),)
    with pytest.raises(click.BadParameter, match=r"routes\[0\]"):
        parse_routes([{"prefix": "not-a-prefix"}], defaults)
