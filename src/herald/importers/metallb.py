"""MetalLB's configuration -> herald's.

MetalLB and herald cut the same configuration differently. MetalLB names address pools and
BGP peers, and its advertisements pick pools and peers by name or label; herald's objects
select Services, nodes and BGPAdvertisements by label. So the conversion happens in two
steps: each MetalLB object (a custom resource, or an entry of the legacy ConfigMap, see
legacy.py) is read into a record below, located where it was written; then `plan` turns all
records of one MetalLB configuration into herald objects at once:

- IPAddressPool -> LoadBalancerIPPool. herald's pools have no autoAssign switch, and select
  Services by label only: a pool that only serves Services that ask for it, or that selects
  by what herald cannot see (namespace labels, several selectors), selects Services labelled
  `herald.io/pool: <pool>` instead, and the report says which Services to label.
- BGPPeer -> a peer in a BGPClusterConfig (one per node selector, an instance per local AS
  and router ID) and a BGPPeerConfig of its own, whose families select the BGPAdvertisements
  its source peer was given (label `herald.io/advertisement`).
- BGPAdvertisement -> BGPAdvertisement (LOCAL_PREF, communities with Community aliases
  resolved); L2Advertisement -> L2AnnouncementPolicy; BFDProfile -> BFDProfile.
- An advertisement for some pools only selects the Services of those pools by the same
  `herald.io/pool` label; one for every pool selects every Service, exactly as in MetalLB.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from herald.api.base import LabelSelector
from herald.api.bfd import BFDProfile
from herald.api.bgp import BGPAdvertisement, BGPClusterConfig, BGPPeerConfig
from herald.api.l2 import L2AnnouncementPolicy
from herald.api.pool import SERVICE_NAMESPACE_KEY, IPBlock, LoadBalancerIPPool
from herald.api.selector import matches
from herald.importers.attributes import aggregate, metallb_community
from herald.importers.build import Draft, Emitted, build
from herald.importers.fields import Fields
from herald.importers.objects import Opened, close, herald_meta, open_object
from herald.importers.report import Context, Finding
from herald.importers.secrets import SecretIndex, copy_secret, password_secret
from herald.importers.selectors import (
    ADVERTISEMENT_LABEL,
    POOL_LABEL,
    Selector,
    both,
    canonical,
    dns_name,
    label_value,
    one_of,
    read_selector,
)
from herald.importers.source import SourceObject

GROUP = "metallb.io"
VERSIONS = ("metallb.io/v1beta1", "metallb.io/v1beta2")
KINDS = (
    "IPAddressPool",
    "BGPPeer",
    "BFDProfile",
    "BGPAdvertisement",
    "Community",
    "L2Advertisement",
)
PASSED_OVER = {
    "ServiceL2Status": "status MetalLB writes; nothing to convert",
    "ServiceBGPStatus": "status MetalLB writes; nothing to convert",
    "ConfigurationState": "status MetalLB writes; nothing to convert",
}
NAMESPACE = "metallb-system"

# More /24s than this in one avoidBuggyIPs pool would write too many ranges to be read.
MAX_BUGGY_IP_RANGES = 1024


@dataclass(frozen=True)
class Dialect:
    """How one of MetalLB's configuration formats names its fields."""

    renamed: dict[str, str]  # a custom resource's field name -> this format's, where it differs
    resources: bool  # the custom resources (fields only they have are read)

    def __call__(self, name: str) -> str:
        return self.renamed.get(name, name)


RESOURCES = Dialect({}, resources=True)


# -- what is read -------------------------------------------------------------------------


@dataclass
class Pool:
    ctx: Context
    name: str
    labels: dict[str, str]
    draft: Draft  # the LoadBalancerIPPool, its selector still to be decided
    selector: Selector | None  # from serviceAllocation
    # Why the pool selects Services by label instead: (path, reason, whether it loses what
    # the source said); empty when it need not.
    by_label: list[tuple[str, str, bool]]
    file: str


@dataclass
class Peer:
    ctx: Context
    name: str
    path: str
    my_asn: int
    router_id: str | None
    node_selector: Selector | None
    entry: dict[str, Any]  # the peer in its BGPClusterConfig instance
    draft: Draft  # its BGPPeerConfig, families still to be decided
    afis: list[str]
    password: tuple[str, str] | None  # (password, path)
    password_secret: tuple[str, str, str] | None  # (name, namespace, path)
    file: str


@dataclass
class PoolChoice:
    """Which pools an advertisement applies to, as written."""

    names: list[str] | None
    names_path: str
    selectors: list[Selector]
    selectors_path: str

    @property
    def path(self) -> str:
        """Where the choice was written (the names if given, else the selectors)."""
        return self.names_path if self.names is not None else self.selectors_path


@dataclass
class Advertisement:
    ctx: Context
    name: str
    path: str
    pools: PoolChoice
    peers: list[str]
    peers_path: str
    service_selectors: list[Selector]
    local_pref: tuple[int, str] | None
    communities: list[tuple[str, str]]  # (as written, path)
    aggregation: dict[str, tuple[int | None, str]]
    file: str


