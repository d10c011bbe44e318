"""herald's speaker against ExaBGP: eBGP attributes in both families, and reconnecting after
ExaBGP restarts."""

from __future__ import annotations

from ipaddress import IPv6Address
from pathlib import Path

import pytest
from bgp_lab import AS, AS4, ROUTER_V4, bgp_lab, neighbors_for, node_v4

from herald.lab.routers import RouterSpec, wait_for

pytestmark = pytest.mark.netns

FAST = ["--hold-time", "9", "--connect-retry", "1"]
VIP, VIP6 = "203.0.113.40/32", "2001:db8:10::40/128"


def test_ebgp_attributes_and_restart(tmp_path: Path) -> None:
    with bgp_lab(tmp_path) as b:
        spec = RouterSpec(AS, ROUTER_V4, neighbors_for(1, AS4, local_address=ROUTER_V4))
        exa = b.router("exabgp", spec)
        herald = b.herald(
            0, "--local-as", str(AS4), "--router-id", node_v4(0), "--peer", f"{ROUTER_V4}:{AS}",
            *FAST, "--announce", VIP, "--announce", VIP6, "--community", "64512:40",
            "--large-community", "4200000000:4:0", "--med", "4",
        )  # fmt: skip
        route = wait_for(lambda: exa.routes("ipv4").get(VIP), 20, "the VIP on ExaBGP")
        assert route.next_hops == (node_v4(0),) and route.as_path == (AS4,)
        assert route.med == 4 and route.communities == ("64512:40",)
        assert route.large_communities == ("4200000000:4:0",)
        v6 = wait_for(lambda: exa.routes("ipv6").get(VIP6), 10, "the IPv6 VIP on ExaBGP")
        assert v6.next_hops == (str(IPv6Address("::ffff:192.0.2.21")),)
        exa.stop()
        wait_for(lambda: "state=Idle" in herald.output(), 15, "herald to see the session end")
        established = herald.output().count("state=Established")
        exa.start()
        wait_for(lambda: herald.output().count("state=Established") > established, 20, "reconnect")
        wait_for(lambda: VIP in exa.routes("ipv4"), 10, "the VIP after ExaBGP's restart")
