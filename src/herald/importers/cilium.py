"""Cilium's LB-IPAM, BGP Control Plane and L2 Announcements kinds -> herald's.

herald's kinds mirror Cilium's, so most fields carry over as they are; what does not is said
field by field: per-node overrides (herald configures BGP per node selector only), peers
found by auto-discovery or accepting any AS, families other than IPv4/IPv6 unicast, pod IP
pools. The older CiliumBGPPeeringPolicy becomes the same objects the v2
kinds do: a BGPClusterConfig, a BGPPeerConfig per neighbor, and BGPAdvertisements.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from herald.api.base import LabelSelector
from herald.api.bgp import BGPAdvertisement, BGPClusterConfig, BGPPeerConfig
from herald.api.l2 import L2AnnouncementPolicy
from herald.api.pool import LoadBalancerIPPool
from herald.api.selector import matches
from herald.importers.attributes import aggregate, well_known
from herald.importers.build import Draft, Emitted, build
from herald.importers.fields import Fields
from herald.importers.objects import Opened, close, herald_meta, identify, open_object
from herald.importers.report import Context, Finding
from herald.importers.secrets import SecretIndex, copy_secret
from herald.importers.selectors import (
    ADVERTISEMENT_LABEL,
    POOL_LABEL,
    Selector,
    both,
    dns_name,
    label_value,
    one_of,
    read_selector,
)
from herald.importers.source import SourceObject

GROUP = "cilium.io"
VERSIONS = ("cilium.io/v2alpha1", "cilium.io/v2")
# Where Cilium looks for BGP password Secrets unless told otherwise (Helm value
# bgpControlPlane.secretNamespace.name).
SECRETS_NAMESPACE = "kube-system"
UNICAST_FAMILIES = ("ipv4", "ipv6")

# Kinds of cilium.io that carry no configuration to convert, and why.
PASSED_OVER = {
    "CiliumBGPNodeConfig": "written by the Cilium operator from CiliumBGPClusterConfig, which "
    "is what to import",
}


@dataclass
class Env:
    """What converting one object may look at beyond it."""

    secrets: SecretIndex
    pool_labels: dict[str, dict[str, str]] = field(default_factory=dict)


def convert(
    objects: list[SourceObject], secrets: SecretIndex, findings: list[Finding]
) -> list[Emitted]:
    """Every Cilium object of `objects` (all of one of `KINDS`) as herald objects."""
    env = Env(secrets)
    for obj in objects:
        _, kind, name, _ = identify(obj)
        metadata = obj.raw.get("metadata")
        labels = metadata.get("labels") if isinstance(metadata, dict) else None
        if kind == "CiliumLoadBalancerIPPool":
            found = labels if isinstance(labels, dict) else {}
            env.pool_labels[name] = {str(k): str(v) for k, v in found.items()}
    emitted: list[Emitted] = []
    for obj in objects:
        opened = open_object(obj, findings)
        if opened.meta.name:
            emitted.extend(KINDS[opened.origin.kind](opened, env))
        close(opened)
    return emitted


def _file(opened: Opened) -> str:
    return f"{opened.origin.kind.lower()}.yaml"


def _spec(opened: Opened) -> Fields | None:
    spec = opened.fields.sub("spec")
    if spec is None:
        opened.ctx.error("spec", f"missing; a {opened.origin.kind} needs a spec")
    return spec


def _became(opened: Opened, made: list[Emitted]) -> list[Emitted]:
    if made:
        what = ", ".join(f"{e.kind} {e.name}" for e in made if e.kind != "Secret")
        opened.ctx.became(f"{opened.origin.text} became {what}")
    else:
        opened.ctx.became(f"{opened.origin.text} became nothing (see below)")
    return made


# -- CiliumLoadBalancerIPPool --------------------------------------------------------------


def _pool(opened: Opened, env: Env) -> list[Emitted]:
    spec = _spec(opened)
    if spec is None:
        return []
    data: dict[str, Any] = {"metadata": herald_meta(opened.meta.name, opened.meta.labels)}
    draft = Draft(data, opened.ctx)
    blocks: list[dict[str, str]] = []
    has_cidr = False
    # `cidrs` is the field's name before Cilium 1.15 (v2alpha1).
    for field_name in ("blocks", "cidrs"):
        for index, block in enumerate(spec.subs(field_name)):
            path = f"spec.{field_name}[{index}]"
            written: dict[str, str] = {}
            cidr = block.text("cidr")
            if cidr:
                written["cidr"] = _network(cidr, f"{path}.cidr", opened)
                has_cidr = has_cidr or _has_first_last(written["cidr"])
            for bound in ("start", "stop"):
                value = block.text(bound)
                if value:
                    written[bound] = value
            draft.came_from(f"spec.blocks[{len(blocks)}]", path)
            blocks.append(written)
    spec_data: dict[str, Any] = {"blocks": blocks}
    first_last = spec.raw("allowFirstLastIPs")
    if isinstance(first_last, bool):  # an unquoted Yes/No in YAML 1.1
        first_last = "Yes" if first_last else "No"
    if isinstance(first_last, str) and first_last.lower() in ("yes", "no"):
        spec_data["allowFirstLastIPs"] = first_last.capitalize()
        draft.came_from("spec.allowFirstLastIPs", "spec.allowFirstLastIPs")
    elif first_last is not None:
        opened.ctx.error("spec.allowFirstLastIPs", f"expected Yes or No, got {first_last!r}")
    elif has_cidr and opened.fields.raw("apiVersion") == "cilium.io/v2alpha1":
        opened.ctx.changed(
            "spec.allowFirstLastIPs",
            "not set: Cilium 1.15 then kept the first and last address of each CIDR for "
            "itself, Cilium 1.16 and later (and herald) hand them out; set "
            'allowFirstLastIPs: "No" on the herald pool if this pool ran on Cilium 1.15',
        )
    disabled = spec.flag("disabled")
    if disabled:
        spec_data["disabled"] = True
    selector = read_selector(spec.sub("serviceSelector"))
    if selector is not None:
        spec_data["serviceSelector"] = selector
        draft.came_from("spec.serviceSelector", "spec.serviceSelector")
    data["spec"] = spec_data
    pool = build(LoadBalancerIPPool, draft)
    return _became(opened, [] if pool is None else [Emitted(pool, (opened.origin,), _file(opened))])


def _network(cidr: str, path: str, opened: Opened) -> str:
    """A CIDR with its host bits cleared, as Cilium reads it (herald refuses host bits)."""
    try:
        ipaddress.ip_network(cidr, strict=True)
        return cidr
    except ValueError:
        pass
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return cidr  # herald's validation says what is wrong with it
    opened.ctx.changed(
        path, f"{cidr} has host bits set; Cilium reads it as {network}, so that is written"
    )
    return str(network)


def _has_first_last(cidr: str) -> bool:
    try:
        network = ipaddress.ip_network(cidr, strict=False)
    except ValueError:
        return False
    return network.max_prefixlen - network.prefixlen > 1


# -- CiliumBGPClusterConfig ----------------------------------------------------------------


def _cluster_config(opened: Opened, env: Env) -> list[Emitted]:
    spec = _spec(opened)
    if spec is None:
        return []
    ctx = opened.ctx
    data: dict[str, Any] = {"metadata": herald_meta(opened.meta.name, opened.meta.labels)}
    draft = Draft(data, ctx)
    spec_data: dict[str, Any] = {}
    selector = read_selector(spec.sub("nodeSelector"))
    if selector is not None:
        spec_data["nodeSelector"] = selector
        draft.came_from("spec.nodeSelector", "spec.nodeSelector")
    instances: list[dict[str, Any]] = []
    for i, instance in enumerate(spec.subs("bgpInstances")):
        path = f"spec.bgpInstances[{i}]"
        name = instance.text("name")
        asn = instance.integer("localASN")
        if asn is None:
            if not instance.has("localASN"):  # else its wrong type is an error already
                ctx.not_converted(
                    f"{path}.localASN",
                    "not set: herald needs each instance's AS number; the instance is left out",
                )
            instance.raw("peers")  # the instance as a whole is reported
            continue
        written: dict[str, Any] = {"name": name, "localASN": asn}
        port = instance.integer("localPort")
        if port is not None:
            written["localPort"] = port
        herald_path = f"spec.bgpInstances[{len(instances)}]"
        draft.came_from(herald_path, path)
        draft.came_from(f"{herald_path}.localASN", f"{path}.localASN")
        draft.came_from(f"{herald_path}.localPort", f"{path}.localPort")
        peers: list[dict[str, Any]] = []
        for j, peer in enumerate(instance.subs("peers")):
            written_peer = _v2_peer(peer, f"{path}.peers[{j}]", opened)
            if written_peer is not None:
                at = f"{herald_path}.peers[{len(peers)}]"
                draft.came_from(at, f"{path}.peers[{j}]")
                for key in ("peerAddress", "peerASN"):
                    draft.came_from(f"{at}.{key}", f"{path}.peers[{j}].{key}")
                peers.append(written_peer)
        written["peers"] = peers
        instances.append(written)
    spec_data["bgpInstances"] = instances
    data["spec"] = spec_data
    config = build(BGPClusterConfig, draft)
    made = [] if config is None else [Emitted(config, (opened.origin,), _file(opened))]
    return _became(opened, made)


def _v2_peer(peer: Fields, path: str, opened: Opened) -> dict[str, Any] | None:
    ctx = opened.ctx
    name = peer.text("name")
    address = peer.text("peerAddress")
    asn = peer.integer("peerASN")
    discovery = peer.raw("autoDiscovery")
    ref = peer.sub("peerConfigRef")
    ref_name = None
    if ref is not None:
        ref_name = ref.text("name")
        group, kind = ref.text("group"), ref.text("kind")
        if (group or GROUP) != GROUP or (kind or "CiliumBGPPeerConfig") != "CiliumBGPPeerConfig":
            ctx.not_converted(
                f"{path}.peerConfigRef",
                f"refers to {kind} of group {group}; herald peers refer to BGPPeerConfig only, "
                "so the peer uses herald's defaults",
            )
            ref_name = None
    if discovery is not None:
        ctx.not_converted(
            f"{path}.autoDiscovery",
            "herald does not discover peers (default gateway, BGP unnumbered): write the "
            "router's address in peerAddress; the peer is left out",
        )
        return None
    if not address:
        ctx.not_converted(
            f"{path}.peerAddress", "not set: herald needs the peer's address; the peer is left out"
        )
        return None
    if not asn:
        ctx.not_converted(
            f"{path}.peerASN",
            f"{'0' if asn == 0 else 'not set'}: Cilium then accepts any AS from the peer; "
            "herald checks the peer's OPEN against its AS, so write it; the peer is left out",
        )
        return None
    written: dict[str, Any] = {"name": name, "peerAddress": address.strip(), "peerASN": asn}
    if ref_name:
        written["peerConfigRef"] = {"name": ref_name}
    return written


# -- CiliumBGPPeerConfig -------------------------------------------------------------------


def _peer_config(opened: Opened, env: Env) -> list[Emitted]:
    spec = opened.fields.sub("spec")
    made: list[Emitted] = []
    draft = Draft({"metadata": herald_meta(opened.meta.name, opened.meta.labels)}, opened.ctx)
    if spec is not None:
        draft.data["spec"] = _session(spec, "spec", draft, env, made)
        draft.data["spec"]["families"] = _v2_families(spec, draft)
        if not draft.data["spec"]["families"]:
            del draft.data["spec"]["families"]
    config = build(BGPPeerConfig, draft)
    if config is not None:
        made.insert(0, Emitted(config, (opened.origin,), _file(opened)))
    return _became(opened, made)


def _session(
    fields: Fields, path: str, draft: Draft, env: Env, made: list[Emitted]
) -> dict[str, Any]:
    """The session settings of a CiliumBGPPeerConfig's spec, as herald writes them."""
    ctx = draft.ctx
    spec: dict[str, Any] = {}
    transport = fields.sub("transport")
    if transport is not None:
        port = transport.integer("peerPort")
        if port is not None:
            spec["transport"] = {"peerPort": port}
            draft.came_from("spec.transport.peerPort", f"{path}.transport.peerPort")
        local_port = transport.integer("localPort")
        if local_port is not None:
            ctx.not_converted(
                f"{path}.transport.localPort",
                "herald connects from a port the kernel chooses (Cilium deprecated this "
                "field too); left out",
            )
    _timers(fields.sub("timers"), f"{path}.timers", spec, draft)
    _auth(fields.text("authSecretRef"), f"{path}.authSecretRef", spec, draft, env, made)
    _graceful_restart(fields.sub("gracefulRestart"), path, spec, draft)
    multihop = fields.integer("ebgpMultihop")
    if multihop is not None:
        spec["ebgpMultihop"] = multihop
        draft.came_from("spec.ebgpMultihop", f"{path}.ebgpMultihop")
    return spec