@dataclass
class L2:
    ctx: Context
    name: str
    path: str
    pools: PoolChoice
    node_selectors: list[Selector]
    service_selectors: list[Selector]
    interfaces: list[str]
    interfaces_path: str
    file: str


@dataclass
class Bfd:
    ctx: Context
    name: str
    draft: Draft
    file: str


@dataclass
class Aliases:
    """Community aliases (a Community object, or the legacy `bgp-communities`)."""

    ctx: Context
    values: dict[str, tuple[str, str]]  # alias -> (value, path)


@dataclass
class Config:
    """One MetalLB configuration: the custom resources of one namespace, or one ConfigMap."""

    name: str  # what objects the import names itself start with
    namespace: str  # where MetalLB looks for password Secrets
    pools: list[Pool] = field(default_factory=list)
    peers: list[Peer] = field(default_factory=list)
    advertisements: list[Advertisement] = field(default_factory=list)
    l2: list[L2] = field(default_factory=list)
    bfd: list[Bfd] = field(default_factory=list)
    aliases: list[Aliases] = field(default_factory=list)


@dataclass(frozen=True)
class ServiceAddresses:
    """A LoadBalancer Service among the imported objects and the addresses it holds."""

    key: str
    labels: dict[str, str]
    addresses: tuple[str, ...]


# -- reading the custom resources ---------------------------------------------------------


def read_resources(objects: list[SourceObject], findings: list[Finding]) -> list[Config]:
    """The MetalLB custom resources of `objects`, one Config per namespace."""
    configs: dict[str, Config] = {}
    for obj in objects:
        opened = open_object(obj, findings)
        namespace = opened.meta.namespace or NAMESPACE
        name = "metallb" if namespace == NAMESPACE else f"metallb-{dns_name(namespace)}"
        config = configs.setdefault(namespace, Config(name, namespace))
        kind = opened.origin.kind
        spec = opened.fields.sub("spec")
        if spec is None and kind in ("IPAddressPool", "BGPPeer"):
            opened.ctx.error("spec", f"missing; a {kind} needs a spec")
        elif opened.meta.name:  # without one, open_object has said so
            # An advertisement without spec applies to every pool and peer.
            _READERS[kind](spec or Fields({}, "spec", opened.ctx), opened, config)
        close(opened)
    return [configs[namespace] for namespace in sorted(configs)]


def _read_pool(spec: Fields, opened: Opened, config: Config) -> None:
    meta = opened.meta
    config.pools.append(
        read_pool(spec, meta.name, meta.labels, opened.ctx, RESOURCES, _file(opened))
    )


def _read_peer(spec: Fields, opened: Opened, config: Config) -> None:
    peer = read_peer(spec, opened.meta.name, opened.ctx, RESOURCES, _file(opened))
    if peer is None:
        opened.ctx.became(f"{opened.origin.text} became nothing (see below)")
    else:
        config.peers.append(peer)


def _read_advertisement(spec: Fields, opened: Opened, config: Config) -> None:
    config.advertisements.append(
        read_advertisement(spec, opened.meta.name, opened.ctx, RESOURCES, _file(opened))
    )


def _read_l2(spec: Fields, opened: Opened, config: Config) -> None:
    ctx = opened.ctx
    preferred = spec.raw("preferredNodeSelectors")
    if preferred:
        ctx.not_converted(
            "spec.preferredNodeSelectors",
            "herald has no preferred announcing nodes: every node the policy selects takes "
            "part in the election alike; left out",
        )
    config.l2.append(
        L2(
            ctx,
            opened.meta.name,
            "spec",
            pool_choice(spec),
            [s for f in spec.subs("nodeSelectors") if (s := read_selector(f)) is not None],
            [s for f in spec.subs("serviceSelectors") if (s := read_selector(f)) is not None],
            spec.texts("interfaces"),
            "spec.interfaces",
            _file(opened),
        )
    )


def _read_bfd(spec: Fields, opened: Opened, config: Config) -> None:
    config.bfd.append(read_bfd(spec, opened.meta.name, opened.ctx, RESOURCES, _file(opened)))


def _read_community(spec: Fields, opened: Opened, config: Config) -> None:
    values: dict[str, tuple[str, str]] = {}
    for index, alias in enumerate(spec.subs("communities")):
        name, value = alias.text("name"), alias.text("value")
        if name and value:
            values[name] = (value, f"spec.communities[{index}]")
    config.aliases.append(Aliases(opened.ctx, values))


_READERS: dict[str, Callable[[Fields, Opened, Config], None]] = {
    "IPAddressPool": _read_pool,
    "BGPPeer": _read_peer,
    "BGPAdvertisement": _read_advertisement,
    "L2Advertisement": _read_l2,
    "BFDProfile": _read_bfd,
    "Community": _read_community,
}


def _file(opened: Opened) -> str:
    return f"{opened.origin.kind.lower()}.yaml"


# -- readers shared with the legacy ConfigMap (field names through its Dialect) -------------


