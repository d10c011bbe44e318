"""The test double as the real kubectl sees it: the seed walkthrough and kubectl's verbs."""

from __future__ import annotations

import queue
import shutil
import subprocess
import threading
import time
from pathlib import Path

import yaml

from herald.lab.kubeapi.background import BackgroundKubeApiServer

from .http import call
from .kubectl import CRDS, FIXTURES, SEED, Kubectl

MERGE = "application/merge-patch+json"
LB_IP = {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.0"}]}}}


def _svc_url(api: BackgroundKubeApiServer, name: str = "web1-lb", sub: str = "") -> str:
    url = f"{api.server.url}/api/v1/namespaces/default/services/{name}"
    return f"{url}/{sub}" if sub else url


def _row(table: str, name: str) -> list[str]:
    for line in table.splitlines():
        cells = line.split()
        if cells and cells[0] == name:
            return cells
    raise AssertionError(f"no row {name} in:\n{table}")


def _seed(kubectl: Kubectl) -> str:
    kubectl("apply", "-f", str(CRDS))
    return kubectl("apply", "-f", str(SEED))


def test_seed_walkthrough_shows_pending_then_the_written_address(
    api: BackgroundKubeApiServer, kubectl: Kubectl
) -> None:
    out = _seed(kubectl)
    assert "service/web1-lb created" in out
    assert "loadbalancerippool.herald.io/seed-pool created" in out

    table = kubectl("get", "svc")
    assert table.split("\n")[0].split() == [
        "NAME",
        "TYPE",
        "CLUSTER-IP",
        "EXTERNAL-IP",
        "PORT(S)",
        "AGE",
    ]
    _name, kind, cluster_ip, external, ports, _age = _row(table, "web1-lb")
    assert (kind, external) == ("LoadBalancer", "<pending>")
    assert cluster_ip.startswith("10.9")
    assert ports.startswith("80:3") and ports.endswith("/TCP")

    code, body = call(_svc_url(api, sub="status"), "PATCH", LB_IP, MERGE)
    assert code == 200, body
    assert _row(kubectl("get", "svc"), "web1-lb")[3] == "203.0.113.0"


def test_status_and_spec_writes_stay_apart(api: BackgroundKubeApiServer, kubectl: Kubectl) -> None:
    _seed(kubectl)
    # A write to the Service itself cannot set its status...
    patch = {"metadata": {"labels": {"x": "y"}}, **LB_IP}
    code, body = call(_svc_url(api), "PATCH", patch, MERGE)
    assert code == 200
    assert body["metadata"]["labels"] == {"x": "y"}
    assert body["status"] == {"loadBalancer": {}}
    # ...and a write to its status cannot change anything else.
    status_patch = {"metadata": {"labels": {"x": "z"}}, "spec": {"type": "NodePort"}, **LB_IP}
    code, body = call(_svc_url(api, sub="status"), "PATCH", status_patch, MERGE)
    assert code == 200
    assert body["metadata"]["labels"] == {"x": "y"}
    assert body["spec"]["type"] == "LoadBalancer"
    assert body["status"]["loadBalancer"]["ingress"] == [{"ip": "203.0.113.0"}]


def test_get_pools_as_yaml_has_the_schema_defaults(kubectl: Kubectl) -> None:
    _seed(kubectl)
    listed = yaml.safe_load(kubectl("get", "loadbalancerippools", "-o", "yaml"))
    (pool,) = listed["items"]
    assert pool["kind"] == "LoadBalancerIPPool"
    assert pool["metadata"]["name"] == "seed-pool"
    assert pool["spec"]["blocks"] == [{"cidr": "203.0.113.0/24"}]
    # Defaults from the CRD's structural schema, as a real server fills them in.
    assert pool["spec"]["allowFirstLastIPs"] == "Yes"
    assert pool["spec"]["disabled"] is False
    table = kubectl("get", "lbippool")
    assert table.split("\n")[0].split() == ["NAME", "DISABLED", "AGE"]
    assert _row(table, "seed-pool")[1] == "false"


def test_apply_twice_is_unchanged_and_a_change_is_configured(
    api: BackgroundKubeApiServer, kubectl: Kubectl
) -> None:
    _seed(kubectl)
    before = api.run(lambda: api.server.store.revision)
    again = kubectl("apply", "-f", str(SEED))
    # Nothing was written the second time...
    assert api.run(lambda: api.server.store.revision) == before
    # ...and kubectl says so, except for custom resources whose schema defaults a field
    # inside a list item (BGPClusterConfig's localPort, BGPPeerConfig's matchExpressions):
    # kubectl's JSON merge patch for those carries the whole list, which a real server, as
    # this one, leaves unchanged - and kubectl still prints "configured".
    for line in (
        "service/web1-lb unchanged",
        "deployment.apps/web1 unchanged",
        "loadbalancerippool.herald.io/seed-pool unchanged",
    ):
        assert line in again, again

    # A second port, then back to one: kubectl sends strategic merge patches whose list
    # directives ($setElementOrder, $patch: delete) the server must honour.
    web1 = (SEED / "web1.yaml").read_text().split("---")[0]
    two_ports = web1.replace(
        "      targetPort: 8080\n",
        "      targetPort: 8080\n    - name: https\n      port: 443\n      targetPort: 8443\n",
    )
    assert "service/web1-lb configured" in kubectl("apply", "-f", "-", stdin=two_ports)
    svc = yaml.safe_load(kubectl("get", "svc", "web1-lb", "-o", "yaml"))
    assert [p["port"] for p in svc["spec"]["ports"]] == [80, 443]
    assert "service/web1-lb configured" in kubectl("apply", "-f", "-", stdin=web1)
    svc = yaml.safe_load(kubectl("get", "svc", "web1-lb", "-o", "yaml"))
    assert [p["port"] for p in svc["spec"]["ports"]] == [80]
    assert svc["spec"]["selector"] == {"app": "web1"}


def test_delete_then_get_is_not_found(kubectl: Kubectl) -> None:
    _seed(kubectl)
    assert 'service "web1-lb" deleted' in kubectl("delete", "svc", "web1-lb")
    missing = kubectl.run("get", "svc", "web1-lb", check=False)
    assert missing.returncode != 0
    assert 'services "web1-lb" not found' in missing.stderr
    assert 'loadbalancerippool.herald.io "seed-pool" deleted' in kubectl(
        "delete", "-f", str(SEED / "pool.yaml")
    )
    assert "No resources found" in kubectl.run("get", "lbippool").stderr


def test_get_watch_prints_a_change(api: BackgroundKubeApiServer, kubectl: Kubectl) -> None:
    _seed(kubectl)
    watcher = subprocess.Popen(
        kubectl.command("get", "svc", "--watch"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert watcher.stdout is not None
        for line in watcher.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    try:

        def wait_for(text: str) -> str:
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                try:
                    line = lines.get(timeout=0.5)
                except queue.Empty:
                    continue
                if text in line:
                    return line
            raise AssertionError(f"kubectl get --watch never printed {text!r}")

        assert "<pending>" in wait_for("web1-lb")
        code, _ = call(_svc_url(api, sub="status"), "PATCH", LB_IP, MERGE)
        assert code == 200
        assert "LoadBalancer" in wait_for("203.0.113.0")
    finally:
        watcher.kill()
        watcher.wait(10)


def test_put_with_a_stale_resource_version_is_a_conflict(
    api: BackgroundKubeApiServer, kubectl: Kubectl
) -> None:
    _seed(kubectl)
    code, svc = call(_svc_url(api))
    assert code == 200
    stale = svc["metadata"]["resourceVersion"]
    code, fresh = call(_svc_url(api), "PATCH", {"metadata": {"labels": {"a": "b"}}}, MERGE)
    assert code == 200 and fresh["metadata"]["resourceVersion"] != stale
    svc["metadata"]["labels"] = {"a": "c"}
    code, body = call(_svc_url(api), "PUT", svc)
    assert code == 409
    assert (body["kind"], body["reason"], body["code"]) == ("Status", "Conflict", 409)
    # With the current resourceVersion the same PUT goes through.
    svc["metadata"]["resourceVersion"] = fresh["metadata"]["resourceVersion"]
    code, body = call(_svc_url(api), "PUT", svc)
    assert code == 200 and body["metadata"]["labels"] == {"a": "c"}


def test_create_twice_is_already_exists_and_a_missing_namespace_is_not_found(
    api: BackgroundKubeApiServer, kubectl: Kubectl
) -> None:
    _seed(kubectl)
    created = kubectl.run("create", "-f", str(SEED / "pool.yaml"), check=False)
    assert created.returncode != 0 and "AlreadyExists" in created.stderr
    code, body = call(
        f"{api.server.url}/api/v1/namespaces/nowhere/configmaps",
        "POST",
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
    )
    assert (code, body["reason"]) == (404, "NotFound")
    assert body["message"] == 'namespaces "nowhere" not found'


def test_apply_and_delete_a_kustomize_base(kubectl: Kubectl, tmp_path: Path) -> None:
    base = tmp_path / "base"
    shutil.copytree(FIXTURES / "kustomize", base)
    shutil.copy(CRDS / "herald.io_loadbalancerippools.yaml", base / "crd.yaml")
    first = kubectl("apply", "-k", str(base))
    for kind in (
        "namespace/kubeapi-fixture",
        "serviceaccount/controller",
        "clusterrole.rbac.authorization.k8s.io/kubeapi-fixture-controller",
        "clusterrolebinding.rbac.authorization.k8s.io/kubeapi-fixture-controller",
        "role.rbac.authorization.k8s.io/leases",
        "rolebinding.rbac.authorization.k8s.io/leases",
        "deployment.apps/controller",
        "daemonset.apps/agent",
    ):
        assert f"{kind} created" in first, first
    again = [line for line in kubectl("apply", "-k", str(base)).splitlines() if line]
    assert again and all(line.endswith(" unchanged") for line in again), again
    deploy = yaml.safe_load(
        kubectl("-n", "kubeapi-fixture", "get", "deploy", "controller", "-o", "yaml")
    )
    assert deploy["metadata"]["generation"] == 1
    assert deploy["spec"]["template"]["spec"]["containers"][0]["env"][0]["name"] == "NODE_NAME"
    # Deleting the namespace first leaves it Terminating until its objects are gone, so
    # kubectl's later deletes of those objects still find them.
    gone = kubectl.run("delete", "-k", str(base), check=False)
    assert gone.returncode == 0, gone.stderr
    assert 'daemonset.apps "agent" deleted' in gone.stdout
    assert "kubeapi-fixture" not in kubectl("get", "ns")
    missing = kubectl.run("get", "crd", "loadbalancerippools.herald.io", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_a_registered_crd_appears_in_discovery_and_leaves_with_its_objects(
    api: BackgroundKubeApiServer, kubectl: Kubectl
) -> None:
    resources = kubectl("api-resources", "--api-group=herald.io", "-o", "name")
    assert resources.strip() == ""
    _seed(kubectl)
    resources = kubectl("api-resources", "--api-group=herald.io", "-o", "name").split()
    assert "loadbalancerippools.herald.io" in resources
    code, group = call(f"{api.server.url}/apis/herald.io")
    assert code == 200 and group["preferredVersion"]["version"] == "v1alpha1"
    kubectl("delete", "crd", "loadbalancerippools.herald.io")
    code, body = call(f"{api.server.url}/apis/herald.io/v1alpha1/loadbalancerippools")
    assert (code, body["reason"]) == (404, "NotFound")
    assert api.run(lambda: api.server.store.list("herald.io", "loadbalancerippools")) == []


def test_scale_a_deployment_through_its_scale_subresource(kubectl: Kubectl) -> None:
    _seed(kubectl)
    assert "deployment.apps/web1 scaled" in kubectl("scale", "deploy", "web1", "--replicas=2")
    deploy = yaml.safe_load(kubectl("get", "deploy", "web1", "-o", "yaml"))
    assert (deploy["spec"]["replicas"], deploy["metadata"]["generation"]) == (2, 2)
    wide = kubectl("get", "deploy", "web1", "-o", "wide")
    assert _row(wide, "web1")[1] == "0/2"
    assert "app=web1" in wide


def test_imperative_creates_of_namespaces_secrets_and_configmaps(kubectl: Kubectl) -> None:
    # kubectl 1.2x sends these as protobuf, Debian's 1.20 as JSON: both must work.
    assert "namespace/herald-system created" in kubectl("create", "namespace", "herald-system")
    kubectl(
        "-n",
        "herald-system",
        "create",
        "secret",
        "generic",
        "bgp-auth",
        "--from-literal=password=s3cret",
    )
    kubectl("-n", "herald-system", "create", "configmap", "opts", "--from-literal=a=b")
    secret = yaml.safe_load(
        kubectl("-n", "herald-system", "get", "secret", "bgp-auth", "-o", "yaml")
    )
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"password": "czNjcmV0"}  # base64 of s3cret
    config = yaml.safe_load(
        kubectl("-n", "herald-system", "get", "configmap", "opts", "-o", "yaml")
    )
    assert config["data"] == {"a": "b"}
    assert _row(kubectl("get", "ns"), "herald-system")[1] == "Active"


def test_field_selectors_kubectl_sends_and_one_a_real_server_refuses(kubectl: Kubectl) -> None:
    _seed(kubectl)
    assert "web1-lb" in kubectl("get", "svc", "--field-selector", "metadata.name=web1-lb")
    assert "kubernetes" not in kubectl("get", "svc", "--field-selector", "metadata.name=web1-lb")
    assert "web1-lb" in kubectl("get", "svc", "--field-selector", "spec.type=LoadBalancer")
    refused = kubectl.run("get", "svc", "--field-selector", "spec.selector.app=web1", check=False)
    assert refused.returncode != 0
    assert "field label not supported: spec.selector.app" in refused.stderr
