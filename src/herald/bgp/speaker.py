"""The BGP speaker: many peers, their Adj-RIBs, and the agent's API. No global state.

The agent states what each peer should hear (`set_routes`: desired state); the speaker
diffs it against what that peer's session has been sent (Adj-RIB-Out) and sends the
difference as packed UPDATEs, coalescing bursts of changes. What peers send is kept in
their Adj-RIB-In (with a prefix limit); herald does not select or install routes.

Graceful restart (RFC 4724): every OPEN carries the capability with our restart time and
forwarding preserved for each family (the kernel datapath survives a herald restart); a
speaker started with `restarting=True` also sets the Restart State bit on each peer's first
session. After the initial sync of a session, End-of-RIB follows for each family. As a
helper, a peer's routes are kept, marked stale, when its session fails without a
NOTIFICATION, until it re-sends them and its End-of-RIB, or until its restart time runs out.

Each peer's Adj-RIB-Out sync is a supervised task: if it fails, the session is ended with
Cease / Out of Resources (RFC 4486 subcode 8), since what the peer heard is no longer known,
and the task starts again; the reconnected session gets the whole table. Failures in what
sessions report to the speaker cost that session the same way (see `session.py`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from herald.bfd.endpoint import Endpoint
from herald.bfd.packet import State as BfdState
from herald.bfd.session import StateChange
from herald.bgp.export import (
    ExportContext,
    Network,
    RouteAttributes,
    export_attributes,
    family_of,
    next_hops,
)
from herald.bgp.fsm import Deliver, SessionConfig, SessionDown, SessionEstablished, State
from herald.bgp.limits import AS_NUMBER
from herald.bgp.listener import Listener
from herald.bgp.packing import announcements, encode_all, withdrawals
from herald.bgp.peer import IPAddress, PeerConfig
from herald.bgp.session import Session
from herald.bgp.supervise import Supervised
from herald.bgp.wire import (
    Capability,
    ExtendedMessage,
    Family,
    FourOctetAs,
    GracefulRestart,
    GracefulRestartFamily,
    MultiProtocol,
    Negotiated,
    Open,
    PathAttributes,
    Prefix,
    RouteRefresh,
    RouteRefreshCapability,
    Treatment,
    Update,
)
from herald.bgp.wire.errors import CeaseSubcode, ErrorCode

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PeerEvent:
    """A peer's session changed state; `reason` says why it went down."""

    peer: IPAddress
    state: State
    reason: str | None = None


@dataclass(frozen=True)
class PeerStatus:
    """What `herald bgp peers` shows of one peer."""

    peer: IPAddress
    peer_as: int
    state: State
    uptime: float | None
    received_prefixes: int
    stale_prefixes: int
    advertised_prefixes: int
    messages_in: int
    messages_out: int
    last_down: str | None
    bfd: str | None = None  # the BFD session's state, None without BFD


@dataclass(eq=False)
class _Peer:
    config: PeerConfig
    session: Session
    desired: dict[Network, RouteAttributes] = field(default_factory=dict)
    sent: dict[Family, dict[Prefix, PathAttributes]] = field(default_factory=dict)
    received: dict[Prefix, PathAttributes] = field(default_factory=dict)
    stale: set[Prefix] = field(default_factory=set)
    stale_timer: asyncio.TimerHandle | None = None
    end_of_rib_pending: set[Family] = field(default_factory=set)
    established_at: float | None = None
    sessions: int = 0
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    sync: Supervised | None = None


