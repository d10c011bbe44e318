"""The lab's kubelet and endpoint controller: Deployments in, pods and EndpointSlices out.

It watches the manifests directory; for every `apps/v1` Deployment it keeps `replicas` pods
running, placed round-robin over the workers (pod i of a Deployment on worker i mod W), each
a namespace on its node's pod bridge serving HTTP (lab/pod.py); and it writes the
EndpointSlices of every Service whose selector matches pods to
`_lab/endpointslices/<namespace>.<service>.yaml`, listing a pod only once it listens. In the
dual-stack (L2) lab a pod has an IPv6 address too, and a Service that asks for IPv6 gets an
IPv6 slice as well (one slice per family, as Kubernetes writes them). This is what lets the
lab create, scale and delete workloads the way a user does with kubectl.

What to do is decided by a pure function (`plan_pods`: desired pods × running pods ×
leftovers × past failures -> remove, clean, start); the shell (`Kubelet`) does it through a
`Runtime` (commands and processes), which tests replace by a fake. Every set-up starts by
removing what an earlier pod of the same name may have left (its processes, its node-side
veth, its namespace): deleting a namespace frees its veth pair only later, in the kernel's
own time, so a pod scaled down and up again quickly used to meet its old veth
(`ip link add ... File exists`), and that one error ended the whole kubelet. Now a pod that
cannot start is reported (`pods.json` `problems`, a `pod_start_failed` log line) and retried
after a back-off, while every other pod and the EndpointSlices carry on.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import AsyncGenerator, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from herald.api.core import Service
from herald.api.manifests import MANIFEST_SUFFIXES, YAML_LOADER, ParsedFile, load_directory
from herald.api.problems import ManifestError
from herald.api.snapshot import ClusterState
from herald.lab.cluster import GENERATED, LAB_DIR, LOGS, PREFIX, read_state
from herald.lab.netns import LabError, alive, end_process, run
from herald.lab.topology import LabNode, Topology
from herald.sources.files import write_atomically
from herald.sources.watch import wakeups

log = logging.getLogger(__name__)
PODS = LAB_DIR / "pods.json"  # the pods, their addresses and the kubelet's problems
POD_LOGS = LOGS / "pods"  # each pod's output of its latest start (its errors only)
POD_HOST = "pod-"  # a pod's lab host name is POD_HOST + its name (lab hosts never use it)

# A pod that failed waits BACKOFF_FIRST, then twice as long after each further failure, up
# to BACKOFF_MAX: a pod that cannot start must not keep the kubelet busy, and one whose
# cause went away (a veth the kernel had not freed yet) is back within a second.
BACKOFF_FIRST = 1.0
BACKOFF_MAX = 30.0
# How often a quiet kubelet looks whether its pods' processes still live: a pod that died
# leaves the EndpointSlices (and is started again) within this time.
RESYNC = 5.0
LISTEN_TIMEOUT = 10.0
# Where `ip netns add` makes a named namespace (iproute2's NETNS_RUN_DIR): `ip netns list`
# lists this directory's entries, and so does the kubelet, without starting a process.
NETNS_DIR = Path("/run/netns")
# libyaml's emitter when PyYAML has it: the same text as the pure-Python one, ~4x faster
# (the EndpointSlices are dumped on every change, on the way from a Service to its route).
YAML_DUMPER: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)

# Where the EndpointSlices go, below the lab's own manifests: one file per Service (earlier
# kubelets wrote them all to LEGACY_SLICES, which is removed).
SLICES_DIR = "endpointslices"
LEGACY_SLICES = "endpointslices.yaml"

# A file's documents, parsed once per text (what `deployments` keeps between changes).
ParsedDocuments = dict[Path, tuple[str, list[Any]]]


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


@dataclass(frozen=True)
class Failure:
    """Why the pod with `spec` could not start, how often it failed, and when to retry."""

    spec: PodSpec
    error: str
    attempts: int
    retry_at: float


@dataclass(frozen=True)
class PodPlan:
    """What one reconcile does, in this order."""

    remove: tuple[str, ...]  # running pods that are unwanted, changed or gone
    clean: tuple[str, ...]  # leftovers of pods nobody runs (a kubelet restart, a failed removal)
    start: tuple[PodSpec, ...]  # wanted pods to set up (each cleaned of leftovers first)
    waiting: tuple[str, ...]  # wanted pods held back after a failure until their retry time
    forget: tuple[str, ...]  # failures that no longer matter: the pod or its spec went away


# -- the pure core ---------------------------------------------------------------------------


def deployments(
    manifests: Path, cache: ParsedDocuments | None = None
) -> list[tuple[str, dict[str, Any]]]:
    """Every `apps/v1` Deployment below `manifests`, with the file it is in. With `cache`, a
    file whose text is unchanged is not parsed again (this runs on every change)."""
    found = []
    seen: set[Path] = set()
    for path in sorted(manifests.rglob("*")):
        relative = path.relative_to(manifests)
        if path.suffix not in MANIFEST_SUFFIXES or any(
            p.startswith((".", GENERATED)) for p in relative.parts
        ):
            continue
        try:
            text = path.read_text()
            # Most files hold no Deployment: skip parsing them.
            if "Deployment" not in text:
                continue
            cached = cache.get(path) if cache is not None else None
            if cached is not None and cached[0] == text:
                documents = cached[1]
            else:
                documents = list(yaml.load_all(text, Loader=YAML_LOADER))
                if cache is not None:
                    cache[path] = (text, documents)
        except (OSError, yaml.YAMLError):
            continue  # load_directory reports such files; the controller and agents show it
        seen.add(path)
        found += [
            (str(relative), d)
            for d in documents
            if isinstance(d, dict)
            and d.get("apiVersion") == "apps/v1"
            and d.get("kind") == "Deployment"
        ]
    if cache is not None:
        for gone in cache.keys() - seen:
            del cache[gone]
    return found


def deployment_pods(item: dict[str, Any], workers: Sequence[LabNode]) -> list[PodSpec]:
    """Pure: the pods one Deployment asks for; ValueError (saying which field) if it cannot
    be read."""
    meta, spec = item.get("metadata") or {}, item.get("spec") or {}
    name = meta.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError("metadata.name: missing; a Deployment needs a name")
    try:
        replicas = int(spec.get("replicas", 1))
    except (TypeError, ValueError):
        raise ValueError(f"spec.replicas: {spec.get('replicas')!r} is not a whole number") from None
    try:
        template = spec.get("template") or {}
        labels = (template.get("metadata") or {}).get("labels") or {}
        pairs = tuple(sorted((str(k), str(v)) for k, v in labels.items()))
        containers = (template.get("spec") or {}).get("containers") or [{}]
        ports = containers[0].get("ports") or [{}]
        port = int(ports[0].get("containerPort", 8080))
    except (AttributeError, IndexError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"spec.template: cannot read metadata.labels or containers[0].ports[0]"
            f".containerPort: {err}"
        ) from None
    if not 1 <= port <= 65535:
        raise ValueError(f"containerPort: {port} is not a port (1-65535)")
    return [
        PodSpec(
            name=f"{name}-{index}",
            namespace=str(meta.get("namespace", "default")),
            node=workers[index % len(workers)].name,
            labels=pairs,
            port=port,
        )
        for index in range(replicas)
    ]


def desired_pods(
    items: Sequence[tuple[str, dict[str, Any]]], topology: Topology
) -> tuple[dict[str, PodSpec], list[str]]:
    """Pure: the pods the Deployments ask for, placed round-robin over the workers, and a
    problem for each Deployment that cannot be run (the others run all the same)."""
    workers = topology.workers
    pods: dict[str, PodSpec] = {}
    owners: dict[str, str] = {}
    problems: list[str] = []
    for source, item in items:
        meta = item.get("metadata") or {}
        what = f"Deployment {meta.get('namespace', 'default')}/{meta.get('name')} ({source})"
        if not workers:
            problems.append(f"{what}: not run: the lab has no worker node to place pods on")
            continue
        try:
            specs = deployment_pods(item, workers)
        except ValueError as err:
            problems.append(f"{what}: not run: {err}")
            continue
        # Lab pods are named by their Deployment's name alone (their namespace and veth are).
        taken = [s.name for s in specs if s.name in pods]
        if taken:
            problems.append(
                f"{what}: not run: pod {taken[0]} is already {owners[taken[0]]}'s; lab pods "
                "are named after their Deployment only, so give it another name"
            )
            continue
        for spec in specs:
            pods[spec.name] = spec
            owners[spec.name] = what
    return pods, problems


def plan_pods(
    wanted: Mapping[str, PodSpec],
    running: Mapping[str, PodSpec],
    gone: Set[str],
    present: Set[str],
    failures: Mapping[str, Failure],
    now: float,
) -> PodPlan:
    """Pure: what to do to go from `running` (the pods started and listening; of them,
    `gone` lost their process or namespace) to `wanted`, given the pod namespaces `present`
    on the machine and the `failures` of earlier starts."""
    remove = tuple(sorted(n for n, spec in running.items() if wanted.get(n) != spec or n in gone))
    missing = [s for n, s in sorted(wanted.items()) if n not in running or n in remove]
    waiting = tuple(
        s.name
        for s in missing
        if (f := failures.get(s.name)) is not None and f.spec == s and f.retry_at > now
    )
    start = tuple(s for s in missing if s.name not in waiting)
    clean = tuple(sorted(present - running.keys() - {s.name for s in start}))
    # A changed spec is a new pod: it gets a fresh start, not the old one's back-off.
    forget = tuple(sorted(n for n, f in failures.items() if wanted.get(n) != f.spec))
    return PodPlan(remove, clean, start, waiting, forget)


def failed(previous: Failure | None, spec: PodSpec, error: str, now: float) -> Failure:
    """Pure: the failure record after `spec` failed to start at `now`."""
    attempts = previous.attempts + 1 if previous is not None and previous.spec == spec else 1
    return Failure(spec, error, attempts, now + backoff(attempts))


def backoff(attempts: int) -> float:
    """Pure: the wait after the `attempts`-th failure in a row."""
    return min(BACKOFF_MAX, BACKOFF_FIRST * 2.0 ** (attempts - 1))


def failure_problem(failure: Failure, now: float) -> str:
    spec = failure.spec
    return (
        f"pod {spec.namespace}/{spec.name} on {spec.node}: not running: {failure.error} "
        f"(failed {failure.attempts}x; next try in {max(0.0, failure.retry_at - now):.0f} s)"
    )


def next_delay(failures: Mapping[str, Failure], now: float) -> float:
    """Pure: seconds until the kubelet must look again without any change to wake it."""
    return max(0.0, min([RESYNC, *(f.retry_at - now for f in failures.values())]))


def free_address(node: LabNode, used: Set[str]) -> str:
    prefix = node.pod_gateway.rsplit(".", 1)[0]
    for host in range(10, 250):
        if f"{prefix}.{host}" not in used:
            return f"{prefix}.{host}"
    raise LabError(f"node {node.name}: pod CIDR {node.pod_cidr} full (240 pods)")


def port_name(pod: str) -> str:
    """The node's end of a pod's veth: interface names have 15 characters at most, so it is
    named by a digest of the pod's name (the same pod name always gives the same port)."""
    return "p" + hashlib.blake2b(pod.encode(), digest_size=4).hexdigest()


