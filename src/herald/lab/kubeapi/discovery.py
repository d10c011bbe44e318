"""Discovery documents: /version, /api, /apis and each group version's resource list.

Only the legacy (unaggregated) form: a client asking for aggregated discovery
(`as=APIGroupDiscoveryList`) gets the legacy form with Content-Type application/json, which
client-go takes as "not supported" and falls back from, as with older servers.
"""

from __future__ import annotations

from typing import Any

from herald.lab.kubeapi.resources import ResourceRegistry, ResourceType
from herald.lab.kubeapi.scale import SCALABLE_KINDS

Obj = dict[str, Any]

SERVER_VERSION: Obj = {
    "major": "1",
    "minor": "32",
    "gitVersion": "v1.32.0-herald-test-double",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2026-01-01T00:00:00Z",
    "goVersion": "go1.23.0",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def api_versions(server_address: str) -> Obj:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> Obj:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {
        "name": name,
        "versions": entries,
        "preferredVersion": entries[0],
    }


def api_group_list(registry: ResourceRegistry) -> Obj:
    return {
        "kind": "APIGroupList",
        "apiVersion": "v1",
        "groups": [_group(g, vs) for g, vs in registry.group_versions() if g],
    }


def api_group(registry: ResourceRegistry, name: str) -> Obj | None:
    for group, versions in registry.group_versions():
        if group == name and group:
            return {"kind": "APIGroup", "apiVersion": "v1", **_group(group, versions)}
    return None


def _resource(rtype: ResourceType) -> Obj:
    entry: Obj = {
        "name": rtype.plural,
        "singularName": rtype.singular,
        "namespaced": rtype.namespaced,
        "kind": rtype.kind,
        "verbs": list(rtype.verbs),
    }
    if rtype.short_names:
        entry["shortNames"] = list(rtype.short_names)
    if rtype.categories:
        entry["categories"] = list(rtype.categories)
    return entry


def api_resource_list(registry: ResourceRegistry, group: str, version: str) -> Obj | None:
    types = registry.types_in(group, version)
    if not types:
        return None
    resources: list[Obj] = []
    for rtype in types:
        resources.append(_resource(rtype))
        if rtype.has_status:
            resources.append(
                {
                    "name": f"{rtype.plural}/status",
                    "singularName": "",
                    "namespaced": rtype.namespaced,
                    "kind": rtype.kind,
                    "verbs": ["get", "patch", "update"],
                }
            )
        if rtype.kind in SCALABLE_KINDS:
            resources.append(
                {
                    "name": f"{rtype.plural}/scale",
                    "singularName": "",
                    "namespaced": rtype.namespaced,
                    "group": "autoscaling",
                    "version": "v1",
                    "kind": "Scale",
                    "verbs": ["get", "patch", "update"],
                }
            )
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": types[0].group_version,
        "resources": resources,
    }
