"""The graceful-restart helper (RFC 4724 §4.2) for one peer, pure, time passed in.

When a peer that advertised graceful restart loses its session without a NOTIFICATION, the
routes it sent are kept, marked stale, for the restart time it advertised: it is restarting
and still forwarding. A new session before then keeps them stale (the families whose
forwarding the new OPEN does not say was preserved go at once); each route the peer sends
again is fresh; its End-of-RIB for a family removes that family's stale routes it did not
send again; at the deadline, whatever is still stale goes.

The helper keeps the stale set and the deadline; the Adj-RIB-In (the received routes) stays
with the speaker, so every method that decides routes must go returns them for the caller
to remove. Like the FSM, the helper says when it next needs to be woken (`next_deadline`)
and acts when called at that time (`handle_timer(now)`): the speaker holds one timer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet

from herald.bgp.export import family_of
from herald.bgp.fsm import SessionDown
from herald.bgp.wire import ErrorCode, Family, GracefulRestart, Open, Prefix


def graceful_restart_of(peer_open: Open | None) -> GracefulRestart | None:
    """The peer's graceful-restart capability, if its OPEN carried one."""
    if peer_open is None:
        return None
    return next((c for c in peer_open.capabilities if isinstance(c, GracefulRestart)), None)


def keeps_routes(down: SessionDown) -> bool:
    """Whether a session that went down leaves its routes to the helper (RFC 4724 §4.2):
    only when it failed (TCP, or our hold timer: the peer went silent). A NOTIFICATION,
    received or sent for any other reason, ends the session on purpose."""
    if down.received is not None:
        return False
    return down.sent is None or down.sent.code == ErrorCode.HOLD_TIMER_EXPIRED


class GracefulRestartHelper:
    """Which of one peer's received routes are stale, and until when."""

    def __init__(self) -> None:
        self._stale: set[Prefix] = set()
        self._deadline: float | None = None

    @property
    def stale(self) -> AbstractSet[Prefix]:
        return self._stale

    def next_deadline(self) -> float | None:
        return self._deadline if self._stale else None

    def session_down(
        self,
        routes: Iterable[Prefix],
        down: SessionDown,
        peer_gr: GracefulRestart | None,
        now: float,
    ) -> bool:
        """The session with the peer, whose `routes` we hold, went down. True: they are all
        stale now, until `now` + the peer's restart time; False: remove every one of them."""
        if peer_gr is None or not keeps_routes(down):
            self._stale.clear()
            self._deadline = None
            return False
        # Routes still stale from an earlier restart start again with the rest: the peer's
        # new restart is what they wait for now.
        self._stale = set(routes)
        self._deadline = now + peer_gr.restart_time
        return True

    def session_up(self, peer_gr: GracefulRestart | None) -> list[Prefix]:
        """A new session whose OPEN carried `peer_gr`: the stale routes of families it did
        not preserve forwarding for, to remove now. The others stay stale until End-of-RIB
        or the deadline, which keeps running."""
        if not self._stale:
            return []
        kept = {f.family for f in peer_gr.families if f.forwarding_preserved} if peer_gr else set()
        return self._remove(lambda family: family not in kept)

    def refreshed(self, prefixes: Iterable[Prefix]) -> None:
        """The peer announced or withdrew these again, or they were removed: not stale."""
        if self._stale:
            self._stale.difference_update(prefixes)

    def end_of_rib(self, family: Family) -> list[Prefix]:
        """The peer's End-of-RIB for `family`: its routes still stale, to remove."""
        return self._remove(lambda f: f == family)

    def handle_timer(self, now: float) -> list[Prefix]:
        """At the deadline, every route still stale, to remove."""
        if self._deadline is None or now < self._deadline:
            return []
        return self.clear()

    def clear(self) -> list[Prefix]:
        """Every stale route, to remove; nothing is stale afterwards."""
        gone = list(self._stale)
        self._stale.clear()
        self._deadline = None
        return gone

    def _remove(self, which: Callable[[Family], bool]) -> list[Prefix]:
        gone = [p for p in self._stale if which(family_of(p.network))]
        self._stale.difference_update(gone)
        if not self._stale:
            self._deadline = None
        return gone