def read_pool(
    spec: Fields, name: str, labels: dict[str, str], ctx: Context, names: Dialect, file: str
) -> Pool:
    draft = Draft({"metadata": herald_meta(name, labels)}, ctx)
    key = names("addresses")
    avoid = bool(spec.flag(names("avoidBuggyIPs")))
    blocks = _blocks(spec.texts(key), spec.at(key), avoid, spec.at(names("avoidBuggyIPs")), draft)
    draft.data["spec"] = {"blocks": blocks}
    auto_assign = spec.flag(names("autoAssign"))
    by_label: list[tuple[str, str, bool]] = []
    if auto_assign is False:
        by_label.append(
            (
                spec.at(names("autoAssign")),
                "false: herald pools have no such switch, so this pool selects only the "
                "Services that ask for it by label",
                False,
            )
        )
    selector: Selector | None = None
    allocation = spec.sub("serviceAllocation") if names.resources else None
    if allocation is not None:
        path = allocation.path
        if allocation.raw("priority") is not None:
            ctx.not_converted(
                f"{path}.priority",
                "herald picks among the pools that select a Service oldest first (then by "
                "name), without priorities; left out",
            )
        namespaces = allocation.texts("namespaces")
        namespace_selectors = allocation.raw("namespaceSelectors")
        if namespaces and not namespace_selectors:
            selector = both(
                selector,
                {
                    "matchExpressions": [
                        {"key": SERVICE_NAMESPACE_KEY, "operator": "In", "values": namespaces}
                    ]
                },
            )
            draft.came_from("spec.serviceSelector", f"{path}.namespaces")
        if namespace_selectors:
            # A Service in one of `namespaces` or in a namespace these select may use the
            # pool: herald can write neither the selectors nor the either-or.
            by_label.append(
                (
                    f"{path}.namespaceSelectors",
                    "herald's selectors see a Service's labels, namespace and name, not its "
                    "namespace's labels, so this pool (with its namespaces, which either "
                    "select) selects only the Services that ask for it by label",
                    True,
                )
            )
        service_selectors = [
            s for f in allocation.subs("serviceSelectors") if (s := read_selector(f)) is not None
        ]
        if len(service_selectors) == 1:
            selector = both(selector, service_selectors[0])
            draft.came_from("spec.serviceSelector", f"{path}.serviceSelectors[0]")
        elif len(service_selectors) > 1:
            by_label.append(
                (
                    f"{path}.serviceSelectors",
                    f"{len(service_selectors)} selectors, any of which selects a Service: a "
                    "herald pool has one, so this pool selects only the Services that ask for "
                    "it by label",
                    True,
                )
            )
        ctx.changed(
            path,
            "herald does not prefer this pool for the Services it selects: a Service any other "
            "pool selects too may get its address there (oldest pool first)",
        )
    return Pool(ctx, name, labels, draft, selector, by_label, file)


def _blocks(
    texts: list[str], path: str, avoid_buggy: bool, avoid_path: str, draft: Draft
) -> list[dict[str, str]]:
    """MetalLB's `addresses` (CIDRs and `first-last` ranges) as herald blocks; with
    avoidBuggyIPs, IPv4 ones are cut into ranges that leave out every x.x.x.0 and x.x.x.255,
    which is exactly what MetalLB avoids."""
    spans: list[tuple[int, int, int, str]] = []  # (version, first, last, source path)
    blocks: list[dict[str, str]] = []
    for index, text in enumerate(texts):
        where = f"{path}[{index}]"
        block = _block(text.strip(), where, draft)
        draft.came_from(f"spec.blocks[{len(blocks)}]", where)
        blocks.append(block)
        try:
            spans.append((*IPBlock.model_validate(block).bounds(), where))
        except ValidationError:
            spans.append((0, 0, 0, where))  # herald's validation reports it
    if not avoid_buggy or not any(version == 4 for version, *_ in spans):
        return blocks
    cut: list[dict[str, str]] = []
    for (version, first, last, where), block in zip(spans, blocks, strict=True):
        if version != 4:
            draft.came_from(f"spec.blocks[{len(cut)}]", where)
            cut.append(block)
            continue
        for low, high in _without_buggy(first, last):
            draft.came_from(f"spec.blocks[{len(cut)}]", where)
            cut.append(
                {
                    "start": str(ipaddress.IPv4Address(low)),
                    "stop": str(ipaddress.IPv4Address(high)),
                }
            )
    if len(cut) > MAX_BUGGY_IP_RANGES:
        draft.ctx.not_converted(
            avoid_path,
            f"leaving out every x.x.x.0 and x.x.x.255 address would take {len(cut)} ranges; "
            "herald has no such switch, so the blocks are written whole; cut them yourself",
        )
        return blocks
    draft.ctx.changed(
        avoid_path,
        "herald has no avoidBuggyIPs: the IPv4 blocks are written as ranges that leave out "
        "every address ending in .0 or .255, as MetalLB does",
    )
    return cut


def _block(text: str, where: str, draft: Draft) -> dict[str, str]:
    if "-" in text:
        start, _, stop = text.partition("-")
        return {"start": start.strip(), "stop": stop.strip()}
    try:
        ipaddress.ip_network(text, strict=True)
        return {"cidr": text}
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return {"cidr": text}  # herald's validation says what is wrong
    draft.ctx.changed(
        where, f"{text} has host bits set; MetalLB reads it as {network}, so that is written"
    )
    return {"cidr": str(network)}


