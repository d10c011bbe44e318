"""herald's unreachable routes for aggregates, in a namespace of the test's own: made with
herald's protocol number, kept to exactly the given prefixes, found again by a new
instance (an agent restarted), and routes of others never touched."""

from __future__ import annotations

import sys

import pytest

from herald.lab.netns import Lab

pytestmark = pytest.mark.netns

SYNC = """\
import ipaddress, sys
from herald.netlink.routes import UnreachableRoutes
UnreachableRoutes().sync(ipaddress.ip_network(p) for p in sys.argv[1:])
"""


def test_unreachable_routes_follow_the_aggregates_and_leave_others_alone() -> None:
    with Lab(prefix="hd-rt") as lab:
        lab.host("n1")
        # Somebody else's route in the same range of protocols' tables.
        lab.ip("n1", "route", "add", "unreachable", "198.51.100.0/24")

        def sync(*prefixes: str) -> None:
            lab.exec("n1", sys.executable, "-c", SYNC, *prefixes)

        def ours() -> set[str]:
            v4 = lab.exec("n1", "ip", "route", "show", "proto", "240").stdout
            v6 = lab.exec("n1", "ip", "-6", "route", "show", "proto", "240").stdout
            return {line.split()[1] for line in (v4 + v6).splitlines() if line.strip()}

        sync("203.0.113.0/24", "2001:db8:113::/120")
        assert ours() == {"203.0.113.0/24", "2001:db8:113::/120"}
        sync("203.0.113.0/24")  # a new process: what is there is found and reconciled
        assert ours() == {"203.0.113.0/24"}
        sync()
        assert ours() == set()
        assert "198.51.100.0/24" in lab.exec("n1", "ip", "route", "show").stdout
