"""deploy/ as kubectl's own kustomize builds it: what the issue asks of each object."""

from __future__ import annotations

import subprocess
from typing import Any

import yaml

from herald.metrics.server import parse_address

from .apiserver import CRDS, REPO


def built() -> list[dict[str, Any]]:
    done = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "deploy")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return [d for d in yaml.safe_load_all(done.stdout) if d]


def one(objects: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    (found,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return found


def test_every_generated_crd_is_in_the_base() -> None:
    names = {o["metadata"]["name"] for o in built() if o["kind"] == "CustomResourceDefinition"}
    generated = {yaml.safe_load(p.read_text())["metadata"]["name"] for p in CRDS.glob("*.yaml")}
    assert names == generated


def test_the_agent_runs_on_every_node_with_capabilities_not_privilege() -> None:
    agent = one(built(), "DaemonSet", "herald-agent")
    pod = agent["spec"]["template"]["spec"]
    assert pod["hostNetwork"] is True
    assert pod["serviceAccountName"] == "herald-agent"
    container, bfd = pod["containers"]
    security = container["securityContext"]
    assert security["privileged"] is False
    assert set(security["capabilities"]["add"]) <= {"NET_ADMIN", "NET_RAW", "NET_BIND_SERVICE"}
    assert {"NET_ADMIN", "NET_RAW"} <= set(security["capabilities"]["add"])
    assert security["capabilities"]["drop"] == ["ALL"]
    env = {e["name"]: e for e in container["env"]}
    assert env["HERALD_NODE"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    tolerated = {t["key"] for t in pod["tolerations"]}
    assert "node-role.kubernetes.io/control-plane" in tolerated
    assert container["args"] == ["agent"]
    # BFD in a container of its own, which outlives the agent's restarts; no capability.
    assert env["HERALD_BFD_PROCESS"]["value"] == "external"
    assert bfd["command"][-2:] == ["--resident", "/run/herald/agents/$(HERALD_NODE).bfd"]
    assert bfd["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert {m["mountPath"] for m in bfd["volumeMounts"]} == {"/run/herald"}


def test_two_controllers_elect_a_leader_and_read_their_options_from_the_configmap() -> None:
    objects = built()
    controller = one(objects, "Deployment", "herald-controller")
    assert controller["spec"]["replicas"] == 2
    pod = controller["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"] == ["controller"]
    assert container["envFrom"] == [{"configMapRef": {"name": "herald-options"}}]
    options = one(objects, "ConfigMap", "herald-options")["data"]
    assert options["HERALD_SOURCE"] == "kube"
    assert (options["HERALD_LEASE_DURATION"], options["HERALD_RENEW_DEADLINE"]) == ("15", "10")
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_no_role_has_a_wildcard_and_secrets_are_granted_in_herald_system_only() -> None:
    for role in (o for o in built() if o["kind"] in ("Role", "ClusterRole")):
        for rule in role["rules"]:
            for text in (*rule["apiGroups"], *rule["resources"], *rule["verbs"]):
                assert "*" not in text, role["metadata"]["name"]
            if "secrets" in rule["resources"]:
                assert role["kind"] == "Role"
                assert role["metadata"]["namespace"] == "herald-system"


def test_agents_and_controllers_serve_metrics_for_prometheus() -> None:
    objects = built()
    for workload, port in (("herald-agent", 9962), ("herald-controller", 9963)):
        kind = "DaemonSet" if workload == "herald-agent" else "Deployment"
        template = one(objects, kind, workload)["spec"]["template"]
        container = template["spec"]["containers"][0]
        env = {e["name"]: e.get("value") for e in container["env"]}
        assert parse_address(env["HERALD_METRICS_ADDRESS"])[1] == port
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"}.items() <= {
            k: v for k, v in container["ports"][0].items() if k != "hostPort"
        }.items()
        annotations = template["metadata"]["annotations"]
        assert annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": str(port)}
        service = one(objects, "Service", f"{workload}-metrics")
        assert service["spec"]["clusterIP"] == "None"
        assert service["spec"]["selector"] == {"app.kubernetes.io/name": workload}
        assert service["spec"]["ports"][0]["targetPort"] == "metrics"
