"""herald's speaker against BIRD 2: iBGP attributes, IPv6 over IPv6 transport, TCP-MD5,
ECMP over two speakers."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from bgp_lab import AS, AS4, ROUTER_V4, ROUTER_V6, bgp_lab, neighbors_for, node_v4, node_v6

from herald.lab.routers import RouterSpec, kernel_next_hops, wait_for

pytestmark = pytest.mark.netns

VIP = "203.0.113.20/32"
VIP6 = "2001:db8:10::20/128"
FAST = ["--hold-time", "9", "--connect-retry", "1"]


def speak(local_as: int, index: int, peer: str, *extra: str) -> list[str]:
    return [
        "--local-as", str(local_as), "--router-id", node_v4(index), "--peer", peer, *FAST,
        *extra,
    ]  # fmt: skip


def test_ibgp_attributes_reach_bird_and_its_fib(tmp_path: Path) -> None:
    with bgp_lab(tmp_path) as b:
        bird = b.router("bird", RouterSpec(AS, ROUTER_V4, neighbors_for(1, AS, ipv6=False)))
        b.herald(
            0, *speak(AS, 0, f"{ROUTER_V4}:{AS}"), "--announce", VIP, "--local-pref", "250",
            "--med", "30", "--community", "64512:100", "--large-community", "64512:5:6",
        )  # fmt: skip
        route = wait_for(lambda: bird.routes("ipv4").get(VIP), 20, "the VIP on BIRD")
        assert route.next_hops == (node_v4(0),)
        assert route.local_pref == 250 and route.med == 30 and route.as_path == ()
        assert route.communities == ("64512:100",)
        assert route.large_communities == ("64512:5:6",)
        assert wait_for(lambda: kernel_next_hops(b.lab, "r1", VIP), 10, "FIB") == {node_v4(0)}


def test_ebgp_ipv6_over_ipv6_transport(tmp_path: Path) -> None:
    with bgp_lab(tmp_path) as b:
        spec = RouterSpec(AS, ROUTER_V4, neighbors_for(1, AS4, v6_transport=True))
        bird = b.router("bird", spec)
        b.herald(0, *speak(AS4, 0, f"[{ROUTER_V6}]:{AS}"), "--announce", VIP6)
        route = wait_for(lambda: bird.routes("ipv6").get(VIP6), 20, "the IPv6 VIP on BIRD")
        assert route.next_hops == (node_v6(0),) and route.as_path == (AS4,)
        assert wait_for(lambda: kernel_next_hops(b.lab, "r1", VIP6), 10, "FIB") == {node_v6(0)}


def test_md5_matching_and_wrong_passwords(tmp_path: Path) -> None:
    with bgp_lab(tmp_path, nodes=2) as b:
        spec = RouterSpec(AS, ROUTER_V4, neighbors_for(2, AS, password="s3cret", ipv6=False))
        bird = b.router("bird", spec)
        b.herald(0, *speak(AS, 0, f"{ROUTER_V4}:{AS}"), "--md5-password", "s3cret",
                 "--announce", VIP)  # fmt: skip
        wrong = b.herald(1, *speak(AS, 1, f"{ROUTER_V4}:{AS}"), "--md5-password", "nope",
                         "--announce", "203.0.113.21/32")  # fmt: skip
        wait_for(lambda: VIP in bird.routes("ipv4"), 20, "the VIP over MD5")
        time.sleep(3)
        assert bird.established() == 1
        assert "203.0.113.21/32" not in bird.routes("ipv4")
        assert wrong.processes[0].poll() is None
        assert "event=connect_timeout" in wrong.output()


def test_ecmp_one_next_hop_per_speaker(tmp_path: Path) -> None:
    with bgp_lab(tmp_path, nodes=2) as b:
        b.router("bird", RouterSpec(AS, ROUTER_V4, neighbors_for(2, AS, ipv6=False)))
        for i in range(2):
            b.herald(i, *speak(AS, i, f"{ROUTER_V4}:{AS}"), "--announce", VIP)
        want = {node_v4(0), node_v4(1)}
        wait_for(lambda: kernel_next_hops(b.lab, "r1", VIP) == want, 30, "two next hops")