def _timers(source: Fields | None, where: str, spec: dict[str, Any], draft: Draft) -> None:
    """The session timers, as the v2 peer config (`timers.*`) and the older policy's
    neighbor (at its top level) write them: the same names as herald's."""
    if source is None:
        return
    names = ("connectRetryTimeSeconds", "holdTimeSeconds", "keepAliveTimeSeconds")
    written = {key: value for key in names if (value := source.integer(key)) is not None}
    if written:
        spec["timers"] = written
        draft.came_from("spec.timers", where)
        for key in written:
            draft.came_from(f"spec.timers.{key}", f"{where}.{key}")


def _graceful_restart(
    restart: Fields | None, path: str, spec: dict[str, Any], draft: Draft
) -> None:
    """`gracefulRestart` as both the v2 peer config and the older policy's neighbor write it."""
    if restart is None:
        return
    graceful: dict[str, Any] = {"enabled": bool(restart.flag("enabled"))}
    seconds = restart.integer("restartTimeSeconds")
    if seconds is not None:
        graceful["restartTimeSeconds"] = seconds
    spec["gracefulRestart"] = graceful
    draft.came_from("spec.gracefulRestart", f"{path}.gracefulRestart")


def _auth(
    name: str | None, path: str, spec: dict[str, Any], draft: Draft, env: Env, made: list[Emitted]
) -> None:
    if not name:
        return
    spec["authSecretRef"] = name
    draft.came_from("spec.authSecretRef", path)
    secret = copy_secret(env.secrets, name, (SECRETS_NAMESPACE,), draft.ctx, path)
    if secret is not None:
        made.append(secret)


