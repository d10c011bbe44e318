"""API objects for the L2 tests, built from the shapes users write in manifests."""

from __future__ import annotations

from typing import Any

from herald.api.core import EndpointSlice, Node, Service
from herald.api.l2 import L2AnnouncementPolicy


def node(name: str, **labels: str) -> Node:
    return Node.model_validate({"metadata": {"name": name, "labels": labels}})


def service(
    name: str,
    ips: tuple[str, ...] = (),
    *,
    lb_class: str | None = None,
    local: bool = False,
    external_ips: tuple[str, ...] = (),
    labels: dict[str, str] | None = None,
) -> Service:
    spec: dict[str, Any] = {
        "type": "LoadBalancer",
        "ports": [{"port": 80}],
        "externalTrafficPolicy": "Local" if local else "Cluster",
        "externalIPs": list(external_ips),
    }
    if lb_class is not None:
        spec["loadBalancerClass"] = lb_class
    return Service.model_validate(
        {
            "metadata": {"name": name, "namespace": "default", "labels": labels or {}},
            "spec": spec,
            "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in ips]}},
        }
    )


def endpoints(service_name: str, *pods: tuple[str, bool]) -> EndpointSlice:
    """One slice; each pod is (node, ready)."""
    return EndpointSlice.model_validate(
        {
            "metadata": {
                "name": f"{service_name}-1",
                "namespace": "default",
                "labels": {"kubernetes.io/service-name": service_name},
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": [f"198.18.{i}.10"],
                    "nodeName": node_name,
                    "conditions": {"ready": ready},
                }
                for i, (node_name, ready) in enumerate(pods, start=1)
            ],
        }
    )


def policy(name: str = "all", **spec: Any) -> L2AnnouncementPolicy:
    return L2AnnouncementPolicy.model_validate({"metadata": {"name": name}, "spec": spec})
