"""The BGP speaker: many peers, their Adj-RIBs, and the agent's API. No global state.

The agent states what each peer should hear (`set_routes`: desired state); the peer's pure
`AdjRibOut` computes the difference with what its session has been sent, as packed UPDATEs,
and the speaker writes them, coalescing bursts of changes. What peers send is kept in their
Adj-RIB-In (with a prefix limit); herald does not select or install routes.

Graceful restart (RFC 4724): every OPEN carries the capability with our restart time and
forwarding preserved for each family (the kernel datapath survives a herald restart); a
speaker started with `restarting=True` also sets the Restart State bit on each peer's first
session. After the initial sync of a session, End-of-RIB follows for each family. As a
helper, a peer's routes are kept, marked stale, when its session fails without a
NOTIFICATION, until it re-sends them and its End-of-RIB, or until its restart time runs out:
the pure `GracefulRestartHelper` decides, the speaker holds its one timer per peer.

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
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address
from typing import Protocol

from herald.addresses import IPAddress
from herald.bfd.endpoint import Endpoint, OnChange
from herald.bfd.packet import State as BfdState
from herald.bfd.session import StateChange, Timers
from herald.bgp.adj_rib_out import AdjRibOut
from herald.bgp.export import ExportContext, Network, RouteAttributes, family_of, next_hops
from herald.bgp.fsm import Deliver, SessionConfig, SessionDown, SessionEstablished, State
from herald.bgp.graceful_restart import GracefulRestartHelper, graceful_restart_of
from herald.bgp.limits import AS_NUMBER
from herald.bgp.listener import Listener
from herald.bgp.peer import PeerConfig
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
    PathAttributes,
    Prefix,
    RouteRefresh,
    RouteRefreshCapability,
    Treatment,
    Update,
)
from herald.bgp.wire.errors import CeaseSubcode

log = logging.getLogger(__name__)


class Bfd(Protocol):
    """The BFD sessions a speaker asks for: an `Endpoint` in the speaker's own process, or
    the agent's BFD process (`agent.bfd.BfdProcess`), whose sessions outlive the agent."""

    def add(self, address: IPAddress, timers: Timers, on_change: OnChange) -> None: ...

    def remove(self, address: IPAddress) -> None: ...

    def state(self, address: IPAddress) -> BfdState | None: ...


@dataclass(frozen=True)
class PeerEvent:
    """A peer's session changed state; `reason` says why it went down."""

    peer: IPAddress
    state: State
    reason: str | None = None


@dataclass(frozen=True)
class PeerStatus:
    """What `herald bgp peers` shows of one peer.

    `families`: what the Established session negotiated ("ipv4-unicast", ...), empty
    otherwise. `unsent_prefixes`: desired routes not sent because their family (listed in
    `unsent_families`) was not negotiated; 0 without a session.
    """

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
    families: tuple[str, ...] = ()
    unsent_prefixes: int = 0
    unsent_families: tuple[str, ...] = ()
    updates_in: int = 0
    updates_out: int = 0


@dataclass(eq=False)
class _Peer:
    config: PeerConfig
    session: Session
    rib_out: AdjRibOut = field(default_factory=AdjRibOut)
    received: dict[Prefix, PathAttributes] = field(default_factory=dict)  # Adj-RIB-In
    restart: GracefulRestartHelper = field(default_factory=GracefulRestartHelper)
    stale_timer: asyncio.TimerHandle | None = None  # at restart.next_deadline()
    established_at: float | None = None
    sessions: int = 0
    dirty: asyncio.Event = field(default_factory=asyncio.Event)
    sync: Supervised | None = None


