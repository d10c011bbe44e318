"""The ConfigMap formats: MetalLB's `config` ConfigMap (MetalLB 0.12 and before) and Cilium
1.10's `bgp-config` ConfigMap in kube-system, which is the same format (Cilium 1.10 ran
MetalLB's BGP speaker and allocator inside its agent and operator).

The embedded YAML (`data.config`, or `data[config.yaml]` as Cilium's documentation writes
it) is read into the same records as MetalLB's custom resources, located inside the
ConfigMap, and planned the same way. A pool's `protocol` and `bgp-advertisements` become what
MetalLB 0.13 made of them: a BGPAdvertisement or L2Advertisement for that pool.
"""

from __future__ import annotations

from typing import Any

import yaml

from herald.importers.fields import Fields, key_path
from herald.importers.metallb import (
    L2,
    Advertisement,
    Aliases,
    Config,
    Dialect,
    PoolChoice,
    read_advertisement,
    read_bfd,
    read_peer,
    read_pool,
)
from herald.importers.objects import Opened
from herald.importers.report import Context
from herald.importers.selectors import dns_name
from herald.importers.source import KubernetesLoader, SourceObject

CONFIG_KEYS = ("config", "config.yaml")
SECTIONS = ("peers", "address-pools", "bgp-communities", "bfd-profiles")
FILE = "configmap.yaml"
CILIUM_NAME = "bgp-config"
KNOWN_PLACES = (("metallb-system", "config"), ("kube-system", CILIUM_NAME))

LEGACY = Dialect(
    {
        "myASN": "my-asn",
        "peerASN": "peer-asn",
        "peerAddress": "peer-address",
        "sourceAddress": "source-address",
        "peerPort": "peer-port",
        "holdTime": "hold-time",
        "keepaliveTime": "keepalive-time",
        "routerID": "router-id",
        "nodeSelectors": "node-selectors",
        "matchLabels": "match-labels",
        "matchExpressions": "match-expressions",
        "bfdProfile": "bfd-profile",
        "ebgpMultiHop": "ebgp-multihop",
        "autoAssign": "auto-assign",
        "avoidBuggyIPs": "avoid-buggy-ips",
        "aggregationLength": "aggregation-length",
        "aggregationLengthV6": "aggregation-length-v6",
        "localPref": "localpref",
        "receiveInterval": "receive-interval",
        "transmitInterval": "transmit-interval",
        "detectMultiplier": "detect-multiplier",
        "echoInterval": "echo-interval",
        "echoMode": "echo-mode",
        "passiveMode": "passive-mode",
        "minimumTtl": "minimum-ttl",
    },
    resources=False,
)
# MetalLB before 0.5 called a pool's addresses `cidr`.
OLDEST = Dialect({**LEGACY.renamed, "addresses": "cidr"}, resources=False)


def embedded(raw: dict[str, Any]) -> tuple[str, Any] | None:
    """(data key, parsed configuration) of a ConfigMap holding the legacy format, else None.
    A text that is not YAML counts when the ConfigMap is named as MetalLB's or Cilium's."""
    data = raw.get("data")
    if not isinstance(data, dict):
        return None
    metadata = raw.get("metadata")
    where = (metadata.get("namespace"), metadata.get("name")) if isinstance(metadata, dict) else ()
    for key in CONFIG_KEYS:
        text = data.get(key)
        if not isinstance(text, str):
            continue
        try:
            parsed = yaml.load(text, Loader=KubernetesLoader)
        except yaml.YAMLError:
            # Broken YAML counts only where MetalLB or Cilium 1.10 would have read it.
            return (key, None) if where in KNOWN_PLACES else None
        if isinstance(parsed, dict) and any(section in parsed for section in SECTIONS):
            return key, parsed
    return None


def is_cilium(raw: dict[str, Any]) -> bool:
    return (raw.get("metadata") or {}).get("name") == CILIUM_NAME