def _without_buggy(first: int, last: int) -> Iterable[tuple[int, int]]:
    base = first & ~0xFF
    while base <= last:
        low, high = max(first, base + 1), min(last, base + 254)
        if low <= high:
            yield low, high
        base += 256


def read_peer(
    spec: Fields, name: str, ctx: Context, names: Dialect, file: str, entry_name: str = ""
) -> Peer | None:
    """A BGPPeer (or a legacy `peers` entry), or None when herald cannot peer as asked.
    `name` names its BGPPeerConfig, `entry_name` (default `name`) the peer in its instance."""
    at = spec.at
    resources = names.resources
    my_asn = spec.integer(names("myASN"))
    asn = spec.integer(names("peerASN"))
    address = spec.text(names("peerAddress"))
    draft = Draft({"metadata": herald_meta(name)}, ctx)
    config: dict[str, Any] = {}
    transport: dict[str, Any] = {}
    source = spec.text(names("sourceAddress"))
    if source:
        transport["sourceAddress"] = source
        draft.came_from("spec.transport.sourceAddress", at(names("sourceAddress")))
    port = spec.integer(names("peerPort"))
    if port:
        transport["peerPort"] = port
        draft.came_from("spec.transport.peerPort", at(names("peerPort")))
    if transport:
        config["transport"] = transport
    timers = _timers(spec, names, draft)
    if timers:
        config["timers"] = timers
    router_id = spec.text(names("routerID")) or None
    node_selectors = [
        s
        for f in spec.subs(names("nodeSelectors"))
        if (s := read_selector(f, names("matchLabels"), names("matchExpressions"))) is not None
    ]
    password = spec.text(names("password"))
    pw = (password, at(names("password"))) if password else None
    bfd = spec.text(names("bfdProfile"))
    if bfd:
        config["bfdProfileRef"] = bfd
        draft.came_from("spec.bfdProfileRef", at(names("bfdProfile")))
    if spec.flag(names("ebgpMultiHop")):
        # MetalLB (FRR) writes `ebgp-multihop` without a hop count: FRR then allows 255.
        config["ebgpMultihop"] = 255
        draft.came_from("spec.ebgpMultihop", at(names("ebgpMultiHop")))
    dynamic = interface = None
    secret: tuple[str, str, str] | None = None
    dual_stack = False
    if resources:
        dynamic = spec.text("dynamicASN")
        interface = spec.text("interface")
        secret_ref = spec.sub("passwordSecret")
        if secret_ref is not None and (secret_name := secret_ref.text("name")):
            secret = (secret_name, secret_ref.text("namespace") or "", secret_ref.path)
        if spec.flag("enableGracefulRestart"):
            config["gracefulRestart"] = {"enabled": True}
            draft.came_from("spec.gracefulRestart", at("enableGracefulRestart"))
        spec.flag("disableMP")  # deprecated; its effect (one family a session) is the default
        dual_stack = bool(spec.flag("dualStackAddressFamily"))
        local_asn = spec.integer("localASN")
        if local_asn:
            ctx.not_converted(
                at("localASN"),
                f"herald has no per-session local AS (FRR's local-as {local_asn}): the "
                f"session speaks as AS {my_asn}; left out",
            )
        vrf = spec.text("vrf")
        if vrf:
            ctx.not_converted(
                at("vrf"),
                f"herald peers in the node's main routing table, not in VRF {vrf}: the peer is "
                "converted without it and reaches the router only if that table routes there",
            )
    draft.data["spec"] = config
    if pw is not None and secret is not None:
        ctx.not_converted(
            secret[2],
            "password and passwordSecret are both set (MetalLB refuses that); the inline "
            "password is used",
        )
        secret = None
    if not my_asn:
        ctx.not_converted(
            at(names("myASN")), "not set: herald needs the local AS; the peer is left out"
        )
        return None
    if interface:
        ctx.not_converted(
            at("interface"),
            f"BGP unnumbered over {interface}: herald peers with an address; the peer is left out",
        )
        return None
    if not address:
        ctx.not_converted(at(names("peerAddress")), "not set; the peer is left out")
        return None
    if not asn:
        if dynamic == "internal":
            asn = my_asn
            ctx.changed(
                at("dynamicASN"),
                f"internal: written as peerASN {my_asn} (the local AS), the one AS it accepts",
            )
        else:
            why = "external: MetalLB accepts any AS but its own" if dynamic else "not set"
            ctx.not_converted(
                at("dynamicASN" if dynamic else names("peerASN")),
                f"{why}; herald checks the peer's OPEN against one AS, so write it; the peer "
                "is left out",
            )
            return None
    address = address.strip()
    try:
        afis = [f"ipv{ipaddress.ip_address(address).version}"]
    except ValueError:
        afis = ["ipv4"]  # herald's validation reports the address
    if dual_stack:
        afis = ["ipv4", "ipv6"]
    selector = node_selectors[0] if node_selectors else None
    if len(node_selectors) > 1:
        ctx.not_converted(
            at(names("nodeSelectors")),
            f"{len(node_selectors)} node selectors, any of which selects a node: a herald "
            "BGPClusterConfig has one nodeSelector, so only the first is written; nodes that "
            "only the others select do not peer with this router",
        )
    entry = {"name": entry_name or name, "peerAddress": address, "peerASN": asn}
    return Peer(
        ctx, name, spec.path, my_asn, router_id, selector, entry, draft, afis, pw, secret, file
    )


