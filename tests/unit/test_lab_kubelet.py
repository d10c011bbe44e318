"""The lab kubelet's EndpointSlices: one per IP family a Service uses, from dual-stack pods."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from herald.api.core import Service
from herald.api.snapshot import ClusterState
from herald.lab.kubelet import Pod, PodSpec, endpoint_slices, service_families

POD = Pod(PodSpec("web-0", "default", "k8s-worker1", (("app", "web"),), 8080), "198.18.1.10", 1)
POD6 = Pod(POD.spec, POD.address, POD.pid, "2001:db8:18:1::10")


def service(**spec: Any) -> Service:
    return Service.model_validate(
        {
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": "web"},
                "ports": [{"port": 80, "targetPort": 8080}],
                **spec,
            },
        }
    )


@pytest.mark.parametrize(
    ("spec", "families"),
    [
        ({}, ("IPv4",)),
        ({"ipFamilyPolicy": "SingleStack", "ipFamilies": ["IPv6"]}, ("IPv6",)),
        ({"ipFamilyPolicy": "PreferDualStack"}, ("IPv4", "IPv6")),
        ({"ipFamilyPolicy": "PreferDualStack", "ipFamilies": ["IPv6"]}, ("IPv6", "IPv4")),
        ({"ipFamilyPolicy": "RequireDualStack", "ipFamilies": ["IPv4", "IPv6"]}, ("IPv4", "IPv6")),
    ],
)
def test_families(spec: dict[str, Any], families: tuple[str, ...]) -> None:
    assert service_families(service(**spec)) == families


def slices(svc: Service, pod: Pod) -> list[dict[str, Any]]:
    return list(yaml.safe_load_all(endpoint_slices(ClusterState(services=(svc,)), {"p": pod})))


def test_an_ipv4_service_keeps_its_one_slice() -> None:
    (found,) = slices(service(), POD6)
    assert found["metadata"]["name"] == "web-lab"
    assert found["addressType"] == "IPv4"
    assert [e["addresses"] for e in found["endpoints"]] == [["198.18.1.10"]]


def test_a_dual_stack_service_gets_a_slice_per_family() -> None:
    v4, v6 = slices(service(ipFamilyPolicy="PreferDualStack"), POD6)
    assert (v4["metadata"]["name"], v4["addressType"]) == ("web-lab", "IPv4")
    assert (v6["metadata"]["name"], v6["addressType"]) == ("web-lab-v6", "IPv6")
    assert [e["addresses"] for e in v6["endpoints"]] == [["2001:db8:18:1::10"]]
    assert v6["ports"] == v4["ports"]


def test_pods_without_ipv6_leave_the_ipv6_slice_empty() -> None:
    # The BGP lab's pods are IPv4-only: an IPv6 Service there has no backend, as before.
    (found,) = slices(service(ipFamilyPolicy="SingleStack", ipFamilies=["IPv6"]), POD)
    assert found["addressType"] == "IPv6"
    assert found["endpoints"] == []