def read_configmap(obj: SourceObject, opened: Opened, cilium: bool) -> Config | None:
    """The configuration a legacy ConfigMap holds, or None (with an error) when its text is
    not YAML. The ConfigMap's fields are reported by `close` afterwards."""
    ctx = opened.ctx
    data = opened.fields.sub("data")
    found = embedded(obj.raw)
    if data is None or found is None:
        return None
    key = found[0]
    text = data.text(key) or ""
    path = key_path("data", key)
    try:
        parsed = yaml.load(text, Loader=KubernetesLoader)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1} of the embedded text)" if mark else ""
        reason = getattr(err, "problem", None) or str(err)
        ctx.error(path, f"not YAML: {reason}{where}")
        return None
    meta = opened.meta
    if cilium:
        name = "cilium-bgp-config"
    else:
        name = "metallb" if meta.name == "config" else f"metallb-{dns_name(meta.name)}"
    config = Config(name, meta.namespace or ("kube-system" if cilium else "metallb-system"))
    root = Fields(parsed, path, ctx)
    _peers(root, config, ctx)
    _pools(root, config, ctx)
    communities = root.text_map("bgp-communities")
    if communities:
        at = root.at("bgp-communities")
        config.aliases.append(
            Aliases(
                ctx, {alias: (value, key_path(at, alias)) for alias, value in communities.items()}
            )
        )
    for profile in root.subs("bfd-profiles"):
        profile_name = profile.text("name") or ""
        config.bfd.append(read_bfd(profile, profile_name, ctx, LEGACY, FILE))
    for unread in root.unread():
        ctx.not_converted(
            unread,
            "herald import knows no herald equivalent of this setting of the ConfigMap format; "
            "left out",
        )
    return config


def _peers(root: Fields, config: Config, ctx: Context) -> None:
    names: set[str] = set()
    for peer in root.subs("peers"):
        address = dns_name(str(peer.raw("peer-address") or "peer"))
        if f"{config.name}-{address}" in names:
            address = f"{address}-{len(names) + 1}"
        name = f"{config.name}-{address}"
        names.add(name)
        read = read_peer(peer, name, ctx, LEGACY, FILE, entry_name=address)
        if read is not None:
            config.peers.append(read)


def _pools(root: Fields, config: Config, ctx: Context) -> None:
    for pool in root.subs("address-pools"):
        name = pool.text("name") or ""
        if not name:
            ctx.error(pool.at("name"), "missing; every address pool needs a name")
            continue
        dialect = OLDEST if pool.has("cidr") and not pool.has("addresses") else LEGACY
        config.pools.append(read_pool(pool, name, {}, ctx, dialect, FILE))
        protocol = pool.text("protocol")
        only_this = PoolChoice([name], pool.at("protocol"), [], pool.at("protocol"))
        if protocol == "layer2":
            config.l2.append(L2(ctx, name, pool.path, only_this, [], [], [], pool.path, FILE))
        elif protocol == "bgp":
            advertisements = pool.subs("bgp-advertisements")
            if not advertisements:
                config.advertisements.append(_default(name, pool.path, only_this, ctx))
            for index, entry in enumerate(advertisements):
                adv_name = name if len(advertisements) == 1 else f"{name}-{index + 1}"
                read = read_advertisement(entry, adv_name, ctx, LEGACY, FILE)
                read.pools = only_this
                config.advertisements.append(read)
        else:
            ctx.error(pool.at("protocol"), f"{protocol!r} is not a protocol; use bgp or layer2")


def _default(name: str, path: str, pools: PoolChoice, ctx: Context) -> Advertisement:
    """What a `protocol: bgp` pool without bgp-advertisements announces: each address as a
    host route, without attributes."""
    no_aggregation: dict[str, tuple[int | None, str]] = {"ipv4": (None, path), "ipv6": (None, path)}
    return Advertisement(ctx, name, path, pools, [], path, [], None, [], no_aggregation, FILE)