def _v2_families(spec: Fields, draft: Draft) -> list[dict[str, Any]]:
    families: list[dict[str, Any]] = []
    for index, family in enumerate(spec.subs("families")):
        path = f"spec.families[{index}]"
        afi, safi = family.text("afi"), family.text("safi")
        selector = read_selector(family.sub("advertisements"))
        if afi not in UNICAST_FAMILIES or (safi or "unicast") != "unicast":
            draft.ctx.not_converted(
                path,
                f"family {afi}/{safi}: herald speaks IPv4 and IPv6 unicast only; left out",
            )
            continue
        written: dict[str, Any] = {"afi": afi, "safi": "unicast"}
        if selector is not None:
            written["advertisements"] = selector
        draft.came_from(f"spec.families[{len(families)}]", path)
        families.append(written)
    return families


# -- CiliumBGPAdvertisement ----------------------------------------------------------------


def _advertisement(opened: Opened, env: Env) -> list[Emitted]:
    spec = _spec(opened)
    if spec is None:
        return []
    ctx = opened.ctx
    draft = Draft({"metadata": herald_meta(opened.meta.name, opened.meta.labels)}, ctx)
    entries: list[dict[str, Any]] = []
    for index, entry in enumerate(spec.subs("advertisements")):
        path = f"spec.advertisements[{index}]"
        kind = entry.text("advertisementType")
        herald_path = f"spec.advertisements[{len(entries)}]"
        written: dict[str, Any] = {"advertisementType": kind}
        service = entry.sub("service")
        selector = read_selector(entry.sub("selector"))
        attributes = entry.sub("attributes")
        if kind not in ("Service", "PodCIDR"):
            ctx.not_converted(
                path,
                f"advertisementType {kind}: herald announces Service addresses and the node's "
                "pod CIDR only; left out",
            )
            if service is not None:
                service.texts("addresses")
            continue
        if kind == "Service":
            if service is not None:
                addresses = service.texts("addresses")
                if addresses:
                    written["service"] = {"addresses": addresses}
                    draft.came_from(f"{herald_path}.service", f"{path}.service.addresses")
                aggregate(
                    written,
                    draft,
                    herald_path,
                    {
                        "ipv4": (
                            _aggregation(service.integer("aggregationLengthIPv4"), 32),
                            f"{path}.service.aggregationLengthIPv4",
                        ),
                        "ipv6": (
                            _aggregation(service.integer("aggregationLengthIPv6"), 128),
                            f"{path}.service.aggregationLengthIPv6",
                        ),
                    },
                )
            if selector is None:
                ctx.changed(
                    f"{path}.selector",
                    "not set: in Cilium this advertisement then selects no Service, so it "
                    "announces nothing and is left out (herald would read no selector as "
                    "every Service)",
                )
                if attributes is not None:
                    _attributes(attributes, f"{path}.attributes", draft, "")
                continue
            written["selector"] = selector
            draft.came_from(f"{herald_path}.selector", f"{path}.selector")
        elif selector is not None:
            ctx.not_converted(
                f"{path}.selector",
                "herald announces every node's own pod CIDR and selects no nodes here; left out",
            )
        if attributes is not None:
            written["attributes"] = _attributes(
                attributes, f"{path}.attributes", draft, f"{herald_path}.attributes"
            )
        draft.came_from(herald_path, path)
        entries.append(written)
    if not entries:
        return _became(opened, [])
    draft.data["spec"] = {"advertisements": entries}
    advertisement = build(BGPAdvertisement, draft)
    made = (
        [] if advertisement is None else [Emitted(advertisement, (opened.origin,), _file(opened))]
    )
    return _became(opened, made)


