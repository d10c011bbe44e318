"""One node's L2 announcements, kept current (the shell that joins liveness, the ownership
core and the responders).

The caller says what may be announced (`set_announced`, from `policy.announcements` of the
snapshot, and only for VIPs whose datapath rules are committed on this node). Whenever that
changes, a peer changes state, a peer's claims change, the start grace ends or the
ownership core's own deadline comes (an announcement due, a hold over), the announcer asks
`ownership.Ownership` for a decision and carries it out in order: the responders answer
for exactly this node's VIPs (releases first), the due announcements go out, and the peers
are told through the heartbeats. Bursts of events are coalesced into one decision per loop
iteration.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence

from herald.dataplane.model import IPAddress, IPNetwork
from herald.l2.heartbeat import Address, ClaimsChanged, Config, Event, PeerChanged
from herald.l2.liveness import Liveness
from herald.l2.owners import Owner
from herald.l2.ownership import ANNOUNCE_AT, Damping, Ownership
from herald.l2.policy import Announcement, address_order
from herald.l2.responder import Responder
from herald.l2.swim import Config as SwimConfig

log = logging.getLogger(__name__)

# After the start grace, recompute a little late rather than a little early.
_SETTLE_MARGIN = 0.001


def changed_owners(before: Mapping[IPAddress, Owner], after: Mapping[IPAddress, Owner]) -> int:
    """How many VIPs known before have another owner node after (pure)."""
    return sum(
        1 for vip, owner in after.items() if vip in before and before[vip].node != owner.node
    )


class Announcer:
    def __init__(
        self,
        node: str,
        links: Mapping[str, Sequence[IPNetwork]],
        announce_at: Iterable[float] = ANNOUNCE_AT,
        damping: Damping | None = None,
    ) -> None:
        self.node = node
        self.links = links
        self.announce_at = tuple(announce_at)
        self.damping = damping
        self.announced: tuple[Announcement, ...] = ()
        self.view: dict[IPAddress, Owner] = {}
        # VIPs whose owner became another node, decision after decision (the metric
        # herald_l2_ownership_changes_total); a VIP seen for the first time is no change.
        self.ownership_changes = 0
        self.responders: dict[str, Responder] = {}
        self._liveness: Liveness | None = None
        self._ownership: Ownership | None = None
        self._scheduled = False
        self._timer: asyncio.TimerHandle | None = None
        self._quiet = False
        self._damped: frozenset[str] = frozenset()
        self._yielded: frozenset[IPAddress] = frozenset()
        self._loop = asyncio.get_running_loop()
        # Told when the heartbeat process ends: the owner decides whether to start again.
        self.on_failed: Callable[[BaseException], None] | None = None

    async def open(
        self, config: Config | SwimConfig, peers: Mapping[str, Address], bind: Address
    ) -> None:
        self._liveness = await Liveness.open(
            config, peers, bind, self._on_event, self._on_liveness_failed
        )
        self._ownership = Ownership(
            self.node, config.interval, config.detection_time, self.announce_at, self.damping
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
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for responder in self.responders.values():
            responder.close()
        self.responders.clear()
        if self._liveness is not None:
            self._liveness.close(leave=True)
            self._liveness = None

    def _on_liveness_failed(self, error: BaseException) -> None:
        # Peers stop hearing this node and take its VIPs: answering on would give them two
        # owners. Stop at once; the owner (the agent) starts a new announcer later.
        log.error("event=l2_stopped node=%s reason=heartbeat_failed error=%r", self.node, error)
        self.close()
        if self.on_failed is not None:
            self.on_failed(error)

    def _on_event(self, event: Event) -> None:
        if isinstance(event, PeerChanged | ClaimsChanged):
            self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._update)

    def _update(self) -> None:
        self._scheduled = False
        if self._liveness is None or self._ownership is None:
            return
        ownership = self._ownership
        decision = ownership.update(
            self._loop.time(), self._liveness.view(), self.announced, self.links
        )
        self.ownership_changes += changed_owners(self.view, decision.owners)
        self.view = decision.owners
        # Releases before anything is said: not one more answer for a VIP given up.
        for name in sorted(set(self.responders) | set(decision.answer)):
            self._responder(name).set_owned(decision.answer.get(name, ()), announce=False)
        for responder in self.responders.values():
            responder.send_announcements(decision.announce)
        if decision.quiet != self._quiet:
            self._quiet = decision.quiet
            log.warning(
                "event=l2_flapping node=%s action=%s",
                self.node,
                "quiet" if decision.quiet else "resume",
            )
            self._liveness.set_quiet(decision.quiet)
        damped = ownership.damped_peers()
        for peer in sorted(damped ^ self._damped):
            log.warning(
                "event=l2_peer_flapping node=%s peer=%s damped=%s", self.node, peer, peer in damped
            )
        self._damped = damped
        yielded = ownership.yielded()
        for vip in sorted(yielded - self._yielded, key=address_order):
            # The other claimant does not hear this node (or does not count it).
            log.warning("event=l2_yielded node=%s vip=%s", self.node, vip)
        self._yielded = yielded
        # Claim only what is answered somewhere: a VIP with no matching interface here is
        # not served by this node, whatever the hash says.
        self._liveness.set_owned(decision.mine)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        deadline = ownership.next_deadline()
        if deadline is not None:
            # Run at once, not via _schedule: the view read then is the freshest there is.
            self._timer = self._loop.call_at(deadline, self._update)

    def _responder(self, interface: str) -> Responder:
        responder = self.responders.get(interface)
        if responder is None:
            responder = Responder(interface, ())
            responder.open()
            self.responders[interface] = responder
        return responder
