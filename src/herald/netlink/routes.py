"""Unreachable routes for the prefixes a node announces as aggregates.

A node that announces 203.0.113.0/24 for its Services receives traffic for every address
in it. Traffic for a Service address is DNATed before routing; anything else would follow
the node's default route back to the router, which sends it to a node again: a loop until
the TTL runs out, for every packet to an unused address. An `unreachable` route for the
aggregate ends it on the node with an ICMP error instead.

Only routes herald made are touched: they carry herald's own routing protocol number.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

__all__ = ["HERALD_PROTO", "NetlinkError", "UnreachableRoutes"]

from herald.addresses import IPNetwork

# /etc/iproute2/rt_protos has no owner for it; `ip route show proto 240` lists herald's.
HERALD_PROTO = 240
RTN_UNREACHABLE = 7


class UnreachableRoutes:
    """Keeps exactly the given prefixes as herald's unreachable routes (main table)."""

    def __init__(self) -> None:
        self._installed: frozenset[IPNetwork] | None = None  # None: not read yet

    def sync(self, prefixes: Iterable[IPNetwork]) -> None:
        wanted = frozenset(prefixes)
        if wanted == self._installed:
            return
        with IPRoute() as ipr:
            present = self._installed if self._installed is not None else _listed(ipr)
            for prefix in sorted(present - wanted, key=str):
                ipr.route("del", **_route(prefix))
            for prefix in sorted(wanted - present, key=str):
                ipr.route("replace", **_route(prefix))
        self._installed = wanted


def _route(prefix: IPNetwork) -> dict[str, object]:
    return {
        "dst": str(prefix),
        "family": socket.AF_INET if prefix.version == 4 else socket.AF_INET6,
        "type": RTN_UNREACHABLE,
        "proto": HERALD_PROTO,
    }


def _listed(ipr: IPRoute) -> frozenset[IPNetwork]:
    found = set()
    for family in (socket.AF_INET, socket.AF_INET6):
        for route in ipr.get_routes(family=family, proto=HERALD_PROTO):
            dst = route.get_attr("RTA_DST")
            if dst is not None and route["type"] == RTN_UNREACHABLE:
                found.add(ipaddress.ip_network(f"{dst}/{route['dst_len']}"))
    return frozenset(found)