def _aggregation(length: int | None, full: int) -> int | None:
    """An aggregation length that aggregates (not the host length)."""
    return None if length is None or length == full else length


def _attributes(fields: Fields, path: str, draft: Draft, herald_path: str) -> dict[str, Any]:
    """Cilium's path attributes as herald writes them (the same fields)."""
    written: dict[str, Any] = {}
    communities = fields.sub("communities")
    if communities is not None:
        values: dict[str, list[str]] = {"standard": [], "wellKnown": [], "large": []}
        values["standard"] = communities.texts("standard")
        values["large"] = communities.texts("large")
        for index, name in enumerate(communities.texts("wellKnown")):
            known = well_known(name)
            if known is None:
                draft.ctx.not_converted(
                    f"{path}.communities.wellKnown[{index}]",
                    f"{name!r} is not a well-known community herald knows; left out",
                )
                continue
            values[known[0]].append(known[1])
        written["communities"] = {key: items for key, items in values.items() if items}
        if herald_path:
            draft.came_from(f"{herald_path}.communities", f"{path}.communities")
            for key in ("standard", "large"):
                for index in range(len(values[key])):
                    draft.came_from(
                        f"{herald_path}.communities.{key}[{index}]",
                        f"{path}.communities.{key}[{index}]",
                    )
    preference = fields.integer("localPreference")
    if preference is not None:
        written["localPreference"] = preference
        if herald_path:
            draft.came_from(f"{herald_path}.localPreference", f"{path}.localPreference")
    return written


