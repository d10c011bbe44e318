"""Service defaults and allocations, as kube-apiserver's Service registry makes them.

A new Service gets `spec.clusterIP` from the service CIDR and node ports from 30000-32767
for NodePort and LoadBalancer types (each the next free one after the last given, wrapping
around; the real server picks at random), and the defaults a `kubectl get svc -o yaml`
shows on a real cluster.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from collections.abc import Iterable
from typing import Any

from herald.lab.kubeapi import errors

Obj = dict[str, Any]

DEFAULT_SERVICE_CIDR = "10.96.0.0/12"
NODE_PORT_RANGE = range(30000, 32768)


def _ips(svc: Obj) -> set[str]:
    spec = svc.get("spec") or {}
    ips = {ip for ip in spec.get("clusterIPs") or [] if ip and ip != "None"}
    if spec.get("clusterIP") and spec["clusterIP"] != "None":
        ips.add(spec["clusterIP"])
    return ips


def _ports(svc: Obj) -> set[int]:
    return {
        int(port["nodePort"])
        for port in (svc.get("spec") or {}).get("ports") or []
        if port.get("nodePort")
    }


class Allocations:
    """The cluster IPs and node ports the stored Services hold."""

    def __init__(self, cidr: str, services: Iterable[Obj] = ()) -> None:
        self.network = ipaddress.ip_network(cidr)
        self._ips: Counter[str] = Counter()
        self._ports: Counter[int] = Counter()
        self._next_ip = 1
        self._next_port = NODE_PORT_RANGE.start
        for svc in services:
            self.add(svc)

    def add(self, svc: Obj) -> None:
        self._ips.update(_ips(svc))
        self._ports.update(_ports(svc))

    def remove(self, svc: Obj) -> None:
        self._ips.subtract(_ips(svc))
        self._ports.subtract(_ports(svc))

    def cluster_ip(self) -> str:
        size = self.network.num_addresses
        for step in range(1, size - 1):
            offset = (self._next_ip - 1 + step - 1) % (size - 2) + 1
            address = str(self.network.network_address + offset)
            if self._ips[address] <= 0:
                self._next_ip = offset + 1
                return address
        raise errors.ApiError(500, "InternalError", f"range {self.network} is full")

    def node_port(self, also_taken: set[int]) -> int:
        span = len(NODE_PORT_RANGE)
        for step in range(span):
            port = NODE_PORT_RANGE.start + (self._next_port - NODE_PORT_RANGE.start + step) % span
            if self._ports[port] <= 0 and port not in also_taken:
                self._next_port = port + 1
                return port
        raise errors.ApiError(
            500,
            "InternalError",
            "Internal error occurred: failed to allocate a nodePort: range is full",
        )


def _needs_node_ports(spec: Obj) -> bool:
    kind = spec.get("type", "ClusterIP")
    if kind == "NodePort":
        return True
    return kind == "LoadBalancer" and bool(spec.get("allocateLoadBalancerNodePorts", True))


def default_service(svc: Obj, allocations: Allocations, old: Obj | None = None) -> None:
    """Fill in a Service's defaults in place; `old` keeps allocations across updates."""
    spec = svc.setdefault("spec", {})
    old_spec = (old or {}).get("spec") or {}
    kind = spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    if kind != "ExternalName":
        spec.setdefault("internalTrafficPolicy", "Cluster")
        if old_spec.get("clusterIP") and not spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
        if not spec.get("clusterIP"):
            spec["clusterIP"] = allocations.cluster_ip()
        spec["clusterIPs"] = [spec["clusterIP"]]
        family = "IPv6" if ":" in spec["clusterIP"] else "IPv4"
        spec.setdefault("ipFamilies", [family])
        spec.setdefault("ipFamilyPolicy", "SingleStack")
    if kind in ("NodePort", "LoadBalancer"):
        spec.setdefault("externalTrafficPolicy", "Cluster")
    else:
        # Fields of the other types go when the type changes (dropTypeDependentFields).
        spec.pop("externalTrafficPolicy", None)
        spec.pop("healthCheckNodePort", None)
    if kind == "LoadBalancer":
        spec.setdefault("allocateLoadBalancerNodePorts", True)
    else:
        spec.pop("allocateLoadBalancerNodePorts", None)
        spec.pop("loadBalancerClass", None)
    old_ports = {
        (p.get("port"), p.get("protocol", "TCP")): p.get("nodePort")
        for p in old_spec.get("ports") or []
    }
    given: set[int] = set()
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
        if not _needs_node_ports(spec):
            port.pop("nodePort", None)
            continue
        if not port.get("nodePort"):
            kept = old_ports.get((port.get("port"), port["protocol"]))
            port["nodePort"] = kept or allocations.node_port(given)
        given.add(int(port["nodePort"]))
    svc.setdefault("status", {}).setdefault("loadBalancer", {})