def _timers(spec: Fields, names: Dialect, draft: Draft) -> dict[str, int]:
    """MetalLB's durations as herald's timers. With only one of hold and keepalive given,
    the other is derived as MetalLB does (keepalive = hold / 3, hold = 3 x keepalive)."""
    hold = _seconds(spec.raw(names("holdTime")), spec.at(names("holdTime")), draft.ctx)
    keepalive = _seconds(
        spec.raw(names("keepaliveTime")), spec.at(names("keepaliveTime")), draft.ctx
    )
    connect = None
    if names.resources:
        connect = _seconds(spec.raw("connectTime"), spec.at("connectTime"), draft.ctx)
    if hold is None and keepalive is not None:
        hold = keepalive * 3
    elif keepalive is None and hold is not None:
        keepalive = hold // 3
    timers: dict[str, int] = {}
    if hold is not None and keepalive is not None:
        timers["holdTimeSeconds"] = hold
        draft.came_from("spec.timers", spec.at(names("holdTime")))
        draft.came_from("spec.timers.holdTimeSeconds", spec.at(names("holdTime")))
        if keepalive >= 1:  # with a hold time of 0 no keepalives are sent at all
            timers["keepAliveTimeSeconds"] = keepalive
            draft.came_from("spec.timers.keepAliveTimeSeconds", spec.at(names("keepaliveTime")))
    if connect is not None:
        timers["connectRetryTimeSeconds"] = connect
        draft.came_from("spec.timers.connectRetryTimeSeconds", spec.at("connectTime"))
    return timers


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def _seconds(value: Any, path: str, ctx: Context) -> int | None:
    """A Go duration ("1m30s", "90s") or a number of seconds, in whole seconds as MetalLB
    rounds it (down)."""
    if value is None or value == "":
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if isinstance(value, str) and text and _DURATION.sub("", text) == "":
        total = sum(float(number) * _UNIT[unit] for number, unit in _DURATION.findall(text))
        return int(total)
    ctx.error(path, f"{value!r} is not a duration; write one such as 90s or 1m30s")
    return None


def read_advertisement(
    spec: Fields, name: str, ctx: Context, names: Dialect, file: str
) -> Advertisement:
    local_pref = spec.integer(names("localPref"))
    communities = spec.texts(names("communities"))
    v4 = spec.integer(names("aggregationLength"))
    v6 = spec.integer(names("aggregationLengthV6"))
    choice = PoolChoice(None, spec.path, [], spec.path)
    peers: list[str] = []
    service_selectors: list[Selector] = []
    if names.resources:
        choice = pool_choice(spec)
        peers = spec.texts("peers")
        service_selectors = [
            s for f in spec.subs("serviceSelectors") if (s := read_selector(f)) is not None
        ]
        if spec.raw("nodeSelectors"):
            ctx.not_converted(
                spec.at("nodeSelectors"),
                "herald announces a Service from every node its BGPClusterConfig selects and "
                "cannot narrow one advertisement's next hops to some nodes; left out",
            )
    return Advertisement(
        ctx,
        name,
        spec.path,
        choice,
        peers,
        spec.at("peers"),
        service_selectors,
        (local_pref, spec.at(names("localPref"))) if local_pref else None,
        [(text, f"{spec.at(names('communities'))}[{i}]") for i, text in enumerate(communities)],
        {
            "ipv4": (None if v4 in (None, 32) else v4, spec.at(names("aggregationLength"))),
            "ipv6": (None if v6 in (None, 128) else v6, spec.at(names("aggregationLengthV6"))),
        },
        file,
    )


def pool_choice(spec: Fields) -> PoolChoice:
    """An advertisement's `ipAddressPools` and `ipAddressPoolSelectors`."""
    listed = spec.texts("ipAddressPools")
    selectors = [
        s for f in spec.subs("ipAddressPoolSelectors") if (s := read_selector(f)) is not None
    ]
    return PoolChoice(
        listed if spec.has("ipAddressPools") else None,
        spec.at("ipAddressPools"),
        selectors,
        spec.at("ipAddressPoolSelectors"),
    )


def read_bfd(spec: Fields, name: str, ctx: Context, names: Dialect, file: str) -> Bfd:
    draft = Draft({"metadata": herald_meta(name)}, ctx)
    written: dict[str, Any] = {}
    for key in (
        "receiveInterval",
        "transmitInterval",
        "detectMultiplier",
        "echoInterval",
        "minimumTtl",
    ):
        value = spec.integer(names(key))
        if value is not None:
            written[key] = value
            draft.came_from(f"spec.{key}", spec.at(names(key)))
    for key in ("echoMode", "passiveMode"):
        flag = spec.flag(names(key))
        if flag is not None:
            written[key] = flag
            draft.came_from(f"spec.{key}", spec.at(names(key)))
    if written.get("echoMode"):
        ctx.changed(
            spec.at(names("echoMode")),
            "herald does not send BFD echo packets: its agent runs the session without echo "
            "and says so in its status",
        )
    draft.data["spec"] = written
    return Bfd(ctx, name, draft, file)


