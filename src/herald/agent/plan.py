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
"""

from __future__ import annotations

import base64
import binascii
import functools
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

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
) -> NodePlan:
    problems: list[str] = []
    node = _node(state, node_name)
    services = [svc for svc in state.services if is_handled(svc) and lb_addresses(svc)]
    endpoints = state.endpoint_slices_by_service
    derived = {svc.key: _derive(svc, endpoints.get(svc.key, ())) for svc in services}
    for gone in _derived.keys() - derived.keys():
        del _derived[gone]
    servable = {key: d.serves(node_name) for key, d in derived.items()}
    # Sessions of one peer config announce the same routes: found once per config.
    session_routes: dict[tuple[str | None, frozenset[int]], tuple[int, Routes, Carries]] = {}
    peers: list[PeerPlan] = []
    announced: dict[str, set[IPAddress]] = {}
    wanted: dict[str, set[IPAddress]] = {}
    for config in state.bgp_cluster_configs:
        if not matches(config.spec.node_selector, node.metadata.labels):
            continue
        for instance in config.spec.bgp_instances:
            subject = f"BGPClusterConfig {config.metadata.name} instance {instance.name}"
            speaker_id = instance.router_id or router_id(node)
            if speaker_id is None:
                problems.append(
                    f"{subject}: no routerID and node {node_name} has no IPv4 InternalIP; "
                    "set spec.bgpInstances[].routerID; its peers are not started"
                )
                continue
            speaker = SpeakerKey(instance.name, instance.local_asn, speaker_id, instance.local_port)
            for peer in instance.peers:
                where = f"{subject} peer {peer.name}"
                try:
                    spec = _peer_config(state, peer)
                    config_ = _speaker_peer(state, peer, spec, node, problems)
                except (ValueError, KeyError) as err:
                    problems.append(f"{where}: {_reason(err)}; not started")
                    continue
                carried = _carried(config_)
                shared = (peer.peer_config_ref.name if peer.peer_config_ref else None, carried)
                if shared not in session_routes:
                    found = _routes(
                        state, spec, carried, services, servable, node, announced, wanted
                    )
                    ordered = sorted(found.routes.items(), key=lambda r: network_order(r[0]))
                    carries = tuple(
                        (network, tuple(sorted(found.carries[network], key=address_order)))
                        for network, _ in ordered
                        if network in found.carries
                    )
                    session_routes[shared] = (len(found.held), tuple(ordered), carries)
                held, routes, carries = session_routes[shared]
                if held:
                    problems.append(
                        f"{where}: {held} IPv6 routes not announced: family ipv6 "
                        f"over IPv4 transport needs an IPv6 next hop and node {node_name} has "
                        "no IPv6 InternalIP"
                    )
                peers.append(PeerPlan(speaker, peer.name, config_, routes, carries))
    problems += _unannounced(services, servable, wanted, announced, node_name)
    dataplane = []
    for svc in sorted(services, key=lambda s: s.key):
        try:
            translated = derived[svc.key].translated(
                frozenset(announced.get(svc.key, ())), default_forwarding
            )
        except ValueError as err:
            problems.append(f"Service {svc.key}: {_reason(err)}; not forwarded on this node")
            continue
        problems += translated[1]
        if translated[0] is not None:
            dataplane.append(translated[0])
    try:
        l2 = _l2_plan(state, node, problems)
    except ValueError as err:
        problems.append(f"L2AnnouncementPolicy: {_reason(err)}; no L2 announcements")
        l2 = None
    aggregates = {
        n
        for _, _, carries in session_routes.values()
        for n, _ in carries
        if n.prefixlen < n.max_prefixlen
    }
    return NodePlan(
        node=node_name,
        aggregates=tuple(sorted(aggregates, key=network_order)),
        peers=tuple(sorted(peers, key=lambda p: p.key)),
        services=tuple(dataplane),
        l2=l2,
        problems=tuple(problems),
    )


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
# and the Kubernetes source hands unchanged ones on, so after one change only the changed
# Service is derived again (bench/scale/plan.py: this was most of a 10,000-Service plan).
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


@dataclass
class _SessionRoutes:
    routes: dict[IPNetwork, RouteAttributes] = field(default_factory=dict)
    # Routes of a family the session has but cannot carry (see `_carried`).
    held: set[IPNetwork] = field(default_factory=set)
    # The Service addresses each route announces (an aggregate carries several).
    carries: dict[IPNetwork, set[IPAddress]] = field(default_factory=dict)


def _routes(
    state: ClusterState,
    spec: BGPPeerConfigSpec,
    carried: frozenset[int],
    services: list[Service],
    servable: Mapping[str, bool],
    node: Node,
    announced: dict[str, set[IPAddress]],
    wanted: dict[str, set[IPAddress]],
) -> _SessionRoutes:
    """The routes of one session. `announced` and `wanted` collect, per Service, the
    addresses it announces and the ones its advertisements select for any family."""
    found = _SessionRoutes()
    for family in spec.families:
        version = 4 if family.afi == "ipv4" else 6
        if family.advertisements is None:
            continue
        for advertisement_object in state.bgp_advertisements:
            if not matches(family.advertisements, advertisement_object.metadata.labels):
                continue
            for advertisement in advertisement_object.spec.advertisements:
                attributes = _attributes(advertisement.attributes)
                for network, service_key, address in _prefixes(
                    advertisement, services, servable, node
                ):
                    if service_key is not None and address is not None:
                        wanted.setdefault(service_key, set()).add(address)
                    if network.version != version:
                        continue
                    if version not in carried:
                        found.held.add(network)
                        continue
                    found.routes[network] = _merge(found.routes.get(network), attributes)
                    if service_key is not None and address is not None:
                        announced.setdefault(service_key, set()).add(address)
                        found.carries.setdefault(network, set()).add(address)
    return found


def _prefixes(
    advertisement: Advertisement,
    services: list[Service],
    servable: Mapping[str, bool],
    node: Node,
) -> Iterable[tuple[IPNetwork, str | None, IPAddress | None]]:
    """(route, Service key, the Service's address it announces) of an advertisement; an
    address goes in its covering prefix when the advertisement aggregates."""
    if advertisement.advertisement_type == "PodCIDR":
        for cidr in node.spec.pod_cidrs or ((node.spec.pod_cidr,) if node.spec.pod_cidr else ()):
            yield ipaddress.ip_network(cidr, strict=False), None, None
        return
    kinds = advertisement.service.addresses if advertisement.service else ("LoadBalancerIP",)
    for svc in services:
        if not servable[svc.key] or not matches(advertisement.selector, service_labels(svc)):
            continue
        if svc.spec.load_balancer_class not in (None, LB_CLASS_BGP):
            continue
        for text in _addresses(svc, kinds):
            address = parse_address(text)
            length = advertisement.prefix_length(address.version)
            yield _covering(address, length), svc.key, address


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


def _unannounced(
    services: list[Service],
    servable: Mapping[str, bool],
    wanted: Mapping[str, set[IPAddress]],
    announced: Mapping[str, set[IPAddress]],
    node: str,
) -> list[str]:
    """Addresses an advertisement selects that no session of this node can carry (an IPv6
    address where every selecting session is IPv4 only): said, never skipped silently."""
    problems = []
    for svc in services:
        missing = wanted.get(svc.key, set()) - announced.get(svc.key, set())
        if not servable[svc.key] or not missing:
            continue
        for address in sorted(missing, key=lambda a: (a.version, a.packed)):
            problems.append(
                f"Service {svc.key}: {address} is selected by a BGPAdvertisement but no BGP "
                f"session of node {node} announces it: no session has family "
                f"ipv{address.version} with that advertisement, or (IPv6 over IPv4 "
                "transport) the node has no IPv6 next hop"
            )
    return problems


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
    for node in state.nodes:
        if node.metadata.name == name:
            return node
    # A node that has no Node object yet still gets the label Kubernetes always sets.
    return Node.model_validate(
        {"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}}}
    )
