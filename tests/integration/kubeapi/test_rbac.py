"""RBAC as the test double enforces it with `authorize=True`, seen through the real kubectl."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald.lab.kubeapi.background import BackgroundKubeApiServer
from herald.lab.kubeapi.rbac import token_for_service_account

from .http import call
from .kubectl import CRDS, FIXTURES, Kubectl, kubectl_binary

ACCOUNT = ("kubeapi-fixture", "controller")


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[BackgroundKubeApiServer, Kubectl, Kubectl]]:
    with BackgroundKubeApiServer(authorize=True, tls=True) as bg:
        admin = Kubectl(
            kubectl_binary(), bg.server.write_kubeconfig(tmp_path / "admin"), tmp_path / "c1"
        )
        config = bg.server.write_kubeconfig(
            tmp_path / "sa", "kubeapi-fixture", service_account=ACCOUNT
        )
        yield bg, admin, Kubectl(kubectl_binary(), config, tmp_path / "c2")


def test_a_service_account_may_do_what_its_roles_grant_and_nothing_else(
    guarded: tuple[BackgroundKubeApiServer, Kubectl, Kubectl], tmp_path: Path
) -> None:
    bg, admin, controller = guarded
    # Before any binding the account may read discovery but no resource.
    denied = controller.run("get", "svc", "-A", check=False)
    assert denied.returncode != 0
    assert (
        'services is forbidden: User "system:serviceaccount:kubeapi-fixture:controller" '
        'cannot list resource "services" in API group "" at the cluster scope'
    ) in denied.stderr

    base = tmp_path / "base"
    shutil.copytree(FIXTURES / "kustomize", base)
    shutil.copy(CRDS / "herald.io_loadbalancerippools.yaml", base / "crd.yaml")
    admin("apply", "-k", str(base))
    status = {"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}}}

    # The ClusterRole: services get/list/watch anywhere, services/status patch/update.
    assert "kubernetes" in controller("get", "svc", "-A")
    deleted = controller.run("-n", "default", "delete", "svc", "kubernetes", check=False)
    assert deleted.returncode != 0 and "cannot delete resource" in deleted.stderr
    # kubectl reads the status before patching it, which this role does not grant...
    patch = controller.run(
        "-n",
        "default",
        "patch",
        "svc",
        "kubernetes",
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps(status),
        check=False,
    )
    assert patch.returncode != 0
    assert 'cannot get resource "services/status"' in patch.stderr or "unknown flag" in patch.stderr
    # ...while a controller's PATCH of the status alone goes through.
    certificate = bg.server.certificate
    assert certificate is not None
    code, body = call(
        f"{bg.server.url}/api/v1/namespaces/default/services/kubernetes/status",
        "PATCH",
        status,
        "application/merge-patch+json",
        token=token_for_service_account(*ACCOUNT),
        ca_pem=certificate.cert_pem,
    )
    assert code == 200, body
    assert body["status"]["loadBalancer"]["ingress"] == [{"ip": "203.0.113.7"}]
    spec = controller.run("-n", "default", "label", "svc", "kubernetes", "x=y", check=False)
    assert spec.returncode != 0 and 'cannot patch resource "services"' in spec.stderr

    # The Role: leases in its own namespace only.
    lease = {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": "herald"},
        "spec": {"holderIdentity": "a"},
    }
    lease_yaml = json.dumps(lease)
    assert "created" in controller("-n", "kubeapi-fixture", "create", "-f", "-", stdin=lease_yaml)
    elsewhere = controller.run("-n", "default", "create", "-f", "-", stdin=lease_yaml, check=False)
    assert elsewhere.returncode != 0 and 'in the namespace "default"' in elsewhere.stderr

    seen = {
        (r.verb, r.resource, r.subresource)
        for r in bg.run(lambda: list(bg.server.requests))
        if r.user == "system:serviceaccount:kubeapi-fixture:controller"
    }
    assert {("list", "services", ""), ("delete", "services", ""), ("create", "leases", "")} <= seen
    assert bg.server.url.startswith("https://")
