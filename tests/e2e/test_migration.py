"""Bringing a MetalLB or Cilium configuration over: `herald import` turns it into herald
manifests, the lab applies them beside a Service that keeps its MetalLB or Cilium address
annotation, and the router gets that address from all six nodes and a client its 200.
Takes over the machine's lab like test_lab.py."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from teardown import torn_down

from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.lab import cluster
from herald.lab.netns import run

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parents[2]
NODES = {"192.0.2.10", "192.0.2.21", "192.0.2.22", "192.0.2.23", "192.0.2.24", "192.0.2.25"}

# The seed's set-up as MetalLB users write it (metallb.universe.tf documentation's BGP
# example, with the lab's addresses).
METALLB = """\
apiVersion: metallb.io/v1beta1
kind: IPAddressPool
metadata: {name: seed, namespace: metallb-system}
spec:
  addresses: [203.0.113.0/24]
---
apiVersion: metallb.io/v1beta2
kind: BGPPeer
metadata: {name: router, namespace: metallb-system}
spec:
  myASN: 64512
  peerASN: 64512
  peerAddress: 192.0.2.1
  holdTime: 9s
  keepaliveTime: 3s
---
apiVersion: metallb.io/v1beta1
kind: BGPAdvertisement
metadata: {name: seed, namespace: metallb-system}
spec:
  ipAddressPools: [seed]
"""
# The same with Cilium's LB-IPAM and BGP Control Plane v2 (docs.cilium.io examples).
CILIUM = """\
apiVersion: cilium.io/v2alpha1
kind: CiliumLoadBalancerIPPool
metadata: {name: seed}
spec:
  blocks: [{cidr: 203.0.113.0/24}]
---
apiVersion: cilium.io/v2alpha1
kind: CiliumBGPClusterConfig
metadata: {name: seed}
spec:
  bgpInstances:
    - name: instance-64512
      localASN: 64512
      peers:
        - name: router
          peerAddress: 192.0.2.1
          peerASN: 64512
          peerConfigRef: {name: seed-peer}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumBGPPeerConfig
metadata: {name: seed-peer}
spec:
  timers: {holdTimeSeconds: 9, keepAliveTimeSeconds: 3}
  families:
    - afi: ipv4
      safi: unicast
      advertisements:
        matchLabels: {advertise: bgp}
---
apiVersion: cilium.io/v2alpha1
kind: CiliumBGPAdvertisement
metadata:
  name: services
  labels: {advertise: bgp}
spec:
  advertisements:
    - advertisementType: Service
      service:
        addresses: [LoadBalancerIP]
      selector:
        matchExpressions: [{key: somekey, operator: NotIn, values: [never-used-value]}]
"""
SERVICE = """\
apiVersion: v1
kind: Service
metadata:
  name: web1-lb
  annotations: {{{annotation}: {address}}}
spec:
  type: LoadBalancer
  selector: {{app: web1}}
  ports: [{{name: http, port: 80, targetPort: 8080}}]
"""


@pytest.fixture
def lab() -> Iterator[None]:
    with torn_down():
        cluster.up("frr", 5, DEFAULT_MANIFESTS)
        yield


def hops(prefix: str) -> set[str]:
    return set(re.findall(r"via (\S+)", cluster.run_in("router", "ip", "route", "show", prefix)))


@pytest.mark.parametrize(
    ("kind", "configuration", "annotation", "address"),
    [
        ("metallb", METALLB, "metallb.universe.tf/loadBalancerIPs", "203.0.113.7"),
        ("cilium", CILIUM, "lbipam.cilium.io/ips", "203.0.113.8"),
    ],
)
def test_an_imported_configuration_serves_a_service_that_kept_its_annotation(
    lab: None, tmp_path: Path, kind: str, configuration: str, annotation: str, address: str
) -> None:
    source = tmp_path / f"{kind}.yaml"
    source.write_text(configuration)
    out = tmp_path / "herald"
    argv = cluster.herald_argv("import", "--from", kind, str(source), "-o", str(out))
    imported = run(argv, check=False)
    assert imported.returncode == 0, imported.stderr
    for manifest in sorted(out.glob("*.yaml")):
        (DEFAULT_MANIFESTS / manifest.name).write_text(manifest.read_text())
    deployment = (ROOT / "examples" / "seed" / "web1.yaml").read_text().split("---\n", 1)[1]
    service = SERVICE.format(annotation=annotation, address=address)
    (DEFAULT_MANIFESTS / "web1.yaml").write_text(f"{service}---\n{deployment}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and hops(address) != NODES:
        time.sleep(0.2)
    assert hops(address) == NODES
    answer = cluster.run_in("client1", "curl", "-s", "-m", "3", f"http://{address}/")
    assert "pod=web1-" in answer, answer