def setup_commands(
    spec: PodSpec, node: LabNode, namespace: str, node_namespace: str, address: str,
    address6: str | None,
) -> list[list[str]]:  # fmt: skip
    """Pure: the `ip` commands that make a pod's namespace, wired to its node's pod bridge.
    Each one fails if its object exists: leftovers are removed before, never reused."""
    port = port_name(spec.name)
    commands = [
        ["ip", "netns", "add", namespace],
        ["ip", "-n", namespace, "link", "set", "lo", "up"],
        ["ip", "link", "add", port, "netns", node_namespace,
         "type", "veth", "peer", "name", "eth0", "netns", namespace],
        ["ip", "-n", node_namespace, "link", "set", port, "master", "cni0"],
        ["ip", "-n", node_namespace, "link", "set", port, "type", "bridge_slave", "hairpin", "on"],
        ["ip", "-n", node_namespace, "link", "set", port, "up"],
        ["ip", "-n", namespace, "link", "set", "eth0", "up"],
        ["ip", "-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0"],
        ["ip", "-n", namespace, "route", "replace", "default", "via", node.pod_gateway],
    ]  # fmt: skip
    if address6 is not None:
        # nodad: the address is usable at once, not after duplicate detection.
        commands += [
            ["ip", "-n", namespace, "addr", "add", f"{address6}/64", "dev", "eth0", "nodad"],
            ["ip", "-6", "-n", namespace, "route", "replace", "default", "via", node.pod_gateway6],
        ]  # fmt: skip
    return commands


