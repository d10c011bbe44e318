"""The lab's network, as data (pure): who is where, with which addresses (LAB.md's plan).

    client1 .10 ─┐
    client2 .11 ─┴─ router (lan0 198.51.100.1, eth0 192.0.2.1) ── sw/br0 192.0.2.0/24
                       ├── k8s-master1 .10
                       ├── k8s-worker1 .21 ... k8s-worker5 .25

In L2 mode (`--mode l2`) there is no client LAN: the clients sit on the node segment too
(client1 192.0.2.100, client2 192.0.2.101), as do the Service IPs (the pool
192.0.2.200-220 of examples/l2-seed), so the router and the clients reach a VIP by asking
who has it, and the router runs no BGP.

Each node has a pod bridge cni0 with 198.18.N.1/24 (master N=0, workerK N=K) and routes to
every other node's pod CIDR through that node: a minimal CNI.

Both labs are dual-stack, so that an IPv6 VIP has backends and clients: every host on the
node segment also has 2001:db8:2::X/64 with X the last byte of its IPv4 address (router
::1, nodes ::10 and ::21-25; in L2 mode clients ::100 and ::101 and the pool's IPv6 range
::200-220), each node's pods 2001:db8:18:N::/64 besides 198.18.N.0/24, and each Node
object lists both InternalIPs. In BGP mode the client LAN is 2001:db8:100::/64 too
(router ::1, clients ::10 and ::11) and the router's sessions carry IPv6 unicast as well:
a node announces IPv6 VIPs over its IPv4 session with its own IPv6 address as next hop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

RouterKind = Literal["frr", "bird"]
# How Service IPs reach the router: BGP routes, or ARP/NDP on a shared segment.
Mode = Literal["bgp", "l2"]
LOCAL_ASN = 64512
ROUTER_ADDRESS = "192.0.2.1"
CLIENT_GATEWAY = "198.51.100.1"
CLIENTS = {"client1": "198.51.100.10", "client2": "198.51.100.11"}
L2_CLIENTS = {"client1": "192.0.2.100", "client2": "192.0.2.101"}
POOL = "203.0.113.0/24"
SEGMENT6 = "2001:db8:2::"
SEGMENT6_PREFIX = 64
CLIENT_LAN6 = "2001:db8:100::"


def client_lan6(address: str) -> str:
    """A BGP lab client's (or the router's LAN) IPv6 address from its IPv4 one, the same
    way as `segment6`: 198.51.100.10 -> 2001:db8:100::10."""
    return CLIENT_LAN6 + address.rsplit(".", 1)[1]


def segment6(address: str) -> str:
    """The IPv6 address of a host on the L2 lab's segment, from its IPv4 one (same last
    number, its digits read as hex: 192.0.2.21 -> 2001:db8:2::21, easy to match by eye)."""
    return SEGMENT6 + address.rsplit(".", 1)[1]


@dataclass(frozen=True)
class LabNode:
    name: str
    address: str
    pod_index: int
    control_plane: bool = False

    @property
    def pod_cidr(self) -> str:
        return f"198.18.{self.pod_index}.0/24"

    @property
    def pod_gateway(self) -> str:
        return f"198.18.{self.pod_index}.1"

    @property
    def address6(self) -> str:
        return segment6(self.address)

    def pod_address6(self, address: str) -> str:
        """The IPv6 address of the pod with IPv4 `address` on this node: the same last number
        (198.18.N.X -> 2001:db8:18:N::X)."""
        return f"2001:db8:18:{self.pod_index}::{address.rsplit('.', 1)[1]}"

    @property
    def pod_cidr6(self) -> str:
        return f"2001:db8:18:{self.pod_index}::/64"

    @property
    def pod_gateway6(self) -> str:
        return self.pod_address6(self.pod_gateway)


@dataclass(frozen=True)
class Topology:
    router: RouterKind
    nodes: tuple[LabNode, ...]
    mode: Mode = "bgp"

    @property
    def clients(self) -> dict[str, str]:
        return L2_CLIENTS if self.mode == "l2" else CLIENTS

    @property
    def dual_stack(self) -> bool:
        return True

    @property
    def workers(self) -> tuple[LabNode, ...]:
        return tuple(node for node in self.nodes if not node.control_plane)

    def node(self, name: str) -> LabNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "router": self.router,
            "mode": self.mode,
            "nodes": [[n.name, n.address, n.pod_index, n.control_plane] for n in self.nodes],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Topology:
        nodes = tuple(LabNode(*fields) for fields in data["nodes"])
        return cls(data["router"], nodes, data.get("mode", "bgp"))


def seed_topology(router: RouterKind = "frr", workers: int = 5, mode: Mode = "bgp") -> Topology:
    if not 1 <= workers <= 5:
        raise ValueError(f"--nodes {workers}: the lab has 1 to 5 workers (192.0.2.21-25)")
    master = LabNode("k8s-master1", "192.0.2.10", 0, control_plane=True)
    return Topology(
        router,
        (master, *(LabNode(f"k8s-worker{i}", f"192.0.2.2{i}", i) for i in range(1, workers + 1))),
        mode,
    )


def node_manifests(topology: Topology) -> str:
    """The Node objects a kubelet would register, as one YAML text."""
    documents = []
    for node in topology.nodes:
        role = (
            "    node-role.kubernetes.io/control-plane: ''\n"
            if node.control_plane
            else "    node-role.kubernetes.io/worker: ''\n"
        )
        documents.append(
            "apiVersion: v1\nkind: Node\n"
            f"metadata:\n  name: {node.name}\n  labels:\n"
            f"    kubernetes.io/hostname: {node.name}\n{role}"
            f"spec:\n  podCIDR: {node.pod_cidr}\n"
            f"status:\n  addresses:\n    - type: InternalIP\n      address: {node.address}\n"
        )
        if topology.dual_stack:
            documents[-1] += f"    - type: InternalIP\n      address: {node.address6}\n"
    return "---\n".join(documents)
