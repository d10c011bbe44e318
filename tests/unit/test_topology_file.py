"""Lab topology files: valid ones become a Topology, bad ones say where and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.lab.netns import LabError
from herald.lab.topology_file import load_topology

ROOT = Path(__file__).resolve().parents[2]


def test_example_topology() -> None:
    topology = load_topology(ROOT / "topologies" / "small.yaml")
    assert topology.router == "bird"
    assert [(n.name, n.address, n.pod_cidr) for n in topology.nodes] == [
        ("cp1", "192.0.2.10", "198.18.0.0/24"),
        ("w1", "192.0.2.21", "198.18.1.0/24"),
        ("w2", "192.0.2.22", "198.18.2.0/24"),
    ]
    assert [n.name for n in topology.workers] == ["w1", "w2"]


def test_bad_topology_names_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "router: cisco\nnodes:\n"
        "  - {name: router, address: 192.0.2.30}\n"
        "  - {name: a-very-long-node-name, address: 192.0.2.1}\n"
        "  - {name: w1, address: 10.0.0.1, color: red}\n"
    )
    with pytest.raises(LabError) as caught:
        load_topology(path)
    lines = str(caught.value).splitlines()
    assert f"{path}: router: got 'cisco': Input should be 'frr' or 'bird'" in lines
    assert any("nodes[0].name" in line and "reserved" in line for line in lines)
    assert any("nodes[1].name" in line and "pattern" in line for line in lines)
    assert any("nodes[1].address" in line and "taken by the router" in line for line in lines)
    assert any(
        "nodes[2].address" in line and "not a host address of 192.0.2.0/24" in line
        for line in lines
    )
    assert any("nodes[2].color: unknown field" in line for line in lines)


def test_duplicate_addresses_and_no_worker(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(
        "nodes:\n  - {name: a, address: 192.0.2.21}\n  - {name: b, address: 192.0.2.21}\n"
    )
    with pytest.raises(LabError, match=r"address 192\.0\.2\.21 appears twice"):
        load_topology(path)
    path.write_text("nodes:\n  - {name: a, address: 192.0.2.21, controlPlane: true}\n")
    with pytest.raises(LabError, match="at least one node must not be controlPlane"):
        load_topology(path)
