"""One peer's Adj-RIB-Out, pure: the routes it should hear in, the UPDATEs to send out.

The agent states what the peer should hear (desired state); the Adj-RIB-Out remembers what
the current session has been sent, per family, and computes the difference as packed
UPDATEs: withdrawals, announcements, and End-of-RIB once per session (RFC 4724 §4.1).
A new session has heard nothing, so its first difference is the whole table. Routes of a
family the session did not negotiate are not sent, and counted (`unsent_count`) so that the
reason can be shown instead of routes silently never arriving.

The speaker's shell does only the writing: `next_updates()`, write them, `mark_sent()`.
Nothing here does I/O or keeps time: there is no timer in this concern.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from herald.bgp.export import ExportContext, Network, RouteAttributes, export_attributes, family_of
from herald.bgp.packing import announcements, encode_all, withdrawals
from herald.bgp.wire import Family, Negotiated, PathAttributes, Prefix, Update

Table = dict[Prefix, PathAttributes]


@dataclass(frozen=True, eq=False)
class OutgoingUpdates:
    """What one session must be sent next, in sending order, and what the peer will have
    heard once it is written (`tables`, every negotiated family).

    `epoch` and `refreshes` tie it to the Adj-RIB-Out state it was computed from, so that
    `mark_sent` does not record it over a reset (session down or up, forget) or a route
    refresh that came in between: the peer then needs more than this.
    """

    updates: tuple[Update, ...]
    negotiated: Negotiated
    end_of_rib: frozenset[Family]
    tables: Mapping[Family, Table]
    epoch: int
    refreshes: int

    @property
    def advertised(self) -> int:
        return sum(len(table) for table in self.tables.values())

    def encode(self) -> list[bytes]:
        return encode_all(self.updates, self.negotiated)


class AdjRibOut:
    """Desired routes of one peer and what its current session has been sent.

    Desired state: `set_routes`, `announce`, `withdraw` (kept across sessions). Session:
    `session_up(negotiated, context)` (nothing sent yet: the whole table and End-of-RIB for
    each negotiated family are due), `session_down()` (nothing can be sent; the next
    session starts from nothing), `refresh(family)` (RFC 2918: that family again),
    `forget()` (what the peer heard is unknown: everything again). Sending:
    `next_updates()` is None when nothing is due; after writing them, `mark_sent`.
    """

    def __init__(self) -> None:
        self._desired: dict[Network, RouteAttributes] = {}
        self._desired_families: Counter[Family] | None = None  # of _desired, when asked
        self._sent: dict[Family, Table] = {}
        self._end_of_rib: set[Family] = set()
        self._negotiated: Negotiated | None = None
        self._context: ExportContext | None = None
        self._epoch = 0
        self._refreshes = 0
        self._refreshed: dict[Family, int] = {}  # family -> _refreshes when last asked

    # --- desired state -------------------------------------------------------------------

    def set_routes(self, routes: Mapping[Network, RouteAttributes]) -> None:
        self._desired = dict(routes)
        self._desired_families = None

    def announce(self, prefix: Network, attributes: RouteAttributes) -> None:
        self._desired[prefix] = attributes
        self._desired_families = None

    def withdraw(self, prefix: Network) -> None:
        self._desired.pop(prefix, None)
        self._desired_families = None

    # --- the session ---------------------------------------------------------------------

    @property
    def up(self) -> bool:
        return self._negotiated is not None

    @property
    def families(self) -> frozenset[Family]:
        """The families the current session negotiated; empty without a session."""
        return self._negotiated.families if self._negotiated is not None else frozenset()

    def session_up(self, negotiated: Negotiated, context: ExportContext) -> None:
        self._negotiated, self._context = negotiated, context
        self._reset()

    def session_down(self) -> None:
        self._negotiated, self._context = None, None
        self._reset()

    def refresh(self, family: Family) -> None:
        """RFC 2918: the peer asks for `family` again; it is sent whole (no End-of-RIB)."""
        self._sent.pop(family, None)
        self._refreshes += 1
        self._refreshed[family] = self._refreshes

    def forget(self) -> None:
        """What the peer heard is unknown (a send failed half-way): everything again."""
        self._reset()

    def _reset(self) -> None:
        self._sent = {}
        self._end_of_rib = set(self.families)
        self._epoch += 1

    # --- sending -------------------------------------------------------------------------

    def next_updates(self) -> OutgoingUpdates | None:
        """The difference between desired and sent as UPDATEs, End-of-RIB last; None when
        there is no session or nothing to say. Changes nothing: see `mark_sent`."""
        negotiated, context = self._negotiated, self._context
        if negotiated is None or context is None:
            return None
        tables = self._exported(context, negotiated.families)
        updates: list[Update] = []
        for family, table in sorted(tables.items()):
            gone, changed = _changes(table, self._sent.get(family, {}))
            updates += withdrawals(gone, family, negotiated)
            updates += announcements(changed, family, negotiated)
        end_of_rib = frozenset(self._end_of_rib)
        updates += [Update.end_of_rib(family) for family in sorted(end_of_rib)]
        if not updates:
            return None
        return OutgoingUpdates(
            tuple(updates), negotiated, end_of_rib, tables, self._epoch, self._refreshes
        )

    def mark_sent(self, outgoing: OutgoingUpdates) -> None:
        """`outgoing` has been written on the session it was computed for."""
        if outgoing.epoch != self._epoch:
            return
        asked_since = {f for f, n in self._refreshed.items() if n > outgoing.refreshes}
        self._sent = {f: t for f, t in outgoing.tables.items() if f not in asked_since}
        self._end_of_rib -= outgoing.end_of_rib

    def _exported(self, context: ExportContext, families: frozenset[Family]) -> dict[Family, Table]:
        """The desired routes as this session's peer must receive them, per family."""
        out: dict[Family, Table] = {f: {} for f in families}
        # Routes share RouteAttributes objects, and _desired keeps them alive while this
        # runs: memoising by identity avoids hashing a dataclass per route.
        memo: dict[tuple[int, Family], PathAttributes] = {}
        for network, route in self._desired.items():
            family = family_of(network)
            table = out.get(family)
            if table is None:
                continue
            key = (id(route), family)
            attributes = memo.get(key)
            if attributes is None:
                attributes = memo[key] = export_attributes(route, family, context)
            table[Prefix(network)] = attributes
        return out

    # --- observation ---------------------------------------------------------------------

    def advertised(self) -> dict[Prefix, PathAttributes]:
        return {p: a for table in self._sent.values() for p, a in table.items()}

    @property
    def advertised_count(self) -> int:
        return sum(len(table) for table in self._sent.values())

    @property
    def unsent_families(self) -> frozenset[Family]:
        """Families of desired routes that the current session did not negotiate; empty
        without a session (then nothing is sent, but not for that reason)."""
        if self._negotiated is None:
            return frozenset()
        return frozenset(self._families_desired()) - self._negotiated.families

    @property
    def unsent_count(self) -> int:
        """Desired routes not sent because the session did not negotiate their family."""
        counts = self._families_desired()
        return sum(counts[family] for family in self.unsent_families)

    @property
    def synced(self) -> bool:
        """A session is up and has heard every desired route it can carry, and End-of-RIB.
        Computes the difference: for tests and waiting, not for every change."""
        return self.up and self.next_updates() is None

    def _families_desired(self) -> Counter[Family]:
        if self._desired_families is None:
            self._desired_families = Counter(family_of(n) for n in self._desired)
        return self._desired_families


def _changes(desired: Table, sent: Table) -> tuple[list[Prefix], Table]:
    """The difference of one family: prefixes to withdraw, routes to (re)announce."""
    if not sent:
        return [], desired
    gone = [p for p in sent if p not in desired]
    changed = {}
    for prefix, attributes in desired.items():
        old = sent.get(prefix)
        if old is not attributes and old != attributes:
            changed[prefix] = attributes
    return gone, changed