# -- CiliumBGPNodeConfigOverride -------------------------------------------------------------


def _node_override(opened: Opened, env: Env) -> list[Emitted]:
    spec = _spec(opened)
    node = opened.meta.name
    opened.ctx.became(
        f"{opened.origin.text} became nothing: herald has no per-node BGP settings, it "
        "configures BGP by node selector; to keep these, give the node a BGPClusterConfig "
        f"(nodeSelector kubernetes.io/hostname: {node}) and BGPPeerConfigs of its own, and "
        "leave it out of the other BGPClusterConfigs' nodeSelector"
    )
    if spec is None:
        return []
    for i, instance in enumerate(spec.subs("bgpInstances")):
        path = f"spec.bgpInstances[{i}]"
        name = instance.text("name")
        for key, what in (
            ("routerID", "router ID"),
            ("localASN", "local AS"),
            ("localPort", "listening port"),
        ):
            value = instance.raw(key)
            if value is not None:
                opened.ctx.not_converted(
                    f"{path}.{key}",
                    f"{what} {value} of instance {name} on this node: herald takes it from "
                    "the BGPClusterConfig's instance, alike on every node it selects",
                )
        for j, peer in enumerate(instance.subs("peers")):
            peer_name = peer.text("name")
            address = peer.text("localAddress")
            if address is not None:
                opened.ctx.not_converted(
                    f"{path}.peers[{j}].localAddress",
                    f"source address {address} towards peer {peer_name} on this node: "
                    "herald takes it from the BGPPeerConfig's transport.sourceAddress, alike "
                    "on every node that uses it",
                )
            if peer.raw("localPort") is not None:
                opened.ctx.ignored(
                    f"{path}.peers[{j}].localPort",
                    "has no effect in Cilium either (deprecated); nothing to convert",
                )
    return []


# -- CiliumBGPPeeringPolicy ----------------------------------------------------------------


