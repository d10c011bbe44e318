"""The controller's IPAM reconciliation across snapshots (pure, no files)."""

from __future__ import annotations

from herald.api.manifests import parse_manifests
from herald.controller.reconcile import IPAMReconciler

POOL = """apiVersion: herald.io/v1alpha1
kind: LoadBalancerIPPool
metadata: {name: pool}
spec: {blocks: [{cidr: 203.0.113.0/24}]}
"""


def service(name: str, port: int, key: str | None = None) -> str:
    annotations = f", annotations: {{herald.io/sharing-key: {key}}}" if key else ""
    return (
        f"apiVersion: v1\nkind: Service\nmetadata: {{name: {name}{annotations}}}\n"
        f"spec: {{type: LoadBalancer, ports: [{{port: {port}}}]}}\n"
    )


def test_a_service_gaining_a_sharing_key_is_joined_by_a_new_partner() -> None:
    reconciler = IPAMReconciler()
    first, _ = reconciler.reconcile(
        parse_manifests({"a.yaml": POOL + "---\n" + service("web1-lb", 80)})
    )
    assert first["default/web1-lb"].ips == ("203.0.113.0",)
    # One edit adds the key to web1-lb and a new web1-alt (which sorts first) with it.
    both = service("web1-lb", 80, "web") + "---\n" + service("web1-alt", 8081, "web")
    second, _ = reconciler.reconcile(parse_manifests({"a.yaml": POOL + "---\n" + both}))
    assert second["default/web1-lb"].ips == ("203.0.113.0",)
    assert second["default/web1-alt"].ips == ("203.0.113.0",)


def test_pool_change_rebuilds_and_keeps_held_addresses() -> None:
    reconciler = IPAMReconciler()
    services = "---\n".join(service(f"s{i}", 80) for i in range(3))
    first, _ = reconciler.reconcile(parse_manifests({"a.yaml": POOL + "---\n" + services}))
    wider = POOL.replace("203.0.113.0/24", "203.0.112.0/23")
    fewer = "---\n".join(service(f"s{i}", 80) for i in (1, 2))
    second, usage = reconciler.reconcile(parse_manifests({"a.yaml": wider + "---\n" + fewer}))
    assert {k: a.ips for k, a in second.items()} == {
        k: first[k].ips for k in ("default/s1", "default/s2")
    }
    assert (usage[0].total, usage[0].used) == (512, 2)
