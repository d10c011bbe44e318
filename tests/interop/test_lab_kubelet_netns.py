"""The lab kubelet starts a pod over a real leftover: a veth with the pod's port name still
on the node (what a namespace deleted a moment before leaves until the kernel frees it:
`ip link add ... File exists`) and an old namespace with a process still in it.

Its own namespaces (prefix `hkt-<pid>-`, never the lab's `hl-`), removed by name and its
processes ended by pid even when the test fails.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from herald.lab.kubelet import Kubelet, port_name
from herald.lab.netns import delete_namespace, end_process, namespaces, remove_stale, run
from herald.lab.topology import LabNode, Topology

pytestmark = pytest.mark.netns

STEM = "hkt-"
WEB = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{ports: [{containerPort: 8080}]}]}
"""


def test_a_pod_starts_over_a_leftover_veth_and_namespace(tmp_path: Path) -> None:
    remove_stale(STEM)  # of runs that were killed halfway
    prefix = f"{STEM}{os.getpid()}-"
    node = LabNode("w1", "192.0.2.21", 1)
    topology = Topology("frr", (LabNode("cp", "192.0.2.10", 0, control_plane=True), node))
    node_ns, pod_ns, port = prefix + "w1", prefix + "pod-web-0", port_name("web-0")
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(WEB)
    kubelet = Kubelet(
        manifests, topology, prefix=prefix, status=tmp_path / "pods.json", pod_logs=tmp_path
    )
    stale: subprocess.Popen[bytes] | None = None
    try:
        run(["ip", "netns", "add", node_ns])
        for command in (
            ["link", "add", "cni0", "type", "bridge"],
            ["link", "set", "cni0", "up"],
            ["addr", "add", f"{node.pod_gateway}/24", "dev", "cni0"],
            # The leftover: the pod's port name taken on its node.
            ["link", "add", port, "type", "veth", "peer", "name", "leftover0"],
        ):
            run(["ip", "-n", node_ns, *command])
        run(["ip", "netns", "add", pod_ns])
        stale = subprocess.Popen(
            ["ip", "netns", "exec", pod_ns, "sleep", "60"], start_new_session=True
        )
        # The leftover is what broke the kubelet: the pod's veth cannot be made over it.
        refused = run(
            ["ip", "link", "add", port, "netns", node_ns, "type", "veth", "peer", "name", "eth0",
             "netns", pod_ns],
            check=False,
        )  # fmt: skip
        assert "File exists" in refused.stderr

        kubelet.reconcile()

        assert kubelet.problems == []
        assert list(kubelet.pods) == ["web-0"]
        stale.wait(timeout=5)  # ended by the kubelet's clean-up
        answer = run(
            ["ip", "netns", "exec", node_ns, "curl", "-sm", "3", "http://198.18.1.10:8080/"]
        ).stdout
        assert answer.startswith("pod=web-0 node=w1 ")
    finally:
        kubelet.close()
        if stale is not None:
            end_process(stale.pid, grace=1.0)
        for name in namespaces():
            if name.startswith(prefix):
                delete_namespace(name)
    assert not [n for n in namespaces() if n.startswith(prefix)]
