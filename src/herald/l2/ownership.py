"""One node's ownership over time (pure, time passed in): which VIPs it answers for, when
it announces them, and how it behaves while peers disappear and come back.

`owners.node_view` says who owns what from one heartbeat view. What needs a memory of
earlier views lives here; the announcer (the shell) carries out each `Decision`.

- Announcements. A VIP taken over is announced at once and again after each delay of
  `ANNOUNCE_AT` (a neighbour that missed one frame still moves). A VIP the segment may
  have last heard from another node is announced again, on the same schedule: when a
  conflict over it ends with this node still its owner, when a peer that may have answered
  for it while out of touch comes back, and when this node hears its peers again after
  hearing none.
- Heal order. After a heal the final owner of a VIP must be the last node the segment
  hears announce it, or clients stay at a node that gave it up. So: a VIP another live
  node still claims is never announced (its conflict ends first, then the winner announces
  it); while a peer has just come back, nothing is announced again (for `hold`, or until
  every peer is heard: then every claim is known, and a loser's claims no longer hold what
  it gave up); and a node that heard nobody and hears a peer again takes nothing new for as
  long (its view of the peers it has not heard again is stale: it would take their VIPs).
  A takeover (a failover) is announced at once, hold or not. A peer that has just come
  back is given no VIP it does not claim for a detection time, the time a starting agent
  takes before it takes anything.
- Conflicts that do not end. Two nodes claiming a VIP settle it within a heartbeat round
  when each hears the other (the lighter by rendezvous weight gives it up). If the heavier
  still sees the lighter's claim after `yield_after`, the lighter does not hear it (or does
  not count it): the heavier gives the VIP up, so that one node answers for it. Only the
  heavier yields, so two nodes never both give a VIP up.
- Flapping. A peer that came back `Damping.limit` times within `Damping.window` is not
  given VIPs, and its claims are not counted, until it has stayed up for
  `Damping.stable_for`. A node that heard its peers again after hearing none that many
  times is the flapping one itself: it gives every VIP up and goes quiet (its heartbeats
  say it leaves, then stop), so that everyone agrees it is down, until it has heard its
  peers without a break for `stable_for`. A return is counted against a peer only if this
  node heard some other peer throughout the peer's absence: when this node's own link
  went down, every peer seems to come back, and none of them flapped. With a single peer
  nothing is counted: "my link flaps" and "my peer's does" look the same.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from herald.dataplane.model import IPAddress, IPNetwork
from herald.l2.heartbeat import View
from herald.l2.owners import Owner, node_view, weight
from herald.l2.policy import Announcement, matching_interfaces

# Seconds after taking over (or after a reason to announce again) at which a VIP is
# announced.
ANNOUNCE_AT = (0.0, 0.5, 1.0, 2.0)
_NEVER = -math.inf


@dataclass(frozen=True)
class Damping:
    """When coming back is flapping: `limit` returns within `window` seconds; damped until
    up without a break for `stable_for` seconds."""

    limit: int = 3
    window: float = 60.0
    stable_for: float = 10.0


@dataclass(frozen=True)
class Decision:
    owners: dict[IPAddress, Owner]
    # VIPs to answer for, per interface.
    answer: dict[str, frozenset[IPAddress]]
    # VIPs to announce now, on every interface that answers for them.
    announce: frozenset[IPAddress]
    # This node flaps: its heartbeats must say it is leaving, then stay silent.
    quiet: bool = False

    @property
    def mine(self) -> frozenset[IPAddress]:
        return frozenset(vip for vips in self.answer.values() for vip in vips)


@dataclass
class _Flaps:
    """When something came back, over the last window."""

    damping: Damping
    times: deque[float] = field(default_factory=deque)

    def record(self, now: float) -> None:
        self.times.append(now)
        self._prune(now)

    def damped(self, now: float, steady: bool = True) -> bool:
        self._prune(now)
        if len(self.times) < self.damping.limit:
            return False
        return not steady or now < self.times[-1] + self.damping.stable_for

    def until(self) -> float | None:
        """When a steady node stops being damped (None: it is not damped)."""
        if len(self.times) < self.damping.limit:
            return None
        return min(self.times[-1] + self.damping.stable_for, self.times[0] + self.damping.window)

    def _prune(self, now: float) -> None:
        while self.times and self.times[0] <= now - self.damping.window:
            self.times.popleft()


class Ownership:
    """Feed `update` every new heartbeat view and every change of what may be announced,
    and call it again at `next_deadline()`; do what each Decision says."""

    def __init__(
        self,
        node: str,
        interval: float,
        detection_time: float,
        announce_at: Iterable[float] = ANNOUNCE_AT,
        damping: Damping | None = None,
        hold: float | None = None,
        yield_after: float | None = None,
    ) -> None:
        self.node = node
        self.announce_at = tuple(announce_at)
        self.damping = damping or Damping()
        # Every reachable peer sends within one interval of a heal; two leave room for a
        # late or lost datagram.
        self.hold = 2 * interval if hold is None else hold
        self.yield_after = detection_time if yield_after is None else yield_after
        # A peer that comes back gets no VIP it does not claim for this long: long enough for
        # a starting agent to settle (it takes nothing before), which takes a detection time.
        self.fresh_for = detection_time
        self.owners: dict[IPAddress, Owner] = {}
        self.mine: frozenset[IPAddress] = frozenset()
        self._answer: frozenset[tuple[str, IPAddress]] = frozenset()
        self.quiet = False
        self._now = _NEVER
        self._settled = False
        self._live: frozenset[str] = frozenset()
        self._died: dict[str, float] = {}
        self._returned_at: dict[str, float] = {}
        # Whether a dead peer said it was leaving (it answered nothing while away).
        self._left: dict[str, bool] = {}
        self._deaf_since: float | None = None
        self._deaf_ended = _NEVER
        self._peer_flaps: dict[str, _Flaps] = {}
        self._own_flaps = _Flaps(self.damping)
        self._damped: frozenset[str] = frozenset()
        self._settle_until = _NEVER
        self._hold_until = _NEVER
        # VIP -> since when another live node claims it while this node answers for it.
        self._contested: dict[IPAddress, float] = {}
        self._yielded: set[IPAddress] = set()
        self._pending: dict[IPAddress, list[float]] = {}

    def update(
        self,
        now: float,
        view: View,
        announced: Sequence[Announcement],
        links: Mapping[str, Iterable[IPNetwork]],
    ) -> Decision:
        self._now = now
        returned, rejoined, deaf = self._follow(now, view)
        self._damped = frozenset(
            p
            for p in view.live - {self.node}
            if p in self._peer_flaps and self._peer_flaps[p].damped(now)
        )
        self.quiet = self._own_flaps.damped(now, steady=not deaf)

        # Claims of every live peer, damped or not: a damped peer may still answer.
        others: dict[IPAddress, set[str]] = {}
        for peer, vips in view.claims.items():
            if peer != self.node and peer in view.live:
                for vip in vips:
                    others.setdefault(vip, set()).add(peer)
        self._yielded = {v for v in self._yielded if v in others}
        for vip, since in self._contested.items():
            if now >= since + self.yield_after and vip in self.mine:
                heavier = (weight(self.node, vip), self.node)
                if any((weight(peer, vip), peer) < heavier for peer in others.get(vip, ())):
                    self._yielded.add(vip)

        claims: dict[str, Collection[IPAddress]] = {
            peer: vips
            for peer, vips in view.claims.items()
            if peer != self.node and peer not in self._damped
        }
        claims[self.node] = set() if self.quiet else self.mine - self._yielded
        # Who may be given a VIP it does not claim: not this node for what it yielded, not a
        # peer that has just come back (it may still be settling, as after a start, and it
        # will not take anything itself until then).
        fresh = {p for p, at in self._returned_at.items() if now < at + self.fresh_for}
        self.owners = node_view(
            self.node,
            [self._eligible(a, fresh, claims) for a in announced],
            view.live - self._damped,
            view.heard,
            view.peer_count,
            claims,
            self.owners,
            now,
            view.settled and now >= self._settle_until and not self.quiet,
        )
        answer: dict[str, set[IPAddress]] = {}
        for vip, owner in self.owners.items():
            if owner.node == self.node:
                for name in matching_interfaces(owner.interfaces, links, vip):
                    answer.setdefault(name, set()).add(vip)
        mine = frozenset(vip for vips in answer.values() for vip in vips)

        contested = {vip: self._contested.get(vip, now) for vip in mine if vip in others}
        # Conflicts that ended with this node still the owner.
        again = {v for v in self._contested if v in mine and v not in contested}
        # A peer back from a cut may have answered for any VIP it is a candidate for, and
        # may have given it up before telling anyone it claimed it.
        candidates = {a.vip: a.nodes for a in announced}
        cut = {peer for peer in returned if not self._left.get(peer, False)}
        again |= {v for v in mine if cut & set(candidates.get(v, ()))}
        if rejoined:
            again |= mine
        pairs = frozenset((name, vip) for name, vips in answer.items() for vip in vips)
        # Taken over, or answered on one more interface.
        taken = frozenset(vip for _, vip in pairs - self._answer)
        self._schedule(now, mine, taken, again)
        self._contested, self.mine, self._answer = contested, mine, pairs
        return Decision(
            self.owners,
            {name: frozenset(vips) for name, vips in answer.items()},
            self._due(now, taken),
            self.quiet,
        )

    def next_deadline(self) -> float | None:
        """When `update` must run again even if nothing else happens."""
        times = [t for ts in self._pending.values() for t in ts]
        times += [self._settle_until, self._hold_until]
        times += [at + self.fresh_for for at in self._returned_at.values()]
        times += [s + self.yield_after for v, s in self._contested.items()]
        times += [u for p in self._damped if (u := self._peer_flaps[p].until()) is not None]
        if self.quiet and (until := self._own_flaps.until()) is not None:
            times.append(until)
        later = [t for t in times if t > self._now]
        return min(later) if later else None

    def damped_peers(self) -> frozenset[str]:
        """Peers given no VIP for flapping."""
        return self._damped

    def yielded(self) -> frozenset[IPAddress]:
        """VIPs given up to a lighter node that kept claiming them."""
        return frozenset(self._yielded)

    # -- internals ---------------------------------------------------------------------

    def _follow(self, now: float, view: View) -> tuple[frozenset[str], bool, bool]:
        """Peers that came back, whether this node hears again after hearing nobody, and
        whether it hears nobody now; counts flaps, starts holds."""
        live = view.live - {self.node}
        # Before the start grace ends, peers first heard are no returns.
        returned = live - self._live if self._settled else frozenset()
        for peer in self._live - live:
            self._died[peer] = now
            self._left[peer] = peer in view.left
        self._live, self._settled = live, view.settled
        deaf = view.settled and view.peer_count >= 1 and not view.heard - {self.node}
        rejoined = False
        if deaf and self._deaf_since is None:
            self._deaf_since = now
        elif not deaf and self._deaf_since is not None:
            rejoined, self._deaf_since, self._deaf_ended = True, None, now
            # With one peer, "my link flaps" and "my peer restarts" look the same.
            if view.peer_count >= 2:
                self._own_flaps.record(now)
        for peer in returned:
            self._returned_at[peer] = now
            # Counted only if this node heard someone throughout the peer's absence.
            if not rejoined and self._died.get(peer, _NEVER) > self._deaf_ended:
                self._peer_flaps.setdefault(peer, _Flaps(self.damping)).record(now)
        if returned or rejoined:
            self._hold_until = max(self._hold_until, now + self.hold)
        if rejoined:
            self._settle_until = max(self._settle_until, now + self.hold)
        if len(view.heard - {self.node}) >= view.peer_count:
            # Every peer heard: every claim is known, nothing to wait for.
            self._hold_until = self._settle_until = min(self._hold_until, now)
        self._returned_at = {
            p: at for p, at in self._returned_at.items() if now < at + self.fresh_for
        }
        return returned, rejoined, deaf

    def _schedule(
        self,
        now: float,
        mine: frozenset[IPAddress],
        taken: frozenset[IPAddress],
        again: set[IPAddress],
    ) -> None:
        for vip in self.mine - mine:
            self._pending.pop(vip, None)
        # A hold defers them when they fall due (`_due`), so a hold that ends early (every
        # peer heard) does not delay them.
        for vip in taken | (again & mine):
            self._pending[vip] = [now + delay for delay in self.announce_at]

    def _due(self, now: float, taken: frozenset[IPAddress]) -> frozenset[IPAddress]:
        due = set()
        for vip, times in list(self._pending.items()):
            if vip in self._contested:
                # Never while another node claims it: the conflict's end announces it.
                del self._pending[vip]
                continue
            if times[0] > now:
                continue
            if now < self._hold_until and vip not in taken:
                # A peer has just come back: wait until every claim is known (the hold's
                # end is a deadline).
                continue
            due.add(vip)
            times = [t for t in times if t > now]
            if times:
                self._pending[vip] = times
            else:
                del self._pending[vip]
        return frozenset(due)

    def _eligible(
        self,
        announcement: Announcement,
        fresh: set[str],
        claims: Mapping[str, Collection[IPAddress]],
    ) -> Announcement:
        vip = announcement.vip
        barred = {p for p in fresh if vip not in claims.get(p, ())}
        if vip in self._yielded:
            barred.add(self.node)
        if not barred & set(announcement.nodes):
            return announcement
        return Announcement(
            vip,
            announcement.services,
            tuple(c for c in announcement.candidates if c.node not in barred),
        )