# -- planning herald objects ---------------------------------------------------------------


@dataclass
class _Made:
    """What each source object became, to say it once per object."""

    order: list[Context] = field(default_factory=list)
    names: dict[int, list[str]] = field(default_factory=dict)

    def add(self, ctx: Context, what: str | None) -> None:
        if id(ctx) not in self.names:
            self.order.append(ctx)
            self.names[id(ctx)] = []
        if what is not None and what not in self.names[id(ctx)]:
            self.names[id(ctx)].append(what)


def plan(
    config: Config,
    secrets: SecretIndex,
    services: list[ServiceAddresses],
    describe: Callable[[Context], str] | None = None,
) -> list[Emitted]:
    """Every herald object one MetalLB configuration becomes."""
    made = _Made()
    emitted: list[Emitted] = []
    all_pools = sorted(pool.name for pool in config.pools)
    pool_labels = {pool.name: pool.labels for pool in config.pools}
    for pool in config.pools:
        made.add(pool.ctx, None)
        written_pool = _pool(pool, services)
        if written_pool is not None:
            emitted.append(Emitted(written_pool, (pool.ctx.origin,), pool.file))
            made.add(pool.ctx, f"LoadBalancerIPPool {pool.name}")
    communities = _aliases(config)
    advertisement_names: dict[str, Advertisement] = {}
    for advertisement in config.advertisements:
        made.add(advertisement.ctx, None)
        written = _advertisement(advertisement, all_pools, pool_labels, communities)
        if written is not None:
            emitted.append(Emitted(written, (advertisement.ctx.origin,), advertisement.file))
            advertisement_names[advertisement.name] = advertisement
            made.add(advertisement.ctx, f"BGPAdvertisement {advertisement.name}")
    peer_names = {peer.name for peer in config.peers}
    for advertisement in advertisement_names.values():
        missing = sorted(set(advertisement.peers) - peer_names)
        if missing:
            advertisement.ctx.not_converted(
                advertisement.peers_path,
                f"names BGPPeer {', '.join(missing)}, not among the imported objects; import "
                "it too",
            )
    emitted.extend(_peers(config, advertisement_names, secrets, made))
    for policy in config.l2:
        made.add(policy.ctx, None)
        for l2 in _l2(policy, all_pools, pool_labels):
            emitted.append(Emitted(l2, (policy.ctx.origin,), policy.file))
            made.add(policy.ctx, f"L2AnnouncementPolicy {l2.metadata.name}")
    for profile in config.bfd:
        made.add(profile.ctx, None)
        bfd = build(BFDProfile, profile.draft)
        if bfd is not None:
            emitted.append(Emitted(bfd, (profile.ctx.origin,), profile.file))
            made.add(profile.ctx, f"BFDProfile {profile.name}")
    for aliases in config.aliases:
        made.add(aliases.ctx, None)
    for ctx in made.order:
        names = made.names[id(ctx)]
        subject = describe(ctx) if describe is not None else ctx.origin.text
        if names:
            ctx.became(f"{subject} became {', '.join(names)}")
        elif any(ctx is a.ctx for a in config.aliases):
            ctx.became(
                f"{subject} became no object of its own: its aliases are written out where "
                "BGPAdvertisements name them"
            )
        else:
            ctx.became(f"{subject} became nothing (see below)")
    return emitted


def _pool(pool: Pool, services: list[ServiceAddresses]) -> LoadBalancerIPPool | None:
    selector = pool.selector
    if pool.by_label:
        value = label_value(pool.name)
        selector = both(selector, {"matchLabels": {POOL_LABEL: value}})
        holders = _holders(pool, services)
        todo = f"label them {POOL_LABEL}={value}"
        if holders:
            todo += (
                f"; of the imported Services these hold an address of the pool and need it "
                f"before herald serves them, or they get another address: {', '.join(holders)}"
            )
        for path, reason, lossy in pool.by_label:
            report = pool.ctx.not_converted if lossy else pool.ctx.changed
            report(path, f"{reason}: {todo}")
    if selector is not None:
        pool.draft.data["spec"]["serviceSelector"] = selector
    return build(LoadBalancerIPPool, pool.draft)


def _holders(pool: Pool, services: list[ServiceAddresses]) -> list[str]:
    """Services among the imported objects holding an address of `pool` without its label."""
    try:
        blocks = [IPBlock.model_validate(b).bounds() for b in pool.draft.data["spec"]["blocks"]]
    except (ValidationError, KeyError):
        return []
    found = []
    for service in services:
        if service.labels.get(POOL_LABEL) == pool.name:
            continue
        for text in service.addresses:
            address = ipaddress.ip_address(text)
            if any(v == address.version and lo <= int(address) <= hi for v, lo, hi in blocks):
                found.append(service.key)
                break
    return sorted(found)


def _aliases(config: Config) -> dict[str, str]:
    values: dict[str, str] = {}
    for aliases in config.aliases:
        for name, (value, _) in aliases.values.items():
            values.setdefault(name, value)
    return values


