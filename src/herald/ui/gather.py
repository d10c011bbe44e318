"""One JSON model of the cluster for the web view, from what the CLI reads.

`read_sources` asks the agents' status sockets (`frontends`, as `herald service list` does)
and loads the manifests with the controller's status (as `herald get pools` does);
`cluster_model` (pure) turns that, the flow counts (`flows.FlowStats`) and the L2 ownership
history into the one document the page draws. Only fields chosen here reach the page: the
model is built field by field, never dumped from configuration objects, so a Secret (BGP
MD5 password) or the L2 heartbeat key cannot leak into it by a field being added upstream.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from herald.agent.status import AgentStatus, FrontendStatus, SessionStatus, query_all
from herald.api.core import Service
from herald.api.problems import ManifestError
from herald.api.snapshot import ClusterState
from herald.cli.service import merged
from herald.explain import ServiceNotFound, explain_service
from herald.ipam.status import CONDITION_POOL_CONFLICT
from herald.sources.files import FileSource, merge_status

Json = dict[str, Any]


@dataclass(frozen=True)
class Sources:
    status_dir: Path
    manifests: Path | None = None


@dataclass(frozen=True)
class Read:
    """What one look at the sources found."""

    agents: tuple[AgentStatus, ...] = ()
    state: ClusterState | None = None
    problems: tuple[str, ...] = ()


def read_sources(sources: Sources) -> Read:
    """Blocking (sockets, files): run it in a worker thread."""
    agents = tuple(query_all(sources.status_dir, frontends=True))
    if sources.manifests is None or not sources.manifests.is_dir():
        return Read(agents)
    source = FileSource(sources.manifests)
    try:
        return Read(agents, source.load())
    except ManifestError as err:
        last_good = source.read_last_good()
        problems = (f"{len(err.problems)} problem(s) in {sources.manifests}",)
        if last_good is None:
            return Read(agents, None, problems)
        state = merge_status(last_good.state, source.read_state())
        return Read(agents, state, (*problems, "showing the last good state"))
    except OSError as err:
        return Read(agents, None, (f"cannot read {sources.manifests}: {err}",))


@dataclass(frozen=True)
class OwnerChange:
    vip: str
    old: str | None
    new: str | None
    time: float


@dataclass
class OwnerHistory:
    """The L2 owner of each VIP as last seen, and the changes seen since the view started
    (the agents report the current owner only)."""

    limit: int = 200
    owners: dict[str, str | None] = field(default_factory=dict)
    changes: list[OwnerChange] = field(default_factory=list)

    def update(self, owners: Mapping[str, str | None], now: float) -> None:
        for vip, owner in owners.items():
            if vip in self.owners and self.owners[vip] != owner:
                self.changes.append(OwnerChange(vip, self.owners[vip], owner, now))
            self.owners[vip] = owner
        del self.changes[: max(0, len(self.changes) - self.limit)]


def cluster_model(
    read: Read, flows: Json, history: OwnerHistory | None = None, now: float = 0.0
) -> Json:
    """The page's model (pure, but for `history`, which it updates)."""
    agents = read.agents
    frontends = merged(agents)
    l2 = _l2(agents)
    if history is not None:
        history.update({v["vip"]: v["owner"] for v in l2}, now)
    return {
        "time": now,
        "problems": list(read.problems),
        "nodes": [_node(a) for a in sorted(agents, key=lambda a: a.node)],
        "routers": _routers(agents),
        "services": _services(frontends, agents, read.state),
        "l2": {
            "vips": l2,
            "changes": [
                {"vip": c.vip, "old": c.old, "new": c.new, "time": c.time}
                for c in (history.changes if history else ())
            ],
        },
        "pools": _pools(read.state),
        "pending": _pending(read.state),
        "flows": flows,
    }


def _session(s: SessionStatus) -> Json:
    return {
        "name": s.name,
        "peer": s.peer,
        "localAS": s.local_as,
        "peerAS": s.peer_as,
        "state": s.state,
        "established": s.established,
        "uptimeSeconds": s.uptime_seconds,
        "received": s.received,
        "advertised": s.advertised,
        "lastDown": s.last_down,
        "bfd": s.bfd,
        "routes": list(s.routes),
        "families": list(s.families),
        "unsent": s.unsent,
    }


def _node(agent: AgentStatus) -> Json:
    owned = [o.vip for o in agent.l2.owners if o.answering] if agent.l2 else []
    return {
        "name": agent.node,
        "error": agent.error,
        "appliedAt": agent.applied_at,
        "problems": list(agent.problems),
        "sessions": [_session(s) for s in agent.peers],
        "l2": agent.l2 is not None and bool(agent.l2.members),
        "l2Live": agent.error is None and agent.l2 is not None and agent.node in agent.l2.live,
        "l2Owned": owned,
    }


