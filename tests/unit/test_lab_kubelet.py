"""The lab kubelet: its EndpointSlices (one per IP family a Service uses, from dual-stack
pods, never listing a pod that does not listen), its decision of which pods to start and
remove, and its shell on a fake machine: leftovers of earlier pods (a veth whose namespace
was deleted a moment ago: `File exists`), pods that fail, fast scaling."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from herald.api.core import Service
from herald.api.snapshot import ClusterState
from herald.lab.kubelet import (
    BACKOFF_FIRST,
    BACKOFF_MAX,
    RESYNC,
    Failure,
    Kubelet,
    Pod,
    PodSpec,
    SystemRuntime,
    deployments,
    desired_pods,
    endpoint_slices,
    failed,
    lab_problems,
    listens,
    plan_pods,
    pods_status,
    port_name,
    serve,
    service_families,
    setup_commands,
)
from herald.lab.netns import LabError
from herald.lab.topology import Topology, seed_topology

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


# -- which pods to start and remove (pure) ---------------------------------------------------

TOPOLOGY = seed_topology("frr", 2)


def spec(name: str, node: str = "k8s-worker1", port: int = 8080) -> PodSpec:
    return PodSpec(name, "default", node, (("app", "web"),), port)


def specs(*names: str) -> dict[str, PodSpec]:
    return {n: spec(n) for n in names}


def test_plan_starts_the_missing_and_removes_the_unwanted() -> None:
    plan = plan_pods(specs("a-0", "a-1", "a-2"), specs("a-0", "a-3"), set(), {"a-0", "a-3"}, {}, 0)
    assert plan.remove == ("a-3",)
    assert [s.name for s in plan.start] == ["a-1", "a-2"]
    assert plan.clean == plan.waiting == plan.forget == ()


def test_plan_replaces_changed_and_gone_pods() -> None:
    wanted = {"a-0": spec("a-0", port=9090), "a-1": spec("a-1")}
    plan = plan_pods(wanted, specs("a-0", "a-1"), {"a-1"}, {"a-0"}, {}, 0)
    assert plan.remove == ("a-0", "a-1")
    assert [s.name for s in plan.start] == ["a-0", "a-1"]
    assert plan.start[0].port == 9090


def test_plan_cleans_leftovers_of_pods_nobody_runs() -> None:
    # a-5: a namespace left by a kubelet that died; a-1 is wanted, and its start cleans it.
    plan = plan_pods(specs("a-0", "a-1"), specs("a-0"), set(), {"a-0", "a-1", "a-5"}, {}, 0)
    assert plan.clean == ("a-5",)
    assert [s.name for s in plan.start] == ["a-1"]


def test_plan_holds_a_failed_pod_until_its_retry_time() -> None:
    failures = {"a-1": Failure(spec("a-1"), "File exists", 1, retry_at=10.0)}
    held = plan_pods(specs("a-0", "a-1"), {}, set(), set(), failures, now=9.9)
    assert [s.name for s in held.start] == ["a-0"]
    assert held.waiting == ("a-1",)
    due = plan_pods(specs("a-0", "a-1"), {}, set(), set(), failures, now=10.0)
    assert [s.name for s in due.start] == ["a-0", "a-1"]
    assert due.waiting == due.forget == ()


def test_plan_starts_a_changed_spec_at_once_and_forgets_old_failures() -> None:
    failures = {
        "a-1": Failure(spec("a-1"), "not listening", 3, retry_at=100.0),
        "a-2": Failure(spec("a-2"), "File exists", 1, retry_at=100.0),
    }
    wanted = {"a-1": spec("a-1", port=9090)}  # a-1 fixed by the user, a-2 scaled away
    plan = plan_pods(wanted, {}, set(), set(), failures, now=0)
    assert [s.name for s in plan.start] == ["a-1"]
    assert plan.forget == ("a-1", "a-2")


names = st.sets(st.sampled_from([f"a-{i}" for i in range(8)]))


@given(wanted=names, running=names, gone=names, present=names, ports=st.sets(st.integers(0, 7)))
@settings(max_examples=300, deadline=None, derandomize=True)
def test_plan_converges_in_one_step(
    wanted: set[str], running: set[str], gone: set[str], present: set[str], ports: set[int]
) -> None:
    # Some running pods have an old spec (another port): they must be replaced.
    want = {n: spec(n, port=8080 + int(n[2:]) in ports) for n in wanted}
    plan = plan_pods(want, specs(*running), gone & running, present, {}, 0)
    after = {n: s for n, s in specs(*running).items() if n not in plan.remove}
    after |= {s.name: s for s in plan.start}
    assert after == want
    assert not set(plan.remove) & set(plan.clean)
    assert not {s.name for s in plan.start} & set(plan.clean)
    # Nothing the machine has is left uncleaned, unless a pod of that name runs after.
    assert present - set(plan.clean) <= after.keys() | set(plan.remove)


def test_backoff_doubles_up_to_its_cap_and_restarts_with_a_new_spec() -> None:
    first = failed(None, spec("a-0"), "boom", now=100)
    second = failed(first, spec("a-0"), "boom", now=101)
    assert (first.attempts, first.retry_at) == (1, 100 + BACKOFF_FIRST)
    assert (second.attempts, second.retry_at) == (2, 101 + 2 * BACKOFF_FIRST)
    many = first
    for _ in range(20):
        many = failed(many, spec("a-0"), "boom", now=0)
    assert many.retry_at == BACKOFF_MAX
    assert failed(many, spec("a-0", port=1), "boom", now=0).attempts == 1


def deployment(name: str, replicas: Any = 2, **meta: Any) -> tuple[str, dict[str, Any]]:
    return (
        f"{name}.yaml",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": name, **meta},
            "spec": {
                "replicas": replicas,
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"ports": [{"containerPort": 8080}]}]},
                },
            },
        },
    )


def test_desired_pods_round_robin_over_workers() -> None:
    pods, problems = desired_pods([deployment("web", 3)], TOPOLOGY)
    assert problems == []
    assert [(p.name, p.node) for p in pods.values()] == [
        ("web-0", "k8s-worker1"),
        ("web-1", "k8s-worker2"),
        ("web-2", "k8s-worker1"),
    ]


def test_a_bad_deployment_is_a_problem_and_the_others_still_run() -> None:
    pods, problems = desired_pods(
        [deployment("bad", "many"), deployment("web"), deployment("web", namespace="other")],
        TOPOLOGY,
    )
    assert sorted(pods) == ["web-0", "web-1"]
    assert problems == [
        "Deployment default/bad (bad.yaml): not run: spec.replicas: 'many' is not a whole number",
        "Deployment other/web (web.yaml): not run: pod web-0 is already Deployment "
        "default/web (web.yaml)'s; lab pods are named after their Deployment only, so give "
        "it another name",
    ]


def test_listening_is_read_from_the_local_address_column() -> None:
    out = "LISTEN 0 128 *:8080 *:*\nLISTEN 0 5 [::]:22 [::]:*\n"
    assert listens(out, 8080)
    assert listens(out, 22)
    assert not listens(out, 80)
    assert not listens("", 8080)


def test_setup_never_reuses_what_exists() -> None:
    node = TOPOLOGY.node("k8s-worker1")
    commands = setup_commands(spec("a-0"), node, "x-pod-a-0", "x-k8s-worker1", "198.18.1.10", None)
    # Every object is added (fails if it exists): the shell removes leftovers before.
    assert commands[0] == ["ip", "netns", "add", "x-pod-a-0"]
    assert ["ip", "link", "add", port_name("a-0"), "netns", "x-k8s-worker1", "type", "veth",
            "peer", "name", "eth0", "netns", "x-pod-a-0"] in commands  # fmt: skip
    assert not any("replace" in c and "link" in c for c in commands)
    assert len(port_name("a-very-long-deployment-name-99")) <= 15


# -- the kubelet's shell on a fake machine ---------------------------------------------------

PREFIX = "ft-"


class FakeMachine:
    """The `ip` commands and processes the kubelet uses, over a small model of namespaces,
    veths and addresses. As in the kernel, deleting a namespace frees the other end of its
    veths only later (in this model: never); that is how a pod scaled down and up quickly
    met its old veth (`ip link add ... File exists`)."""

    def __init__(self, topology: Topology) -> None:
        self.links: dict[str, set[str]] = {PREFIX + n.name: {"lo", "cni0"} for n in topology.nodes}
        self.peers: dict[tuple[str, str], tuple[str, str]] = {}
        self.addresses: set[tuple[str, str]] = set()
        self.processes: dict[int, tuple[str, int | None]] = {}  # pid -> namespace, port
        self.next_pid = 1000
        self.clock = 0.0
        self.refuse: dict[str, str] = {}  # a word -> the error of every command holding it
        self.mute: set[str] = set()  # pods whose process never listens
        self.commands: list[list[str]] = []

    # Runtime

    def run(self, argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
        self.commands.append(list(argv))
        code, out, err = self._ip(list(argv))
        if check and code != 0:
            raise LabError(f"{' '.join(argv)} failed ({code}): {err}")
        return subprocess.CompletedProcess(list(argv), code, out, err)

    def spawn(self, argv: Sequence[str], log: Path | None) -> int:
        assert argv[:3] == ["ip", "netns", "exec"] and argv[3] in self.links, argv
        name, port = argv[argv.index("--name") + 1], int(argv[argv.index("--port") + 1])
        self.next_pid += 1
        self.processes[self.next_pid] = (argv[3], None if name in self.mute else port)
        return self.next_pid

    def alive(self, pid: int) -> bool:
        return pid in self.processes

    def end(self, pid: int) -> None:
        self.processes.pop(pid, None)

    def monotonic(self) -> float:
        return self.clock

    def sleep(self, seconds: float) -> None:
        self.clock += seconds

    def namespaces(self) -> set[str]:
        if "list" in self.refuse:
            raise OSError(self.refuse["list"])
        return set(self.links)

    # the model

    def start_process(self, namespace: str) -> int:
        self.next_pid += 1
        self.processes[self.next_pid] = (namespace, None)
        return self.next_pid

    def pod_namespaces(self) -> set[str]:
        return {n for n in self.links if n.startswith(PREFIX + "pod-")}

    def _ip(self, argv: list[str]) -> tuple[int, str, str]:
        for word in argv:
            if word in self.refuse:
                return 2, "", self.refuse[word]
        assert argv[0] == "ip", argv
        args = [a for a in argv[1:] if a != "-6"]
        ns = None
        if args[0] == "-n":
            ns, args = args[1], args[2:]
            if ns not in self.links:
                return 1, "", f'Cannot open network namespace "{ns}": No such file or directory'
        match args:
            case ["netns", "add", name]:
                if name in self.links:
                    return 1, "", f'Cannot create namespace file "/run/netns/{name}": File exists'
                self.links[name] = {"lo"}
            case ["netns", "delete", name]:
                if name not in self.links:
                    return 1, "", f'Cannot remove namespace file "/run/netns/{name}": No such file'
                for link in self.links.pop(name):
                    self.peers.pop((name, link), None)
                self.addresses = {a for a in self.addresses if a[0] != name}
            case ["netns", "pids", name]:
                if name not in self.links:
                    return 1, "", f'Cannot open network namespace "{name}": No such file'
                return 0, "".join(f"{p}\n" for p, (n, _) in self.processes.items() if n == name), ""
            case ["netns", "exec", name, "ss", "-ltnH"]:
                ports = [port for n, port in self.processes.values() if n == name and port]
                return 0, "".join(f"LISTEN 0 128 *:{p} *:*\n" for p in ports), ""
            case ["link", "add", a, "netns", x, "type", "veth", "peer", "name", b, "netns", y]:
                if a in self.links[x] or b in self.links[y]:
                    return 2, "", "RTNETLINK answers: File exists"
                self.links[x].add(a)
                self.links[y].add(b)
                self.peers[x, a], self.peers[y, b] = (y, b), (x, a)
            case ["link", "set", device, *_] if ns is not None:
                if device not in self.links[ns]:
                    return 1, "", f'Cannot find device "{device}"'
            case ["link", "del", device] if ns is not None:
                if device not in self.links[ns]:
                    return 1, "", f'Cannot find device "{device}"'
                for end in ((ns, device), self.peers.get((ns, device))):
                    if end is not None and end[0] in self.links:
                        self.links[end[0]].discard(end[1])
                    self.peers.pop(end, None)  # type: ignore[arg-type]
            case ["addr", "add", cidr, "dev", device, *_] if ns is not None:
                if device not in self.links[ns]:
                    return 1, "", f'Cannot find device "{device}"'
                if (ns, cidr) in self.addresses:
                    return 2, "", "RTNETLINK answers: File exists"
                self.addresses.add((ns, cidr))
            case ["route", "replace", *_] if ns is not None:
                pass
            case _:
                raise AssertionError(f"the fake machine does not know {argv}")
        return 0, "", ""


WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  template:
    metadata: {{labels: {{app: web}}}}
    spec: {{containers: [{{ports: [{{containerPort: 8080}}]}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  type: LoadBalancer
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""


@dataclass
class Rig:
    kubelet: Kubelet
    machine: FakeMachine
    manifests: Path

    def scale(self, replicas: int) -> None:
        (self.manifests / "web.yaml").write_text(WEB.format(replicas=replicas))

    def status(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.kubelet.status.read_text())
        return data

    def listed(self) -> list[str]:
        """The pods the EndpointSlices list."""
        return [e["targetRef"]["name"] for d in self.slices() for e in d["endpoints"]]

    def slice_files(self) -> dict[str, Path]:
        return {p.name: p for p in (self.manifests / "_lab" / "endpointslices").glob("*")}

    def slices(self) -> list[dict[str, Any]]:
        """Every EndpointSlice written, by file name."""
        return [
            d
            for _, path in sorted(self.slice_files().items())
            for d in yaml.safe_load_all(path.read_text())
        ]

    def serving(self) -> list[str]:
        """The pods whose namespace exists and has a listening process."""
        return sorted(
            name.removeprefix(PREFIX + "pod-")
            for name, port in self.machine.processes.values()
            if port is not None and name in self.machine.links
        )


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    machine = FakeMachine(TOPOLOGY)
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    kubelet = Kubelet(
        manifests, TOPOLOGY, machine, prefix=PREFIX, status=tmp_path / "pods.json", pod_logs=None
    )
    return Rig(kubelet, machine, manifests)


def test_a_leftover_veth_is_removed_and_the_pod_starts(rig: Rig) -> None:
    # What a namespace deleted a moment ago leaves: the node's end of its veth.
    rig.machine.links[PREFIX + "k8s-worker2"].add(port_name("web-1"))
    rig.scale(2)
    rig.kubelet.reconcile()
    assert rig.serving() == rig.listed() == ["web-0", "web-1"]
    assert rig.status()["problems"] == []
    delete = ["ip", "-n", PREFIX + "k8s-worker2", "link", "del", port_name("web-1")]
    add = next(
        c for c in rig.machine.commands if c[:4] == ["ip", "link", "add", port_name("web-1")]
    )
    assert rig.machine.commands.index(delete) < rig.machine.commands.index(add)


def test_a_leftover_namespace_and_its_process_are_replaced(rig: Rig) -> None:
    rig.machine.links[PREFIX + "pod-web-0"] = {"lo", "eth0"}
    stale = rig.machine.start_process(PREFIX + "pod-web-0")
    rig.scale(1)
    rig.kubelet.reconcile()
    assert not rig.machine.alive(stale)
    assert rig.serving() == rig.listed() == ["web-0"]
    assert rig.kubelet.pods["web-0"].pid != stale


def test_fast_scaling_converges_to_the_replicas(rig: Rig) -> None:
    # Up, down and up again before the kernel freed the veths of the removed pods.
    for replicas in (6, 2, 6, 1, 6):
        rig.scale(replicas)
        rig.kubelet.reconcile()
        expected = [f"web-{i}" for i in range(replicas)]
        assert rig.serving() == rig.listed() == expected
        assert rig.machine.pod_namespaces() == {PREFIX + "pod-" + n for n in expected}
        assert rig.status()["problems"] == []
    assert [p["name"] for p in rig.status()["pods"]] == [f"web-{i}" for i in range(6)]


def test_leftovers_of_unwanted_pods_are_cleaned(rig: Rig) -> None:
    # A kubelet that died left pods the Deployment no longer wants.
    rig.machine.links[PREFIX + "pod-web-7"] = {"lo"}
    stale = rig.machine.start_process(PREFIX + "pod-web-7")
    rig.scale(1)
    rig.kubelet.reconcile()
    assert rig.machine.pod_namespaces() == {PREFIX + "pod-web-0"}
    assert not rig.machine.alive(stale)


def test_a_pod_that_cannot_start_is_reported_and_retried_alone(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    rig.machine.refuse[PREFIX + "pod-web-2"] = "RTNETLINK answers: Operation not permitted"
    rig.scale(4)
    with caplog.at_level(logging.ERROR):
        assert rig.kubelet.sync() == BACKOFF_FIRST
    assert rig.serving() == rig.listed() == ["web-0", "web-1", "web-3"]
    (problem,) = rig.status()["problems"]
    assert problem.startswith("pod default/web-2 on k8s-worker1: not running: ip netns add")
    assert "Operation not permitted" in problem
    (line,) = [r.getMessage() for r in caplog.records if "pod_start_failed" in r.getMessage()]
    assert line.startswith("event=pod_start_failed pod=web-2 ")
    assert "error=" in line and "\n" not in line

    # Retried when its back-off is over, with no change to wake the kubelet.
    del rig.machine.refuse[PREFIX + "pod-web-2"]
    rig.machine.clock += BACKOFF_FIRST / 2
    rig.kubelet.sync(changed=False)
    assert rig.listed() == ["web-0", "web-1", "web-3"]
    rig.machine.clock += BACKOFF_FIRST / 2
    rig.kubelet.sync(changed=False)
    assert rig.serving() == rig.listed() == ["web-0", "web-1", "web-2", "web-3"]
    assert rig.status()["problems"] == []


def test_a_pod_that_never_listens_is_not_listed(tmp_path: Path, rig: Rig) -> None:
    rig.kubelet.listen_timeout = 1.0
    rig.machine.mute.add("web-1")
    rig.scale(2)
    rig.kubelet.reconcile()
    assert rig.listed() == ["web-0"]
    (problem,) = rig.status()["problems"]
    assert "web-1" in problem and "not listening on port 8080 after 1 s" in problem
    # What it was made of is gone, its process too.
    assert rig.machine.pod_namespaces() == {PREFIX + "pod-web-0"}
    assert len(rig.machine.processes) == 1


def test_a_pod_whose_process_died_leaves_the_slices_and_is_started_again(rig: Rig) -> None:
    rig.scale(2)
    rig.kubelet.reconcile()
    dead = rig.kubelet.pods["web-1"].pid
    rig.machine.end(dead)
    rig.machine.refuse[PREFIX + "pod-web-1"] = "busy"  # the first restart fails
    rig.kubelet.sync(changed=False)
    assert rig.listed() == ["web-0"]
    del rig.machine.refuse[PREFIX + "pod-web-1"]
    rig.machine.clock += BACKOFF_FIRST
    rig.kubelet.sync(changed=False)
    assert rig.listed() == ["web-0", "web-1"]
    assert rig.kubelet.pods["web-1"].pid != dead


def test_an_error_in_a_reconcile_never_ends_the_kubelet(rig: Rig) -> None:
    rig.scale(1)
    rig.machine.refuse["list"] = "Cannot allocate memory"  # listing namespaces fails
    assert rig.kubelet.sync() == BACKOFF_FIRST
    assert rig.kubelet.sync(changed=False) == 2 * BACKOFF_FIRST  # retried, backing off
    assert "reconcile failed" in rig.status()["problems"][0]
    del rig.machine.refuse["list"]
    assert rig.kubelet.sync(changed=False) == RESYNC
    assert rig.listed() == ["web-0"]
    assert rig.status()["problems"] == []


def test_a_bad_deployment_is_reported_beside_running_pods(rig: Rig) -> None:
    rig.scale(1)
    (rig.manifests / "bad.yaml").write_text(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec: {replicas: x}\n"
    )
    rig.kubelet.reconcile()
    assert rig.listed() == ["web-0"]
    assert rig.status()["problems"] == [
        "Deployment default/bad (bad.yaml): not run: spec.replicas: 'x' is not a whole number"
    ]


def test_lab_problems_says_when_the_kubelet_is_not_running(tmp_path: Path) -> None:
    status = tmp_path / "pods.json"
    assert lab_problems(status) == []  # no lab
    ended = subprocess.Popen(["true"])
    ended.wait()
    status.write_text(pods_status({}, ["pod default/web-2 ..."], ended.pid))
    first, second = lab_problems(status)
    assert first.startswith(f"lab kubelet (pid {ended.pid}) is not running")
    assert second == "pod default/web-2 ..."
    status.write_text(pods_status({}, [], os.getpid()))
    assert lab_problems(status) == []


class Stop(Exception):
    pass


def test_the_loop_syncs_on_changes_and_when_asked_to_look_again(tmp_path: Path) -> None:
    calls: list[bool] = []

    class Stub:
        def sync(self, changed: bool = True) -> float:
            calls.append(changed)
            if len(calls) == 2:  # woken by its own deadline: now a user edits a manifest
                (tmp_path / "web.yaml").write_text(WEB.format(replicas=1))
                return 60.0
            if len(calls) == 3:
                raise Stop
            return 0.0

    with pytest.raises(Stop):
        asyncio.run(asyncio.wait_for(serve(Stub(), tmp_path), timeout=10))
    assert calls == [True, False, True]


def test_a_change_that_starts_no_pod_runs_no_command(rig: Rig) -> None:
    # A Service added or removed: the slices change, and no process is started for it (an
    # `ip netns list` per change used to delay every Service's EndpointSlices).
    rig.scale(2)
    rig.kubelet.reconcile()
    rig.machine.commands.clear()
    (rig.manifests / "other.yaml").write_text(
        WEB.format(replicas=1).split("---\n")[1].replace("{name: web}", "{name: o}")
    )
    rig.kubelet.reconcile()
    assert rig.machine.commands == []
    assert sorted(d["metadata"]["name"] for d in rig.slices()) == ["o-lab", "web-lab"]


def test_an_unchanged_status_is_not_written_again(rig: Rig) -> None:
    rig.scale(1)
    rig.kubelet.reconcile()
    written = rig.kubelet.status.stat().st_ino
    rig.kubelet.reconcile()
    assert rig.kubelet.status.stat().st_ino == written
    rig.kubelet.status.unlink()  # gone (or changed) behind the kubelet's back: written again
    rig.kubelet.reconcile()
    assert [p["name"] for p in rig.status()["pods"]] == ["web-0"]
    rig.scale(2)
    rig.kubelet.reconcile()
    assert [p["name"] for p in rig.status()["pods"]] == ["web-0", "web-1"]


def test_namespaces_are_the_entries_of_the_netns_directory(tmp_path: Path) -> None:
    runtime = SystemRuntime()
    assert runtime.namespaces(tmp_path / "never-made") == set()  # no namespace named yet
    for name in ("x-pod-web-0", "x-k8s-worker1"):
        (tmp_path / name).touch()
    assert runtime.namespaces(tmp_path) == {"x-pod-web-0", "x-k8s-worker1"}
    (tmp_path / "x-pod-web-0").unlink()
    assert runtime.namespaces(tmp_path) == {"x-k8s-worker1"}


def test_a_deployment_file_broken_later_costs_only_its_own_pods(tmp_path: Path) -> None:
    cache: dict[Path, tuple[str, list[Any]]] = {}
    (tmp_path / "web.yaml").write_text(WEB.format(replicas=1))
    (tmp_path / "api.yaml").write_text(WEB.format(replicas=2).replace("name: web", "name: api"))

    def names() -> list[str]:
        return sorted(d["metadata"]["name"] for _, d in deployments(tmp_path, cache))

    assert names() == ["api", "web"]
    (tmp_path / "web.yaml").write_text("kind: Deployment\nmetadata: {name: [\n")  # bad YAML
    assert names() == ["api"]
    assert tmp_path / "web.yaml" not in cache  # nothing of the good text is kept for it
    (tmp_path / "web.yaml").write_text(WEB.format(replicas=3))
    assert names() == ["api", "web"]
    replicas = {
        d["metadata"]["name"]: d["spec"]["replicas"] for _, d in deployments(tmp_path, cache)
    }
    assert replicas == {"api": 2, "web": 3}  # the changed text, not the cached one
    (tmp_path / "api.yaml").unlink()
    assert names() == ["web"]
    assert set(cache) == {tmp_path / "web.yaml"}


def test_each_service_has_its_own_slices_file_and_others_stay_untouched(rig: Rig) -> None:
    rig.scale(2)
    rig.kubelet.reconcile()
    # What kubelets before wrote: every Service's slices in one file.
    legacy = rig.manifests / "_lab" / "endpointslices.yaml"
    rig.slice_files()["default.web.yaml"].rename(legacy)
    legacy.with_suffix("").rmdir()
    other = WEB.format(replicas=1).split("---\n")[1].replace("{name: web}", "{name: o}")
    (rig.manifests / "other.yaml").write_text(other)
    rig.kubelet.reconcile()
    assert not legacy.exists()
    files = rig.slice_files()
    assert sorted(files) == ["default.o.yaml", "default.web.yaml"]
    assert [
        d["metadata"]["name"] for d in yaml.safe_load_all(files["default.o.yaml"].read_text())
    ] == ["o-lab"]
    web = files["default.web.yaml"].stat().st_ino
    # Another Service goes: its file goes, the others are not written again (the agents
    # then parse nothing of them).
    (rig.manifests / "other.yaml").unlink()
    stray = rig.manifests / "_lab" / "endpointslices" / "default.gone.yaml"
    stray.write_text("")  # a Service that went while the kubelet was down
    rig.kubelet.reconcile()
    assert sorted(rig.slice_files()) == ["default.web.yaml"]
    assert rig.slice_files()["default.web.yaml"].stat().st_ino == web
    assert rig.listed() == ["web-0", "web-1"]
    # A Service that lost its pods keeps an empty slice; one without a selector has none.
    rig.scale(0)
    rig.kubelet.reconcile()
    assert [d["endpoints"] for d in rig.slices()] == [[]]


def test_slices_in_both_layouts_are_resolved_when_the_kubelet_starts(rig: Rig) -> None:
    # A kubelet that ended between writing the new files and removing the old one: both
    # name the same slices, and the manifests are invalid until the old one goes.
    rig.scale(1)
    rig.kubelet.reconcile()
    legacy = rig.manifests / "_lab" / "endpointslices.yaml"
    legacy.write_text(rig.slice_files()["default.web.yaml"].read_text())
    restarted = Kubelet(
        rig.manifests, TOPOLOGY, rig.machine, prefix=PREFIX, status=rig.kubelet.status,
        pod_logs=None,
    )  # fmt: skip
    assert not legacy.exists()
    restarted.reconcile()
    assert restarted.problems == []
    assert [d["metadata"]["name"] for d in rig.slices()] == ["web-lab"]