def listens(ss_output: str, port: int) -> bool:
    """Pure: whether `ss -ltnH` output has a socket listening on TCP `port` (by the local
    address column: ':80' must not match ':8080')."""
    return any(
        len(fields) >= 4 and fields[3].endswith(f":{port}")
        for fields in (line.split() for line in ss_output.splitlines())
    )


def pods_status(pods: Mapping[str, Pod], problems: Sequence[str], kubelet_pid: int) -> str:
    """Pure: the text of pods.json."""
    return json.dumps(
        {
            "kubeletPid": kubelet_pid,
            "pods": [
                {
                    "name": p.spec.name,
                    "namespace": p.spec.namespace,
                    "node": p.spec.node,
                    "address": p.address,
                    "address6": p.address6,
                    "pid": p.pid,
                }
                for _, p in sorted(pods.items())
            ],
            "problems": list(problems),
        },
        indent=1,
    )


def endpoint_slices(state: ClusterState, pods: dict[str, Pod]) -> str:
    """Pure: per Service whose selector matches running pods, one EndpointSlice per IP
    family it uses, as one YAML text."""
    return slices_text(slice_documents(state.services, pods))


def slices_text(documents: list[dict[str, Any]]) -> str:
    """Pure: EndpointSlices as one YAML file (empty for none)."""
    return yaml.dump_all(documents, Dumper=YAML_DUMPER, sort_keys=False) if documents else ""


