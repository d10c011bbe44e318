"""The lab's kubelet and endpoint controller: Deployments in, pods and EndpointSlices out.

It watches the manifests directory; for every `apps/v1` Deployment it keeps `replicas` pods
running, placed round-robin over the workers (pod i of a Deployment on worker i mod W), each
a namespace on its node's pod bridge serving HTTP (lab/pod.py); and it writes the
EndpointSlices of every Service whose selector matches pods to `_lab/endpointslices.yaml`,
marking a pod ready once it listens. In the dual-stack (L2) lab a pod has an IPv6 address
too, and a Service that asks for IPv6 gets an IPv6 slice as well (one slice per family, as
Kubernetes writes them). This is what lets the lab create, scale and delete
workloads the way a user does with kubectl.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from herald.api.core import Service
from herald.api.manifests import MANIFEST_SUFFIXES, YAML_LOADER, ParsedFile, load_directory
from herald.api.problems import ManifestError
from herald.api.snapshot import ClusterState
from herald.lab.cluster import GENERATED, LAB_DIR, PREFIX, lab, read_state
from herald.lab.netns import Lab, delete_namespace, end_process, run
from herald.lab.topology import LabNode, Topology
from herald.sources.files import write_atomically
from herald.sources.watch import wakeups

log = logging.getLogger(__name__)
PODS = LAB_DIR / "pods.json"


@dataclass(frozen=True)
class PodSpec:
    name: str
    namespace: str
    node: str
    labels: tuple[tuple[str, str], ...]
    port: int


@dataclass(frozen=True)
class Pod:
    spec: PodSpec
    address: str
    pid: int
    address6: str | None = None  # in the dual-stack lab only


def deployments(manifests: Path) -> list[dict[str, Any]]:
    found = []
    for path in sorted(manifests.rglob("*")):
        relative = path.relative_to(manifests)
        if path.suffix not in MANIFEST_SUFFIXES or any(
            p.startswith((".", GENERATED)) for p in relative.parts
        ):
            continue
        try:
            text = path.read_text()
            # Most files hold no Deployment: skip parsing them (this runs on every change).
            if "Deployment" not in text:
                continue
            documents = list(yaml.load_all(text, Loader=YAML_LOADER))
        except (OSError, yaml.YAMLError):
            continue
        found += [
            d
            for d in documents
            if isinstance(d, dict)
            and d.get("apiVersion") == "apps/v1"
            and d.get("kind") == "Deployment"
        ]
    return found


def desired_pods(items: list[dict[str, Any]], topology: Topology) -> dict[str, PodSpec]:
    """Pure: the pods the Deployments ask for, placed round-robin over the workers."""
    workers = topology.workers
    pods: dict[str, PodSpec] = {}
    for item in items:
        meta, spec = item.get("metadata") or {}, item.get("spec") or {}
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        containers = (template.get("spec") or {}).get("containers") or [{}]
        ports = containers[0].get("ports") or [{}]
        port = int(ports[0].get("containerPort", 8080))
        for index in range(int(spec.get("replicas", 1))):
            name = f"{meta['name']}-{index}"
            pods[name] = PodSpec(
                name=name,
                namespace=meta.get("namespace", "default"),
                node=workers[index % len(workers)].name,
                labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
                port=port,
            )
    return pods


def endpoint_slices(state: ClusterState, pods: dict[str, Pod]) -> str:
    """Pure: per Service whose selector matches running pods, one EndpointSlice per IP
    family it uses."""
    documents = []
    for svc in state.services:
        selector = svc.spec.selector
        if not selector:
            continue
        members = [
            pod
            for pod in sorted(pods.values(), key=lambda p: p.spec.name)
            if pod.spec.namespace == svc.metadata.namespace
            and selector.items() <= dict(pod.spec.labels).items()
        ]
        ports = [
            {
                "name": port.name or "",
                "protocol": port.protocol,
                "port": port.target_port
                if isinstance(port.target_port, int)
                else (members[0].spec.port if members else port.port),
            }
            for port in svc.spec.ports
        ]
        for family in service_families(svc):
            addresses = [
                (pod, pod.address if family == "IPv4" else pod.address6) for pod in members
            ]
            documents.append(
                {
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        # The IPv4 slice keeps the name it had before the lab had IPv6.
                        "name": f"{svc.metadata.name}-lab" + ("" if family == "IPv4" else "-v6"),
                        "namespace": svc.metadata.namespace,
                        "labels": {"kubernetes.io/service-name": svc.metadata.name},
                    },
                    "addressType": family,
                    "ports": ports,
                    "endpoints": [
                        {
                            "addresses": [address],
                            "nodeName": pod.spec.node,
                            "targetRef": {"kind": "Pod", "name": pod.spec.name},
                            "conditions": {"ready": True, "serving": True, "terminating": False},
                        }
                        for pod, address in addresses
                        if address is not None
                    ],
                }
            )
    return yaml.safe_dump_all(documents, sort_keys=False) if documents else ""


def service_families(svc: Service) -> tuple[str, ...]:
    """The IP families a Service's endpoints are listed in. Kubernetes fills `ipFamilies` in
    (IPv4 first in this lab's cluster, as in most dual-stack ones); lab manifests may leave
    it out, so a dual-stack policy alone means both families and nothing means IPv4."""
    if svc.spec.ip_families:
        families: tuple[str, ...] = tuple(svc.spec.ip_families)
        if svc.spec.ip_family_policy != "SingleStack" and len(families) == 1:
            families += ("IPv6" if families == ("IPv4",) else "IPv4",)
        return families
    if svc.spec.ip_family_policy == "SingleStack":
        return ("IPv4",)
    return ("IPv4", "IPv6")


class Kubelet:
    def __init__(self, manifests: Path, topology: Topology) -> None:
        self.manifests = manifests
        self.topology = topology
        self.network: Lab = lab()
        self.pods: dict[str, Pod] = {}
        self._parsed: dict[Path, tuple[bytes, ParsedFile]] = {}
        for node in topology.nodes:
            self.network.hosts[node.name] = PREFIX + node.name

    def reconcile(self) -> None:
        wanted = desired_pods(deployments(self.manifests), self.topology)
        for name in sorted(self.pods.keys() - wanted.keys()):
            self._remove(name)
        for name, spec in sorted(wanted.items()):
            if name in self.pods and self.pods[name].spec != spec:
                self._remove(name)
        started = []
        for name, spec in sorted(wanted.items()):
            if name not in self.pods:
                # Registered at once: the next pod's address must see this one taken.
                self.pods[name] = self._start(spec)
                started.append(self.pods[name])
        for pod in started:
            self._wait_listening(pod)
        PODS.write_text(json.dumps({n: p.pid for n, p in self.pods.items()}))
        try:
            state = load_directory(self.manifests, self._parsed)
        except ManifestError as err:
            log.error(
                "event=manifests_invalid first=%r keeping=endpointslices", str(err.problems[0])
            )
            return
        text = endpoint_slices(state, self.pods)
        target = self.manifests / GENERATED / "endpointslices.yaml"
        if not target.exists() or target.read_text() != text:
            write_atomically(target, text)
            log.info("event=endpointslices_written pods=%d", len(self.pods))

    def _host(self, name: str) -> str:
        return "pod-" + name

    def _start(self, spec: PodSpec) -> Pod:
        node = self.topology.node(spec.node)
        address = self._free_address(node)
        address6 = node.pod_address6(address) if self.topology.dual_stack else None
        host = self._host(spec.name)
        self.network.host(host)
        # Interface names have 15 characters at most: name the node's end by a digest.
        port = "p" + hashlib.blake2b(spec.name.encode(), digest_size=4).hexdigest()
        self.network.link(node.name, port, host, "eth0")
        self.network.ip(node.name, "link", "set", port, "master", "cni0")
        self.network.ip(node.name, "link", "set", port, "type", "bridge_slave", "hairpin", "on")
        self.network.address(host, "eth0", f"{address}/24")
        self.network.route(host, "default", "via", node.pod_gateway)
        if address6 is not None:
            self.network.address(host, "eth0", f"{address6}/64")
            self.network.route(host, "default", "via", node.pod_gateway6)
        process = self.network.spawn(
            host,
            [sys.executable, "-m", "herald.lab.pod", "--name", spec.name, "--node", spec.node,
             "--port", str(spec.port)],
        )  # fmt: skip
        log.info(
            "event=pod_started pod=%s node=%s address=%s address6=%s",
            spec.name, spec.node, address, address6,
        )  # fmt: skip
        return Pod(spec, address, process.pid, address6)

    def _wait_listening(self, pod: Pod) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            out = run(
                ["ip", "netns", "exec", PREFIX + self._host(pod.spec.name), "ss", "-ltnH"]
            ).stdout
            if f":{pod.spec.port}" in out:
                return
            time.sleep(0.05)
        log.error("event=pod_not_listening pod=%s", pod.spec.name)

    def _remove(self, name: str) -> None:
        pod = self.pods.pop(name)
        end_process(pod.pid, grace=1.0)
        delete_namespace(PREFIX + self._host(name))
        self.network.hosts.pop(self._host(name), None)
        log.info("event=pod_removed pod=%s", name)

    def _free_address(self, node: LabNode) -> str:
        used = {p.address for p in self.pods.values() if p.spec.node == node.name}
        prefix = node.pod_gateway.rsplit(".", 1)[0]
        for host in range(10, 250):
            if f"{prefix}.{host}" not in used:
                return f"{prefix}.{host}"
        raise RuntimeError(f"node {node.name}: pod CIDR full")


async def run_kubelet(manifests: Path) -> None:
    state = read_state()
    kubelet = Kubelet(manifests, Topology.from_json(state["topology"]))
    # The watch starts before the first reconcile: starting pods takes seconds, and a
    # Service written meanwhile must still get its EndpointSlices.
    async for _ in wakeups([manifests], lambda path: _is_input(manifests, path), 10):
        kubelet.reconcile()


def _is_input(manifests: Path, path: Path) -> bool:
    """A user's manifest: not the slices this kubelet writes, nor the status in hidden
    directories (woken by those, it would compete for the CPU with the agents for nothing)."""
    relative = path.relative_to(manifests)
    first = relative.parts[0] if relative.parts else ""
    return first != GENERATED and not first.startswith(".")