class Speaker:
    """All of one node's BGP peers.

    `listen` is (address, port) of the listening socket, or None for a speaker that only
    connects. Port 0 picks a free port (see `listen_port`). `bfd` runs the peers' BFD
    sessions; without it the speaker opens an `Endpoint` of its own when a peer asks for
    BFD (C bit clear: those sessions end with this process).
    """

    def __init__(
        self,
        local_as: int,
        router_id: IPv4Address,
        listen: tuple[str, int] | None = ("::", 179),
        restarting: bool = False,
        rng: random.Random | None = None,
        bfd: Bfd | None = None,
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
        self._bfd: Bfd | None = bfd
        self._own_bfd: Endpoint | None = None  # opened here, closed with the speaker

    # --- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        if self._listener is not None:
            await self._listener.start()

    async def close(self) -> None:
        for address in list(self._peers):
            await self.remove_peer(address)
        if self._listener is not None:
            await self._listener.close()
        if self._own_bfd is not None:
            self._own_bfd.close()
            self._own_bfd = self._bfd = None

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
            self._bfd = self._own_bfd = endpoint
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
        state.rib_out.set_routes(routes)
        state.dirty.set()

    def announce(self, peer: IPAddress, prefix: Network, attributes: RouteAttributes) -> None:
        """One route more (or changed) in `peer`'s desired state."""
        state = self._peer(peer)
        state.rib_out.announce(prefix, attributes)
        state.dirty.set()

    def withdraw(self, peer: IPAddress, prefix: Network) -> None:
        state = self._peer(peer)
        state.rib_out.withdraw(prefix)
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
        return self._peer(peer).rib_out.advertised()

    async def wait_synced(self, peer: IPAddress) -> None:
        """Until every desired route an established `peer` can carry has been written out."""
        state = self._peer(peer)
        while state.dirty.is_set() or not state.rib_out.synced:
            await asyncio.sleep(0.01)

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
                stale_prefixes=len(p.restart.stale),
                advertised_prefixes=p.rib_out.advertised_count,
                messages_in=p.session.messages_in,
                messages_out=p.session.messages_out,
                last_down=p.session.last_down.reason if p.session.last_down else None,
                bfd=self._bfd_state(address),
                families=_names(p.rib_out.families),
                unsent_prefixes=p.rib_out.unsent_count,
                unsent_families=_names(p.rib_out.unsent_families),
                updates_in=p.session.updates_in,
                updates_out=p.session.updates_out,
            )
            for address, p in self._peers.items()
        ]

    def _bfd_state(self, address: IPAddress) -> str | None:
        state = self._bfd.state(address) if self._bfd is not None else None
        return state.name.lower() if state is not None else None

    async def events(self) -> AsyncGenerator[PeerEvent, None]:
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
        local = session.local_address
        if local is not None:  # always, for an established connection
            peer.rib_out.session_up(established.negotiated, self._export_context(peer, local))
        self._remove_received(
            peer, peer.restart.session_up(graceful_restart_of(established.peer_open))
        )
        self._set_stale_timer(peer)
        # Only the first session after a restart says so (RFC 4724 Restart State bit).
        session.fsm_config = self._fsm_config(peer.config, False)
        log.info(
            "event=session_established peer=%s hold=%d families=%s local=%s",
            session.key,
            established.hold_time,
            ",".join(_names(established.negotiated.families)),
            session.local_address,
        )
        if peer.rib_out.unsent_count:
            log.warning(
                "event=routes_not_sent peer=%s families=%s routes=%d reason=family_not_negotiated",
                session.key, ",".join(_names(peer.rib_out.unsent_families)),
                peer.rib_out.unsent_count,
            )  # fmt: skip
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
            peer.rib_out.refresh(message.family)
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
        peer.rib_out.session_down()
        self._restart_helper_on_down(peer, down)
        self._publish(PeerEvent(session.key, State.IDLE, down.reason))

    # --- Adj-RIB-In ----------------------------------------------------------------------

    def _receive_update(self, peer: _Peer, update: Update) -> None:
        end_of_rib = update.end_of_rib_family
        if end_of_rib is not None:
            self._end_of_rib_received(peer, end_of_rib)
            return
        attributes = update.attributes
        withdrawn = update.withdrawn
        if attributes.mp_unreach is not None:
            withdrawn += attributes.mp_unreach.withdrawn
        for prefix in withdrawn:
            peer.received.pop(prefix, None)
        peer.restart.refreshed(withdrawn)
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
        peer.restart.refreshed(announced)
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
        peer.restart.refreshed(gone)

    # --- graceful restart, helper side: the pure helper decides, this holds its timer ----

    def _restart_helper_on_down(self, peer: _Peer, down: SessionDown) -> None:
        peer_gr = graceful_restart_of(peer.session.last_peer_open)
        now = asyncio.get_running_loop().time()
        if not peer.restart.session_down(peer.received, down, peer_gr, now):
            peer.received.clear()
        elif peer_gr is not None:
            log.info(
                "event=peer_routes_stale peer=%s routes=%d restart_time=%d",
                peer.config.address, len(peer.restart.stale), peer_gr.restart_time,
            )  # fmt: skip
        self._set_stale_timer(peer)

    def _end_of_rib_received(self, peer: _Peer, family: Family) -> None:
        log.info("event=end_of_rib_received peer=%s family=%s", peer.config.address, family)
        self._remove_received(peer, peer.restart.end_of_rib(family))
        self._set_stale_timer(peer)

    def _set_stale_timer(self, peer: _Peer) -> None:
        if peer.stale_timer is not None:
            peer.stale_timer.cancel()
            peer.stale_timer = None
        deadline = peer.restart.next_deadline()
        if deadline is not None:
            loop = asyncio.get_running_loop()
            peer.stale_timer = loop.call_at(deadline, self._restart_time_over, peer)

    def _restart_time_over(self, peer: _Peer) -> None:
        # A timer callback: an exception would only reach asyncio's handler and the routes
        # would stay stale for ever, so whatever fails, the stale routes go.
        peer.stale_timer = None
        gone: list[Prefix] = []
        try:
            gone = peer.restart.handle_timer(asyncio.get_running_loop().time())
            self._remove_received(peer, gone)
        except Exception as error:
            log.error(
                "event=task_failed task=stale_routes peer=%s error=%r action=drop_stale",
                peer.config.address, error, exc_info=error,
            )  # fmt: skip
            for prefix in [*gone, *peer.restart.clear()]:
                peer.received.pop(prefix, None)
        self._set_stale_timer(peer)

    def _remove_received(self, peer: _Peer, stale: list[Prefix]) -> None:
        for prefix in stale:
            peer.received.pop(prefix, None)
        if stale:
            log.info(
                "event=stale_routes_removed peer=%s routes=%d", peer.config.address, len(stale)
            )

    # --- Adj-RIB-Out: the pure AdjRibOut decides, this writes ---------------------------

    def _sync_failed(self, peer: _Peer, error: Exception) -> None:
        """What the peer heard of a failed sync is unknown: end the session, so the peer
        drops our routes and the next session starts from an empty Adj-RIB-Out."""
        peer.rib_out.forget()
        peer.session.cease(CeaseSubcode.OUT_OF_RESOURCES, f"announcing routes failed: {error!r}")

    async def _sync_loop(self, peer: _Peer) -> None:
        """Writes what the Adj-RIB-Out says is due whenever desired routes or the session
        change; a burst of changes while a write drains becomes one difference."""
        while True:
            await peer.dirty.wait()
            peer.dirty.clear()
            outgoing = peer.rib_out.next_updates()
            if outgoing is None or not peer.session.send_frames(outgoing.encode()):
                continue
            peer.rib_out.mark_sent(outgoing)
            log.info(
                "event=updates_sent peer=%s messages=%d advertised=%d",
                peer.config.address, len(outgoing.updates), outgoing.advertised,
            )  # fmt: skip
            await peer.session.drain()

    def _export_context(self, peer: _Peer, local: IPAddress) -> ExportContext:
        v4, v6 = next_hops(
            local, self.router_id, peer.config.ipv4_next_hop, peer.config.ipv6_next_hop
        )
        return ExportContext(self.local_as, peer.config.peer_as == self.local_as, v4, v6)


def _names(families: Iterable[Family]) -> tuple[str, ...]:
    return tuple(str(family) for family in sorted(families))


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