def slice_documents(services: Iterable[Service], pods: Mapping[str, Pod]) -> list[dict[str, Any]]:
    """Pure: the EndpointSlices of `services` over `pods`, as API objects."""
    documents = []
    for svc in services:
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
    return documents


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


# -- the shell -------------------------------------------------------------------------------


class StoreError(Exception):
    """The Services cannot be read (the message says why); the slices are left as they are."""


class Store(Protocol):
    """Where the kubelet reads Deployments and Services and writes EndpointSlices: the
    manifests directory (`ManifestsStore`) or the Kubernetes API (`lab/kubelet_api.py`).
    The kubelet is one; only where its objects live differs."""

    def deployments(self) -> list[tuple[str, dict[str, Any]]]:
        """Every `apps/v1` Deployment, with where it was read from."""

    def services(self) -> tuple[Service, ...]:
        """Every Service; StoreError when they cannot be read."""

    def write_slices(self, slices: list[dict[str, Any]]) -> bool:
        """Makes the lab's EndpointSlices `slices`; whether anything was written."""


class ManifestsStore:
    """The manifests directory: the user's files in, the EndpointSlices out, one file per
    Service (`_lab/endpointslices/<namespace>.<service>.yaml`). One file for all of them
    was parsed again whole, by every agent and the controller, on every change of any
    Service's endpoints; now a change costs the parsing of that Service's slices only."""

    def __init__(self, manifests: Path) -> None:
        self.manifests = manifests
        self._parsed: dict[Path, tuple[bytes, ParsedFile]] = {}
        self._documents: ParsedDocuments = {}
        # Both layouts: an earlier kubelet ended after writing the new files but before
        # removing the old one, whose slices (the same names) keep the manifests invalid.
        legacy = manifests / GENERATED / LEGACY_SLICES
        if (manifests / GENERATED / SLICES_DIR).is_dir():
            with contextlib.suppress(FileNotFoundError):
                legacy.unlink()

    def deployments(self) -> list[tuple[str, dict[str, Any]]]:
        return deployments(self.manifests, self._documents)

    def services(self) -> tuple[Service, ...]:
        try:
            return load_directory(self.manifests, self._parsed).services
        except ManifestError as err:
            raise StoreError(f"manifests invalid: {err.problems[0]}") from err

    def write_slices(self, slices: list[dict[str, Any]]) -> bool:
        directory = self.manifests / GENERATED / SLICES_DIR
        files: dict[str, list[dict[str, Any]]] = {}
        for document in slices:
            meta = document["metadata"]
            service = meta["labels"]["kubernetes.io/service-name"]
            files.setdefault(f"{meta['namespace']}.{service}.yaml", []).append(document)
        wrote = False
        for name, documents in sorted(files.items()):
            wrote |= write_if_changed(directory / name, slices_text(documents))
        # Removed only once the new files are in place: no reader sees a Service without
        # its slices. The one file of earlier kubelets goes too (its slices are in these).
        try:
            listed = sorted(directory.iterdir())
        except FileNotFoundError:
            listed = []
        stale = [self.manifests / GENERATED / LEGACY_SLICES] + [
            path
            for path in listed
            if path.name not in files
            and path.suffix in MANIFEST_SUFFIXES
            and not path.name.startswith(".")
        ]
        for path in stale:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
                wrote = True
        return wrote