class Speaker:
    """All of one node's BGP peers.

    `listen` is (address, port) of the listening socket, or None for a speaker that only
    connects. Port 0 picks a free port (see `listen_port`).
    """

    def __init__(
        self,
        local_as: int,
        router_id: IPv4Address,
        listen: tuple[str, int] | None = ("::", 179),
        restarting: bool = False,
        rng: random.Random | None = None,
    ) -> None:
        problem = AS_NUMBER.problem(local_as)
        if problem is not None:
            raise ValueError(f"local AS {problem}")
        if router_id == IPv4Address(0):
            raise ValueError("router id 0.0.0.0 is not a valid BGP identifier (RFC 6286)")
        self.local_as = local_as
        self.router_id = router_id
        self.restarting = restarting
        self._rng = rng or random.Random()
        self._peers: dict[IPAddress, _Peer] = {}
        self._listener = Listener(*listen, self._session_for) if listen else None
        self._subscribers: set[asyncio.Queue[PeerEvent]] = set()
        self._bfd: Endpoint | None = None

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._listener is not None:
            await self._listener.start()

    async def close(self) -> None:
        for address in list(self._peers):
            await self.remove_peer(address)
        if self._listener is not None:
            await self._listener.close()
        if self._bfd is not None:
            self._bfd.close()
            self._bfd = None

    async def __aenter__(self) -> Speaker:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.close()

    @property
    def listen_port(self) -> int | None:
        return self._listener.port if self._listener else None

    # --- peers ---------------------------------------------------------------------------

    async def add_peer(self, config: PeerConfig) -> None:
        if config.address in self._peers:
            raise ValueError(f"peer {config.address} exists; remove it first to change it")
        if config.bfd is not None and self._bfd is None:
            endpoint = Endpoint()
            endpoint.start()  # a port already taken fails here, before anything is set up
            self._bfd = endpoint
        if self._listener is not None:
            self._listener.set_password(config.address, config.password)
        session = Session(config, self._fsm_config(config, self.restarting), self, self._rng)
        peer = _Peer(config, session)
        self._peers[config.address] = peer
        peer.sync = Supervised(
            f"sync peer={config.address}",
            lambda: self._sync_loop(peer),
            lambda error: self._sync_failed(peer, error),
        )
        peer.sync.start()
        log.info(
            "event=peer_added peer=%s peer_as=%d passive=%s", config.address, config.peer_as,
            config.passive,
        )  # fmt: skip
        peer.session.start()
        if config.bfd is not None and self._bfd is not None:
            self._bfd.add(config.address, config.bfd, self._bfd_changed)

    async def remove_peer(self, address: IPAddress) -> None:
        peer = self._peers.pop(address, None)
        if peer is None:
            return
        if self._bfd is not None:
            self._bfd.remove(address)
        await peer.session.stop()
        if peer.sync is not None:
            await peer.sync.stop()
        if peer.stale_timer is not None:
            peer.stale_timer.cancel()
        if self._listener is not None and peer.config.password:
            self._listener.set_password(address, None)
        log.info("event=peer_removed peer=%s", address)

    def _bfd_changed(self, address: IPAddress, change: StateChange) -> None:
        # Only a session that was Up going down says the path failed; one that never came
        # up says nothing about BGP (the peer may run no BFD), as FRR does by default.
        if change.by_peer_admin:
            return  # the peer turned BFD off: nothing failed (RFC 5882 §3.2)
        peer = self._peers.get(address)
        if peer is not None and change.old is BfdState.UP and change.new is BfdState.DOWN:
            peer.session.cease(CeaseSubcode.BFD_DOWN, f"BFD down ({change.diag.name.lower()})")

    def _session_for(self, address: IPAddress) -> Session | None:
        peer = self._peers.get(address)
        return peer.session if peer else None

    def _fsm_config(self, config: PeerConfig, restarted: bool) -> SessionConfig:
        families = sorted(config.families)
        capabilities: list[Capability] = [MultiProtocol(f) for f in families]
        capabilities += [RouteRefreshCapability(), FourOctetAs(self.local_as), ExtendedMessage()]
        if config.graceful_restart_time is not None:
            capabilities.append(
                GracefulRestart(
                    config.graceful_restart_time,
                    restarting=restarted,
                    families=tuple(GracefulRestartFamily(f, True) for f in families),
                )
            )
        return SessionConfig(
            self.local_as,
            config.peer_as,
            self.router_id,
            config.hold_time,
            config.connect_retry_time,
            tuple(capabilities),
            enforce_first_as=config.enforce_first_as,
        )

    # --- routes: desired state -----------------------------------------------------------

    def set_routes(self, peer: IPAddress, routes: Mapping[Network, RouteAttributes]) -> None:
        """What `peer` should hear from now on; the difference is sent in the background."""
        state = self._peer(peer)
        state.desired = dict(routes)
        state.dirty.set()

    def announce(self, peer: IPAddress, prefix: Network, attributes: RouteAttributes) -> None:
        """One route more (or changed) in `peer`'s desired state."""
        state = self._peer(peer)
        state.desired[prefix] = attributes
        state.dirty.set()

    def withdraw(self, peer: IPAddress, prefix: Network) -> None:
        state = self._peer(peer)
        state.desired.pop(prefix, None)
        state.dirty.set()

    def request_refresh(self, peer: IPAddress, family: Family) -> bool:
        """Ask `peer` to send its routes of `family` again (RFC 2918); False if not up."""
        session = self._peer(peer).session
        negotiated = session.negotiated
        if negotiated is None or family not in negotiated.families:
            return False
        return session.send_frames([RouteRefresh(family).encode(negotiated)])

    def received_routes(self, peer: IPAddress) -> dict[Prefix, PathAttributes]:
        return dict(self._peer(peer).received)

    def advertised_routes(self, peer: IPAddress) -> dict[Prefix, PathAttributes]:
        return {p: a for table in self._peer(peer).sent.values() for p, a in table.items()}

    async def wait_synced(self, peer: IPAddress) -> None:
        """Until every desired route of an established `peer` has been written out."""
        state = self._peer(peer)
        while state.dirty.is_set() or not self._in_sync(state):
            await asyncio.sleep(0.01)

    def _in_sync(self, peer: _Peer) -> bool:
        advertised = sum(len(table) for table in peer.sent.values())
        return peer.session.state is State.ESTABLISHED and advertised == len(peer.desired)

    def _peer(self, address: IPAddress) -> _Peer:
        try:
            return self._peers[address]
        except KeyError:
            raise KeyError(f"no peer {address}; add it with add_peer first") from None

    # --- observation ---------------------------------------------------------------------

    def status(self) -> list[PeerStatus]:
        now = time.monotonic()
        return [
            PeerStatus(
                peer=address,
                peer_as=p.config.peer_as,
                state=p.session.state,
                uptime=now - p.established_at if p.established_at is not None else None,
                received_prefixes=len(p.received),
                stale_prefixes=len(p.stale),
                advertised_prefixes=sum(len(table) for table in p.sent.values()),
                messages_in=p.session.messages_in,
                messages_out=p.session.messages_out,
                last_down=p.session.last_down.reason if p.session.last_down else None,
                bfd=self._bfd_state(address),
            )
            for address, p in self._peers.items()
        ]

    def _bfd_state(self, address: IPAddress) -> str | None:
        state = self._bfd.state(address) if self._bfd is not None else None
        return state.name.lower() if state is not None else None

    async def events(self) -> AsyncIterator[PeerEvent]:
        """Every peer event from now on, for as long as the caller iterates."""
        queue: asyncio.Queue[PeerEvent] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            while True:
                yield await queue.get()
        finally:
            self._subscribers.discard(queue)

    def _publish(self, event: PeerEvent) -> None:
        for queue in self._subscribers:
            queue.put_nowait(event)

    # --- SessionHandler: what sessions tell the speaker ----------------------------------

    def session_established(self, session: Session, established: SessionEstablished) -> None:
        peer = self._peers.get(session.key)
        if peer is None:
            return
        peer.sessions += 1
        peer.established_at = time.monotonic()
        peer.sent = {}
        peer.end_of_rib_pending = set(established.negotiated.families)
        self._restart_helper_on_reconnect(peer, established)
        # Only the first session after a restart says so (RFC 4724 Restart State bit).
        session.fsm_config = self._fsm_config(peer.config, False)
        log.info(
            "event=session_established peer=%s hold=%d families=%s local=%s",
            session.key,
            established.hold_time,
            ",".join(sorted(str(f) for f in established.negotiated.families)),
            session.local_address,
        )
        self._publish(PeerEvent(session.key, State.ESTABLISHED))
        peer.dirty.set()

    def session_message(self, session: Session, deliver: Deliver) -> None:
        peer = self._peers.get(session.key)
        if peer is None:
            return
        message = deliver.message
        if isinstance(message, RouteRefresh):
            ignored = refresh_ignored(message, session.negotiated)
            if ignored is not None:
                log.info(
                    "event=route_refresh_ignored peer=%s family=%s subtype=%d reason=%s",
                    session.key, message.family, message.subtype, ignored,
                )  # fmt: skip
                return
            # RFC 2918: re-send the whole Adj-RIB-Out of that family.
            log.info("event=route_refresh peer=%s family=%s", session.key, message.family)
            peer.sent.pop(message.family, None)
            peer.dirty.set()
            return
        for treatment in deliver.treatments:
            log.warning(
                "event=update_treated peer=%s treatment=%s reason=%r",
                session.key, treatment.treatment.value, treatment.reason,
            )  # fmt: skip
            if treatment.treatment is Treatment.AFI_SAFI_DISABLE and treatment.family is not None:
                self._drop_family(peer, treatment.family)
        self._receive_update(peer, message)

    def session_down(self, session: Session, down: SessionDown, was_established: bool) -> None:
        peer = self._peers.get(session.key)
        if peer is None or not was_established:
            if peer is not None:
                self._publish(PeerEvent(session.key, session.state, down.reason))
            return
        peer.established_at = None
        peer.sent = {}
        self._restart_helper_on_down(peer, down)
        self._publish(PeerEvent(session.key, State.IDLE, down.reason))

    # --- Adj-RIB-In ----------------------------------------------------------------------

    def _receive_update(self, peer: _Peer, update: Update) -> None:
        end_of_rib = update.end_of_rib_family
        if end_of_rib is not None:
            self._end_of_rib_received(peer, end_of_rib)
            return
        attributes = update.attributes
        for prefix in update.withdrawn:
            peer.received.pop(prefix, None)
            peer.stale.discard(prefix)
        if attributes.mp_unreach is not None:
            for prefix in attributes.mp_unreach.withdrawn:
                peer.received.pop(prefix, None)
                peer.stale.discard(prefix)
        announced = update.nlri + (attributes.mp_reach.nlri if attributes.mp_reach else ())
        if not announced:
            return
        # One shared value per UPDATE: the route's attributes without the UPDATE's NLRI.
        reach = attributes.mp_reach
        kept = replace(
            attributes,
            mp_unreach=None,
            mp_reach=replace(reach, nlri=()) if reach is not None else None,
        )
        if not peer.session.fsm_config.ibgp and kept.local_pref is not None:
            kept = replace(kept, local_pref=None)  # RFC 7606 §7.5: not from an eBGP peer
        for prefix in announced:
            peer.received[prefix] = kept
            peer.stale.discard(prefix)
        limit = peer.config.max_prefixes
        if limit is not None and len(peer.received) > limit:
            log.warning(
                "event=max_prefixes_exceeded peer=%s limit=%d received=%d",
                peer.config.address, limit, len(peer.received),
            )  # fmt: skip
            peer.session.cease(
                CeaseSubcode.MAXIMUM_PREFIXES_REACHED,
                f"peer sent more than {limit} prefixes",
            )

    def _drop_family(self, peer: _Peer, family: Family) -> None:
        gone = [p for p in peer.received if family_of(p.network) == family]
        for prefix in gone:
            del peer.received[prefix]
            peer.stale.discard(prefix)

    # --- graceful restart, helper side ---------------------------------------------------

    def _restart_helper_on_down(self, peer: _Peer, down: SessionDown) -> None:
        """RFC 4724 §4.2: a peer that can restart keeps its routes (stale) when the session
        fails without a NOTIFICATION; any NOTIFICATION means a deliberate end: drop them."""
        peer_gr = _graceful_restart(peer.session.last_peer_open)
        hold_expired = down.sent is not None and down.sent.code == ErrorCode.HOLD_TIMER_EXPIRED
        if peer_gr is None or down.received is not None or (down.sent and not hold_expired):
            peer.received.clear()
            peer.stale.clear()
            return
        peer.stale = set(peer.received)
        log.info(
            "event=peer_routes_stale peer=%s routes=%d restart_time=%d",
            peer.config.address, len(peer.stale), peer_gr.restart_time,
        )  # fmt: skip
        if peer.stale_timer is not None:
            peer.stale_timer.cancel()
        peer.stale_timer = asyncio.get_running_loop().call_later(
            peer_gr.restart_time, self._restart_time_over, peer
        )

    def _restart_time_over(self, peer: _Peer) -> None:
        # A timer callback: an exception would only reach asyncio's handler and the routes
        # would stay stale for ever, so whatever fails, the stale routes go.
        try:
            self._purge_stale(peer, None)
        except Exception as error:
            log.error(
                "event=task_failed task=stale_routes peer=%s error=%r action=drop_stale",
                peer.config.address, error, exc_info=error,
            )  # fmt: skip
            for prefix in peer.stale:
                peer.received.pop(prefix, None)
            peer.stale.clear()
            peer.stale_timer = None

    def _restart_helper_on_reconnect(self, peer: _Peer, established: SessionEstablished) -> None:
        if not peer.stale:
            return
        gr = _graceful_restart(established.peer_open)
        kept = {f.family for f in gr.families if f.forwarding_preserved} if gr else set()
        for family in {family_of(p.network) for p in peer.stale} - kept:
            self._purge_stale(peer, family)

    def _end_of_rib_received(self, peer: _Peer, family: Family) -> None:
        log.info("event=end_of_rib_received peer=%s family=%s", peer.config.address, family)
        self._purge_stale(peer, family)

    def _purge_stale(self, peer: _Peer, family: Family | None) -> None:
        gone = [p for p in peer.stale if family is None or family_of(p.network) == family]
        for prefix in gone:
            peer.received.pop(prefix, None)
            peer.stale.discard(prefix)
        if gone:
            log.info("event=stale_routes_removed peer=%s routes=%d", peer.config.address, len(gone))
        if not peer.stale and peer.stale_timer is not None:
            peer.stale_timer.cancel()
            peer.stale_timer = None

    # --- Adj-RIB-Out ---------------------------------------------------------------------

    def _sync_failed(self, peer: _Peer, error: Exception) -> None:
        """What the peer heard of a failed sync is unknown: end the session, so the peer
        drops our routes and the next session starts from an empty Adj-RIB-Out."""
        peer.sent = {}
        peer.session.cease(CeaseSubcode.OUT_OF_RESOURCES, f"announcing routes failed: {error!r}")

    async def _sync_loop(self, peer: _Peer) -> None:
        """Sends the difference between desired and sent whenever either changes."""
        while True:
            await peer.dirty.wait()
            peer.dirty.clear()
            session = peer.session
            negotiated = session.negotiated
            local = session.local_address
            if negotiated is None or local is None:
                continue
            desired = self._exported(peer, self._export_context(peer, local), negotiated.families)
            updates: list[Update] = []
            for family, table in sorted(desired.items()):
                gone, changed = _changes(table, peer.sent.get(family, {}))
                updates += withdrawals(gone, family, negotiated)
                updates += announcements(changed, family, negotiated)
            updates += [Update.end_of_rib(f) for f in sorted(peer.end_of_rib_pending)]
            peer.end_of_rib_pending.clear()
            if not updates or not session.send_frames(encode_all(updates, negotiated)):
                continue
            peer.sent = desired
            log.info(
                "event=updates_sent peer=%s messages=%d advertised=%d",
                peer.config.address, len(updates), sum(len(t) for t in desired.values()),
            )  # fmt: skip
            await session.drain()

    def _export_context(self, peer: _Peer, local: IPAddress) -> ExportContext:
        v4, v6 = next_hops(
            local, self.router_id, peer.config.ipv4_next_hop, peer.config.ipv6_next_hop
        )
        return ExportContext(self.local_as, peer.config.peer_as == self.local_as, v4, v6)

    def _exported(
        self, peer: _Peer, context: ExportContext, families: Iterable[Family]
    ) -> dict[Family, dict[Prefix, PathAttributes]]:
        """The desired routes as this session's peer must receive them, per family."""
        out: dict[Family, dict[Prefix, PathAttributes]] = {f: {} for f in families}
        # Routes share RouteAttributes objects, and peer.desired keeps them alive while this
        # runs: memoising by identity avoids hashing a dataclass per route.
        memo: dict[tuple[int, Family], PathAttributes] = {}
        for network, route in peer.desired.items():
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


