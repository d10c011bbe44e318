"""Building pools and Service requests for IPAM tests from the same shapes users write."""

from __future__ import annotations

from typing import Any

from herald.api.core import Service
from herald.api.pool import LoadBalancerIPPool
from herald.ipam import ServiceRequest
from herald.ipam.request import request_for


def pool(name: str, *blocks: str, created: str = "", **spec: Any) -> LoadBalancerIPPool:
    parsed = []
    for block in blocks:
        if "-" in block:
            start, stop = block.split("-")
            parsed.append({"start": start, "stop": stop})
        else:
            parsed.append({"cidr": block})
    meta: dict[str, Any] = {"name": name}
    if created:
        meta["creationTimestamp"] = created
    return LoadBalancerIPPool.model_validate({"metadata": meta, "spec": {"blocks": parsed, **spec}})


def service(
    name: str,
    namespace: str = "default",
    *,
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    ports: tuple[tuple[str, int], ...] = (("TCP", 80),),
    status_ips: tuple[str, ...] = (),
    created: str = "",
    **spec: Any,
) -> ServiceRequest:
    meta: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": labels or {},
        "annotations": annotations or {},
    }
    if created:
        meta["creationTimestamp"] = created
    svc = Service.model_validate(
        {
            "metadata": meta,
            "spec": {
                "type": "LoadBalancer",
                "ports": [{"protocol": p, "port": n} for p, n in ports],
                **spec,
            },
            "status": {"loadBalancer": {"ingress": [{"ip": ip} for ip in status_ips]}},
        }
    )
    return request_for(svc)
