"""herald's speaker against FRR: eBGP and iBGP, both families, attributes, FIB, TCP-MD5,
peer restart, graceful restart with traffic, ECMP over three speakers."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from ipaddress import IPv6Address
from pathlib import Path

import pytest
from bgp_lab import AS, AS4, ROUTER_V4, ROUTER_V6, bgp_lab, neighbors_for, node_v4, node_v6

from herald.lab.routers import Frr, Neighbor, RouterSpec, kernel_next_hops, wait_for

pytestmark = pytest.mark.netns

VIP = "203.0.113.10/32"
VIP6 = "2001:db8:10::10/128"
FAST = ["--hold-time", "9", "--connect-retry", "1"]


def speak(local_as: int, index: int, peer: str, *extra: str) -> list[str]:
    return [
        "--local-as", str(local_as), "--router-id", node_v4(index), "--peer", peer, *FAST,
        *extra,
    ]  # fmt: skip


def test_ebgp_4_octet_as_both_families_with_attributes(tmp_path: Path) -> None:
    with bgp_lab(tmp_path) as b:
        frr = b.router("frr", RouterSpec(AS, ROUTER_V4, neighbors_for(1, AS4)))
        b.herald(
            0, *speak(AS4, 0, f"{ROUTER_V4}:{AS}"), "--announce", VIP, "--announce", VIP6,
            "--community", "64512:100", "--large-community", "4200000000:1:2", "--med", "50",
        )  # fmt: skip
        wait_for(lambda: VIP in frr.routes("ipv4"), 20, "the VIP on FRR")
        route = frr.routes("ipv4")[VIP]
        assert route.next_hops == (node_v4(0),)
        assert route.as_path == (AS4,)
        assert route.med == 50
        assert route.communities == ("64512:100",)
        assert route.large_communities == ("4200000000:1:2",)
        # MP-BGP over IPv4 transport: the IPv6 route's next hop is our IPv4-mapped address.
        v6 = wait_for(lambda: frr.routes("ipv6").get(VIP6), 10, "the IPv6 VIP on FRR")
        assert v6.next_hops == (str(IPv6Address("::ffff:192.0.2.21")),)
        assert wait_for(lambda: kernel_next_hops(b.lab, "r1", VIP), 10, "FIB") == {node_v4(0)}


def test_ibgp_over_ipv6_transport_carries_local_pref(tmp_path: Path) -> None:
    with bgp_lab(tmp_path) as b:
        frr = b.router("frr", RouterSpec(AS, ROUTER_V4, neighbors_for(1, AS, v6_transport=True)))
        b.herald(
            0, *speak(AS, 0, f"[{ROUTER_V6}]:{AS}"), "--announce", VIP, "--announce", VIP6,
            "--local-pref", "300", "--community", "64512:7",
        )  # fmt: skip
        v6 = wait_for(lambda: frr.routes("ipv6").get(VIP6), 20, "the IPv6 VIP on FRR")
        assert v6.next_hops == (node_v6(0),)
        assert v6.local_pref == 300 and v6.as_path == ()
        # IPv4 over IPv6 transport: next hop from the router id (the node's IPv4 address).
        v4 = wait_for(lambda: frr.routes("ipv4").get(VIP), 10, "the IPv4 VIP on FRR")
        assert v4.next_hops == (node_v4(0),) and v4.communities == ("64512:7",)
        assert wait_for(lambda: kernel_next_hops(b.lab, "r1", VIP6), 10, "FIB") == {node_v6(0)}


def test_md5_matching_password_establishes(tmp_path: Path) -> None:
    with bgp_lab(tmp_path) as b:
        frr = b.router("frr", RouterSpec(AS, ROUTER_V4, neighbors_for(1, AS, password="s3cret")))
        b.herald(0, *speak(AS, 0, f"{ROUTER_V4}:{AS}"), "--md5-password", "s3cret",
                 "--announce", VIP)  # fmt: skip
        wait_for(lambda: VIP in frr.routes("ipv4"), 20, "the VIP over an MD5 session")


def test_md5_wrong_password_fails_cleanly(tmp_path: Path) -> None:
    with bgp_lab(tmp_path) as b:
        frr = b.router("frr", RouterSpec(AS, ROUTER_V4, neighbors_for(1, AS, password="s3cret")))
        herald = b.herald(0, *speak(AS, 0, f"{ROUTER_V4}:{AS}"), "--md5-password", "wrong",
                          "--announce", VIP)  # fmt: skip
        time.sleep(5)
        assert frr.established() == 0
        assert herald.processes[0].poll() is None, "herald must keep running"
        log = herald.output()
        assert "event=connect_timeout" in log and "TCP-MD5" in log
        assert "Traceback" not in log


def test_peer_restart_reconnects_and_resends(tmp_path: Path) -> None:
    with bgp_lab(tmp_path) as b:
        spec = RouterSpec(AS, ROUTER_V4, neighbors_for(1, AS))
        frr = b.router("frr", spec)
        herald = b.herald(0, *speak(AS, 0, f"{ROUTER_V4}:{AS}"), "--announce", VIP)
        wait_for(lambda: VIP in frr.routes("ipv4"), 20, "the VIP on FRR")
        frr.stop()
        wait_for(lambda: "state=Idle" in herald.output(), 10, "herald to see the session end")
        frr.start()
        wait_for(lambda: VIP in frr.routes("ipv4"), 20, "the VIP after FRR's restart")
        assert herald.output().count("state=Established") == 2


def test_graceful_restart_keeps_forwarding_while_herald_restarts(tmp_path: Path) -> None:
    with bgp_lab(tmp_path) as b:
        b.lab.address("n0", "lo", "203.0.113.10/32")  # the VIP answers pings on the node
        spec = RouterSpec(AS, ROUTER_V4, neighbors_for(1, AS), graceful_restart=True)
        frr = b.router("frr", spec)
        args = [*speak(AS, 0, f"{ROUTER_V4}:{AS}"), "--announce", VIP, "--graceful-restart", "30"]
        herald = b.herald(0, *args)
        wait_for(lambda: kernel_next_hops(b.lab, "r1", VIP), 20, "the VIP in FRR's FIB")
        ping = subprocess.Popen(
            ["ip", "netns", "exec", b.lab.ns("r1"), "ping", "-q", "-n", "-c", "60", "-i", "0.2",
             "-W", "1", "203.0.113.10"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            time.sleep(1)
            herald.kill()  # kill -9: no NOTIFICATION, the TCP connection just ends
            time.sleep(4)
            assert kernel_next_hops(b.lab, "r1", VIP) == {node_v4(0)}, "route kept while down"
            detail = frr.vtysh(f"show bgp ipv4 unicast {VIP} json")
            assert detail["paths"][0].get("stale") is True
            restarted = b.herald(0, *args, "--restarting", name="-restarted")
            wait_for(lambda: "event=end_of_rib_received" in restarted.output(), 20, "re-sync")
            wait_for(
                lambda: not frr.vtysh(f"show bgp ipv4 unicast {VIP} json")["paths"][0].get("stale"),
                10,
                "the route to be fresh again",
            )
            out, _ = ping.communicate(timeout=30)
        finally:
            if ping.poll() is None:
                os.kill(ping.pid, signal.SIGKILL)
                ping.wait()
        assert " 0% packet loss" in out, out


def test_ecmp_one_next_hop_per_speaker(tmp_path: Path) -> None:
    with bgp_lab(tmp_path, nodes=3) as b:
        b.router("frr", RouterSpec(AS, ROUTER_V4, neighbors_for(3, AS)))
        for i in range(3):
            b.herald(i, *speak(AS, i, f"{ROUTER_V4}:{AS}"), "--announce", VIP)
        want = {node_v4(i) for i in range(3)}
        wait_for(lambda: kernel_next_hops(b.lab, "r1", VIP) == want, 30, "three next hops")


def test_unknown_peer_is_refused(tmp_path: Path) -> None:
    # FRR connects to herald, but herald is configured for another address.
    with bgp_lab(tmp_path) as b:
        frr = b.router("frr", RouterSpec(AS, ROUTER_V4, (Neighbor(node_v4(0), AS),)))
        herald = b.herald(0, *speak(AS, 0, "192.0.2.99:64512:passive"))
        wait_for(lambda: "reason=unknown_peer" in herald.output(), 15, "the refusal")
        assert frr.established() == 0
        assert isinstance(frr, Frr)


@pytest.mark.parametrize("transport", ["ipv4", "ipv6"])
def test_bfd_ends_the_session_long_before_the_hold_timer(tmp_path: Path, transport: str) -> None:
    """The path to the router silently stops carrying packets (nftables drops everything on
    the router, so no TCP reset, no interface down). With BFD at 300 ms x 3 both ends end the
    BGP session and FRR withdraws the VIP, with a hold time of 90 s that alone would keep
    the dead route for a minute and a half. When the path heals, both come back."""
    with bgp_lab(tmp_path) as b:
        v6 = transport == "ipv6"
        neighbors = neighbors_for(1, AS, v6_transport=v6, bfd_interval=300)
        frr = b.router("frr", RouterSpec(AS, ROUTER_V4, neighbors, hold_time=90))
        node, router = (node_v6(0), f"[{ROUTER_V6}]") if v6 else (node_v4(0), ROUTER_V4)
        herald = b.herald(
            0, "--local-as", str(AS), "--router-id", node_v4(0), "--peer", f"{router}:{AS}",
            "--hold-time", "90", "--connect-retry", "1", "--bfd-interval", "300",
            "--announce", VIP, "--status-interval", "0.5",
        )  # fmt: skip
        wait_for(lambda: VIP in frr.routes("ipv4"), 20, "the VIP on FRR")
        wait_for(lambda: frr.bfd_peers().get(node) == "up", 20, "FRR's BFD session up")
        wait_for(lambda: "bfd=up" in herald.output(), 10, "herald's BFD session up")
        b.lab.exec("r1", "nft", "add table inet cut")
        for hook in ("input", "output"):
            b.lab.exec(
                "r1",
                "nft",
                f"add chain inet cut {hook} {{ type filter hook {hook} priority -10 ; policy drop ; }}",
            )
        wait_for(lambda: VIP not in frr.routes("ipv4"), 10, "FRR to withdraw the VIP")
        wait_for(lambda: "BFD down" in herald.output(), 5, "herald to end the session")
        assert frr.bfd_peers().get(node) == "down"
        b.lab.exec("r1", "nft", "delete table inet cut")
        wait_for(lambda: VIP in frr.routes("ipv4"), 30, "the VIP after the path healed")
        wait_for(lambda: frr.bfd_peers().get(node) == "up", 20, "BFD up again")