def _changes(
    desired: dict[Prefix, PathAttributes], sent: dict[Prefix, PathAttributes]
) -> tuple[list[Prefix], dict[Prefix, PathAttributes]]:
    """Adj-RIB-Out diff of one family: prefixes to withdraw, routes to (re)announce."""
    if not sent:
        return [], desired
    gone = [p for p in sent if p not in desired]
    changed = {}
    for prefix, attributes in desired.items():
        old = sent.get(prefix)
        if old is not attributes and old != attributes:
            changed[prefix] = attributes
    return gone, changed


def refresh_ignored(message: RouteRefresh, negotiated: Negotiated | None) -> str | None:
    """Why a received ROUTE-REFRESH is not a request to answer, or None when it is.

    RFC 2918 §4: a family not negotiated is ignored. RFC 7313: subtypes 1 and 2 mark the
    start and end of the peer's own re-advertisement (and we do not negotiate enhanced route
    refresh), others must be ignored; only subtype 0 asks us for our routes."""
    if negotiated is None:
        return "not_established"
    if message.family not in negotiated.families:
        return "family_not_negotiated"
    if message.subtype != 0:
        return "not_a_request"
    return None


def _graceful_restart(open_message: Open | None) -> GracefulRestart | None:
    if open_message is None:
        return None
    capabilities = open_message.capabilities
    return next((c for c in capabilities if isinstance(c, GracefulRestart)), None)