@dataclass
class _Router:
    """One virtual router of a peering policy while it is converted."""

    policy: str
    instance: str  # its BGP instance's name
    asn: int
    path: str
    base: list[dict[str, Any]]  # advertisement entries every neighbor gets
    service_selector: Selector | None
    export_pod_cidr: bool
    # The BGPAdvertisement neighbors without attributes of their own share, made when the
    # first of them needs it ("" while not made yet, None when there is nothing to announce).
    shared: str | None = ""


def _peering_policy(opened: Opened, env: Env) -> list[Emitted]:
    spec = _spec(opened)
    if spec is None:
        return []
    ctx = opened.ctx
    policy = opened.meta.name
    made: list[Emitted] = []
    draft = Draft({"metadata": herald_meta(policy, opened.meta.labels)}, ctx)
    spec_data: dict[str, Any] = {}
    selector = read_selector(spec.sub("nodeSelector"))
    if selector is not None:
        spec_data["nodeSelector"] = selector
        draft.came_from("spec.nodeSelector", "spec.nodeSelector")
    instances: list[dict[str, Any]] = []
    names: set[str] = set()
    for i, router in enumerate(spec.subs("virtualRouters")):
        path = f"spec.virtualRouters[{i}]"
        asn = router.integer("localASN")
        if not asn:
            ctx.not_converted(
                f"{path}.localASN",
                "herald needs each instance's AS number (not 0); the virtual router is left out",
            )
            router.raw("neighbors")
            continue
        name = f"asn-{asn}" if f"asn-{asn}" not in names else f"asn-{asn}-{i}"
        names.add(name)
        state = _router(router, path, policy, name, asn, opened)
        herald_path = f"spec.bgpInstances[{len(instances)}]"
        draft.came_from(herald_path, path)
        draft.came_from(f"{herald_path}.localASN", f"{path}.localASN")
        peers: list[dict[str, Any]] = []
        for j, neighbor in enumerate(router.subs("neighbors")):
            peer = _neighbor(neighbor, f"{path}.neighbors[{j}]", state, opened, env, made)
            if peer is not None:
                draft.came_from(f"{herald_path}.peers[{len(peers)}]", f"{path}.neighbors[{j}]")
                peers.append(peer)
        instances.append({"name": name, "localASN": asn, "peers": peers})
    spec_data["bgpInstances"] = instances
    draft.data["spec"] = spec_data
    config = build(BGPClusterConfig, draft)
    if config is not None:
        made.insert(0, Emitted(config, (opened.origin,), _file(opened)))
    return _became(opened, made)


def _router(router: Fields, path: str, policy: str, name: str, asn: int, opened: Opened) -> _Router:
    export = bool(router.flag("exportPodCIDR"))
    service_selector = read_selector(router.sub("serviceSelector"))
    addresses = router.texts("serviceAdvertisements") or ["LoadBalancerIP"]
    if router.raw("podIPPoolSelector") is not None:
        opened.ctx.not_converted(
            f"{path}.podIPPoolSelector",
            "herald has no CiliumPodIPPool and announces no pod IP pools; left out",
        )
    base: list[dict[str, Any]] = []
    if export:
        base.append({"advertisementType": "PodCIDR"})
    if service_selector is not None:
        base.append(
            {
                "advertisementType": "Service",
                "service": {"addresses": addresses},
                "selector": service_selector,
            }
        )
    return _Router(policy, name, asn, path, base, service_selector, export)


def _shared_advertisement(router: _Router, opened: Opened, made: list[Emitted]) -> str | None:
    """The BGPAdvertisement every neighbor of `router` without attributes of its own shares
    (made once); None when the router announces nothing."""
    if router.shared != "":
        return router.shared
    router.shared = None
    name = f"{router.policy}-{router.instance}"
    if not router.base:
        return None
    draft = Draft(
        {
            "metadata": herald_meta(name, {ADVERTISEMENT_LABEL: label_value(name)}),
            "spec": {"advertisements": router.base},
        },
        opened.ctx,
    )
    draft.came_from("spec.advertisements", router.path)
    advertisement = build(BGPAdvertisement, draft)
    if advertisement is None:
        return None
    made.append(Emitted(advertisement, (opened.origin,), _file(opened)))
    router.shared = name
    return name


