"""Watch caches into ClusterState: invalid objects cost only themselves; only named Secrets."""

from __future__ import annotations

from typing import Any

from herald.sources.kube.cache import KindCache
from herald.sources.kube.kinds import AGENT_KINDS
from herald.sources.kube.snapshot import SnapshotBuilder


def meta(name: str, version: str, namespace: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"name": name, "resourceVersion": version, "uid": "u-" + name}
    if namespace:
        found["namespace"] = namespace
    return found


def caches(**objects: list[dict[str, Any]]) -> dict[str, KindCache]:
    made = {kind.name: KindCache() for kind in AGENT_KINDS}
    for kind, items in objects.items():
        made[kind].replace(items, "100")
    return made


SERVICE = {
    "metadata": meta("web", "1", "default"),
    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    "status": {"loadBalancer": {}},
}
BROKEN = {
    "metadata": {**meta("broken", "2", "default"), "annotations": {"herald.io/ips": "nope"}},
    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
}
POOL = {
    "apiVersion": "herald.io/v1alpha1",
    "kind": "LoadBalancerIPPool",
    "metadata": {**meta("pool", "3"), "managedFields": [{"manager": "kubectl"}]},
    "spec": {"blocks": [{"cidr": "203.0.113.0/24"}]},
}
PEER = {
    "metadata": meta("peer", "4"),
    "spec": {"authSecretRef": "bgp-auth"},
}


def secret(name: str) -> dict[str, Any]:
    return {"metadata": meta(name, "5", "herald-system"), "data": {"password": "c2VjcmV0"}}


def test_a_bad_object_is_left_out_and_named_while_the_rest_is_served() -> None:
    state = SnapshotBuilder(AGENT_KINDS).build(
        caches(Service=[SERVICE, BROKEN], LoadBalancerIPPool=[POOL])
    )
    assert [s.metadata.name for s in state.services] == ["web"]
    assert [p.metadata.name for p in state.pools] == ["pool"]
    assert len(state.problems) == 1
    assert state.problems[0].startswith(
        "Service/default/broken:0: metadata.annotations[herald.io/ips]"
    )


def test_only_the_secrets_a_peer_config_names_are_in_the_snapshot() -> None:
    state = SnapshotBuilder(AGENT_KINDS).build(
        caches(BGPPeerConfig=[PEER], Secret=[secret("bgp-auth"), secret("unrelated")])
    )
    assert [s.metadata.name for s in state.secrets] == ["bgp-auth"]
    assert state.problems == ()


def test_a_missing_secret_is_a_problem_not_a_failure() -> None:
    state = SnapshotBuilder(AGENT_KINDS).build(caches(BGPPeerConfig=[PEER]))
    assert [c.metadata.name for c in state.bgp_peer_configs] == ["peer"]
    assert any("spec.authSecretRef" in p for p in state.problems)


def test_an_unchanged_object_is_validated_once() -> None:
    builder = SnapshotBuilder(AGENT_KINDS)
    held = caches(Service=[SERVICE])
    first = builder.build(held)
    second = builder.build(held)
    assert first.services[0] is second.services[0]
    held["Service"].apply("MODIFIED", {**SERVICE, "metadata": meta("web", "9", "default")})
    third = builder.build(held)
    assert third.services[0] is not first.services[0]
    assert first == second


def test_an_object_broken_by_an_edit_keeps_its_last_valid_version() -> None:
    builder = SnapshotBuilder(AGENT_KINDS)
    held = caches(Service=[SERVICE])
    first = builder.build(held)
    broken = {**BROKEN, "metadata": {**BROKEN["metadata"], "name": "web", "resourceVersion": "8"}}
    held["Service"].apply("MODIFIED", broken)
    second = builder.build(held)
    assert second.services == first.services
    assert "keeping its last valid version" in second.problems[0]
    # Broken twice in a row: still the last valid one, not nothing.
    held["Service"].apply(
        "MODIFIED", {**broken, "metadata": {**broken["metadata"], "resourceVersion": "9"}}
    )
    assert builder.build(held).services == first.services
    # Deleted: gone, whatever it was.
    held["Service"].apply("DELETED", broken)
    assert builder.build(held).services == ()


def test_a_change_of_one_kind_leaves_the_others_parts_as_they_were() -> None:
    builder = SnapshotBuilder(AGENT_KINDS)
    held = caches(Service=[SERVICE], LoadBalancerIPPool=[POOL])
    first = builder.build(held)
    held["LoadBalancerIPPool"].apply(
        "MODIFIED", {**POOL, "metadata": {**POOL["metadata"], "resourceVersion": "30"}}
    )
    second = builder.build(held)
    assert second.services is first.services
    assert second.pools is not first.pools
    assert second.locations[("Service", "default", "web")].file == "Service/default/web"
