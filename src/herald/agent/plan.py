"""NodePlan: everything one node must announce and forward, computed from a snapshot (pure).

`plan_node(state, node)` decides:
- the BGP sessions this node runs (BGPClusterConfig instances whose nodeSelector selects
  the node, with their BGPPeerConfig resolved) and, per session, the routes to announce
  with their path attributes (BGPAdvertisement objects selected by the session's families);
- the Services the datapath must forward on this node, translated out of the Kubernetes
  objects into the datapath's own model;
- in L2 mode (an L2AnnouncementPolicy selects the node), the inputs of the owner choice:
  the nodes that exchange heartbeats and every L2 announcement of the segment. Owners are
  not chosen here: they depend on which nodes are alive, which the announcer learns.

A Service address is announced by a node only while it can be served (`facts.can_serve`:
the one endpoint rule, shared with L2 and the datapath). The shell applies the datapath
before it announces and withdraws before it removes rules; the plan only says what should
be.

This is the only place that turns API objects into what the speaker, the L2 announcer and
the datapath consume, validated: a Service, peer or policy that cannot be translated
becomes a problem naming it, and every other object is still planned.

A node plans every snapshot, and one change in a cluster of 10,000 Services must not cost
10,000 Services: the plan is kept, in a PlanMemory, as each Service's share of the routes,
the datapath and the problems, and the next snapshot (which hands unchanged objects on)
replaces only the shares of the Services it changed. The result is the same as a plan from
nothing, which is what the first plan and a change of a cluster-wide object make.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import ipaddress
import itertools
import operator
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, cast

from herald.addresses import address_order, network_order
from herald.api.bfd import BFDProfileSpec
from herald.api.bgp import (
    WELL_KNOWN_COMMUNITIES,
    Advertisement,
    AdvertisementAttributes,
    BGPPeer,
    BGPPeerConfigSpec,
    parse_large_community,
    parse_standard_community,
)
from herald.api.core import (
    ANNOTATION_FORWARDING_MODE,
    ANNOTATION_ICMP_ECHO,
    LB_CLASS_BGP,
    EndpointSlice,
    Node,
    Service,
)
from herald.api.selector import matches
from herald.api.snapshot import ClusterState
from herald.bfd.session import Timers
from herald.bgp.export import RouteAttributes
from herald.bgp.peer import PeerConfig
from herald.bgp.wire import IPV4_UNICAST, IPV6_UNICAST, Family, LargeCommunity
from herald.dataplane.model import (
    Backend,
    DataplaneService,
    ForwardingMode,
    IPAddress,
    IPNetwork,
    Protocol,
    ServicePort,
    SessionAffinity,
    TrafficPolicy,
)
from herald.facts import (
    backends,
    heartbeat_address,
    internal_addresses,
    is_handled,
    lb_addresses,
    parse_address,
    router_id,
    serves,
    service_labels,
)
from herald.l2.policy import Announcement, announcements


@dataclass(frozen=True)
class SpeakerKey:
    """One speaker per BGP instance: its AS, identifier and listening port."""

    instance: str
    local_asn: int
    router_id: str
    listen_port: int


Routes = tuple[tuple[IPNetwork, RouteAttributes], ...]
Carries = tuple[tuple[IPNetwork, tuple[IPAddress, ...]], ...]


@dataclass(frozen=True)
class PeerPlan:
    """One BGP session of this node, as the speaker takes it, and what it announces."""

    speaker: SpeakerKey
    name: str
    config: PeerConfig
    routes: Routes = ()
    # The Service addresses a route announces (none for a pod CIDR): the agent announces
    # a route only while its rules forward one of them.
    carries: Carries = ()

    def carried_by(self, network: IPNetwork) -> tuple[IPAddress, ...]:
        return dict(self.carries).get(network, ())

    @property
    def key(self) -> str:
        return f"{self.speaker.instance}/{self.name}"

    @property
    def address(self) -> IPAddress:
        return self.config.address


@dataclass(frozen=True)
class L2Plan:
    """What this node's L2 announcer needs from the snapshot.

    `announcements` holds every VIP of the segment, not only this node's: the owner choice
    caps each node's load over all VIPs, and every agent must compute it from the same input
    to reach the same owners.
    """

    # Nodes some L2AnnouncementPolicy selects, with their InternalIP: the heartbeat peers
    # (this node included). A node without an InternalIP cannot be heard and is left out.
    members: tuple[tuple[str, IPAddress], ...] = ()
    announcements: tuple[Announcement, ...] = ()

    def peers_of(self, node: str) -> dict[str, IPAddress]:
        return {name: address for name, address in self.members if name != node}

    def address_of(self, node: str) -> IPAddress | None:
        return next((address for name, address in self.members if name == node), None)


@dataclass(frozen=True)
class NodePlan:
    node: str
    peers: tuple[PeerPlan, ...] = ()
    services: tuple[DataplaneService, ...] = ()
    # None: no L2AnnouncementPolicy selects this node, the agent runs no announcer.
    l2: L2Plan | None = None
    # Things the plan could not honour (a named port no endpoint defines, a missing
    # secret key...): logged by the agent, shown by `herald status`.
    problems: tuple[str, ...] = field(default=())
    # Covering prefixes announced for Service addresses (aggregation): the node makes them
    # unreachable so that traffic to their unused addresses is not routed back.
    aggregates: tuple[IPNetwork, ...] = ()


def plan_node(
    state: ClusterState,
    node_name: str,
    default_forwarding: ForwardingMode = ForwardingMode.SNAT,
    memory: PlanMemory | None = None,
) -> NodePlan:
    """The plan of `node_name` for `state`. `memory` is what its caller keeps from one plan
    of the node to the next (see PlanMemory); without one, the memory kept here for the last
    few nodes planned is used."""
    if memory is None:
        memory = _memory_of(node_name, default_forwarding)
    return memory.plan(state, node_name, default_forwarding)


class PlanMemory:
    """What the plans of one node remember from one snapshot to the next, owned by whoever
    plans (the agent, for its node): the last snapshot and, per Service, what it gave the
    routes, the datapath and the problems. A snapshot that hands unchanged objects on (the
    same instances, as the Kubernetes source does) is planned in the time of its changed
    Services and EndpointSlices, with the same result as a plan from nothing
    (tests/unit/agent/test_plan_incremental.py).

    The plan starts from nothing when there is nothing to follow: the first plan, another
    node or forwarding mode, a changed BGPClusterConfig, BGPPeerConfig, BGPAdvertisement,
    Secret or BFDProfile, a change of this node's labels, addresses or pod CIDRs, a snapshot
    that reorders its EndpointSlices or holds one Service key twice, or a plan that raised.
    The L2 part is planned whole every time (`l2.policy.announcements` reads every
    Service).
    """

    def __init__(self) -> None:
        self._planned: _Planned | None = None
        # The web view plans in worker threads: one plan at a time changes a memory.
        self._lock = threading.Lock()

    def plan(self, state: ClusterState, node_name: str, mode: ForwardingMode) -> NodePlan:
        with self._lock:
            # Taken out while it changes: a plan that raises leaves nothing half-updated.
            planned, self._planned = self._planned, None
            if planned is None or not planned.follow(state, node_name, mode):
                planned = _Planned(state, node_name, mode)
            plan = planned.result(state)
            self._planned = planned
            return plan


# The memories of callers that keep none (`herald explain` plans node after node): a few
# nodes, since each holds a snapshot's worth of routes and Services.
_MEMORIES = 4
_memories: OrderedDict[tuple[str, ForwardingMode], PlanMemory] = OrderedDict()


_memories_lock = threading.Lock()


def _memory_of(node_name: str, mode: ForwardingMode) -> PlanMemory:
    key = (node_name, mode)
    with _memories_lock:
        memory = _memories.pop(key, None) or PlanMemory()
        _memories[key] = memory
        while len(_memories) > _MEMORIES:
            _memories.popitem(last=False)
        return memory


# Kinds whose change re-plans every Service (rare objects, read by every route).
_CLUSTER_WIDE = (
    "bgp_cluster_configs",
    "bgp_peer_configs",
    "bgp_advertisements",
    "secrets",
    "bfd_profiles",
)
# More changed positions than this in a snapshot's list: compared as sets of objects.
_FEW = 64


class _Planned:
    """One node's plan of the last snapshot, kept in the parts a change touches: each
    Service's share of the routes, the datapath's Services and the problems, each kept in
    its final order."""

    def __init__(self, state: ClusterState, node_name: str, mode: ForwardingMode) -> None:
        self.node_name = node_name
        self.mode = mode
        self.state = state
        self.node_object = _node_object(state, node_name)
        self.node = self.node_object or _unlisted_node(node_name)
        self.sessions = _Sessions(state, self.node)
        self.services = {svc.key: svc for svc in state.services}
        self.slices = dict(state.endpoint_slices_by_service)
        # Where each EndpointSlice is in the snapshot: a Service's slices keep that order.
        self.slice_at = dict(zip(map(id, state.endpoint_slices), itertools.count()))
        # A Service key or EndpointSlice listed twice (no source does it): planned whole.
        self.followable = len(self.services) == len(state.services) and len(self.slice_at) == len(
            state.endpoint_slices
        )
        # Per Service herald handles: its share of each peer config's routes.
        self.entries: dict[str, dict[_Shared, _Contribution]] = {}
        self.dataplane: _Sorted[str, DataplaneService] = _Sorted(_itself)
        self.unannounced: _Sorted[str, tuple[str, ...]] = _Sorted(_itself)
        self.refused: _Sorted[str, tuple[str, ...]] = _Sorted(_itself)
        for key, svc in self.services.items():
            self._learn(key, svc)
        for gone in _derived.keys() - self.entries.keys():
            del _derived[gone]

    def follow(self, state: ClusterState, node_name: str, mode: ForwardingMode) -> bool:
        """Take `state` in, planning again only what changed since the last snapshot; False
        when the plan must start from nothing (this one is then left half-updated)."""
        if not self.followable or (node_name, mode) != (self.node_name, self.mode):
            return False
        old, self.state = self.state, state
        if state is old:
            return True
        if not all(_same(getattr(old, kind), getattr(state, kind)) for kind in _CLUSTER_WIDE):
            return False
        if not _same(old.nodes, state.nodes):
            node_object = _node_object(state, node_name)
            # Kubelets rewrite their Node's conditions: only what a plan reads counts.
            if _node_facts(node_object) != _node_facts(self.node_object):
                return False
            self.node_object = node_object
            self.node = node_object or self.node
        slices = self._slices_changed(old.endpoint_slices, state.endpoint_slices)
        if slices is None:
            return False
        affected = self._regroup(*slices)
        removed, added = _changed(old.services, state.services)
        for svc in removed:
            affected.add(svc.key)
            if self.services.get(svc.key) is svc:
                del self.services[svc.key]
        for svc in added:
            affected.add(svc.key)
            self.services[svc.key] = svc
        if len(self.services) != len(state.services):
            return False
        for key in affected:
            self._forget(key)
            current = self.services.get(key)
            if current is not None:
                self._learn(key, current)
            if key not in self.entries:
                _derived.pop(key, None)
        return True

    def result(self, state: ClusterState) -> NodePlan:
        self.sessions.settle()
        problems = self.sessions.problems(self.node_name)
        problems += itertools.chain.from_iterable(self.unannounced.values())
        problems += itertools.chain.from_iterable(self.refused.values())
        try:
            l2 = _l2_plan(state, self.node, problems)
        except ValueError as err:
            problems.append(f"L2AnnouncementPolicy: {_reason(err)}; no L2 announcements")
            l2 = None
        return NodePlan(
            node=self.node_name,
            aggregates=self.sessions.aggregates(),
            peers=self.sessions.peers(),
            services=self.dataplane.values(),
            l2=l2,
            problems=tuple(problems),
        )

    def _slices_changed(
        self, old: tuple[EndpointSlice, ...], new: tuple[EndpointSlice, ...]
    ) -> tuple[list[EndpointSlice], list[EndpointSlice]] | None:
        """(removed, added) EndpointSlices, `slice_at` moved on to `new`; None when the
        snapshot reorders them or lists one twice."""
        if old is new:
            return [], []
        at = _differing(old, new)
        if at is not None:
            removed = [old[i] for i in at]
            for eps in removed:
                del self.slice_at[id(eps)]
            for i in at:
                self.slice_at[id(new[i])] = i
            return (removed, [new[i] for i in at]) if len(self.slice_at) == len(new) else None
        slice_at = dict(zip(map(id, new), itertools.count()))
        if len(slice_at) != len(new):
            return None
        kept = cast("list[int]", list(filter(_is_position, map(slice_at.get, map(id, old)))))
        if any(map(operator.gt, kept, itertools.islice(kept, 1, None))):
            return None
        removed = [old[self.slice_at[i]] for i in self.slice_at.keys() - slice_at.keys()]
        added = [new[slice_at[i]] for i in slice_at.keys() - self.slice_at.keys()]
        self.slice_at = slice_at
        return removed, added

    def _regroup(self, removed: list[EndpointSlice], added: list[EndpointSlice]) -> set[str]:
        """The Services whose EndpointSlices changed, their groups updated."""
        gone = {id(eps) for eps in removed}
        joined: dict[str, list[EndpointSlice]] = {eps.service_key: [] for eps in removed}
        for eps in added:
            joined.setdefault(eps.service_key, []).append(eps)
        for key, arrived in joined.items():
            members = [eps for eps in self.slices.get(key, ()) if id(eps) not in gone]
            members += arrived
            members.sort(key=lambda eps: self.slice_at[id(eps)])
            if members:
                self.slices[key] = tuple(members)
            else:
                self.slices.pop(key, None)
        return set(joined)

    def _learn(self, key: str, svc: Service) -> None:
        """Plan one Service: its routes, its datapath Service and its problems."""
        if not (is_handled(svc) and lb_addresses(svc)):
            return
        derived = _derive(svc, self.slices.get(key, ()))
        servable = derived.serves(self.node_name)
        shares = self.entries[key] = self.sessions.add(svc, servable)
        announced = _union([share.announced for share in shares.values()])
        wanted = _union([share.wanted for share in shares.values()])
        if servable and wanted - announced:
            self.unannounced.put(key, _unannounced(key, wanted - announced, self.node_name))
        try:
            found, problems = derived.translated(announced, self.mode)
        except ValueError as err:
            self.refused.put(key, (f"Service {key}: {_reason(err)}; not forwarded on this node",))
            return
        if problems:
            self.refused.put(key, tuple(problems))
        if found is not None:
            self.dataplane.put(key, found)

    def _forget(self, key: str) -> None:
        shares = self.entries.pop(key, None)
        if shares:
            self.sessions.withdraw(shares)
        self.dataplane.pop(key)
        self.unannounced.pop(key)
        self.refused.pop(key)


def _same(old: tuple[object, ...], new: tuple[object, ...]) -> bool:
    """The same objects, in the same order (compared by identity, at C speed)."""
    return old is new or (len(old) == len(new) and all(map(operator.is_, old, new)))


def _differing(old: tuple[object, ...], new: tuple[object, ...]) -> list[int] | None:
    """The positions where two lists of one length hold other objects; None when the
    lengths differ or they are many (then compared as sets)."""
    if len(old) != len(new):
        return None
    at = list(itertools.compress(itertools.count(), map(operator.is_not, old, new)))
    return at if len(at) <= _FEW else None


def _changed(
    old: tuple[Service, ...], new: tuple[Service, ...]
) -> tuple[list[Service], list[Service]]:
    """(removed, added) objects between two lists, by identity."""
    at = _differing(old, new)
    if at is not None:
        return [old[i] for i in at], [new[i] for i in at]
    before = dict(zip(map(id, old), old, strict=True))
    after = dict(zip(map(id, new), new, strict=True))
    return (
        [before[i] for i in before.keys() - after.keys()],
        [after[i] for i in after.keys() - before.keys()],
    )


_is_position: Callable[[object], bool] = functools.partial(operator.is_not, None)


def _union(sets: list[frozenset[IPAddress]]) -> frozenset[IPAddress]:
    return sets[0] if len(sets) == 1 else frozenset().union(*sets)


def _itself(key: str) -> str:
    return key


def _unannounced(key: str, missing: frozenset[IPAddress], node: str) -> tuple[str, ...]:
    """Addresses an advertisement selects that no session of this node can carry (an IPv6
    address where every selecting session is IPv4 only): said, never skipped silently."""
    return tuple(
        f"Service {key}: {address} is selected by a BGPAdvertisement but no BGP "
        f"session of node {node} announces it: no session has family "
        f"ipv{address.version} with that advertisement, or (IPv6 over IPv4 "
        "transport) the node has no IPv6 next hop"
        for address in sorted(missing, key=address_order)
    )


K = TypeVar("K")
V = TypeVar("V")


class _Sorted(Generic[K, V]):
    """Values in the order of their keys, kept in order as they change: after a change the
    plan copies its tuples (C speed) instead of sorting every value again."""

    def __init__(self, order: Callable[[K], Any]) -> None:
        self._order = order
        self._values: dict[K, V] = {}
        # Filled by the first `values()`: before it, values are only collected (a first
        # plan sorts once rather than inserting one by one).
        self._orders: list[Any] | None = None
        self._items: list[V] = []
        self._tuple: tuple[V, ...] | None = None

    def put(self, key: K, value: V) -> None:
        if self._orders is not None:
            order = self._order(key)
            at = bisect.bisect_left(self._orders, order)
            if key in self._values:
                self._items[at] = value
            else:
                self._orders.insert(at, order)
                self._items.insert(at, value)
        self._values[key] = value
        self._tuple = None

    def pop(self, key: K) -> None:
        if key not in self._values:
            return
        del self._values[key]
        if self._orders is not None:
            at = bisect.bisect_left(self._orders, self._order(key))
            del self._orders[at]
            del self._items[at]
        self._tuple = None

    def values(self) -> tuple[V, ...]:
        if self._tuple is None:
            if self._orders is None:
                ordered = sorted(
                    ((self._order(k), v) for k, v in self._values.items()),
                    key=operator.itemgetter(0),
                )
                self._orders = [order for order, _ in ordered]
                self._items = [value for _, value in ordered]
            self._tuple = tuple(self._items)
        return self._tuple


@dataclass
class _Derived:
    """What a plan derives from one Service and its EndpointSlices, whatever the node."""

    service: Service
    slices: tuple[EndpointSlice, ...]
    backends: tuple[Backend, ...]
    _serves: dict[str, bool] = field(default_factory=dict)
    _translated: dict[
        tuple[frozenset[IPAddress], ForwardingMode], tuple[DataplaneService | None, list[str]]
    ] = field(default_factory=dict)

    def serves(self, node: str) -> bool:
        if node not in self._serves:
            self._serves[node] = serves(self.service, self.backends, node)
        return self._serves[node]

    def translated(
        self, announced: frozenset[IPAddress], mode: ForwardingMode
    ) -> tuple[DataplaneService | None, list[str]]:
        """`_dataplane_service`, remembered (a refusal, ValueError, is not)."""
        key = (announced, mode)
        if key not in self._translated:
            self._translated[key] = _dataplane_service(
                self.service, self.slices, self.backends, set(announced), mode
            )
        return self._translated[key]


# Each Service's derived results from the previous plans, by Service key, reused while the
# Service and its EndpointSlices are the very objects they came from: API objects are frozen
# and the Kubernetes source hands unchanged ones on. Shared by every node's PlanMemory, so
# that a process planning node after node (`herald explain`) derives each Service once; a
# plan from nothing keeps only its snapshot's Services, a following plan drops the ones it
# saw removed.
_derived: dict[str, _Derived] = {}


def _derive(svc: Service, slices: tuple[EndpointSlice, ...]) -> _Derived:
    seen = _derived.get(svc.key)
    if (
        seen is None
        or seen.service is not svc
        or len(seen.slices) != len(slices)
        or any(a is not b for a, b in zip(seen.slices, slices, strict=True))
    ):
        seen = _derived[svc.key] = _Derived(svc, slices, backends(slices))
    return seen


def _reason(err: Exception) -> str:
    return str(err) if not isinstance(err, KeyError) else f"{err.args[0]} not found"


# -- L2 ----------------------------------------------------------------------------------


def _l2_plan(state: ClusterState, node: Node, problems: list[str]) -> L2Plan | None:
    policies = state.l2_policies
    if not any(matches(p.spec.node_selector, node.metadata.labels) for p in policies):
        return None
    members = []
    for other in state.nodes:
        if not any(matches(p.spec.node_selector, other.metadata.labels) for p in policies):
            continue
        address = heartbeat_address(other)
        if address is None:
            problems.append(
                f"Node {other.metadata.name}: no InternalIP in status.addresses; it takes no "
                "part in L2 announcements (heartbeats go to node addresses)"
            )
            continue
        members.append((other.metadata.name, address))
    return L2Plan(members=tuple(sorted(members)), announcements=announcements(state))


# -- BGP ---------------------------------------------------------------------------------

# Sessions of one peer config (None: no peerConfigRef) that carry the same IP versions
# announce the same routes: one route table each.
_Shared = tuple[str | None, frozenset[int]]
# (route, its attributes, the Service address it announces: None for a pod CIDR)
_Route = tuple[IPNetwork, RouteAttributes, IPAddress | None]


@dataclass(frozen=True, slots=True)
class _Contribution:
    """What one Service (or the node's pod CIDRs) gives one route table."""

    routes: tuple[_Route, ...] = ()
    # Routes of a family the sessions have but cannot carry (see `_carried`).
    held: tuple[IPNetwork, ...] = ()
    # The Service's addresses the table announces, and those its advertisements select for
    # any family (the difference is said: `_unannounced`).
    announced: frozenset[IPAddress] = frozenset()
    wanted: frozenset[IPAddress] = frozenset()


@dataclass(frozen=True)
class _Held:
    """A place in the problems for a session's count of routes held back."""

    where: str
    shared: _Shared


class _Sessions:
    """This node's BGP sessions, what their configs got wrong, and their route tables."""

    def __init__(self, state: ClusterState, node: Node) -> None:
        self.items: list[str | _Held] = []
        self.sessions: list[tuple[SpeakerKey, str, PeerConfig, _Shared]] = []
        self.tables: dict[_Shared, _RouteTable] = {}
        name = node.metadata.name
        for config in state.bgp_cluster_configs:
            if not matches(config.spec.node_selector, node.metadata.labels):
                continue
            for instance in config.spec.bgp_instances:
                subject = f"BGPClusterConfig {config.metadata.name} instance {instance.name}"
                speaker_id = instance.router_id or router_id(node)
                if speaker_id is None:
                    self.items.append(
                        f"{subject}: no routerID and node {name} has no IPv4 InternalIP; "
                        "set spec.bgpInstances[].routerID; its peers are not started"
                    )
                    continue
                speaker = SpeakerKey(
                    instance.name, instance.local_asn, speaker_id, instance.local_port
                )
                for peer in instance.peers:
                    where = f"{subject} peer {peer.name}"
                    problems: list[str] = []
                    try:
                        spec = _peer_config(state, peer)
                        config_ = _speaker_peer(state, peer, spec, node, problems)
                    except (ValueError, KeyError) as err:
                        self.items += problems
                        self.items.append(f"{where}: {_reason(err)}; not started")
                        continue
                    self.items += problems
                    carried = _carried(config_)
                    shared = (peer.peer_config_ref.name if peer.peer_config_ref else None, carried)
                    if shared not in self.tables:
                        self.tables[shared] = _RouteTable(state, spec, carried, node)
                    self.items.append(_Held(where, shared))
                    self.sessions.append((speaker, peer.name, config_, shared))

    def add(self, svc: Service, servable: bool) -> dict[_Shared, _Contribution]:
        """Add a Service's routes to every table; its share of each, to withdraw it later."""
        if not servable or svc.spec.load_balancer_class not in (None, LB_CLASS_BGP):
            return {}
        labels = service_labels(svc)
        shares = {}
        for shared, table in self.tables.items():
            share = table.share(svc, labels)
            if share is not None:
                table.add(share)
                shares[shared] = share
        return shares

    def withdraw(self, shares: Mapping[_Shared, _Contribution]) -> None:
        for shared, share in shares.items():
            self.tables[shared].withdraw(share)

    def settle(self) -> None:
        for table in self.tables.values():
            table.settle()

    def problems(self, node_name: str) -> list[str]:
        problems = []
        for item in self.items:
            if isinstance(item, str):
                problems.append(item)
            elif held := len(self.tables[item.shared].held):
                problems.append(
                    f"{item.where}: {held} IPv6 routes not announced: family ipv6 "
                    f"over IPv4 transport needs an IPv6 next hop and node {node_name} has "
                    "no IPv6 InternalIP"
                )
        return problems

    def peers(self) -> tuple[PeerPlan, ...]:
        peers = (
            PeerPlan(
                speaker,
                name,
                config,
                self.tables[shared].routes.values(),
                self.tables[shared].carries.values(),
            )
            for speaker, name, config, shared in self.sessions
        )
        return tuple(sorted(peers, key=lambda p: p.key))

    def aggregates(self) -> tuple[IPNetwork, ...]:
        """Covering prefixes that carry Service addresses (aggregation)."""
        found = set().union(*(table.aggregated for table in self.tables.values()))
        return tuple(sorted(found, key=network_order))


class _RouteTable:
    """The routes of the sessions of one peer config: each route's attributes merged over
    every advertisement of it, kept per route, so that a Service's change merges again only
    the routes it takes part in."""

    def __init__(
        self, state: ClusterState, spec: BGPPeerConfigSpec, carried: frozenset[int], node: Node
    ) -> None:
        self.carried = carried
        # (IP version of the family, advertisement, its attributes), for Services.
        self.selections: list[tuple[int, Advertisement, RouteAttributes]] = []
        pod_routes: list[_Route] = []
        pod_held: list[IPNetwork] = []
        for family in spec.families:
            version = 4 if family.afi == "ipv4" else 6
            if family.advertisements is None:
                continue
            for advertisement_object in state.bgp_advertisements:
                if not matches(family.advertisements, advertisement_object.metadata.labels):
                    continue
                for advertisement in advertisement_object.spec.advertisements:
                    attributes = _attributes(advertisement.attributes)
                    if advertisement.advertisement_type != "PodCIDR":
                        self.selections.append((version, advertisement, attributes))
                        continue
                    for network in _pod_cidrs(node):
                        if network.version != version:
                            continue
                        if version not in carried:
                            pod_held.append(network)
                        else:
                            pod_routes.append((network, attributes, None))
        self.routes: _Sorted[IPNetwork, tuple[IPNetwork, RouteAttributes]]
        self.routes = _Sorted(network_order)
        self.carries: _Sorted[IPNetwork, tuple[IPNetwork, tuple[IPAddress, ...]]]
        self.carries = _Sorted(network_order)
        # Per route, how many times each attributes value and Service address take part,
        # and, once it carries more than one, its addresses in order (an aggregate may carry
        # thousands; most routes carry one, and a first plan makes 10,000 of them).
        self._attributes: dict[IPNetwork, dict[RouteAttributes, int]] = {}
        self._addresses: dict[IPNetwork, dict[IPAddress, int]] = {}
        self._ordered: dict[IPNetwork, _Sorted[IPAddress, IPAddress]] = {}
        self.held: dict[IPNetwork, int] = {}
        self.aggregated: set[IPNetwork] = set()
        self._dirty: set[IPNetwork] = set()
        self.add(_Contribution(tuple(pod_routes), tuple(pod_held)))

    def share(self, svc: Service, labels: Mapping[str, str]) -> _Contribution | None:
        """The routes the advertisements give a Service that can be served from the node;
        an address goes in its covering prefix when the advertisement aggregates."""
        routes: list[_Route] = []
        held: list[IPNetwork] = []
        announced: set[IPAddress] = set()
        wanted: set[IPAddress] = set()
        for version, advertisement, attributes in self.selections:
            if not matches(advertisement.selector, labels):
                continue
            kinds = advertisement.service.addresses if advertisement.service else _LB_IP
            for text in _addresses(svc, kinds):
                address = parse_address(text)
                network = _covering(address, advertisement.prefix_length(address.version))
                wanted.add(address)
                if network.version != version:
                    continue
                if version not in self.carried:
                    held.append(network)
                    continue
                routes.append((network, attributes, address))
                announced.add(address)
        if not (routes or held or wanted):
            return None
        selected = frozenset(wanted)
        # Usually every selected address is announced: one set for both (a first plan keeps
        # one per Service, and fewer objects mean fewer full collections).
        carried = selected if announced == wanted else frozenset(announced)
        return _Contribution(tuple(routes), tuple(held), carried, selected)

    def add(self, share: _Contribution) -> None:
        for network, attributes, address in share.routes:
            _count(self._attributes.setdefault(network, {}), attributes, 1)
            if address is not None:
                counts = self._addresses.setdefault(network, {})
                if counts and address not in counts:
                    ordered = self._ordered.get(network)
                    if ordered is None:
                        ordered = self._ordered[network] = _Sorted(address_order)
                        for known in counts:
                            ordered.put(known, known)
                    ordered.put(address, address)
                _count(counts, address, 1)
        for network in share.held:
            _count(self.held, network, 1)
        self._dirty.update(route[0] for route in share.routes)

    def withdraw(self, share: _Contribution) -> None:
        for network, attributes, address in share.routes:
            if not _count(self._attributes[network], attributes, -1):
                del self._attributes[network]
            if address is None:
                continue
            counts = self._addresses[network]
            _count(counts, address, -1)
            ordered = self._ordered.get(network)
            if ordered is not None and address not in counts:
                ordered.pop(address)
            if not counts:
                del self._addresses[network]
                self._ordered.pop(network, None)
        for network in share.held:
            _count(self.held, network, -1)
        self._dirty.update(route[0] for route in share.routes)

    def settle(self) -> None:
        """Merge again the routes that changed, once each (an aggregate a first plan fills
        with 10,000 addresses is sorted once, not 10,000 times)."""
        for network in self._dirty:
            self._refresh(network)
        self._dirty.clear()

    def _refresh(self, network: IPNetwork) -> None:
        attributes = self._attributes.get(network)
        if attributes is None:
            self.routes.pop(network)
        else:
            merged = None
            for value in attributes:
                merged = _merge(merged, value)
            assert merged is not None
            self.routes.put(network, (network, merged))
        counts = self._addresses.get(network)
        if counts is None:
            self.carries.pop(network)
            self.aggregated.discard(network)
        else:
            ordered = self._ordered.get(network)
            # Without an order kept, the route has only ever carried one address at a time.
            addresses = ordered.values() if ordered is not None else tuple(counts)
            self.carries.put(network, (network, addresses))
            if network.prefixlen < network.max_prefixlen:
                self.aggregated.add(network)


_LB_IP = ("LoadBalancerIP",)


def _count(counts: dict[Any, int], key: Any, step: int) -> int:
    """Add `step` to a count, forgetting it at zero; the number of keys left counted."""
    left = counts.get(key, 0) + step
    if left:
        counts[key] = left
    else:
        del counts[key]
    return len(counts)


def _pod_cidrs(node: Node) -> Iterable[IPNetwork]:
    for cidr in node.spec.pod_cidrs or ((node.spec.pod_cidr,) if node.spec.pod_cidr else ()):
        yield ipaddress.ip_network(cidr, strict=False)


@functools.lru_cache(maxsize=1 << 16)
def _covering(address: IPAddress, length: int) -> IPNetwork:
    # Remembered like parse_address: every plan asks again for the same prefixes.
    return ipaddress.ip_network(f"{address}/{length}", strict=False)


def _addresses(svc: Service, kinds: Iterable[str]) -> Iterable[str]:
    for kind in kinds:
        if kind == "LoadBalancerIP":
            yield from (i.ip for i in svc.status.load_balancer.ingress if i.ip)
        elif kind == "ExternalIP":
            yield from svc.spec.external_ips
        elif kind == "ClusterIP":
            yield from svc.spec.cluster_ips or (
                (svc.spec.cluster_ip,) if svc.spec.cluster_ip else ()
            )


def _attributes(attributes: AdvertisementAttributes | None) -> RouteAttributes:
    if attributes is None:
        return RouteAttributes()
    communities: list[int] = []
    large: list[LargeCommunity] = []
    if attributes.communities is not None:
        communities += map(parse_standard_community, attributes.communities.standard)
        communities += (WELL_KNOWN_COMMUNITIES[n] for n in attributes.communities.well_known)
        large += (
            LargeCommunity(*parse_large_community(text)) for text in attributes.communities.large
        )
    return RouteAttributes(
        communities=tuple(sorted(set(communities))),
        large_communities=_sorted_large(large),
        local_pref=attributes.local_preference,
        med=attributes.med,
    )


def _merge(old: RouteAttributes | None, new: RouteAttributes) -> RouteAttributes:
    """Two advertisements of one prefix: communities add up, the higher LOCAL_PREF and the
    lower MED win (the choice that makes the route most preferred, as a user expects)."""
    if old is None:
        return new
    return RouteAttributes(
        communities=tuple(sorted(set(old.communities) | set(new.communities))),
        large_communities=_sorted_large([*old.large_communities, *new.large_communities]),
        local_pref=_pick(old.local_pref, new.local_pref, max),
        med=_pick(old.med, new.med, min),
    )


def _sorted_large(values: Iterable[LargeCommunity]) -> tuple[LargeCommunity, ...]:
    return tuple(sorted(set(values), key=lambda c: (c.global_admin, c.local_data1, c.local_data2)))


def _pick(a: int | None, b: int | None, choose: Callable[[list[int]], int]) -> int | None:
    values = [v for v in (a, b) if v is not None]
    return choose(values) if values else None


def _peer_config(state: ClusterState, peer: BGPPeer) -> BGPPeerConfigSpec:
    if peer.peer_config_ref is None:
        return BGPPeerConfigSpec()
    name = peer.peer_config_ref.name
    found = state.peer_configs_by_name.get(name)
    if found is None:
        raise ValueError(f"BGPPeerConfig {name} not found")
    return found.spec


def _speaker_peer(
    state: ClusterState,
    peer: BGPPeer,
    spec: BGPPeerConfigSpec,
    node: Node,
    problems: list[str],
) -> PeerConfig:
    """The peer as the speaker takes it; PeerConfig refuses what the speaker cannot run."""
    families: set[Family] = {
        IPV4_UNICAST if family.afi == "ipv4" else IPV6_UNICAST for family in spec.families
    }
    source = spec.transport.source_address
    address = ipaddress.ip_address(peer.peer_address)
    # IPv6 routes over an IPv4 session need an IPv6 next hop: the node's own, so that the
    # router forwards IPv6 traffic to the node directly (as a dual-stack Cilium node does).
    own6 = [a for a in internal_addresses(node) if a.version == 6]
    return PeerConfig(
        address=address,
        ipv6_next_hop=own6[0] if address.version == 4 and own6 else None,
        peer_as=peer.peer_asn,
        port=spec.transport.peer_port,
        local_address=ipaddress.ip_address(source) if source else None,
        hold_time=spec.timers.hold_time_seconds,
        connect_retry_time=float(spec.timers.connect_retry_time_seconds),
        password=_password(state, spec, problems),
        # 1 is a directly connected eBGP peer: the speaker's default (None) already.
        ebgp_multihop=spec.ebgp_multihop if spec.ebgp_multihop > 1 else None,
        enforce_first_as=spec.enforce_first_as,
        ttl_security_hops=1 if spec.ttl_security else None,
        families=frozenset(families),
        graceful_restart_time=(
            spec.graceful_restart.restart_time_seconds if spec.graceful_restart.enabled else None
        ),
        bfd=_bfd_timers(_bfd(state, spec, peer.name, problems)),
    )


def _carried(config: PeerConfig) -> frozenset[int]:
    """The IP versions a session can announce: its families, less IPv6 over IPv4 transport
    without an IPv6 next hop (an IPv4-mapped one leaves the route unusable on most
    routers: held back and said, rather than sent and silently unused)."""
    versions = {4 if family == IPV4_UNICAST else 6 for family in config.families}
    if config.address.version == 4 and config.ipv6_next_hop is None:
        versions.discard(6)
    return frozenset(versions)


def _bfd_timers(profile: BFDProfileSpec | None) -> Timers | None:
    if profile is None:
        return None
    return Timers.from_ms(
        profile.transmit_interval,
        profile.receive_interval,
        profile.detect_multiplier,
        passive=profile.passive_mode,
    )


def _password(state: ClusterState, spec: BGPPeerConfigSpec, problems: list[str]) -> str | None:
    if spec.auth_secret_ref is None:
        return None
    for secret in state.secrets:
        if secret.metadata.name != spec.auth_secret_ref:
            continue
        if "password" in secret.string_data:
            return secret.string_data["password"]
        try:
            return base64.b64decode(secret.data["password"], validate=True).decode()
        except (KeyError, binascii.Error, UnicodeDecodeError):
            problems.append(f"Secret {spec.auth_secret_ref}: key `password` is not base64 text")
            return None
    problems.append(f"Secret {spec.auth_secret_ref} not found")
    return None


def _bfd(
    state: ClusterState, spec: BGPPeerConfigSpec, peer: str, problems: list[str]
) -> BFDProfileSpec | None:
    if spec.bfd_profile_ref is None:
        return None
    profile = state.bfd_profiles_by_name.get(spec.bfd_profile_ref)
    if profile is None:
        problems.append(f"peer {peer}: BFDProfile {spec.bfd_profile_ref} not found; no BFD")
        return None
    if spec.ebgp_multihop > 1:
        problems.append(f"peer {peer}: BFD is single-hop only here (ebgpMultihop > 1); no BFD")
        return None
    if profile.spec.echo_mode:
        problems.append(f"BFDProfile {spec.bfd_profile_ref}: echo mode is not supported; off")
    return profile.spec


# -- datapath ----------------------------------------------------------------------------


def _dataplane_service(
    svc: Service,
    slices: tuple[EndpointSlice, ...],
    found_backends: tuple[Backend, ...],
    announced: set[IPAddress],
    default_forwarding: ForwardingMode,
) -> tuple[DataplaneService | None, list[str]]:
    """The Service as the datapath forwards it (None when no port can be forwarded), and
    the problems of its ports. A value the datapath model refuses raises ValueError."""
    problems = []
    ports = []
    for port in svc.spec.ports:
        target = _target_port(port.target_port, port.name, port.port, slices)
        if target is None:
            problems.append(
                f"Service {svc.key}: no endpoint defines target port {port.target_port!r}"
            )
            continue
        ports.append(
            ServicePort(port.name or "", Protocol(port.protocol.lower()), port.port, target)
        )
    if not ports:
        return None, problems
    mode = svc.metadata.annotations.get(ANNOTATION_FORWARDING_MODE)
    vips = {*lb_addresses(svc), *announced}
    service = DataplaneService(
        key=svc.key,
        vips=tuple(sorted(vips, key=lambda a: (a.version, a.packed))),
        ports=tuple(ports),
        backends=found_backends,
        external_traffic_policy=TrafficPolicy(svc.spec.external_traffic_policy),
        session_affinity=SessionAffinity(svc.spec.session_affinity),
        source_ranges=tuple(
            ipaddress.ip_network(r.strip(), strict=False)
            for r in svc.spec.load_balancer_source_ranges
        ),
        forwarding_mode=ForwardingMode(mode) if mode else default_forwarding,
        answer_echo=svc.metadata.annotations.get(ANNOTATION_ICMP_ECHO) != "false",
    )
    return service, problems


def _target_port(
    target: int | str | None, name: str | None, port: int, slices: tuple[EndpointSlice, ...]
) -> int | None:
    if target is None:
        return port
    if isinstance(target, int):
        return target
    if target.isdigit():
        return int(target)
    for eps in slices:
        for endpoint_port in eps.ports:
            if endpoint_port.name in (target, name) and endpoint_port.port is not None:
                return endpoint_port.port
    return None


# -- nodes and labels --------------------------------------------------------------------


def _node(state: ClusterState, name: str) -> Node:
    return _node_object(state, name) or _unlisted_node(name)


def _node_object(state: ClusterState, name: str) -> Node | None:
    for node in state.nodes:
        if node.metadata.name == name:
            return node
    return None


def _node_facts(node: Node | None) -> tuple[object, ...] | None:
    """What a plan reads of its own Node (the sessions, the pod CIDRs, the L2 selectors)."""
    if node is None:
        return None
    return node.metadata.labels, node.status.addresses, node.spec.pod_cidr, node.spec.pod_cidrs


def _unlisted_node(name: str) -> Node:
    # A node that has no Node object yet still gets the label Kubernetes always sets.
    return Node.model_validate(
        {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}
    )