def _neighbor(
    neighbor: Fields,
    path: str,
    router: _Router,
    opened: Opened,
    env: Env,
    made: list[Emitted],
) -> dict[str, Any] | None:
    ctx = opened.ctx
    cidr = neighbor.text("peerAddress") or ""
    address = _host(cidr)
    asn = neighbor.integer("peerASN")
    config_name = f"{router.policy}-{router.instance}-{dns_name(address or cidr)}"
    draft = Draft({"metadata": herald_meta(config_name)}, ctx)
    spec: dict[str, Any] = {}
    port = neighbor.integer("peerPort")
    if port is not None:
        spec["transport"] = {"peerPort": port}
        draft.came_from("spec.transport.peerPort", f"{path}.peerPort")
    _timers(neighbor, path, spec, draft)
    multihop = neighbor.integer("eBGPMultihopTTL")
    if multihop is not None:
        spec["ebgpMultihop"] = multihop
        draft.came_from("spec.ebgpMultihop", f"{path}.eBGPMultihopTTL")
    _graceful_restart(neighbor.sub("gracefulRestart"), path, spec, draft)
    afis = [("ipv4", "unicast"), ("ipv6", "unicast")]
    listed = neighbor.subs("families")
    if listed:
        afis = [(f.text("afi") or "", f.text("safi") or "") for f in listed]
    secret_name = neighbor.text("authSecretRef")
    if address is None or not asn:
        neighbor.raw("advertisedPathAttributes")  # the neighbor as a whole is reported
        if address is None:
            ctx.not_converted(
                f"{path}.peerAddress",
                f"{cidr!r} is not one address (/32 or /128); herald peers with one address; "
                "the neighbor is left out",
            )
        if not asn:
            ctx.not_converted(
                f"{path}.peerASN",
                "0: Cilium then accepts any AS from the peer; herald checks the peer's OPEN "
                "against its AS, so write it; the neighbor is left out",
            )
        return None
    _auth(secret_name, f"{path}.authSecretRef", spec, draft, env, made)
    advertisement = _neighbor_advertisement(neighbor, path, router, config_name, opened, env, made)
    families: list[dict[str, Any]] = []
    for index, (afi, safi) in enumerate(afis):
        if afi not in UNICAST_FAMILIES or safi != "unicast":
            ctx.not_converted(
                f"{path}.families[{index}]",
                f"family {afi}/{safi}: herald speaks IPv4 and IPv6 unicast only; left out",
            )
            continue
        family: dict[str, Any] = {"afi": afi, "safi": "unicast"}
        if advertisement is not None:
            family["advertisements"] = {
                "matchLabels": {ADVERTISEMENT_LABEL: label_value(advertisement)}
            }
        families.append(family)
    if families:
        spec["families"] = families
    draft.data["spec"] = spec
    config = build(BGPPeerConfig, draft)
    if config is None:
        return None
    made.append(Emitted(config, (opened.origin,), _file(opened)))
    return {
        "name": address,
        "peerAddress": address,
        "peerASN": asn,
        "peerConfigRef": {"name": config_name},
    }


def _host(cidr: str) -> str | None:
    """The address of a peering policy's `peerAddress` (a /32 or /128 CIDR, or a bare one)."""
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=True)
    except ValueError:
        return None
    if network.prefixlen != network.max_prefixlen:
        return None
    return str(network.network_address)


def _neighbor_advertisement(
    neighbor: Fields,
    path: str,
    router: _Router,
    name: str,
    opened: Opened,
    env: Env,
    made: list[Emitted],
) -> str | None:
    """The BGPAdvertisement for this neighbor: the router's shared one, or one of its own
    when the neighbor attaches path attributes."""
    ctx = opened.ctx
    attributed = neighbor.subs("advertisedPathAttributes")
    if not attributed:
        return _shared_advertisement(router, opened, made)
    draft = Draft({}, ctx)
    entries = [dict(entry) for entry in router.base]
    for index, attrs in enumerate(attributed):
        apath = f"{path}.advertisedPathAttributes[{index}]"
        selector_type = attrs.text("selectorType")
        selector = read_selector(attrs.sub("selector"))
        attributes = _attributes(attrs, apath, draft, "")
        kind = {"PodCIDR": "PodCIDR", "CiliumLoadBalancerIPPool": "Service"}.get(
            selector_type or ""
        )
        target = next((e for e in entries if e["advertisementType"] == kind), None)
        if kind is None:
            ctx.not_converted(
                f"{apath}.selectorType",
                f"{selector_type}: herald has no pod IP pools to attach attributes to; left out",
            )
            continue
        if target is None:
            ctx.ignored(
                apath,
                f"the virtual router announces no {selector_type} routes, so these attributes "
                "apply to nothing",
            )
            continue
        if selector is None:
            _add_attributes(target, attributes)
        elif kind == "PodCIDR":
            ctx.not_converted(
                f"{apath}.selector",
                "herald attaches attributes to every node's pod CIDR alike and selects no "
                "nodes; these attributes are left out",
            )
        else:
            pools = _pools_selected(selector, f"{apath}.selector", ctx, env)
            if pools is None:
                continue
            entries.append(
                {
                    **target,
                    "selector": both(router.service_selector, one_of(POOL_LABEL, pools)),
                    "attributes": attributes,
                }
            )
    draft.data = {
        "metadata": herald_meta(name, {ADVERTISEMENT_LABEL: label_value(name)}),
        "spec": {"advertisements": entries},
    }
    draft.came_from("spec.advertisements", f"{path}.advertisedPathAttributes")
    advertisement = build(BGPAdvertisement, draft)
    if advertisement is None:
        return _shared_advertisement(router, opened, made)
    made.append(Emitted(advertisement, (opened.origin,), _file(opened)))
    return name


