"""What the node's neighbour table says about the other nodes, for DSR forwarding.

Two facts (docs/datapath.md, "No forwarding loops"):
- the other nodes' MACs on the uplink: a frame from one of them carries a packet that node
  forwarded already, which is never forwarded again;
- which nodes the kernel failed to resolve (NUD_FAILED): nothing is forwarded to them.

`peers_from` decides (pure); `NeighbourWatch` reads the table over netlink and asks the
kernel to resolve the nodes it has no usable entry for (NTF_USE, as a first packet would),
so that a node's MAC is known before it forwards anything to us and a failed node is
tried again.
"""

from __future__ import annotations

import ipaddress
import select
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from pyroute2 import IPRoute, NetNS
from pyroute2.netlink.rtnl import RTMGRP_NEIGH

from herald.dataplane.model import IPAddress, Peers

NUD_INCOMPLETE = 0x01
NUD_FAILED = 0x20
NTF_USE = 0x01


@dataclass(frozen=True)
class Neighbour:
    address: IPAddress
    mac: str | None
    state: int  # NUD_* bits

    @property
    def failed(self) -> bool:
        return bool(self.state & NUD_FAILED)

    @property
    def resolved(self) -> bool:
        """The kernel has a MAC for it that it still uses (reachable, stale, delay, probe,
        permanent)."""
        return self.mac is not None and not self.state & (NUD_FAILED | NUD_INCOMPLETE)


def peers_from(
    neighbours: Iterable[Neighbour],
    nodes: Sequence[tuple[str, IPAddress]],
    previous: Peers,
    own_mac: str | None = None,
) -> Peers:
    """The peers as the table shows them, given `nodes` (the other nodes' addresses).

    A node is unreachable in a family when an entry of that family failed, until all its
    entries of that family resolve again: an entry that the kernel dropped meanwhile
    (garbage collection) or that is being resolved again proves nothing, so the previous
    verdict stands. Per family: a node whose IPv6 address does not answer still gets its
    IPv4 flows. MACs are kept once learnt: a MAC that stays in the set costs nothing, one
    missing from it could let a packet be forwarded twice. A later entry for an address
    replaces an earlier one (`NeighbourWatch` appends the failures it was told of).
    """
    by_address = {n.address: n for n in neighbours}
    macs = set(previous.macs)
    unreachable = set(previous.unreachable)
    known = {(name, address.version) for name, address in nodes}
    for name, version in sorted(known):
        entries = [
            by_address[a] for n, a in nodes if (n, a.version) == (name, version) and a in by_address
        ]
        macs.update(e.mac.lower() for e in entries if e.resolved and e.mac is not None)
        if any(e.failed for e in entries):
            unreachable.add((name, version))
        elif entries and all(e.resolved for e in entries):
            unreachable.discard((name, version))
    own = own_mac.lower() if own_mac else None
    return Peers(frozenset(macs), frozenset(unreachable & known), own)


def unresolved(
    neighbours: Iterable[Neighbour], nodes: Sequence[tuple[str, IPAddress]]
) -> list[IPAddress]:
    """The nodes' addresses the kernel has no usable entry for (none, or failed)."""
    by_address = {n.address: n for n in neighbours}
    return [
        a
        for _, a in nodes
        if a not in by_address or by_address[a].failed or by_address[a].state == 0
    ]


class NeighbourWatch:
    """The uplink's neighbour table (in `netns`, or this namespace), read on each `poll`,
    and the kernel's neighbour events in between.

    The events matter: an entry of a node that receives forwarded traffic fails, and the
    next forwarded packet starts resolving it again at once, so a table read every second
    rarely sees it failed; the kernel announces every failure (RTM_NEWNEIGH, NUD_FAILED).
    The events come on a socket of their own: a socket that also runs dumps reads
    announcements that arrive meanwhile into its own queue, where `select` cannot see them.
    """

    def __init__(self, interface: str, netns: str | None = None) -> None:
        self.interface = interface
        self.netns = netns
        self.peers = Peers()
        self._sockets: tuple[IPRoute | NetNS, IPRoute | NetNS] | None = None

    def _socket(self) -> IPRoute | NetNS:
        return NetNS(self.netns) if self.netns else IPRoute()

    def _open(self) -> tuple[IPRoute | NetNS, IPRoute | NetNS]:
        if self._sockets is None:
            events = self._socket()
            events.bind(groups=RTMGRP_NEIGH)
            self._sockets = (self._socket(), events)
        return self._sockets

    def close(self) -> None:
        for sock in self._sockets or ():
            sock.close()
        self._sockets = None

    def poll(self, nodes: Sequence[tuple[str, IPAddress]]) -> Peers:
        try:
            peers = self._poll(*self._open(), nodes)
        except Exception:
            self.close()  # fresh sockets next time
            raise
        self.peers = peers
        return peers

    def _poll(
        self,
        ipr: IPRoute | NetNS,
        events: IPRoute | NetNS,
        nodes: Sequence[tuple[str, IPAddress]],
    ) -> Peers:
        found = ipr.link_lookup(ifname=self.interface)
        if not found:
            return self.peers
        index = found[0]
        failed = set()
        while select.select([events.fileno()], [], [], 0)[0]:
            for event in events.get():
                dst = event.get_attr("NDA_DST")
                if (
                    event.get("event") == "RTM_NEWNEIGH"
                    and event.get("ifindex") == index
                    and event.get("state", 0) & NUD_FAILED
                    and dst is not None
                ):
                    failed.add(ipaddress.ip_address(dst))
        own_mac = ipr.get_links(index)[0].get_attr("IFLA_ADDRESS")
        neighbours = [
            Neighbour(ipaddress.ip_address(dst), n.get_attr("NDA_LLADDR"), n["state"])
            for n in ipr.get_neighbours(ifindex=index)
            if (dst := n.get_attr("NDA_DST")) is not None
        ]
        for address in unresolved(neighbours, nodes):
            ipr.neigh("replace", dst=str(address), ifindex=index, flags=NTF_USE, state=0)
        # A failure announced since the last poll counts as a failed entry.
        neighbours += [Neighbour(address, None, NUD_FAILED) for address in failed]
        return peers_from(neighbours, nodes, self.peers, own_mac)