def write_if_changed(path: Path, text: str) -> bool:
    """Replaces `path` by `text` unless it holds it already; whether it wrote. Not synced to
    disk: what the lab kubelet writes it writes again from its pods after any restart, and
    an fsync on a busy disk held the EndpointSlices back from the agents for up to ~150 ms."""
    try:
        if path.read_text() == text:
            return False
    except FileNotFoundError:
        pass
    write_atomically(path, text, durable=False)
    return True


class Runtime(Protocol):
    """The machine as the kubelet uses it: commands, processes, time."""

    def run(self, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        """Like lab.netns.run: LabError naming the command if it fails and `check`."""

    def spawn(self, argv: Sequence[str], log: Path | None) -> int:
        """Starts `argv` in a session of its own (a pod outlives the kubelet); its pid."""

    def alive(self, pid: int) -> bool: ...

    def end(self, pid: int) -> None: ...

    def namespaces(self) -> set[str]:
        """The named network namespaces (what `ip netns list` lists); OSError if they cannot
        be listed."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float) -> None: ...


class SystemRuntime:
    def __init__(self) -> None:
        # The pods this process started, to tell a pod's death exactly (a pid alone could
        # be reused by a stranger once the pod was reaped).
        self._children: dict[int, subprocess.Popen[bytes]] = {}

    def run(self, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        return run(argv, check=check)

    def namespaces(self, directory: Path = NETNS_DIR) -> set[str]:
        # Read here rather than by `ip netns list`: a process started on every change cost
        # ~4 ms idle, more on a loaded machine, before the EndpointSlices were written.
        try:
            return set(os.listdir(directory))
        except FileNotFoundError:  # no namespace was ever named
            return set()

    def spawn(self, argv: Sequence[str], log: Path | None) -> int:
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
        # "w": the log holds this start only, so its last line says why this start failed.
        output = log.open("wb") if log is not None else subprocess.DEVNULL
        try:
            process = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            if log is not None:
                output.close()  # type: ignore[union-attr]
        self._children[process.pid] = process
        return process.pid

    def alive(self, pid: int) -> bool:
        child = self._children.get(pid)
        return child.poll() is None if child is not None else alive(pid)

    def end(self, pid: int) -> None:
        end_process(pid, grace=1.0)
        child = self._children.pop(pid, None)
        if child is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.wait(timeout=1)

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class Kubelet:
    def __init__(
        self,
        manifests: Path,
        topology: Topology,
        runtime: Runtime | None = None,
        prefix: str = PREFIX,
        status: Path = PODS,
        pod_logs: Path | None = POD_LOGS,
        listen_timeout: float = LISTEN_TIMEOUT,
        store: Store | None = None,
    ) -> None:
        self.manifests = manifests
        self.store: Store = store or ManifestsStore(manifests)
        self.topology = topology
        self.runtime: Runtime = runtime or SystemRuntime()
        self.prefix = prefix
        self.status = status
        self.pod_logs = pod_logs
        self.listen_timeout = listen_timeout
        self.pods: dict[str, Pod] = {}  # started and listening: what the slices list
        self.failures: dict[str, Failure] = {}
        self.problems: list[str] = []
        self._loop_failures = 0

    # The loop calls `sync`; it never raises an Exception, so the kubelet never exits on one.

    def sync(self, changed: bool = True) -> float:
        """Reconciles if the manifests `changed`, a retry is due or a pod is gone; returns
        the seconds until the next look without a change."""
        now = self.runtime.monotonic()
        try:
            if changed or self._loop_failures or self._due(now):
                self.reconcile()
            self._loop_failures = 0
            return next_delay(self.failures, self.runtime.monotonic())
        except Exception as err:
            self._loop_failures += 1
            delay = backoff(self._loop_failures)
            error = f"{type(err).__name__}: {err}"
            log.error("event=reconcile_failed attempt=%d retry_in=%.0fs error=%r",
                      self._loop_failures, delay, error)  # fmt: skip
            self.problems = [f"lab kubelet: reconcile failed: {error} (retry in {delay:.0f} s)"]
            with contextlib.suppress(Exception):
                self._write_status()
            return delay

    def _due(self, now: float) -> bool:
        return any(f.retry_at <= now for f in self.failures.values()) or any(
            not self.runtime.alive(p.pid) for p in self.pods.values()
        )

    def reconcile(self) -> None:
        now = self.runtime.monotonic()
        wanted, problems = desired_pods(self.store.deployments(), self.topology)
        present = self._present()
        gone = {
            name
            for name, pod in self.pods.items()
            if name not in present or not self.runtime.alive(pod.pid)
        }
        for name in sorted(gone):
            log.warning("event=pod_gone pod=%s pid=%d", name, self.pods[name].pid)
        plan = plan_pods(
            wanted, {n: p.spec for n, p in self.pods.items()}, gone, present, self.failures, now
        )
        for name in plan.forget:
            del self.failures[name]
        for name in plan.remove:
            self._remove(name)
        for name in plan.clean:
            try:
                self._clean(name, None, None)
                log.info("event=pod_leftovers_removed pod=%s", name)
            except Exception as err:  # per pod: the others go on
                log.error("event=pod_cleanup_failed pod=%s error=%r", name, str(err))
        self._start_all(plan.start)
        self.problems = problems + [
            failure_problem(f, self.runtime.monotonic()) for _, f in sorted(self.failures.items())
        ]
        self._write_slices()
        self._write_status()

    def close(self) -> None:
        """Ends every pod and removes what they were made of (for tests)."""
        for name in sorted(self.pods):
            self._remove(name)
        for name in sorted(self._present()):
            with contextlib.suppress(Exception):
                self._clean(name, None, None)

    def _ns(self, host: str) -> str:
        return self.prefix + host

    def _present(self) -> set[str]:
        """The pods whose namespace exists."""
        start = self._ns(POD_HOST)
        return {n.removeprefix(start) for n in self.runtime.namespaces() if n.startswith(start)}

    def _start_all(self, specs: Sequence[PodSpec]) -> None:
        # All pods are set up and spawned before any is waited for: they start in parallel.
        starting: dict[str, Pod] = {}
        for spec in specs:
            try:
                starting[spec.name] = self._start(spec, starting)
            except Exception as err:  # per pod: the others go on
                self._fail(spec, err, None)
        deadline = self.runtime.monotonic() + self.listen_timeout
        for name, pod in starting.items():
            try:
                self._wait_listening(pod, deadline)
            except Exception as err:  # per pod: the others go on
                self._fail(pod.spec, err, pod.pid)
                continue
            self.pods[name] = pod
            self.failures.pop(name, None)
            log.info(
                "event=pod_started pod=%s node=%s address=%s address6=%s",
                name, pod.spec.node, pod.address, pod.address6,
            )  # fmt: skip

    def _start(self, spec: PodSpec, starting: Mapping[str, Pod]) -> Pod:
        node = self.topology.node(spec.node)
        # Taken: the running pods' addresses and those of the pods started before this one.
        used = {p.address for p in (*self.pods.values(), *starting.values())
                if p.spec.node == node.name}  # fmt: skip
        address = free_address(node, used)
        address6 = node.pod_address6(address) if self.topology.dual_stack else None
        namespace = self._ns(POD_HOST + spec.name)
        self._clean(spec.name, spec.node, None)
        for command in setup_commands(
            spec, node, namespace, self._ns(node.name), address, address6
        ):
            self.runtime.run(command)
        pid = self.runtime.spawn(
            ["ip", "netns", "exec", namespace, sys.executable, "-m", "herald.lab.pod",
             "--name", spec.name, "--node", spec.node, "--port", str(spec.port)],
            self._log(spec.name),
        )  # fmt: skip
        return Pod(spec, address, pid, address6)

    def _wait_listening(self, pod: Pod, deadline: float) -> None:
        namespace = self._ns(POD_HOST + pod.spec.name)
        while True:
            if not self.runtime.alive(pod.pid):
                raise LabError(
                    f"its process {pod.pid} exited before listening on port {pod.spec.port}"
                    + self._last_words(pod.spec.name)
                )
            out = self.runtime.run(["ip", "netns", "exec", namespace, "ss", "-ltnH"]).stdout
            if listens(out, pod.spec.port):
                return
            if self.runtime.monotonic() >= deadline:
                raise LabError(
                    f"not listening on port {pod.spec.port} after {self.listen_timeout:.0f} s"
                    + self._last_words(pod.spec.name)
                )
            self.runtime.sleep(0.05)

    def _fail(self, spec: PodSpec, err: Exception, pid: int | None) -> None:
        now = self.runtime.monotonic()
        failure = failed(self.failures.get(spec.name), spec, str(err), now)
        self.failures[spec.name] = failure
        log.error(
            "event=pod_start_failed pod=%s namespace=%s node=%s attempt=%d retry_in=%.0fs "
            "error=%r",
            spec.name, spec.namespace, spec.node, failure.attempts, failure.retry_at - now,
            str(err),
        )  # fmt: skip
        try:
            self._clean(spec.name, spec.node, pid)
        except Exception as cleanup:  # the next start cleans again
            log.error("event=pod_cleanup_failed pod=%s error=%r", spec.name, str(cleanup))

    def _remove(self, name: str) -> None:
        pod = self.pods.pop(name)
        try:
            self._clean(name, pod.spec.node, pod.pid)
            log.info("event=pod_removed pod=%s", name)
        except Exception as err:  # its namespace is cleaned as a leftover
            log.error("event=pod_remove_failed pod=%s error=%r", name, str(err))

    def _clean(self, name: str, node: str | None, pid: int | None) -> None:
        """Removes what a pod named `name` may have left: its processes, its veth (on
        `node`, when known) and its namespace. Idempotent: what is not there is fine."""
        namespace = self._ns(POD_HOST + name)
        # Fails (harmlessly) when there is no such namespace.
        listed = self.runtime.run(["ip", "netns", "pids", namespace], check=False)
        pids = {int(p) for p in listed.stdout.split()} if listed.returncode == 0 else set()
        for victim in sorted(pids | ({pid} if pid is not None else set())):
            self.runtime.end(victim)
        # Deleting a veth frees both its ends at once; deleting only the namespace frees them
        # some time later, and meanwhile the node's end blocks a new pod of the same name
        # and the old address still answers on the pod bridge. By the pod's end when its
        # namespace is there, by the node's end when the namespace is gone but it lingers.
        if listed.returncode == 0:
            self.runtime.run(["ip", "-n", namespace, "link", "del", "eth0"], check=False)
        if node is not None:
            self.runtime.run(
                ["ip", "-n", self._ns(node), "link", "del", port_name(name)], check=False
            )
        if listed.returncode == 0:
            self.runtime.run(["ip", "netns", "delete", namespace])

    def _log(self, name: str) -> Path | None:
        return self.pod_logs / f"{name}.log" if self.pod_logs is not None else None

    def _last_words(self, name: str) -> str:
        """': <the last line the pod wrote>' (its error), or nothing."""
        path = self._log(name)
        try:
            lines = path.read_text(errors="replace").strip().splitlines() if path else []
        except OSError:
            return ""
        return f": {lines[-1].strip()}" if lines else ""

    def _write_slices(self) -> None:
        try:
            services = self.store.services()
        except StoreError as err:
            log.error("event=services_unreadable error=%r keeping=endpointslices", str(err))
            self.problems.append(f"EndpointSlices not updated: {err}")
            return
        if self.store.write_slices(slice_documents(services, self.pods)):
            log.info("event=endpointslices_written pods=%d", len(self.pods))

    def _write_status(self) -> None:
        write_if_changed(self.status, pods_status(self.pods, self.problems, os.getpid()))


def lab_problems(status: Path = PODS) -> list[str]:
    """The lab kubelet's problems, for a command that shows the lab's state: those it wrote,
    and that it is not running at all. Empty when there is no lab."""
    try:
        data = json.loads(status.read_text())
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as err:
        return [f"lab kubelet: cannot read {status}: {err}"]
    problems = [str(p) for p in data.get("problems", [])]
    pid = data.get("kubeletPid")
    if isinstance(pid, int) and not alive(pid):
        problems.insert(
            0,
            f"lab kubelet (pid {pid}) is not running: pods are not started or removed and "
            f"EndpointSlices not updated; see {LOGS / 'kubelet.log'}, then `herald lab up`",
        )
    return problems


async def run_kubelet(manifests: Path, kubeconfig: Path | None = None) -> None:
    """The lab's kubelet on the manifests directory, or on the Kubernetes API that
    `kubeconfig` names (`herald lab up --source kube`)."""
    state = read_state()
    if "topology" not in state:
        raise LabError("no lab to run pods in (no state in /run/herald/lab): run `herald lab up`")
    topology = Topology.from_json(state["topology"])
    if kubeconfig is None:
        await serve(Kubelet(manifests, topology), manifests)
        return
    from herald.lab.kubelet_api import ApiStore, api_changes

    store = ApiStore.connect(kubeconfig)
    store.register_nodes(topology)
    await serve_changes(Kubelet(manifests, topology, store=store), api_changes(kubeconfig))


class Syncs(Protocol):
    def sync(self, changed: bool = True) -> float: ...


async def serve(kubelet: Syncs, manifests: Path) -> None:
    """Syncs `kubelet` on every change of the manifests and whenever it asks to look again."""
    # The watch starts before the first reconcile: starting pods takes seconds, and a
    # Service written meanwhile must still get its EndpointSlices.
    await serve_changes(kubelet, wakeups([manifests], lambda path: _is_input(manifests, path), 10))


async def serve_changes(kubelet: Syncs, changes: AsyncGenerator[object, None]) -> None:
    """Syncs `kubelet` on every one of `changes` (the first comes once the watch is on) and
    whenever it asks to look again."""
    pending: asyncio.Future[object] | None = None
    try:
        await anext(changes)
        changed = True
        while True:
            delay = kubelet.sync(changed)
            # The wait for a change outlives a timeout (cancelling it would end the watch).
            if pending is None:
                pending = asyncio.ensure_future(anext(changes))
            done, _ = await asyncio.wait({pending}, timeout=delay)
            changed = pending in done
            if changed:
                pending.result()
                pending = None
    finally:
        if pending is not None:
            pending.cancel()
            await asyncio.gather(pending, return_exceptions=True)
        await changes.aclose()


def _is_input(manifests: Path, path: Path) -> bool:
    """A user's manifest: not the slices this kubelet writes, nor the status in hidden
    directories (woken by those, it would compete for the CPU with the agents for nothing)."""
    relative = path.relative_to(manifests)
    first = relative.parts[0] if relative.parts else ""
    return first != GENERATED and not first.startswith(".")