def _add_attributes(entry: dict[str, Any], attributes: dict[str, Any]) -> None:
    merged = dict(entry.get("attributes", {}))
    for key, value in attributes.items():
        if key == "communities":
            old = merged.get("communities", {})
            merged["communities"] = {
                kind: sorted(set(old.get(kind, [])) | set(value.get(kind, [])))
                for kind in ("standard", "wellKnown", "large")
                if old.get(kind) or value.get(kind)
            }
        else:
            merged[key] = value
    entry["attributes"] = merged


def _pools_selected(selector: Selector, path: str, ctx: Context, env: Env) -> list[str] | None:
    """The imported pools `selector` selects by label, as herald selects their Services:
    by the label `herald.io/pool` (reported), since herald's advertisements select Services."""
    try:
        parsed = LabelSelector.model_validate(selector)
    except ValidationError:
        ctx.not_converted(path, "is not a valid label selector; these attributes are left out")
        return None
    chosen = sorted(name for name, labels in env.pool_labels.items() if matches(parsed, labels))
    if not chosen:
        ctx.not_converted(
            path,
            "selects none of the imported CiliumLoadBalancerIPPools (import them too); these "
            "attributes are left out",
        )
        return None
    ctx.changed(
        path,
        f"herald attaches attributes by Service, not by pool: they go to Services labelled "
        f"{POOL_LABEL} in ({', '.join(chosen)}); label the Services holding addresses of "
        "those pools",
    )
    return chosen


# -- CiliumL2AnnouncementPolicy ------------------------------------------------------------


def _l2_policy(opened: Opened, env: Env) -> list[Emitted]:
    spec = opened.fields.sub("spec")
    draft = Draft({"metadata": herald_meta(opened.meta.name, opened.meta.labels)}, opened.ctx)
    # Cilium announces neither kind of address unless told to; herald announces load
    # balancer IPs by default, so both are always written.
    written: dict[str, Any] = {"loadBalancerIPs": False, "externalIPs": False}
    if spec is not None:
        for key in ("serviceSelector", "nodeSelector"):
            selector = read_selector(spec.sub(key))
            if selector is not None:
                written[key] = selector
                draft.came_from(f"spec.{key}", f"spec.{key}")
        interfaces = spec.texts("interfaces")
        if interfaces:
            written["interfaces"] = interfaces
            draft.came_from("spec.interfaces", "spec.interfaces")
        for key in ("loadBalancerIPs", "externalIPs"):
            written[key] = bool(spec.flag(key))
    draft.data["spec"] = written
    policy = build(L2AnnouncementPolicy, draft)
    made = [] if policy is None else [Emitted(policy, (opened.origin,), _file(opened))]
    return _became(opened, made)


KINDS: dict[str, Callable[[Opened, Env], list[Emitted]]] = {
    "CiliumLoadBalancerIPPool": _pool,
    "CiliumBGPClusterConfig": _cluster_config,
    "CiliumBGPPeerConfig": _peer_config,
    "CiliumBGPAdvertisement": _advertisement,
    "CiliumBGPNodeConfigOverride": _node_override,
    "CiliumBGPPeeringPolicy": _peering_policy,
    "CiliumL2AnnouncementPolicy": _l2_policy,
}
