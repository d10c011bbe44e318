"""One node's L2 announcements, kept current (the shell that joins liveness, owner choice and
the responders).

The caller says what may be announced (`set_announced`, from `policy.announcements` of the
snapshot, and only for VIPs whose datapath rules are committed on this node). Whenever that
changes, a peer changes state, a peer's claims change or the start grace ends, the
announcer recomputes the owners from this node's view (`owners.node_view`), gives each
interface's responder the VIPs this node owns there, and tells the peers through the
heartbeats. Bursts of events are coalesced into one recomputation per loop iteration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence

from herald.dataplane.model import IPAddress, IPNetwork
from herald.l2.heartbeat import Address, ClaimsChanged, Config, Event, PeerChanged
from herald.l2.liveness import Liveness
from herald.l2.owners import Owner, node_view
from herald.l2.policy import Announcement, matching_interfaces
from herald.l2.responder import ANNOUNCE_AT, Responder

log = logging.getLogger(__name__)

# After the start grace, recompute a little late rather than a little early.
_SETTLE_MARGIN = 0.001


class Announcer:
    def __init__(
        self,
        node: str,
        links: Mapping[str, Sequence[IPNetwork]],
        announce_at: Iterable[float] = ANNOUNCE_AT,
    ) -> None:
        self.node = node
        self.links = links
        self.announce_at = tuple(announce_at)
        self.announced: tuple[Announcement, ...] = ()
        self.view: dict[IPAddress, Owner] = {}
        self.responders: dict[str, Responder] = {}
        self._liveness: Liveness | None = None
        self._scheduled = False
        self._contested: set[IPAddress] = set()
        self._alone = True
        self._loop = asyncio.get_running_loop()

    async def open(self, config: Config, peers: Mapping[str, Address], bind: Address) -> None:
        self._liveness = await Liveness.open(
            config, peers, bind, self._on_event, self._on_liveness_failed
        )
        settles = self._liveness.started + config.detection_time + _SETTLE_MARGIN
        self._loop.call_at(settles, self._schedule)

    def set_announced(self, announced: Iterable[Announcement]) -> None:
        """Takes effect before returning: a VIP left out is no longer answered for, so the
        caller may then remove its datapath rules."""
        self.announced = tuple(announced)
        self._update()

    def set_peers(self, peers: Mapping[str, Address]) -> None:
        if self._liveness is not None:
            self._liveness.set_peers(peers)
        self._schedule()

    def live(self) -> frozenset[str]:
        """Nodes this one believes alive (itself included)."""
        return self._liveness.view().live if self._liveness is not None else frozenset()

    def owned(self) -> dict[str, frozenset[IPAddress]]:
        """VIPs answered for, per interface."""
        return {name: r.owned for name, r in self.responders.items() if r.owned}

    def close(self) -> None:
        """Stops answering and tells the peers, which take over at once."""
        for responder in self.responders.values():
            responder.close()
        self.responders.clear()
        if self._liveness is not None:
            self._liveness.close(leave=True)
            self._liveness = None

    def _on_liveness_failed(self, error: BaseException) -> None:
        # Peers stop hearing this node and take its VIPs: answering on would give them two
        # owners. Stop at once and stay stopped (the log says why) until the agent restarts.
        log.error("event=l2_stopped node=%s reason=heartbeat_failed error=%r", self.node, error)
        self.close()

    def _on_event(self, event: Event) -> None:
        if isinstance(event, PeerChanged | ClaimsChanged):
            self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._update)

    def _update(self) -> None:
        self._scheduled = False
        if self._liveness is None:
            return
        known = self._liveness.view()
        self.view = node_view(
            self.node,
            self.announced,
            known.live,
            known.heard,
            known.peer_count,
            known.claims,
            self.view,
            self._loop.time(),
            known.settled,
        )
        per_interface: dict[str, set[IPAddress]] = {}
        for vip, owner in self.view.items():
            if owner.node == self.node:
                for name in matching_interfaces(owner.interfaces, self.links, vip):
                    per_interface.setdefault(name, set()).add(vip)
        mine = {v for vips in per_interface.values() for v in vips}
        # Announce again what the segment may have been told otherwise while this node was
        # out of touch: VIPs it keeps while another live node also claims them (the other
        # stops as soon as it computes the same owners), and, when it hears a peer again
        # after hearing none (its link or the heartbeat path was cut), everything it
        # kept meanwhile, since others took it over and announced it.
        others = {v for n, vips in known.claims.items() if n != self.node for v in vips}
        contested = others & mine
        alone = not known.heard
        again = contested - self._contested
        if self._alone and not alone:
            again = mine
            log.info("event=l2_rejoined node=%s reannounce=%d", self.node, len(mine))
        for name in sorted(set(self.responders) | set(per_interface)):
            responder = self._responder(name)
            responder.set_owned(per_interface.get(name, ()))
            responder.announce(again)
        self._contested, self._alone = contested, alone
        # Claim only what is answered somewhere: a VIP with no matching interface here is
        # not served by this node, whatever the hash says.
        self._liveness.set_owned(vip for vips in per_interface.values() for vip in vips)

    def _responder(self, interface: str) -> Responder:
        responder = self.responders.get(interface)
        if responder is None:
            responder = Responder(interface, self.announce_at)
            responder.open()
            self.responders[interface] = responder
        return responder
