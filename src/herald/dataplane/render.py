"""Services a node must forward -> the nftables objects herald owns.

Layout (docs/datapath.md has a rendered example):

- `table inet herald` holds both address families, so one service with an IPv4 and an IPv6
  VIP is one set of chains, and one transaction changes both families together.
  - `filter-prerouting` (filter, priority dstnat - 10) looks `daddr . l4proto . dport` up in
    the verdict maps `services-v4`/`services-v6` and jumps to the service's `filter` chain:
    per-service counter, loadBalancerSourceRanges, and rejection when no backend is usable.
    Any other port of a VIP is rejected, so it is never routed back towards the router.
  - `nat-prerouting` (nat, priority dstnat) looks the same key up in `dnat-v4`/`dnat-v6` and
    jumps to the service's `nat` chain, which DNATs to `jhash(flow) mod M` looked up in the
    service's Maglev map (slot -> backend address).
  - `filter-output` and `nat-output` do the same for the node's own connections.
  - `nat-postrouting` masquerades connections whose conntrack entry carries herald's
    masquerade label, set by the `nat` chain of snat services with policy Cluster. A label
    rather than a packet mark: marks are shared with every other network component.
- `table netdev herald` exists for DSR only: its ingress chain, on the node's uplink, sends a
  flow whose Maglev slot belongs to a backend on another node to that node, unmodified
  (`fwd` to the node's address), before conntrack sees it; the owning node then DNATs it
  through the same Maglev map to its local pod and replies straight to the client.

Every object of a service is named `svc/<namespace>/<name>[/<part>]`, so a change to one
service replaces exactly its own objects and its elements in the shared dispatch maps.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, replace
from enum import IntEnum

from herald.dataplane import maglev
from herald.dataplane.endpoints import usable_backends
from herald.dataplane.model import (
    Backend,
    DataplaneService,
    ForwardingMode,
    IPAddress,
    IPNetwork,
    NodeContext,
    SessionAffinity,
    TrafficPolicy,
)

TABLE = "herald"
# The conntrack label bit that asks nat-postrouting to masquerade a connection.
MASQUERADE_LABEL = 127
ELEMENTS_PER_LINE = 4


class RenderError(ValueError):
    """A service cannot be rendered on this node; the message names the service."""


class Rank(IntEnum):
    """Declaration order inside a table: whatever an object refers to comes first."""

    COUNTER = 0
    SET = 1
    DATA_MAP = 2
    NODE_CHAIN = 3
    VERDICT_MAP = 4
    SERVICE_CHAIN = 5
    DISPATCH_MAP = 6
    BASE_CHAIN = 7


@dataclass(frozen=True, order=True)
class NftObject:
    family: str  # "inet" or "netdev"
    rank: Rank
    kind: str  # "chain", "map", "set" or "counter"
    name: str
    body: tuple[str, ...]  # chain: hook and rules; map/set: type and flags; counter: values
    elements: tuple[str, ...] = ()  # map/set only

    def declaration(self) -> str:
        lines = "".join(f"\t\t{line}\n" for line in (*self.body, *element_lines(self.elements)))
        return f"\t{self.kind} {self.name} {{\n{lines}\t}}\n"


@dataclass(frozen=True, order=True)
class Element:
    """One element of a map shared by all services (the dispatch maps, the VIP sets)."""

    family: str
    container: str
    text: str


@dataclass(frozen=True)
class ServiceRules:
    key: str
    objects: tuple[NftObject, ...]
    elements: tuple[Element, ...]
    # DSR: the other nodes this service sends flows to, each needing a forwarding chain.
    forwards_to: tuple[tuple[str, IPAddress], ...] = ()


@dataclass(frozen=True)
class Ruleset:
    base: tuple[NftObject, ...]
    services: tuple[ServiceRules, ...]

    def text(self) -> str:
        """The whole ruleset, each table declared once with all its elements."""
        shared: dict[tuple[str, str], list[str]] = {}
        for rules in self.services:
            for e in rules.elements:
                shared.setdefault((e.family, e.container), []).append(e.text)
        objects = [*self.base, *(o for s in self.services for o in s.objects)]
        families = sorted({o.family for o in objects}, key=lambda f: f != "inet")
        tables = []
        for family in families:
            declared = sorted(
                (o for o in objects if o.family == family), key=lambda o: (o.rank, o.name)
            )
            body = "".join(
                with_elements(o, shared.get((o.family, o.name), ())).declaration() for o in declared
            )
            tables.append(f"table {family} {TABLE} {{\n{body}}}\n")
        return HEADER + "".join(tables)


HEADER = "# herald datapath: generated from the services this node forwards; do not edit.\n"


def with_elements(obj: NftObject, texts: Iterable[str]) -> NftObject:
    # A VIP shared by two services is one element.
    return replace(obj, elements=(*obj.elements, *sorted(set(texts))))


def element_lines(texts: Sequence[str]) -> tuple[str, ...]:
    if not texts:
        return ()
    rows = [
        ", ".join(texts[i : i + ELEMENTS_PER_LINE]) for i in range(0, len(texts), ELEMENTS_PER_LINE)
    ]
    return ("elements = {", *(f"\t{row}," for row in rows[:-1]), f"\t{rows[-1]}", "}")


def without_conflicts(
    services: Sequence[ServiceRules], incumbents: Collection[str] = ()
) -> tuple[tuple[ServiceRules, ...], dict[str, str]]:
    """Drop services that claim a VIP, protocol and port another service already has.

    Services in `incumbents` (those already serving) keep their claims; otherwise the first
    by key wins. Returns the services to render and, per dropped service, why.
    """
    owner: dict[tuple[str, str, str], str] = {}
    kept: list[ServiceRules] = []
    refused: dict[str, str] = {}
    for rules in sorted(services, key=lambda r: (r.key not in incumbents, r.key)):
        claims = [
            (e.family, e.container, e.text.split(" : ")[0])
            for e in rules.elements
            if e.container.startswith("services-")
        ]
        taken = next((c for c in claims if c in owner), None)
        if taken is None:
            owner.update(dict.fromkeys(claims, rules.key))
            kept.append(rules)
        else:
            refused[rules.key] = f"{taken[2]} already belongs to service {owner[taken]}"
    return tuple(sorted(kept, key=lambda r: r.key)), refused


# -- address families -------------------------------------------------------------------


@dataclass(frozen=True)
class Family:
    version: int
    suffix: str  # "v4" / "v6"
    nfproto: str  # meta nfproto / dnat family
    header: str  # payload protocol: "ip" / "ip6"


FAMILIES = (Family(4, "v4", "ipv4", "ip"), Family(6, "v6", "ipv6", "ip6"))


def render(services: Iterable[DataplaneService], node: NodeContext) -> Ruleset:
    rendered = tuple(render_service(s, node) for s in sorted(services, key=lambda s: s.key))
    return Ruleset(base=base_objects(rendered, node), services=rendered)


def base_objects(services: Sequence[ServiceRules], node: NodeContext) -> tuple[NftObject, ...]:
    """The hooks and shared maps; netdev ones only while some service uses DSR."""
    objects = list(INET_BASE)
    if any(o.family == "netdev" for s in services for o in s.objects):
        objects.extend(netdev_base(node, {n for s in services for n in s.forwards_to}))
    return tuple(objects)


def dispatch_key(family: Family) -> str:
    return f"{family.header} daddr . meta l4proto . th dport"


def base_chain(name: str, hook: str, rules: Sequence[str]) -> NftObject:
    return NftObject("inet", Rank.BASE_CHAIN, "chain", name, (hook, *rules))


def _inet_base() -> tuple[NftObject, ...]:
    objects = []
    dispatch_filter = []
    dispatch_nat = []
    refuse_other_ports = []
    for f in FAMILIES:
        objects.append(
            NftObject("inet", Rank.SET, "set", f"vips-{f.suffix}", (f"typeof {f.header} daddr",))
        )
        for name in (f"services-{f.suffix}", f"dnat-{f.suffix}"):
            objects.append(
                NftObject(
                    "inet",
                    Rank.DISPATCH_MAP,
                    "map",
                    name,
                    (f"typeof {dispatch_key(f)} : verdict",),
                )
            )
        dispatch_filter.append(f"{dispatch_key(f)} vmap @services-{f.suffix}")
        dispatch_nat.append(f"{dispatch_key(f)} vmap @dnat-{f.suffix}")
        refuse_other_ports += [
            f"{f.header} daddr @vips-{f.suffix} ct state != related meta l4proto tcp "
            "reject with tcp reset",
            f"{f.header} daddr @vips-{f.suffix} ct state != related "
            "reject with icmpx type port-unreachable",
        ]
    # Output hooks too: the node's own processes (health checks, host-network pods) reach
    # VIPs through the same service chains as traffic that arrives from the network.
    # Numeric priorities: nft accepts the name `dstnat` (-100) for prerouting only. The
    # filter chains run just before DNAT, while the destination is still the VIP.
    for hook in ("prerouting", "output"):
        objects += [
            base_chain(
                f"filter-{hook}",
                f"type filter hook {hook} priority -110; policy accept;",
                (*dispatch_filter, *refuse_other_ports),
            ),
            base_chain(
                f"nat-{hook}", f"type nat hook {hook} priority -100; policy accept;", dispatch_nat
            ),
        ]
    objects.append(
        base_chain(
            "nat-postrouting",
            "type nat hook postrouting priority srcnat; policy accept;",
            (f"ct label {MASQUERADE_LABEL} masquerade",),
        )
    )
    return tuple(objects)


INET_BASE = _inet_base()


def netdev_base(node: NodeContext, nodes: Iterable[tuple[str, IPAddress]]) -> list[NftObject]:
    objects = []
    dispatch = []
    for f in FAMILIES:
        name = f"services-{f.suffix}"
        objects.append(
            NftObject(
                "netdev", Rank.DISPATCH_MAP, "map", name, (f"typeof {dispatch_key(f)} : verdict",)
            )
        )
        dispatch.append(f"{dispatch_key(f)} vmap @{name}")
    for name, address in sorted(set(nodes)):
        header = "ip" if address.version == 4 else "ip6"
        objects.append(
            NftObject(
                "netdev",
                Rank.NODE_CHAIN,
                "chain",
                node_chain(name, address.version),
                (f'fwd {header} to {address} device "{node.interface}"',),
            )
        )
    objects.append(
        NftObject(
            "netdev",
            Rank.BASE_CHAIN,
            "chain",
            "ingress",
            (
                f'type filter hook ingress device "{node.interface}" priority -500; policy accept;',
                *dispatch,
            ),
        )
    )
    return objects


def node_chain(node: str, version: int) -> str:
    return f"node/{node}/v{version}"


# -- one service ------------------------------------------------------------------------


def service_prefix(key: str) -> str:
    return f"svc/{key}"


def render_service(service: DataplaneService, node: NodeContext) -> ServiceRules:
    prefix = service_prefix(service.key)
    backends = usable_backends(service, node.node_name)
    objects = [NftObject("inet", Rank.COUNTER, "counter", prefix, ())]
    elements = []
    filter_rules = [f'counter name "{prefix}"']
    filter_rules += source_range_rules(service, prefix, objects)
    nat_rules = []
    forwards_to: set[tuple[str, IPAddress]] = set()
    masquerade = (
        service.forwarding_mode is ForwardingMode.SNAT
        and service.external_traffic_policy is TrafficPolicy.CLUSTER
    )
    dsr = (
        service.forwarding_mode is ForwardingMode.DSR
        and service.external_traffic_policy is TrafficPolicy.CLUSTER
    )
    for f in FAMILIES:
        if not service.vips_of(f.version):
            continue
        family_backends = tuple(b for b in backends if b.version == f.version)
        elements += dispatch_elements(service, f, bool(family_backends), dsr)
        if not family_backends:
            filter_rules += [
                f"meta nfproto {f.nfproto} ct state new meta l4proto tcp reject with tcp reset",
                f"meta nfproto {f.nfproto} ct state new reject with icmpx type port-unreachable",
            ]
            continue
        size = maglev.table_size(len(family_backends), service.maglev_size)
        table = maglev.build(
            [(str(b.address), b.weight) for b in family_backends], node.hash_seed, size
        )
        backends_map = f"{prefix}/backends-{f.suffix}"
        objects.append(
            NftObject(
                "inet",
                Rank.DATA_MAP,
                "map",
                backends_map,
                (f"typeof numgen inc mod {size} : {f.header} daddr",),
                tuple(f"{slot} : {table.owner(slot)}" for slot in range(size)),
            )
        )
        flow_hash = hash_expression(f, service.session_affinity, size, node.hash_seed)
        label = f"ct label set {MASQUERADE_LABEL} " if masquerade else ""
        for port in service.ports:
            nat_rules.append(
                f"meta nfproto {f.nfproto} meta l4proto {port.protocol} th dport {port.port} "
                f"{label}dnat {f.header} to {flow_hash} map @{backends_map} : {port.target_port}"
            )
        if dsr:
            owners, targets = owner_objects(service, node, f, table, family_backends, flow_hash)
            objects += owners
            forwards_to |= targets
    filter_rules.append("accept")
    objects.append(
        NftObject("inet", Rank.SERVICE_CHAIN, "chain", f"{prefix}/filter", tuple(filter_rules))
    )
    if nat_rules:
        objects.append(
            NftObject("inet", Rank.SERVICE_CHAIN, "chain", f"{prefix}/nat", tuple(nat_rules))
        )
    return ServiceRules(
        service.key, tuple(objects), tuple(sorted(elements)), tuple(sorted(forwards_to))
    )


def dispatch_elements(
    service: DataplaneService, f: Family, serving: bool, dsr: bool
) -> list[Element]:
    """The service's entries in the shared maps: each VIP, and each VIP . proto . port.

    Without a usable backend only the filter entry exists, so new flows meet the reject.
    """
    prefix = service_prefix(service.key)
    elements = []
    for vip in service.vips_of(f.version):
        elements.append(Element("inet", f"vips-{f.suffix}", str(vip)))
        for port in service.ports:
            key = f"{vip} . {port.protocol} . {port.port}"
            elements.append(
                Element("inet", f"services-{f.suffix}", f"{key} : jump {prefix}/filter")
            )
            if serving:
                elements.append(Element("inet", f"dnat-{f.suffix}", f"{key} : goto {prefix}/nat"))
            if serving and dsr:
                dsr_chain = f"{prefix}/dsr-{f.suffix}"
                elements.append(
                    Element("netdev", f"services-{f.suffix}", f"{key} : goto {dsr_chain}")
                )
    return elements


def hash_expression(f: Family, affinity: SessionAffinity, size: int, seed: int) -> str:
    """The flow hash every node computes identically: the 4-tuple, or the client only."""
    if affinity is SessionAffinity.CLIENT_IP:
        fields = f"{f.header} saddr"
    else:
        fields = f"{f.header} saddr . th sport . {f.header} daddr . th dport"
    return f"jhash {fields} mod {size} seed 0x{seed:08x}"


def source_range_rules(
    service: DataplaneService, prefix: str, objects: list[NftObject]
) -> list[str]:
    """Drop clients outside loadBalancerSourceRanges, per family; adds the range sets."""
    if not service.source_ranges:
        return []
    rules = []
    for f in FAMILIES:
        if not service.vips_of(f.version):
            continue
        ranges = collapse(r for r in service.source_ranges if r.version == f.version)
        if not ranges:
            # Ranges were given for the other family only: nobody of this one is allowed.
            rules.append(f"meta nfproto {f.nfproto} drop")
            continue
        name = f"{prefix}/sources-{f.suffix}"
        objects.append(
            NftObject(
                "inet",
                Rank.SET,
                "set",
                name,
                (
                    f"typeof {f.header} saddr",
                    "flags interval",
                ),
                tuple(str(r) for r in ranges),
            )
        )
        rules.append(f"meta nfproto {f.nfproto} {f.header} saddr != @{name} drop")
    return rules


def collapse(ranges: Iterable[IPNetwork]) -> list[IPNetwork]:
    # nft refuses overlapping intervals in one set.
    v4 = [r for r in ranges if isinstance(r, ipaddress.IPv4Network)]
    v6 = [r for r in ranges if isinstance(r, ipaddress.IPv6Network)]
    return [*ipaddress.collapse_addresses(v4), *ipaddress.collapse_addresses(v6)]


def owner_objects(
    service: DataplaneService,
    node: NodeContext,
    f: Family,
    table: maglev.MaglevTable,
    backends: Sequence[Backend],
    flow_hash: str,
) -> tuple[list[NftObject], set[tuple[str, IPAddress]]]:
    """DSR: which node owns each Maglev slot. Local slots continue to the nat chain."""
    if node.interface is None:
        raise RenderError(f"service {service.key}: DSR needs the node's uplink interface")
    prefix = service_prefix(service.key)
    node_of = {str(b.address): b.node for b in backends}
    verdicts = []
    targets = set()
    for slot in range(table.size):
        owner = node_of[table.owner(slot)]
        if owner == node.node_name:
            verdicts.append(f"{slot} : accept")
            continue
        address = node.address_of(owner, f.version)
        if address is None:
            raise RenderError(
                f"service {service.key}: DSR backend on node {owner!r} but that node has "
                f"no IPv{f.version} address in the node context"
            )
        targets.add((owner, address))
        verdicts.append(f"{slot} : goto {node_chain(owner, f.version)}")
    owners = NftObject(
        "netdev",
        Rank.VERDICT_MAP,
        "map",
        f"{prefix}/owners-{f.suffix}",
        (f"typeof numgen inc mod {table.size} : verdict",),
        tuple(verdicts),
    )
    chain = NftObject(
        "netdev",
        Rank.SERVICE_CHAIN,
        "chain",
        f"{prefix}/dsr-{f.suffix}",
        (f"meta protocol {f.header} {flow_hash} vmap @{prefix}/owners-{f.suffix}",),
    )
    return [owners, chain], targets
