"""Rule changes under traffic: incremental updates, failures, draining, resync."""

from __future__ import annotations

import json
import time
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path

import pytest
from dataplane_cluster import BACKENDS, BACKENDS6, CLIENT6, VIP6, Cluster, web, web_port

from herald.dataplane.apply import ApplyError, Datapath, Nft
from herald.dataplane.model import DataplaneService, ForwardingMode, Protocol

pytestmark = pytest.mark.netns


def other(index: int) -> DataplaneService:
    return web(key=f"default/other-{index}", vips=(ip_address(f"203.0.113.{100 + index}"),))


def mail() -> DataplaneService:
    """Shares web's VIP on another port."""
    return web_port(Protocol.TCP, 25, key="default/mail")


def listing(cluster: Cluster, node: str) -> list[str]:
    """herald's inet table as sorted objects, handles and counter values left out."""
    raw = cluster.lab.exec(node, "nft", "-j", "list", "table", "inet", "herald").stdout
    objects = []
    for item in json.loads(raw)["nftables"]:
        for kind, value in item.items():
            if kind == "metainfo":
                continue
            value = {k: v for k, v in value.items() if k not in ("handle", "packets", "bytes")}
            objects.append(json.dumps({kind: value}, sort_keys=True))
    return sorted(objects)


def test_incremental_changes_end_where_a_resync_does(cluster: Cluster) -> None:
    steps = [
        [web(), other(1)],
        [web(backends=BACKENDS[:2]), other(1), other(2)],
        [web(maglev_size=1021), other(2)],
        [web(forwarding_mode=ForwardingMode.DSR), other(2)],
        [web(backends=())],
        [web(), other(3)],
        [web(), mail()],
        [mail()],
        [web(), mail(), other(3)],
        [web()],
    ]
    for services in steps:
        cluster.apply(services)
        incremental = listing(cluster, "n1")
        fresh = Datapath(cluster.nodes["n1"].node, Nft(cluster.lab.ns("n1")))
        fresh.resync(services)
        assert listing(cluster, "n1") == incremental
    tables = cluster.lab.exec("n1", "nft", "list", "tables").stdout
    assert "netdev" not in tables, "the DSR table goes once no service uses DSR"


def test_a_resync_in_chunks_ends_where_one_transaction_does(cluster: Cluster) -> None:
    services = [web(), other(1), other(2)]
    cluster.apply(services)
    whole = listing(cluster, "n1")
    chunked = Datapath(cluster.nodes["n1"].node, Nft(cluster.lab.ns("n1")), resync_chunk=600)
    chunked.resync(services)
    assert listing(cluster, "n1") == whole
    result = cluster.connect(60)
    assert result["errors"] == {}
    assert len(result["backends"]) == 3


def test_resync_removes_stale_objects_and_keeps_other_tables(cluster: Cluster) -> None:
    lab = cluster.lab
    lab.exec("n1", "nft", "add table inet other; add chain inet other keep")
    lab.exec("n1", "nft", "add chain inet herald leftover-from-old-version")
    try:
        datapath = Datapath(cluster.nodes["n1"].node, Nft(lab.ns("n1")))
        datapath.resync([web()])
        ruleset = lab.exec("n1", "nft", "list", "ruleset").stdout
        assert "leftover-from-old-version" not in ruleset
        assert "chain keep" in ruleset
    finally:
        lab.exec("n1", "nft", "delete table inet other")
        cluster.nodes["n1"].resync([web()])


def test_refused_change_names_the_service_and_keeps_serving(cluster: Cluster) -> None:
    cluster.apply([web()])
    clash = web(key="default/clash")  # the same VIP and port: nft refuses the element
    with pytest.raises(ApplyError) as caught:
        cluster.nodes["n1"].sync([web(), clash])
    assert caught.value.services == ("default/clash",)
    assert "default/clash" in str(caught.value)
    result = cluster.connect(30)
    assert result["errors"] == {}
    assert len(result["backends"]) == 3
    cluster.apply([web()])


def test_counters_survive_a_resync(cluster: Cluster) -> None:
    cluster.apply([web()])
    cluster.connect(5)
    before = cluster.nodes["n1"].counters()["default/web"]
    cluster.nodes["n1"].resync([web()])
    after = cluster.nodes["n1"].counters()["default/web"]
    assert after.packets >= before.packets > 0


def test_200_updates_under_load_lose_no_request(cluster: Cluster) -> None:
    cluster.apply([web()])
    out, load = cluster.start("connect", 1500, timeout=3)
    updates = 0
    started = time.monotonic()
    try:
        for i in range(200):
            backends = BACKENDS if i % 2 else BACKENDS[:2]
            weights = tuple(replace(b, weight=1 + (i % 3)) for b in backends)
            cluster.nodes["n1"].sync([web(backends=weights), other(i % 7)])
            updates += 1
    finally:
        load.wait(timeout=120)
    elapsed = time.monotonic() - started
    result = json.loads(Path(out).read_text())
    print(f"updates: {updates} in {elapsed:.1f}s, requests: {result['backends']}")
    assert updates == 200
    assert result["errors"] == {}
    assert sum(result["backends"].values()) == 1500


def test_terminating_backend_finishes_open_connections(cluster: Cluster) -> None:
    cluster.apply([web()])
    out, holder = cluster.start("hold", 30)
    try:
        ready = Path(str(out) + ".ready")
        deadline = time.monotonic() + 20
        while not ready.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert ready.exists(), "the held connections did not open"
        draining = tuple(
            replace(b, ready=False, terminating=True) if b.address == BACKENDS[0].address else b
            for b in BACKENDS
        )
        cluster.apply([web(backends=draining)])
        fresh = cluster.connect(300)
        assert fresh["errors"] == {}
        assert "p1a" not in fresh["backends"]
        Path(str(out) + ".go").write_text("")
    finally:
        holder.wait(timeout=60)
    held = json.loads(Path(out).read_text())
    assert held["errors"] == 0
    assert held["backends"].get("p1a", 0) > 0, "some held connections were on p1a"
    assert sum(held["backends"].values()) == 30


def test_dsr_forwards_to_the_owning_node_and_keeps_the_client(cluster: Cluster) -> None:
    cluster.apply([web(forwarding_mode=ForwardingMode.DSR)])
    try:
        result = cluster.connect(300)
    finally:
        cluster.apply([web()])
    assert result["errors"] == {}
    assert sorted(result["backends"]) == ["p1a", "p1b", "p2a"]
    assert {a for v in result["seen"].values() for a in v} == {"198.51.100.10"}


def test_dsr_over_ipv6(cluster: Cluster) -> None:
    dsr = web(vips=(ip_address(VIP6),), backends=BACKENDS6, forwarding_mode=ForwardingMode.DSR)
    cluster.apply([dsr])
    try:
        result = cluster.connect(300, vip=VIP6)
    finally:
        cluster.apply([web()])
    assert result["errors"] == {}
    assert sorted(result["backends"]) == ["p1a", "p1b", "p2a"]
    assert {a for v in result["seen"].values() for a in v} == {CLIENT6}