def _selected_pools(
    choice: PoolChoice, all_pools: list[str], pool_labels: dict[str, dict[str, str]], ctx: Context
) -> list[str] | None:
    """The imported pools an advertisement applies to; None for all of them (also when it
    names none, as MetalLB reads that)."""
    if choice.names is None and not choice.selectors:
        return None
    chosen: set[str] = set()
    for name in choice.names or []:
        if name in pool_labels:
            chosen.add(name)
        else:
            ctx.not_converted(
                choice.names_path,
                f"names IPAddressPool {name}, not among the imported objects; import it too",
            )
    for selector in choice.selectors:
        try:
            parsed = LabelSelector.model_validate(selector)
        except ValidationError:
            ctx.error(choice.selectors_path, "is not a valid label selector")
            continue
        chosen.update(name for name, labels in pool_labels.items() if matches(parsed, labels))
    if sorted(chosen) == all_pools:
        return None
    return sorted(chosen)


def _services_of(
    pools: list[str] | None, ctx: Context, path: str, what: str
) -> tuple[bool, Selector | None]:
    """(whether anything is selected, the Service selector standing for `pools`)."""
    if pools is None:
        return True, None
    if not pools:
        ctx.changed(path, f"applies to none of the imported pools; the {what} is left out")
        return False, None
    ctx.changed(
        path,
        f"herald selects Services, not pools: the {what} selects Services labelled "
        f"{POOL_LABEL} in ({', '.join(pools)}); label the Services holding addresses of "
        "those pools",
    )
    return True, one_of(POOL_LABEL, [label_value(p) for p in pools])


def _advertisement(
    advertisement: Advertisement,
    all_pools: list[str],
    pool_labels: dict[str, dict[str, str]],
    communities: dict[str, str],
) -> BGPAdvertisement | None:
    ctx = advertisement.ctx
    pools = _selected_pools(advertisement.pools, all_pools, pool_labels, ctx)
    selected, by_pool = _services_of(pools, ctx, advertisement.pools.path, "BGPAdvertisement")
    if not selected:
        return None
    draft = Draft(
        {
            "metadata": herald_meta(
                advertisement.name, {ADVERTISEMENT_LABEL: label_value(advertisement.name)}
            )
        },
        ctx,
    )
    attributes: dict[str, Any] = {}
    if advertisement.local_pref is not None:
        attributes["localPreference"] = advertisement.local_pref[0]
    written: dict[str, list[str]] = {"standard": [], "large": []}
    for text, path in advertisement.communities:
        value = communities.get(text, text)
        parsed = metallb_community(value)
        if parsed is None:
            ctx.not_converted(
                path,
                f"{text!r} is neither a community (65000:100, large:1:2:3) nor an alias of an "
                "imported Community; left out",
            )
            continue
        index = len(written[parsed[0]])
        draft.came_from(f"spec.advertisements[0].attributes.communities.{parsed[0]}[{index}]", path)
        written[parsed[0]].append(parsed[1])
    if any(written.values()):
        attributes["communities"] = {kind: values for kind, values in written.items() if values}
    entries: list[dict[str, Any]] = []
    selectors: list[Selector | None] = [*advertisement.service_selectors] or [None]
    for service_selector in selectors:
        entry: dict[str, Any] = {
            "advertisementType": "Service",
            "service": {"addresses": ["LoadBalancerIP"]},
        }
        selector = both(by_pool, service_selector)
        if selector is not None:
            entry["selector"] = selector
        if attributes:
            entry["attributes"] = attributes
        aggregate(entry, draft, f"spec.advertisements[{len(entries)}]", advertisement.aggregation)
        draft.came_from(f"spec.advertisements[{len(entries)}]", advertisement.path)
        entries.append(entry)
    if advertisement.local_pref is not None:
        for index in range(len(entries)):
            draft.came_from(
                f"spec.advertisements[{index}].attributes.localPreference",
                advertisement.local_pref[1],
            )
    draft.data["spec"] = {"advertisements": entries}
    return build(BGPAdvertisement, draft)


