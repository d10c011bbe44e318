"""The lab kubelet's API store (lab/kubelet_api.py) against the API test double: what it
registers and writes, what it leaves alone, and what a restart or a dead server costs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from lightkube import Client
from lightkube.config.kubeconfig import KubeConfig

from herald.lab.kubeapi.background import BackgroundKubeApiServer
from herald.lab.kubelet import Pod, PodSpec, StoreError, slice_documents
from herald.lab.kubelet_api import DEPLOYMENT, MANAGED_BY, SLICE, ApiStore
from herald.lab.topology import seed_topology
from herald.sources.kube.kinds import NODE, SERVICE


@pytest.fixture
def api(tmp_path: Path) -> Iterator[tuple[BackgroundKubeApiServer, Path]]:
    with BackgroundKubeApiServer() as background:
        kubeconfig = background.server.write_kubeconfig(tmp_path / "kubeconfig")
        yield background, kubeconfig


def client(kubeconfig: Path) -> Client:
    return Client(config=KubeConfig.from_file(kubeconfig), trust_env=False)


def web_service(selector: dict[str, str]) -> Any:
    return SERVICE.resource()(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"type": "LoadBalancer", "selector": selector, "ports": [{"port": 80}]},
        }
    )


def pod(name: str, address: str) -> Pod:
    return Pod(PodSpec(name, "default", "k8s-worker1", (("app", "web"),), 8080), address, 1)


def lab_slices(kubeconfig: Path) -> dict[str, list[str]]:
    found = client(kubeconfig).list(
        SLICE, namespace="*", labels={MANAGED_BY: "kubelet.lab.herald.io"}
    )
    return {obj["metadata"]["name"]: [e["addresses"][0] for e in obj["endpoints"]] for obj in found}


def test_nodes_are_registered_ready_with_their_address_and_again_after_a_restart(
    api: tuple[BackgroundKubeApiServer, Path],
) -> None:
    _, kubeconfig = api
    topology = seed_topology()
    ApiStore.connect(kubeconfig).register_nodes(topology)
    ApiStore.connect(kubeconfig).register_nodes(topology)  # a kubelet restarted: no error
    nodes = {n["metadata"]["name"]: n for n in client(kubeconfig).list(NODE.resource())}
    assert sorted(nodes) == sorted(n.name for n in topology.nodes)
    master = nodes["k8s-master1"]["status"]
    assert {"type": "InternalIP", "address": "192.0.2.10"} in master["addresses"]
    assert [c["status"] for c in master["conditions"] if c["type"] == "Ready"] == ["True"]


def test_slices_follow_the_pods_and_only_the_labs_are_touched(
    api: tuple[BackgroundKubeApiServer, Path],
) -> None:
    _, kubeconfig = api
    kube = client(kubeconfig)
    kube.create(web_service({"app": "web"}))
    # Someone else's slice for the same Service: not the lab's to change or delete.
    foreign = {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": "web-other", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["198.18.9.9"]}],
    }  # fmt: skip
    kube.create(SLICE(foreign))
    store = ApiStore.connect(kubeconfig)
    services = store.services()
    assert [s.metadata.name for s in services if s.metadata.name == "web"] == ["web"]

    one = {"web-0": pod("web-0", "198.18.1.10")}
    assert store.write_slices(slice_documents(services, one)) is True
    assert lab_slices(kubeconfig) == {"web-lab": ["198.18.1.10"]}
    assert store.write_slices(slice_documents(services, one)) is False  # nothing to write

    two = {**one, "web-1": pod("web-1", "198.18.1.11")}
    assert store.write_slices(slice_documents(services, two)) is True
    assert lab_slices(kubeconfig) == {"web-lab": ["198.18.1.10", "198.18.1.11"]}

    # A new kubelet (restart) that finds no pod removes the slice the old one wrote.
    assert ApiStore.connect(kubeconfig).write_slices([]) is True
    assert lab_slices(kubeconfig) == {}
    assert kube.get(SLICE, "web-other", namespace="default")["endpoints"] == foreign["endpoints"]


def test_deployments_are_read_from_the_api(api: tuple[BackgroundKubeApiServer, Path]) -> None:
    _, kubeconfig = api
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web1", "namespace": "default"},
        "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web1"}},
                 "template": {"metadata": {"labels": {"app": "web1"}},
                              "spec": {"containers": [{"name": "web", "image": "x"}]}}},
    }  # fmt: skip
    client(kubeconfig).create(DEPLOYMENT(body))
    ((where, read),) = ApiStore.connect(kubeconfig).deployments()
    assert where == "the API"
    assert read["spec"]["replicas"] == 2


def test_a_server_that_is_gone_is_a_store_error_not_a_crash(
    api: tuple[BackgroundKubeApiServer, Path],
) -> None:
    background, kubeconfig = api
    store = ApiStore.connect(kubeconfig)
    background.call(background.server.stop)
    with pytest.raises(StoreError, match="cannot list Services"):
        store.services()
