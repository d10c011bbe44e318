"""The far end of an Adj-RIB-Out, in memory: what a peer hears, through the real codec.

The pure Adj-RIB-Out and graceful-restart tests hand their UPDATEs to a `RibPeer` instead of
a socket. It keeps the routes it heard as a BGP speaker's Adj-RIB-In would, optionally with
a `GracefulRestartHelper` for the sender's restarts, as the speaker drives it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from herald.bgp.adj_rib_out import AdjRibOut, OutgoingUpdates
from herald.bgp.graceful_restart import GracefulRestartHelper
from herald.bgp.wire import Family, Negotiated, PathAttributes, Prefix, Update, decode_message


@dataclass
class RibPeer:
    negotiated: Negotiated
    routes: dict[Prefix, PathAttributes] = field(default_factory=dict)
    end_of_rib: list[Family] = field(default_factory=list)
    updates: list[Update] = field(default_factory=list)
    helper: GracefulRestartHelper = field(default_factory=GracefulRestartHelper)

    def receive(self, frames: list[bytes]) -> None:
        for frame in frames:
            update = decode_message(frame, self.negotiated).message
            assert isinstance(update, Update)
            self.updates.append(update)
            family = update.end_of_rib_family
            if family is not None:
                self.end_of_rib.append(family)
                self.drop(self.helper.end_of_rib(family))
                continue
            attributes = update.attributes
            gone = list(update.withdrawn)
            if attributes.mp_unreach is not None:
                gone += attributes.mp_unreach.withdrawn
            announced = list(update.nlri)
            if attributes.mp_reach is not None:
                announced += attributes.mp_reach.nlri
            self.drop(gone)
            # As the speaker keeps them: the attributes without the UPDATE's NLRI.
            reach = attributes.mp_reach
            kept = replace(
                attributes,
                mp_unreach=None,
                mp_reach=replace(reach, nlri=()) if reach is not None else None,
            )
            for prefix in announced:
                self.routes[prefix] = kept
            self.helper.refreshed(gone + announced)

    def drop(self, prefixes: list[Prefix]) -> None:
        for prefix in prefixes:
            self.routes.pop(prefix, None)

    def announced(self) -> set[Prefix]:
        """Every prefix announced so far (UPDATEs since the last `clear`)."""
        out: set[Prefix] = set()
        for update in self.updates:
            out.update(update.nlri)
            if update.attributes.mp_reach is not None:
                out.update(update.attributes.mp_reach.nlri)
        return out

    def withdrawn(self) -> set[Prefix]:
        out: set[Prefix] = set(p for u in self.updates for p in u.withdrawn)
        for update in self.updates:
            if update.attributes.mp_unreach is not None:
                out.update(update.attributes.mp_unreach.withdrawn)
        return out

    def clear(self) -> None:
        """Forget the UPDATEs seen (not the routes), to look at the next ones alone."""
        self.updates.clear()
        self.end_of_rib.clear()


def sync(rib: AdjRibOut, peer: RibPeer) -> OutgoingUpdates | None:
    """What the speaker's sync task does once: send what is due, then mark it sent."""
    outgoing = rib.next_updates()
    if outgoing is not None:
        peer.receive(outgoing.encode())
        rib.mark_sent(outgoing)
    return outgoing
