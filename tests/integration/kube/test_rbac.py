"""deploy/'s RBAC grants exactly what herald calls: the requests the test-double API server
saw from the controller and from an agent, against the rules of their ServiceAccounts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path

import yaml

from herald.api.base import Condition
from herald.api.pool import PoolStatus
from herald.controller.run import run_controller
from herald.lab.kubeapi.server import ApiRequest
from herald.sources.kube import AGENT_KINDS, CONTROLLER_KINDS, KubeSource
from herald.sources.kube.status import StatusWriter

from .apiserver import REPO, SEED, cluster, eventually, service_json
from .test_controller import FAST
from .test_status import DESIRED, listed

RBAC = REPO / "deploy" / "rbac.yaml"

# (apiGroup, resource[/subresource], verb, namespace or "" for every namespace)
Grant = tuple[str, str, str, str]


def grants(service_account: str) -> set[Grant]:
    """What the roles bound to `service_account` (in herald-system) allow."""
    documents = [d for d in yaml.safe_load_all(RBAC.read_text()) if d]
    roles = {
        (d["kind"], d["metadata"].get("namespace", ""), d["metadata"]["name"]): d
        for d in documents
        if d["kind"] in ("Role", "ClusterRole")
    }
    allowed: set[Grant] = set()
    for binding in documents:
        if binding["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s["name"] == service_account for s in binding["subjects"]):
            continue
        namespace = binding["metadata"].get("namespace", "")
        role = roles[
            (
                binding["roleRef"]["kind"],
                namespace if binding["roleRef"]["kind"] == "Role" else "",
                binding["roleRef"]["name"],
            )
        ]
        for rule in role["rules"]:
            for text in (*rule["apiGroups"], *rule["resources"], *rule["verbs"]):
                assert "*" not in text, f"wildcard in {role['metadata']['name']}: {rule}"
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        allowed.add((group, resource, verb, namespace))
    return allowed


def needed(requests: Iterable[ApiRequest]) -> set[Grant]:
    return {
        (r.group, r.resource + (f"/{r.subresource}" if r.subresource else ""), r.verb, r.namespace)
        for r in requests
    }


def check(service_account: str, requests: list[ApiRequest]) -> None:
    allowed = grants(service_account)
    seen = needed(requests)
    refused = {g for g in seen if g not in allowed and (g[0], g[1], g[2], "") not in allowed}
    assert not refused, f"{service_account} calls what its roles do not grant: {sorted(refused)}"
    # And nothing granted goes unused: each rule is there because the code calls it.
    used = {(g, r, v) for g, r, v, _ in seen}
    unused = {(g, r, v) for g, r, v, _ in allowed} - used
    assert not unused, f"{service_account} is granted what it never calls: {sorted(unused)}"
    # Secrets are read in herald-system only.
    assert all(ns == "herald-system" for _, r, _, ns in seen if r == "secrets")


def test_the_roles_grant_exactly_what_the_controller_and_the_agent_call(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube:
            await kube.kubectl("apply", "--validate=false", "-k", str(REPO / "deploy"))
            await kube.apply_text(service_json("stray", **{"herald.io/ips": "192.0.2.77"}))
            client = kube.client()
            services, pools = (
                await listed(client, CONTROLLER_KINDS[0]),
                await listed(client, CONTROLLER_KINDS[1]),
            )
            # Both objects change after the caches were filled: the writes meet 409 and
            # read the objects afresh (get), as they would racing another writer.
            await kube.kubectl("label", "svc", "web1-lb", "touched=1")
            await kube.kubectl("label", "loadbalancerippools", "seed-pool", "touched=1")
            kube.server.clear_requests()

            # The controller: conflicts, then a normal run with leader election and an event.
            pool_status = PoolStatus(
                conditions=(
                    Condition(
                        type="herald.io/PoolConflict",
                        status="False",
                        reason="no_overlap",
                        message="ok",
                    ),
                )
            )
            writer = StatusWriter(client, services, pools, lambda: True, "rbac")
            await writer.write({"default/web1-lb": DESIRED}, {"seed-pool": pool_status})
            assert writer.conflicts == 2
            source = KubeSource(kube.client(), kinds=CONTROLLER_KINDS, timings=FAST)
            task = asyncio.create_task(run_controller(source, "rbac"))

            def seen(verb: str, resource: str) -> bool:
                return any(r.verb == verb and r.resource == resource for r in kube.server.requests)

            await eventually(lambda: seen("create", "events"), "the stray's event")
            await eventually(lambda: seen("update", "leases"), "a lease renewal")
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            check("herald-controller", list(kube.server.requests))

            # An agent: every kind listed and watched, nothing written.
            kube.server.clear_requests()
            agent = KubeSource(kube.client(), kinds=AGENT_KINDS)
            snapshots = agent.snapshots()
            await asyncio.wait_for(anext(snapshots), 30)
            await eventually(
                lambda: sum(r.verb == "watch" for r in kube.server.requests) >= len(AGENT_KINDS),
                "every kind watched",
            )
            await snapshots.aclose()  # type: ignore[attr-defined]
            requests = list(kube.server.requests)
            assert {r.verb for r in requests} == {"list", "watch"}
            check("herald-agent", requests)

    asyncio.run(scenario())
