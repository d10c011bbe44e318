"""The agent process: apply each snapshot's NodePlan to the datapath and the BGP speakers.

Order is what keeps traffic safe ("never announce what you cannot forward"):
1. withdraw every route the new plan drops (announcements that stay keep their old
   attributes for the moment), and stop answering ARP/NDP for every L2 VIP the new plan
   drops;
2. commit the datapath (nft transactions);
3. announce the new plan's routes, bring peers up or down, and let the L2 announcer own
   the VIPs the committed rules serve.
A failure in one step is logged with what it concerns and the agent keeps what it had;
the next snapshot tries again. Nothing here decides anything: plan.py does.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from herald.agent.bfd import BfdProcess
from herald.agent.l2 import L2Announcements, L2Config
from herald.agent.plan import NodePlan, PeerPlan, PlanMemory, SpeakerKey, plan_node
from herald.agent.stages import Stage, StageTimer, stages_text
from herald.agent.status import AgentStatus, BackendStatus, FrontendStatus, SessionStatus
from herald.api.snapshot import ClusterState
from herald.bgp.export import Network, RouteAttributes
from herald.bgp.peer import PeerConfig
from herald.bgp.speaker import Speaker
from herald.dataplane import maglev
from herald.dataplane.apply import ApplyError, Counter, Datapath, Nft, NftApi
from herald.dataplane.endpoints import usable_backends
from herald.dataplane.libnft import LibNft, LibNftUnavailable
from herald.dataplane.model import (
    NO_PEERS,
    Backend,
    DataplaneService,
    ForwardingMode,
    IPAddress,
    NodeContext,
)
from herald.facts import node_addresses
from herald.netlink.neighbours import NeighbourWatch
from herald.netlink.routes import NetlinkError, UnreachableRoutes
from herald.observe.event import Directory
from herald.observe.reader import FlowReader
from herald.sources.base import Source
from herald.sources.files import SnapshotTiming

log = logging.getLogger(__name__)

# DSR: how often the neighbour table is read for the other nodes' MACs and reachability.
NEIGHBOUR_POLL = 1.0
# A source whose watch fails is watched again after 1 s, doubling to 30 s.
WATCH_RETRY_FIRST, WATCH_RETRY_MAX = 1.0, 30.0


@dataclass(frozen=True)
class AgentConfig:
    node: str
    hash_seed: int = 0x48524C44  # "HRLD": one seed for the whole cluster
    interface: str | None = None
    default_forwarding: ForwardingMode = ForwardingMode.SNAT
    listen_address: str = "::"
    l2: L2Config = field(default_factory=L2Config)
    # The socket of the node's BFD process (agent/bfd.py), whose sessions outlive the agent;
    # None runs BFD in each speaker's own process instead (C bit clear).
    bfd_socket: Path | None = None
    # False: the node's BFD process is started by someone else (a container of its own);
    # the agent only connects to it.
    bfd_spawn: bool = True


@dataclass
class _Applied:
    plan: NodePlan | None = None
    peers: dict[str, tuple[SpeakerKey, PeerConfig]] = field(default_factory=dict)
    applied_at: float | None = None
    apply_ms: float | None = None
    errors: list[str] = field(default_factory=list)
    # A step failed (datapath, BGP, L2): the next snapshot applies the plan again.
    retry: bool = False
    # Why the source keeps an older snapshot (invalid manifests).
    source_problems: tuple[str, ...] = ()
    # VIPs the committed datapath rules serve (kept as they were when a commit fails).
    served: frozenset[IPAddress] = frozenset()


class Agent:
    def __init__(
        self,
        config: AgentConfig,
        source: Source,
        nft: NftApi | None = None,
        unreachable: UnreachableRoutes | None = None,
        on_datapath_applied: Callable[[float, bool], None] | None = None,
        flows: FlowReader | None = None,
    ) -> None:
        self.config = config
        # Told each datapath commit's duration and whether it failed (metrics).
        self.on_datapath_applied = on_datapath_applied
        # Told the stages of every snapshot (agent/stages.py; metrics).
        self.on_stages: Callable[[tuple[Stage, ...]], None] | None = None
        # When the source noticed the change of the snapshot `run` hands on (files).
        self._source_timing: SnapshotTiming | None = None
        # Held while the datapath changes, so that a reader of its counters in a worker
        # thread (a metrics scrape) waits for a commit instead of racing it.
        self._datapath_lock = asyncio.Lock()
        self.source = source
        self._nft = nft or _nftables()
        # Flow events (observe/): named after the plan's Services and pods; the events the
        # rate limit withheld are read through the same nftables handle.
        self.flows = flows
        if flows is not None:
            flows.nft = self._nft
        self._unreachable = unreachable or UnreachableRoutes()
        self._datapath: Datapath | None = None
        # The datapath's `replaced` count the flow-event rate was last set for.
        self._rate_set_for: int | None = None
        self._node_context: NodeContext | None = None
        self._speakers: dict[SpeakerKey, Speaker] = {}
        self._l2 = L2Announcements(config.node, config.l2)
        self._bfd = (
            BfdProcess(config.bfd_socket, spawn=config.bfd_spawn) if config.bfd_socket else None
        )
        self._neighbours = NeighbourWatch(config.interface) if config.interface else None
        self._applied = _Applied()
        # What this node's plans remember between snapshots: a change is planned in the
        # time of the changed objects (agent/plan.py).
        self._plan_memory = PlanMemory()

    async def run(self) -> None:
        log.info("event=agent_started node=%s maglev=%s", self.config.node, maglev.IMPLEMENTATION)
        failures = 0
        if self._bfd is not None:
            self._bfd.start()  # adopts the sessions an earlier agent left running
        neighbours = asyncio.create_task(self._watch_neighbours())
        try:
            while True:
                try:
                    async for snapshot in self.source.snapshots():
                        failures = 0
                        timing = getattr(self.source, "timing", None)
                        if isinstance(timing, SnapshotTiming):
                            self._source_timing = timing
                        await self._apply_guarded(snapshot)
                    return  # the source has ended
                except Exception as err:
                    # The watch itself failed (a watch limit, the directory gone): what is
                    # applied stays applied, and the source is watched again with back-off.
                    delay = min(WATCH_RETRY_FIRST * 2**failures, WATCH_RETRY_MAX)
                    failures += 1
                    log.exception(
                        "event=source_failed node=%s retry_in=%.1f error=%r",
                        self.config.node,
                        delay,
                        err,
                    )
                    self._applied.source_problems = (
                        f"source: watching failed ({err!r}); nothing new is applied; "
                        f"watching again in {delay:.1f} s",
                    )
                    await asyncio.sleep(delay)
        finally:
            neighbours.cancel()
            await self.close()

    async def _watch_neighbours(self) -> None:
        """While DSR services exist: the other nodes' MACs (never forward what they sent)
        and which of them failed to resolve (forward nothing to them) into the datapath."""
        while self._neighbours is not None:
            await asyncio.sleep(NEIGHBOUR_POLL)
            datapath, context = self._datapath, self._node_context
            if datapath is None or context is None:
                continue
            if not any(o.family == "netdev" for o in datapath.base):
                continue
            others = [(n, a) for n, a in context.node_addresses if n != context.node_name]
            try:
                peers = await asyncio.to_thread(self._neighbours.poll, others)
                async with self._datapath_lock:
                    await asyncio.to_thread(datapath.set_peers, peers)
            except (OSError, NetlinkError, ApplyError) as err:
                log.warning("event=neighbours_failed node=%s error=%r", self.config.node, err)

    async def _apply_guarded(self, snapshot: ClusterState) -> None:
        try:
            await self.apply_snapshot(snapshot)
        except Exception as err:
            # A fault no object-level check caught must cost this snapshot, not the node:
            # the agent keeps what it applied (routes, rules, ARP) and retries with the
            # next snapshot.
            log.exception("event=apply_failed node=%s error=%r", self.config.node, err)
            self._applied.errors = [f"agent: applying the snapshot failed: {err!r}"]
            self._applied.retry = True

    async def close(self) -> None:
        self._l2.close()
        for speaker in self._speakers.values():
            with contextlib.suppress(Exception):
                await speaker.close()
        self._speakers.clear()
        if self._bfd is not None:
            await self._bfd.close()  # the process stays, for the next agent
        if self._neighbours is not None:
            self._neighbours.close()
        if self.flows is not None:
            self.flows.close()

    async def apply_snapshot(
        self, snapshot: ClusterState, timing: SnapshotTiming | None = None
    ) -> None:
        start = time.perf_counter()
        timing, self._source_timing = timing or self._source_timing, None
        # From the change the source noticed when it says (files), else from now.
        timer = StageTimer(time.perf_counter, timing.noticed if timing else start)
        if timing is not None:
            timer.mark("source")
        for problem in set(snapshot.problems) - set(self._applied.source_problems):
            log.error("event=source_problem node=%s problem=%r", self.config.node, problem)
        self._applied.source_problems = snapshot.problems
        plan = plan_node(
            snapshot, self.config.node, self.config.default_forwarding, self._plan_memory
        )
        timer.mark("plan")
        previous = self._applied.plan
        if plan == previous and not self._applied.retry:
            # A change elsewhere (another node's pods, a status echo): nothing to do. The
            # plan's own problems come back with the same plan; only a failed step is retried.
            self._stages_done(timer, applied=False)
            return
        errors = [f"plan: {problem}" for problem in plan.problems]
        await self._withdraw_dropped(previous, plan)
        if self._l2.running:
            # Only a running announcer has VIPs to release. A new one starts after the
            # commit: its heartbeats make peers count this node as a candidate, and a
            # restarted agent whose first commit takes seconds must not be chosen to take
            # over a failed node's VIPs before it can serve them.
            still = _served(plan.services, self.config.node)
            errors += await self._l2.apply(plan.l2, self._applied.served & still)
        errors += await self._apply_datapath(snapshot, plan)
        timer.mark("datapath")
        # What the kernel now holds, service by service: a service whose rules were
        # refused keeps its previous ones, and only VIPs whose held rules forward somewhere
        # are announced (BGP) or answered for (L2).
        committed = self._datapath.committed.values() if self._datapath else ()
        self._applied.served = _served(committed, self.config.node)
        errors += await self._guard_aggregates(plan)
        timer.mark("routes")
        errors += await self._apply_peers(plan, self._applied.served)
        if self._speakers:
            # The speakers' writers were woken by the new routes and run before this task
            # resumes: the UPDATEs are on the sockets when the stage ends.
            await asyncio.sleep(0)
        timer.mark("bgp")
        errors += await self._l2.apply(plan.l2, self._applied.served)
        timer.mark("l2")
        elapsed = (time.perf_counter() - start) * 1000
        self._applied.plan = plan
        self._applied.applied_at = time.time()
        self._applied.apply_ms = elapsed
        self._applied.retry = len(errors) > len(plan.problems)
        for error in errors:
            if error not in self._applied.errors:  # each problem once, not on every snapshot
                log.error("event=apply_problem node=%s problem=%r", self.config.node, error)
        self._applied.errors = errors
        log.info(
            "event=plan_applied node=%s services=%d peers=%d routes=%d l2_vips=%d ms=%.1f",
            self.config.node,
            len(plan.services),
            len(plan.peers),
            sum(len(p.routes) for p in plan.peers),
            len(plan.l2.announcements) if plan.l2 else 0,
            elapsed,
        )
        self._stages_done(timer, applied=True, noticed=timing.noticed_wall if timing else None)

    def _stages_done(self, timer: StageTimer, applied: bool, noticed: float | None = None) -> None:
        """One line per snapshot with where its time went (info when it changed anything;
        `noticed` is the Unix time of the change, to follow it across processes)."""
        log.log(
            logging.INFO if applied else logging.DEBUG,
            "event=%s node=%s noticed=%.6f stages=%s total_ms=%.1f",
            "applied" if applied else "unchanged",
            self.config.node,
            noticed or 0.0,
            stages_text(timer.stages),
            timer.total * 1000,
        )
        if self.on_stages is not None:
            self.on_stages(timer.stages)

    # -- the three steps -------------------------------------------------------------------

    async def _withdraw_dropped(self, previous: NodePlan | None, plan: NodePlan) -> None:
        if previous is None:
            return
        wanted = {peer.key: {prefix for prefix, _ in peer.routes} for peer in plan.peers}
        for peer in previous.peers:
            speaker = self._speaker_of(peer.key)
            if speaker is None:
                continue
            keep = wanted.get(peer.key, set())
            speaker.set_routes(
                peer.address, {prefix: attrs for prefix, attrs in peer.routes if prefix in keep}
            )

    async def _apply_datapath(self, snapshot: ClusterState, plan: NodePlan) -> list[str]:
        context = NodeContext(
            node_name=self.config.node,
            hash_seed=self.config.hash_seed,
            node_addresses=node_addresses(snapshot.nodes),
            interface=self.config.interface,
        )
        start, failed = time.perf_counter(), True
        try:
            async with self._datapath_lock:
                if self._datapath is None or context != self._node_context:
                    self._rate_set_for = None
                    self._datapath = Datapath(
                        context,
                        self._nft,
                        peers=self._neighbours.peers if self._neighbours else NO_PEERS,
                    )
                    self._node_context = context
                    await asyncio.to_thread(self._datapath.resync, plan.services)
                else:
                    await asyncio.to_thread(self._datapath.sync, plan.services)
            failed = False
        except ApplyError as err:
            return [f"datapath: {err}"]
        finally:
            if self.on_datapath_applied is not None:
                self.on_datapath_applied(time.perf_counter() - start, failed)
        if self.flows is not None:
            self.flows.directory = Directory.of(plan.services)
            # After the tables were replaced, which gives the limit its default rate; not
            # after every change (two nft listings: ~90 ms of each Service's announcement).
            assert self._datapath is not None
            replaced = self._datapath.replaced
            if self._rate_set_for != replaced:
                try:
                    async with self._datapath_lock:
                        await asyncio.to_thread(self.flows.enforce_rate)
                except OSError as err:
                    return [f"flow events: {err}"]
                self._rate_set_for = replaced
        return []

    async def _guard_aggregates(self, plan: NodePlan) -> list[str]:
        # Before the aggregates are announced; those dropped were withdrawn in step 1.
        try:
            await asyncio.to_thread(self._unreachable.sync, plan.aggregates)
        except (OSError, NetlinkError) as err:
            return [f"routes: unreachable routes for {len(plan.aggregates)} aggregates: {err}"]
        return []

    async def _apply_peers(self, plan: NodePlan, forwarded: frozenset[IPAddress]) -> list[str]:
        errors: list[str] = []
        desired = {peer.key: peer for peer in plan.peers}
        for name, (key, config) in list(self._applied.peers.items()):
            wanted = desired.get(name)
            if wanted is None or (wanted.speaker, wanted.config) != (key, config):
                await self._speakers[key].remove_peer(config.address)
                del self._applied.peers[name]
        for key in [k for k in self._speakers if k not in {p.speaker for p in plan.peers}]:
            await self._speakers.pop(key).close()
        for name, peer in desired.items():
            try:
                speaker = await self._speaker(peer.speaker)
                if name not in self._applied.peers:
                    await speaker.add_peer(peer.config)
                    self._applied.peers[name] = (peer.speaker, peer.config)
                speaker.set_routes(peer.address, _routes(peer, forwarded))
            except (OSError, ValueError) as err:
                errors.append(f"bgp: peer {name} ({peer.address}): {err}")
        if self._bfd is not None:
            await self._bfd.commit()  # the sessions of every speaker, as one change
        return errors

    # -- speakers --------------------------------------------------------------------------

    async def _speaker(self, key: SpeakerKey) -> Speaker:
        speaker = self._speakers.get(key)
        if speaker is None:
            # Every start is announced as a restart: a peer that kept our routes (graceful
            # restart) holds them until we re-send them and End-of-RIB.
            speaker = Speaker(
                key.local_asn,
                ipaddress.IPv4Address(key.router_id),
                listen=(self.config.listen_address, key.listen_port),
                restarting=True,
                bfd=self._bfd,
            )
            await speaker.start()
            self._speakers[key] = speaker
        return speaker

    def _speaker_of(self, peer_key: str) -> Speaker | None:
        applied = self._applied.peers.get(peer_key)
        return self._speakers.get(applied[0]) if applied else None

    # -- status ----------------------------------------------------------------------------

    def _frontends(self) -> tuple[FrontendStatus, ...]:
        if self._datapath is None:
            return ()
        try:
            counted = self._datapath.counters()
        except (OSError, ValueError) as err:  # the listing stays useful without counters
            log.warning("event=counters_unreadable node=%s error=%r", self.config.node, err)
            counted = {}
        return frontends(self._datapath.committed.values(), counted)

    async def counted_status(self) -> AgentStatus:
        """`status(frontends=True)` without blocking the loop (metrics scrapes): the nft
        counters are read and the frontends built in a worker thread, between commits."""
        async with self._datapath_lock:
            rows = await asyncio.to_thread(self._frontends)
        return self.status().model_copy(update={"frontends": rows})

    def status(self, frontends: bool = False) -> AgentStatus:
        """What the agent applied, its sessions, L2 view and problems; with `frontends`,
        every frontend its committed rules forward (costly for large Services)."""
        plan = self._applied.plan
        peers = []
        for name, (key, config) in sorted(self._applied.peers.items()):
            speaker = self._speakers[key]
            for status in speaker.status():
                if status.peer != config.address:
                    continue
                peers.append(
                    SessionStatus(
                        name=name,
                        local_as=key.local_asn,
                        peer=str(status.peer),
                        peer_as=status.peer_as,
                        state=status.state.value,
                        uptime_seconds=status.uptime,
                        received=status.received_prefixes,
                        advertised=status.advertised_prefixes,
                        last_down=status.last_down,
                        bfd=status.bfd,
                        families=status.families,
                        unsent=status.unsent_prefixes,
                        unsent_families=status.unsent_families,
                        updates_sent=status.updates_out,
                        updates_received=status.updates_in,
                        routes=tuple(
                            sorted(
                                str(prefix.network)
                                for prefix in speaker.advertised_routes(status.peer)
                            )
                        ),
                    )
                )
        return AgentStatus(
            node=self.config.node,
            frontends=self._frontends() if frontends else (),
            applied_at=self._applied.applied_at,
            apply_ms=self._applied.apply_ms,
            services=tuple(s.key for s in plan.services) if plan else (),
            peers=tuple(peers),
            l2=self._l2.status(),
            problems=(
                *self._applied.source_problems,
                *self._applied.errors,
                *self._l2.problems(),
                *(self._bfd.problems() if self._bfd is not None else ()),
                *(_unsent(peer) for peer in peers if peer.unsent),
            ),
        )


def frontends(
    services: Iterable[DataplaneService], counters: Mapping[str, Counter]
) -> tuple[FrontendStatus, ...]:
    """What `herald service list` shows of one node (pure): each frontend of each Service
    the kernel holds, with its backends and their state, and the Service's counters."""
    rows = []
    for service in sorted(services, key=lambda s: s.key):
        counted = counters.get(service.key)
        for vip in service.vips:
            for port in service.ports:
                host = f"[{vip}]" if vip.version == 6 else str(vip)
                rows.append(
                    FrontendStatus(
                        service=service.key,
                        frontend=f"{host}:{port.port}/{port.protocol.value.upper()}",
                        mode=service.forwarding_mode.value,
                        traffic_policy=service.external_traffic_policy.value,
                        backends=tuple(
                            BackendStatus(
                                address=str(b.address),
                                port=port.target_port,
                                node=b.node,
                                pod=b.pod,
                                state=_state(b),
                            )
                            for b in service.backends
                            if b.version == vip.version
                        ),
                        packets=counted.packets if counted else None,
                        bytes=counted.bytes if counted else None,
                    )
                )
    return tuple(rows)