def _peers(
    config: Config,
    advertisements: dict[str, Advertisement],
    secrets: SecretIndex,
    made: _Made,
) -> list[Emitted]:
    """A BGPClusterConfig per node selector (an instance per local AS and router ID) and a
    BGPPeerConfig per peer."""
    emitted: list[Emitted] = []
    groups: dict[str, list[Peer]] = {}
    for peer in config.peers:
        made.add(peer.ctx, None)
        groups.setdefault(canonical(peer.node_selector), []).append(peer)
    for number, key in enumerate(sorted(groups), start=1):
        peers = groups[key]
        name = config.name if len(groups) == 1 else f"{config.name}-{number}"
        first = peers[0]
        draft = Draft({"metadata": herald_meta(name)}, first.ctx)
        spec: dict[str, Any] = {}
        if first.node_selector is not None:
            spec["nodeSelector"] = first.node_selector
            draft.came_from("spec.nodeSelector", first.ctx.origin.path(first.path))
        by_instance: dict[tuple[int, str], list[Peer]] = {}
        for peer in peers:
            by_instance.setdefault((peer.my_asn, peer.router_id or ""), []).append(peer)
        asns = [asn for asn, _ in by_instance]
        instances: list[dict[str, Any]] = []
        members: list[tuple[Peer, str, str]] = []  # (peer, its BGPPeerConfig, its instance)
        for (asn, router_id), listed in sorted(by_instance.items()):
            instance_name = f"asn-{asn}"
            if asns.count(asn) > 1:
                instance_name += f"-{dns_name(router_id or 'node-address')}"
            at = f"spec.bgpInstances[{len(instances)}]"
            entries: list[dict[str, Any]] = []
            for peer in listed:
                if any(e["peerAddress"] == peer.entry["peerAddress"] for e in entries):
                    peer.ctx.not_converted(
                        peer.path,
                        f"another peer of the same nodes and AS already peers with "
                        f"{peer.entry['peerAddress']}; herald has one session per address, "
                        "so this peer is left out",
                    )
                    continue
                config_name = _peer_config(peer, config, advertisements, secrets, emitted)
                if config_name is None:
                    continue
                draft.came_from(f"{at}.peers[{len(entries)}]", peer.path, peer.ctx)
                entries.append({**peer.entry, "peerConfigRef": {"name": config_name}})
                members.append((peer, config_name, instance_name))
            if not entries:
                continue
            instance: dict[str, Any] = {"name": instance_name, "localASN": asn}
            if router_id:
                instance["routerID"] = router_id
            instance["peers"] = entries
            draft.came_from(f"{at}.routerID", listed[0].path, listed[0].ctx)
            instances.append(instance)
        if not instances:
            continue
        spec["bgpInstances"] = instances
        draft.data["spec"] = spec
        cluster = build(BGPClusterConfig, draft)
        if cluster is None:
            continue
        origins = tuple(dict.fromkeys(peer.ctx.origin for peer, _, _ in members))
        emitted.append(Emitted(cluster, origins, members[0][0].file))
        for peer, config_name, instance_name in members:
            made.add(
                peer.ctx,
                f"peer {peer.entry['name']} of BGPClusterConfig {name} (instance {instance_name})",
            )
            made.add(peer.ctx, f"BGPPeerConfig {config_name}")
    return emitted


def _peer_config(
    peer: Peer,
    config: Config,
    advertisements: dict[str, Advertisement],
    secrets: SecretIndex,
    emitted: list[Emitted],
) -> str | None:
    draft = peer.draft
    name = str(draft.data["metadata"]["name"])
    spec = draft.data["spec"]
    chosen = sorted(
        label_value(a.name) for a in advertisements.values() if not a.peers or peer.name in a.peers
    )
    families = []
    for afi in peer.afis:
        family: dict[str, Any] = {"afi": afi}
        if chosen:
            family["advertisements"] = one_of(ADVERTISEMENT_LABEL, chosen)
        families.append(family)
    spec["families"] = families
    if peer.password is not None:
        secret_name = f"{name}-bgp-password"
        secret = password_secret(secret_name, peer.password[0], peer.ctx, peer.password[1])
        if secret is not None:
            spec["authSecretRef"] = secret_name
            emitted.append(secret)
    elif peer.password_secret is not None:
        secret_name, namespace, path = peer.password_secret
        spec["authSecretRef"] = secret_name
        draft.came_from("spec.authSecretRef", path)
        secret = copy_secret(secrets, secret_name, (namespace or config.namespace,), peer.ctx, path)
        if secret is not None:
            emitted.append(secret)
    obj = build(BGPPeerConfig, draft)
    if obj is None:
        return None
    emitted.append(Emitted(obj, (peer.ctx.origin,), peer.file))
    return name


def _l2(
    policy: L2, all_pools: list[str], pool_labels: dict[str, dict[str, str]]
) -> list[L2AnnouncementPolicy]:
    ctx = policy.ctx
    pools = _selected_pools(policy.pools, all_pools, pool_labels, ctx)
    selected, by_pool = _services_of(pools, ctx, policy.pools.path, "L2AnnouncementPolicy")
    if not selected:
        return []
    interfaces = [f"^{re.escape(name)}$" for name in policy.interfaces]
    nodes: list[Selector | None] = [*policy.node_selectors] or [None]
    services: list[Selector | None] = [*policy.service_selectors] or [None]
    combinations = [(node, service) for node in nodes for service in services]
    made = []
    for index, (node, service) in enumerate(combinations):
        name = policy.name if len(combinations) == 1 else f"{policy.name}-{index + 1}"
        spec: dict[str, Any] = {}
        selector = both(by_pool, service)
        if selector is not None:
            spec["serviceSelector"] = selector
        if node is not None:
            spec["nodeSelector"] = node
        if interfaces:
            spec["interfaces"] = interfaces
        draft = Draft({"metadata": herald_meta(name), "spec": spec}, ctx)
        draft.came_from("spec.interfaces", policy.interfaces_path)
        draft.came_from("spec", policy.path)
        obj = build(L2AnnouncementPolicy, draft)
        if obj is not None:
            made.append(obj)
    if len(combinations) > 1:
        ctx.changed(
            policy.path,
            f"written as {len(combinations)} L2AnnouncementPolicies, one per node selector and "
            "Service selector, since MetalLB's lists select what any of their selectors do",
        )
    return made
