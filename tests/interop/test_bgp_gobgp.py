"""herald's speaker against GoBGP: eBGP both families, withdraw, routes received by herald."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest
from bgp_lab import AS, AS4, ROUTER_V4, bgp_lab, neighbors_for, node_v4

from herald.lab.routers import GoBgp, RouterSpec, wait_for

pytestmark = pytest.mark.netns

FAST = ["--hold-time", "9", "--connect-retry", "1"]


def test_ebgp_announce_then_withdraw(tmp_path: Path) -> None:
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        "routes:\n"
        "  - prefix: 203.0.113.30/32\n    communities: ['64512:30']\n"
        "  - 203.0.113.31/32\n"
        "  - prefix: 2001:db8:10::30/128\n    med: 3\n"
    )
    with bgp_lab(tmp_path) as b:
        gobgp = b.router("gobgp", RouterSpec(AS, ROUTER_V4, neighbors_for(1, AS4)))
        herald = b.herald(
            0, "--local-as", str(AS4), "--router-id", node_v4(0), "--peer", f"{ROUTER_V4}:{AS}",
            *FAST, "--file", str(routes),
        )  # fmt: skip
        wait_for(lambda: len(gobgp.routes("ipv4")) == 2, 20, "two IPv4 routes on GoBGP")
        first = gobgp.routes("ipv4")["203.0.113.30/32"]
        assert first.communities == ("64512:30",) and first.as_path == (AS4,)
        assert first.next_hops == (node_v4(0),)
        assert gobgp.routes("ipv6")["2001:db8:10::30/128"].med == 3
        routes.write_text("routes:\n  - 203.0.113.31/32\n")
        os.kill(herald.processes[0].pid, signal.SIGHUP)
        wait_for(lambda: list(gobgp.routes("ipv4")) == ["203.0.113.31/32"], 10, "withdrawal")
        wait_for(lambda: not gobgp.routes("ipv6"), 10, "IPv6 withdrawal")
        assert herald.processes[0].poll() is None


def test_herald_receives_routes_from_gobgp(tmp_path: Path) -> None:
    with bgp_lab(tmp_path) as b:
        spec = RouterSpec(
            AS, ROUTER_V4, neighbors_for(1, AS), announce=("198.51.100.0/24", "198.51.100.128/25"),
            next_hop=ROUTER_V4,
        )  # fmt: skip
        gobgp = b.router("gobgp", spec)
        assert isinstance(gobgp, GoBgp)
        herald = b.herald(
            0, "--local-as", str(AS), "--router-id", node_v4(0), "--peer", f"{ROUTER_V4}:{AS}",
            *FAST, "--status-interval", "0.3",
        )  # fmt: skip
        wait_for(lambda: "received=2" in herald.output(), 20, "herald to hold both routes")
        assert gobgp.established() == 1
