"""`herald lab up --topology FILE`: a lab network described in YAML instead of the seed's.

    router: frr            # or bird
    mode: bgp              # or l2
    nodes:
      - {name: cp1, address: 192.0.2.10, controlPlane: true}
      - {name: w1, address: 192.0.2.21}
      - {name: w2, address: 192.0.2.22}

Nodes live on the lab's node segment 192.0.2.0/24 and get pod CIDRs 198.18.N.0/24 in the
order listed. Names become namespace and interface names, hence the short, plain form.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from herald.api.base import HeraldModel
from herald.api.manifests import describe_error
from herald.lab.netns import LabError
from herald.lab.topology import L2_CLIENTS, ROUTER_ADDRESS, LabNode, Topology

RESERVED_HOSTS = ("router", "sw", "client1", "client2")
NODE_SEGMENT = ipaddress.IPv4Network("192.0.2.0/24")
RESERVED_ADDRESSES = {ROUTER_ADDRESS, *L2_CLIENTS.values()}


class NodeEntry(HeraldModel):
    name: str = Field(
        pattern=r"^[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$",
        description="Node name: 1-15 lowercase letters, digits and dashes.",
    )
    address: str = Field(description="The node's address on 192.0.2.0/24.")
    control_plane: bool = Field(default=False, description="No pods are placed on it.")

    @field_validator("name")
    @classmethod
    def _not_reserved(cls, name: str) -> str:
        if name in RESERVED_HOSTS or name.startswith("pod-"):
            raise ValueError(
                f"{name!r} is a lab host of its own; reserved: router, sw, clientN, pod-*"
            )
        return name

    @field_validator("address")
    @classmethod
    def _on_segment(cls, address: str) -> str:
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError:
            raise ValueError(f"{address!r} is not an IPv4 address") from None
        if ip not in NODE_SEGMENT or ip in (
            NODE_SEGMENT.network_address,
            NODE_SEGMENT.broadcast_address,
        ):
            raise ValueError(f"{address} is not a host address of {NODE_SEGMENT}")
        if address in RESERVED_ADDRESSES:
            raise ValueError(f"{address} is taken by the router or a client")
        return address


class TopologyFile(HeraldModel):
    router: Literal["frr", "bird"] = "frr"
    mode: Literal["bgp", "l2"] = "bgp"
    nodes: tuple[NodeEntry, ...] = Field(min_length=1, max_length=40)

    @model_validator(mode="after")
    def _consistent(self) -> TopologyFile:
        for what in ("name", "address"):
            seen: set[str] = set()
            for index, node in enumerate(self.nodes):
                value = getattr(node, what)
                if value in seen:
                    raise ValueError(f"nodes[{index}]: {what} {value} appears twice")
                seen.add(value)
        if all(node.control_plane for node in self.nodes):
            raise ValueError("at least one node must not be controlPlane: pods run there")
        return self


def load_topology(path: Path) -> Topology:
    """The topology of `path`, or LabError saying what is wrong where."""
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise LabError(f"{path}: {err}") from None
    try:
        spec = TopologyFile.model_validate(raw)
    except ValidationError as err:
        lines = [
            f"{path}: {p}: {m}" for p, m in (describe_error(TopologyFile, e) for e in err.errors())
        ]
        raise LabError("\n".join(lines)) from None
    nodes = tuple(
        LabNode(node.name, node.address, index, node.control_plane)
        for index, node in enumerate(spec.nodes)
    )
    return Topology(spec.router, nodes, spec.mode)