def _state(backend: Backend) -> str:
    if backend.ready:
        return "active"
    return "terminating" if backend.terminating and backend.serving else "not-ready"


def _unsent(peer: SessionStatus) -> str:
    """Routes the plan announces that a session cannot carry: said, not skipped silently."""
    return (
        f"bgp: peer {peer.name} ({peer.peer}): {peer.unsent} routes of "
        f"{', '.join(peer.unsent_families)} not sent: the peer did not negotiate that family "
        f"(negotiated: {', '.join(peer.families) or 'none'}); enable it on the router"
    )


def _nftables() -> NftApi:
    """libnftables in this process when it loads (no process per change), else `nft`."""
    try:
        return LibNft()
    except LibNftUnavailable as err:
        log.warning("event=libnftables_unavailable fallback=nft error=%r", str(err))
        return Nft()


def _served(services: Iterable[DataplaneService], node: str) -> frozenset[IPAddress]:
    """The VIPs whose rules forward somewhere. A Service's rules with no usable backend
    reject its traffic: answering ARP for its VIP on the strength of those rules, while the
    rules that add its first backends are still being committed, would turn clients away."""
    return frozenset(
        vip for service in services if usable_backends(service, node) for vip in service.vips
    )


def _routes(peer: PeerPlan, forwarded: frozenset[IPAddress]) -> Mapping[Network, RouteAttributes]:
    """The peer's routes but those of Service addresses whose rules, as the kernel holds
    them, forward nowhere (refused or not renderable here, so the previous rules stay, or
    no usable backend): never announce what you cannot forward. An aggregate goes while
    one of its addresses is forwarded."""
    return {
        prefix: attributes
        for prefix, attributes in peer.routes
        if not (carried := peer.carried_by(prefix)) or any(a in forwarded for a in carried)
    }
