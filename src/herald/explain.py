"""Why a Service is, or is not, reachable: one answer from what herald knows (pure).

`explain_service(state, agents, key)` takes the cluster state (with the controller's
status) and every agent's status, and follows the Service the way a packet would need it:
1. LB-IPAM: the address it holds and the pool it came from, or why it has none, in the
   controller's own words (the herald.io/IPAMRequestSatisfied condition);
2. each node: does it announce the address (BGP: to which peer, which prefix; L2: does it
   answer ARP/NDP), and if not, why: no usable endpoint here under
   externalTrafficPolicy Local, no policy selects the node or the Service, the session is
   down, the peer did not negotiate the family, the rules are not committed;
3. each node's datapath: the frontends its committed rules hold for the Service, with
   their backends.
The node plan (`agent.plan.plan_node`) and the facts (`facts.py`) decide what a node should
do, so this module never re-derives a rule; the agents' statuses say what it does.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace

# The plan's own lookup (a node without a Node object still has its hostname label), so
# that a selector is matched here exactly as the plan matched it.
from herald.agent.plan import NodePlan, PeerPlan, plan_node
from herald.agent.plan import _node as node_named
from herald.agent.status import AgentStatus, FrontendStatus, SessionStatus
from herald.api.core import LB_CLASS_BGP, LB_CLASS_L2, EndpointSlice, Node, Service
from herald.api.selector import matches
from herald.api.snapshot import ClusterState
from herald.dataplane.model import ForwardingMode, IPAddress
from herald.facts import can_serve, is_handled, lb_addresses, service_labels, serving_nodes
from herald.ipam.pool import pool_state
from herald.ipam.request import to_address
from herald.ipam.result import Reason
from herald.ipam.status import CONDITION_SATISFIED
from herald.l2.policy import announcements
from herald.observe.event import FlowEvent
from herald.observe.merge import merge_sorted

# The controller's reasons in a user's words (the controller's message follows them).
REASONS = {
    Reason.NO_POOL.value: "no pool has an address for it",
    Reason.OUT_OF_IPS.value: "pool exhausted",
    Reason.POOL_SELECTOR_MISMATCH.value: "no pool selects it",
    Reason.ALREADY_ALLOCATED.value: "requested IP taken by another Service",
    Reason.INCOMPATIBLE_SHARING.value: "sharing refused",
}


class ServiceNotFound(LookupError):
    pass


@dataclass(frozen=True)
class IPAMDecision:
    # allocated | pending | undecided (no status from the controller) | not-handled
    state: str
    addresses: tuple[str, ...] = ()
    pools: tuple[str, ...] = ()  # the pool of each address ("" if in none)
    reason: str | None = None  # the condition's reason, as the controller wrote it
    message: str | None = None
    summary: str = ""


@dataclass(frozen=True)
class PeerAnnouncement:
    """One BGP session of a node and what it was sent for the Service."""

    peer: str
    address: str
    state: str | None  # the session's state as the agent reports it; None: not running
    sent: tuple[str, ...] = ()  # prefixes sent to the peer that cover the Service's address
    reason: str | None = None  # why the Service's address was not sent, when it was not


@dataclass(frozen=True)
class NodeExplanation:
    node: str
    announces: bool
    via: tuple[str, ...] = ()  # "bgp", "l2"
    reasons: tuple[str, ...] = ()  # why it does not announce (or not everything)
    peers: tuple[PeerAnnouncement, ...] = ()
    frontends: tuple[FrontendStatus, ...] = ()  # the datapath entries its kernel holds
    problems: tuple[str, ...] = ()  # the agent's problems that name the Service


@dataclass(frozen=True)
class Explanation:
    service: str
    verdict: str
    ipam: IPAMDecision
    nodes: tuple[NodeExplanation, ...] = field(default=())
    # The last packets to its addresses the datapath refused, oldest first (flow events).
    dropped: tuple[FlowEvent, ...] = ()

    @property
    def announcing(self) -> tuple[str, ...]:
        return tuple(n.node for n in self.nodes if n.announces)

    def with_dropped(self, events: Iterable[FlowEvent], last: int) -> Explanation:
        return replace(self, dropped=last_dropped(events, self.ipam.addresses, last))

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["announcing"] = list(self.announcing)
        data["dropped"] = [e.to_json() for e in self.dropped]
        for node, explained in zip(data["nodes"], self.nodes, strict=True):
            node["frontends"] = [
                f.model_dump(mode="json", by_alias=True) for f in explained.frontends
            ]
        return data


def explain_service(
    state: ClusterState,
    agents: Sequence[AgentStatus],
    key: str,
    default_forwarding: ForwardingMode = ForwardingMode.SNAT,
) -> Explanation:
    service = state.services_by_key.get(key)
    if service is None:
        raise ServiceNotFound(f"Service {key} not found in the manifests")
    ipam = _ipam(state, service)
    if ipam.state == "not-handled":
        return Explanation(key, f"not herald's: {ipam.summary}", ipam)
    if not ipam.addresses:
        return Explanation(key, f"pending: {ipam.summary}", ipam)
    by_node = {a.node: a for a in agents}
    names = sorted({n.metadata.name for n in state.nodes} | by_node.keys())
    nodes = tuple(
        _node(state, service, name, by_node.get(name), default_forwarding) for name in names
    )
    return Explanation(key, _verdict(ipam, nodes), ipam, nodes)


def last_dropped(
    events: Iterable[FlowEvent], addresses: Sequence[str], last: int
) -> tuple[FlowEvent, ...]:
    """The last `last` DROPPED events to the Service's addresses, of every node in time
    order (pure). By address rather than by Service: a port of the VIP no Service uses is
    refused too, and that event names no Service."""
    mine = [e for e in merge_sorted([events]) if e.verdict == "DROPPED" and e.vip in addresses]
    return tuple(mine[max(0, len(mine) - last) :]) if last > 0 else ()


# -- LB-IPAM ----------------------------------------------------------------------------


def _ipam(state: ClusterState, service: Service) -> IPAMDecision:
    spec = service.spec
    if spec.type != "LoadBalancer":
        return IPAMDecision("not-handled", summary=f"type is {spec.type}, not LoadBalancer")
    if not is_handled(service):
        return IPAMDecision(
            "not-handled",
            summary=f"loadBalancerClass {spec.load_balancer_class} belongs to another "
            "load-balancer implementation",
        )
    addresses = tuple(str(a) for a in lb_addresses(service))
    condition = next((c for c in service.status.conditions if c.type == CONDITION_SATISFIED), None)
    if condition is None:
        return IPAMDecision(
            "allocated" if addresses else "undecided",
            addresses,
            _pools(state, addresses),
            summary=""
            if addresses
            else "the controller has not decided yet: is `herald "
            "controller` running (and leading)?",
        )
    reason, message = condition.reason, condition.message
    if addresses:
        return IPAMDecision("allocated", addresses, _pools(state, addresses), reason, message)
    words = REASONS.get(reason or "", reason or "unsatisfied")
    summary = f"{words}: {message}" if message else words
    return IPAMDecision("pending", (), (), reason, message, summary)


def _pools(state: ClusterState, addresses: Iterable[str]) -> tuple[str, ...]:
    pools = [pool_state(pool) for pool in state.pools]
    found = []
    for text in addresses:
        address = to_address(text)
        found.append(next((p.name for p in pools if p.block_of(address) is not None), ""))
    return tuple(found)


# -- one node -----------------------------------------------------------------------------


def _node(
    state: ClusterState,
    service: Service,
    name: str,
    agent: AgentStatus | None,
    default_forwarding: ForwardingMode,
) -> NodeExplanation:
    key = service.key
    vips = lb_addresses(service)
    plan = plan_node(state, name, default_forwarding)
    reasons: list[str] = []
    if agent is None or agent.error is not None:
        why = agent.error if agent is not None else "no status socket"
        reasons.append(f"agent not answering ({why}): is `herald agent --node {name}` running?")
    slices = state.endpoint_slices_by_service.get(key, ())
    servable = can_serve(service, slices, name)
    if not servable:
        reasons.append(_unservable(service, slices))
    peers: tuple[PeerAnnouncement, ...] = ()
    via: list[str] = []
    node = node_named(state, name)
    if service.spec.load_balancer_class in (None, LB_CLASS_BGP):
        peers, bgp_reasons = _bgp(state, service, vips, plan, node, agent, servable)
        reasons += bgp_reasons
        if any(p.sent for p in peers):
            via.append("bgp")
    if service.spec.load_balancer_class in (None, LB_CLASS_L2):
        answering, l2_reasons = _l2(state, service, vips, name, node, agent, servable)
        reasons += l2_reasons
        if answering:
            via.append("l2")
    frontends = tuple(f for f in agent.frontends if f.service == key) if agent else ()
    if agent is not None and agent.error is None and servable:
        committed = {_frontend_address(f.frontend) for f in frontends}
        missing = [str(v) for v in vips if v not in committed]
        if missing:
            reasons.append(
                f"datapath: no committed rules for {', '.join(missing)} on this node, so it "
                "is not announced (never announce what cannot be forwarded); see its problems"
            )
    problems = tuple(
        p for p in (*plan.problems, *(agent.problems if agent else ())) if _names(p, key)
    )
    return NodeExplanation(
        name,
        announces=bool(via),
        via=tuple(via),
        reasons=tuple(dict.fromkeys(reasons)),
        peers=peers,
        frontends=frontends,
        problems=tuple(dict.fromkeys(problems)),
    )


def _unservable(service: Service, slices: Sequence[EndpointSlice]) -> str:
    serving = sorted(serving_nodes(slices))
    if service.spec.external_traffic_policy == "Local" and serving:
        return (
            "externalTrafficPolicy Local and no ready endpoint on this node (ready on: "
            f"{', '.join(n or '<no node>' for n in serving)})"
        )
    return "no ready endpoint anywhere (nor one serving while terminating): nothing to forward to"


def _bgp(
    state: ClusterState,
    service: Service,
    vips: Sequence[IPAddress],
    plan: NodePlan,
    node: Node,
    agent: AgentStatus | None,
    servable: bool,
) -> tuple[tuple[PeerAnnouncement, ...], list[str]]:
    reasons: list[str] = []
    if not any(
        matches(c.spec.node_selector, node.metadata.labels) for c in state.bgp_cluster_configs
    ):
        if state.bgp_cluster_configs:
            reasons.append("BGP: no BGPClusterConfig selects this node (its nodeSelector)")
        return (), reasons
    sessions = {s.name: s for s in agent.peers} if agent else {}
    carrying = [p for p in plan.peers if _carries(p, vips)]
    if servable and not carrying:
        family = [p for p in plan.problems if _names(p, service.key) and "BGPAdvertisement" in p]
        reasons += family or [
            "BGP: no BGPAdvertisement that this node's peers select (by family) selects the "
            f"Service (its labels: {_labels(service)})"
        ]
    peers = tuple(
        _peer(peer, sessions.get(peer.key), vips, peer in carrying, agent is not None)
        for peer in plan.peers
    )
    reasons += [f"BGP: peer {p.peer} ({p.address}): {p.reason}" for p in peers if p.reason]
    return peers, reasons


def _peer(
    peer: PeerPlan,
    session: SessionStatus | None,
    vips: Sequence[IPAddress],
    carries: bool,
    agent_known: bool,
) -> PeerAnnouncement:
    sent = tuple(r for r in (session.routes if session else ()) if _covers(r, vips))
    reason = None
    if carries and not sent:
        reason = _not_sent(session, vips, agent_known)
    return PeerAnnouncement(
        peer.key, str(peer.address), session.state if session else None, sent, reason
    )


def _carries(peer: PeerPlan, vips: Sequence[IPAddress]) -> bool:
    """Whether the plan gives the peer a route for one of the addresses."""
    return any(v in peer.carried_by(network) for network, _ in peer.routes for v in vips)


def _not_sent(session: SessionStatus | None, vips: Sequence[IPAddress], agent: bool) -> str:
    if session is None:
        return "session not running on the agent (see its problems)" if agent else "unknown"
    if not session.established:
        down = f"; last down: {session.last_down}" if session.last_down else ""
        return f"session is {session.state}, not Established{down}"
    missing = sorted({f"ipv{v.version}-unicast" for v in vips} - set(session.families))
    if missing and len(missing) == len({v.version for v in vips}):
        negotiated = ", ".join(session.families) or "none"
        return (
            f"family not negotiated: the peer did not agree to {', '.join(missing)} "
            f"(negotiated: {negotiated}); enable it on the router"
        )
    return "not sent yet (the datapath rules may not be committed: see the node's problems)"


def _l2(
    state: ClusterState,
    service: Service,
    vips: Sequence[IPAddress],
    name: str,
    node: Node,
    agent: AgentStatus | None,
    servable: bool,
) -> tuple[bool, list[str]]:
    labels = service_labels(service)
    policies = [p for p in state.l2_policies if matches(p.spec.service_selector, labels)]
    if not policies:
        if service.spec.load_balancer_class == LB_CLASS_L2:
            return False, ["L2: no L2AnnouncementPolicy selects the Service"]
        return False, []
    if not any(matches(p.spec.node_selector, node.metadata.labels) for p in policies):
        return False, ["L2: no L2AnnouncementPolicy selecting the Service selects this node"]
    if not servable:
        return False, []
    candidates = {a.vip for a in announcements(state) if service.key in a.services}
    owners = {o.vip: o for o in (agent.l2.owners if agent and agent.l2 else ())}
    answering, reasons = False, []
    for vip in vips:
        if vip not in candidates:
            continue
        owner = owners.get(str(vip))
        if owner is not None and owner.answering and owner.owner == name:
            answering = True
        elif owner is not None and owner.owner and owner.owner != name:
            reasons.append(f"L2: {vip} is answered by {owner.owner} (one owner per VIP)")
        else:
            reasons.append(f"L2: this node does not answer for {vip} (no owner known here)")
    return answering, reasons


# -- helpers ------------------------------------------------------------------------------


def _verdict(ipam: IPAMDecision, nodes: Sequence[NodeExplanation]) -> str:
    addresses = ", ".join(ipam.addresses)
    pools = ", ".join(sorted({p for p in ipam.pools if p})) or "no pool"
    announcing = [n.node for n in nodes if n.announces]
    head = f"{addresses} (pool {pools})"
    if announcing:
        return f"{head} announced by {len(announcing)} of {len(nodes)} nodes: " + ", ".join(
            announcing
        )
    reasons = [r for n in nodes for r in n.reasons]
    common = max(set(reasons), key=reasons.count) if reasons else "no node knows why"
    return f"{head} announced by no node: {common}"


def _covers(route: str, vips: Sequence[IPAddress]) -> bool:
    try:
        network = ipaddress.ip_network(route, strict=False)
    except ValueError:
        return False
    return any(v.version == network.version and v in network for v in vips)


def _frontend_address(frontend: str) -> IPAddress | None:
    """`203.0.113.0:80/TCP` or `[2001:db8::1]:80/TCP` -> the address."""
    host = frontend.rsplit(":", 1)[0].strip("[]")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _names(problem: str, key: str) -> bool:
    """Whether a problem names the Service (not one whose name merely starts with it)."""
    return re.search(rf"(?<![\w./-]){re.escape(key)}(?![\w.-])", problem) is not None


def _labels(service: Service) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(service_labels(service).items()))