def _routers(agents: Sequence[AgentStatus]) -> list[Json]:
    found: dict[str, Json] = {}
    for agent in agents:
        for s in agent.peers:
            found.setdefault(s.peer, {"address": s.peer, "asn": s.peer_as, "name": s.name})
    return [found[k] for k in sorted(found)]


def _l2(agents: Sequence[AgentStatus]) -> list[Json]:
    """Each VIP once: the owner the answering node names (it knows best), else the
    majority's view."""
    vips: dict[str, Json] = {}
    for agent in agents:
        if agent.l2 is None or agent.error is not None:
            continue
        for o in agent.l2.owners:
            seen = vips.get(o.vip)
            if seen is None or o.answering:
                vips[o.vip] = {
                    "vip": o.vip,
                    "owner": o.owner,
                    "since": o.since,
                    "candidates": list(o.candidates),
                    "answering": agent.node if o.answering else None,
                }
    return [vips[k] for k in sorted(vips)]


def _frontend(f: FrontendStatus) -> Json:
    return {
        "frontend": f.frontend,
        "mode": f.mode,
        "trafficPolicy": f.traffic_policy,
        "packets": f.packets,
        "bytes": f.bytes,
        "backends": [
            {"address": b.address, "port": b.port, "node": b.node, "pod": b.pod, "state": b.state}
            for b in f.backends
        ],
    }


def _vip(frontend: str) -> str:
    """`203.0.113.10:80/TCP` or `[2001:db8::1]:80/TCP` -> the address."""
    host = frontend.rsplit("/", 1)[0].rsplit(":", 1)[0]
    return host.strip("[]")


def _covers(route: str, vip: str) -> bool:
    try:
        return ipaddress.ip_address(vip) in ipaddress.ip_network(route, strict=False)
    except ValueError:
        return False


def _services(
    frontends: Sequence[FrontendStatus], agents: Sequence[AgentStatus], state: ClusterState | None
) -> list[Json]:
    grouped: dict[str, list[FrontendStatus]] = {}
    for f in frontends:
        grouped.setdefault(f.service, []).append(f)
    # Which node announces which VIP: its BGP routes (sent to an established session), or
    # it answers ARP/NDP for it.
    announced: dict[str, set[str]] = {}
    for agent in agents:
        if agent.error is not None:
            continue
        for s in agent.peers:
            if s.established:
                for route in s.routes:
                    announced.setdefault(route.split("/", 1)[0], set()).add(agent.node)
        for o in agent.l2.owners if agent.l2 else ():
            if o.answering:
                announced.setdefault(o.vip, set()).add(agent.node)
    services = []
    for key in sorted(grouped):
        rows = grouped[key]
        vips = sorted({_vip(f.frontend) for f in rows})
        nodes = sorted({n for v in vips for n in announced.get(v, ())})
        services.append(
            {
                "key": key,
                "vips": vips,
                "announcedBy": nodes,
                "packets": sum(f.packets or 0 for f in rows),
                "bytes": sum(f.bytes or 0 for f in rows),
                "frontends": [_frontend(f) for f in rows],
            }
        )
    return services


def _conditions(conditions: Sequence[Any]) -> dict[str, Any]:
    return {c.type: c for c in conditions}


def _pools(state: ClusterState | None) -> list[Json]:
    if state is None:
        return []
    pools = []
    for pool in state.pools:
        conditions = _conditions(pool.status.conditions if pool.status else ())

        def count(name: str, found: Mapping[str, Any] = conditions) -> int | None:
            condition = found.get(f"herald.io/IPs{name}")
            try:
                return int(condition.message) if condition is not None else None
            except (TypeError, ValueError):
                return None

        conflict = conditions.get(CONDITION_POOL_CONFLICT)
        pools.append(
            {
                "name": pool.metadata.name,
                "blocks": [b.cidr or f"{b.start}-{b.stop or b.start}" for b in pool.spec.blocks],
                "disabled": pool.spec.disabled,
                "conflict": None if conflict is None else conflict.status == "True",
                "conflictMessage": None if conflict is None else conflict.message,
                "total": count("Total"),
                "used": count("Used"),
                "available": count("Available"),
            }
        )
    return pools


def _pending(state: ClusterState | None) -> list[Json]:
    """LoadBalancer Services herald handles that hold no address, with the controller's
    reason in `herald explain`'s words."""
    if state is None:
        return []
    pending = []
    for service in state.services:
        if not _wants_address(service):
            continue
        try:
            explained = explain_service(state, (), service.key)
        except ServiceNotFound:
            continue
        if explained.ipam.state in ("pending", "undecided"):
            pending.append(
                {
                    "service": service.key,
                    "state": explained.ipam.state,
                    "reason": explained.ipam.reason,
                    "why": explained.ipam.summary,
                }
            )
    return pending


def _wants_address(service: Service) -> bool:
    return service.spec.type == "LoadBalancer" and not service.status.load_balancer.ingress
