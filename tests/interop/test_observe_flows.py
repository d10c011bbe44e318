"""Flow events through herald's rendered ruleset, read by the agent's reader in the node's
namespace and asked for over its status socket, as `herald observe` does."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import ip_address, ip_network
from pathlib import Path

import pytest
from observe_cluster import (
    EMPTY_VIP,
    PODS,
    RESTRICTED_VIP,
    VIP,
    VIP6,
    WEB,
    ObserveCluster,
    running,
    v6,
)

from herald.agent.status import query
from herald.cli.observe import NodeStream, recorded
from herald.observe import rules
from herald.observe.event import FlowEvent
from herald.observe.filter import FlowFilter
from herald.observe.reader import ObserveRequest

pytestmark = pytest.mark.netns

EMPTY = replace(WEB, key="default/empty", vips=(ip_address(EMPTY_VIP),), backends=())
RESTRICTED = replace(
    WEB,
    key="default/restricted",
    vips=(ip_address(RESTRICTED_VIP),),
    source_ranges=(ip_network("192.0.2.0/24"),),
)
SERVICES = [WEB, EMPTY, RESTRICTED]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObserveCluster]:
    with running(tmp_path_factory.mktemp("observe")) as built:
        built.apply(SERVICES)
        built.start_runner(SERVICES)
        yield built


def observe(cluster: ObserveCluster, **filters: object) -> NodeStream:
    request = ObserveRequest(last=4096, filter=FlowFilter(**filters))  # type: ignore[arg-type]
    (stream,) = asyncio.run(recorded([cluster.socket], request))
    assert stream.error is None, stream.error
    return stream


def settle() -> None:
    # The kernel sends a partial batch of logged packets after 50 ms.
    time.sleep(0.3)


def test_rules_are_in_the_table_herald_renders(cluster: ObserveCluster) -> None:
    listed = cluster.lab.exec("n1", "nft", "list", "table", "inet", "herald").stdout
    assert "chain observe-prerouting" in listed
    assert f"group {rules.LOG_GROUP}" in listed


def test_request_shows_every_packet_with_its_pod_and_node(cluster: ObserveCluster) -> None:
    result = cluster.connect(8)
    assert result["errors"] == {}
    settle()
    stream = observe(cluster, services=("default/web",), ips=(VIP,), protocols=("TCP",))
    events = stream.events
    by_port: dict[int, list[FlowEvent]] = {}
    for event in events:
        assert event.verdict == "FORWARDED"
        assert event.client == "198.51.100.10" and event.vip == VIP and event.vip_port == 80
        assert event.client_port is not None
        by_port.setdefault(event.client_port, []).append(event)
    assert len(by_port) == 8
    pods = {f"default/{pod}": (node, address) for pod, (node, address) in PODS.items()}
    chosen: dict[str, int] = {}
    for flow in by_port.values():
        flags = [(e.direction, e.tcp_flags) for e in flow]
        assert flags[0] == ("request", ("SYN",))
        assert ("reply", ("SYN", "ACK")) in flags
        assert any(d == "request" and "PSH" in f for d, f in flags)
        assert any(d == "request" and "FIN" in f for d, f in flags)
        assert any(d == "reply" and "FIN" in f for d, f in flags)
        (pod,) = {e.pod for e in flow}
        node, address = pods[pod]
        for e in flow:
            assert (e.backend, e.backend_port, e.backend_node) == (address, 8080, node)
            assert e.reason == ("to-endpoint" if node == "n1" else "to-node")
        chosen[pod.split("/")[1]] = chosen.get(pod.split("/")[1], 0) + 1
    # The pods that answered, by their own account, are the ones the events name.
    assert chosen == result["backends"]


def test_ipv6_and_udp_flows_name_their_pod(cluster: ObserveCluster) -> None:
    pods = {f"default/{pod}": (node, address) for pod, (node, address) in PODS.items()}
    over_v6 = cluster.connect(4, vip=VIP6, sport=42000)
    over_udp = cluster.connect(4, udp=True, sport=43000)
    assert over_v6["errors"] == {} and over_udp["errors"] == {}
    settle()
    for vip, protocol, first_port, answered in (
        (VIP6, "TCP", 42000, over_v6),
        (VIP, "UDP", 43000, over_udp),
    ):
        events = observe(cluster, ips=(vip,), protocols=(protocol,)).events
        mine = [e for e in events if first_port <= (e.client_port or 0) < first_port + 4]
        assert {e.client_port for e in mine} == set(range(first_port, first_port + 4))
        assert {e.direction for e in mine} == {"request", "reply"}
        chosen: dict[str, int] = {}
        for event in mine:
            node, address = pods[event.pod]
            expected = v6(address) if vip == VIP6 else address
            assert (event.backend, event.backend_node, event.verdict) == (
                expected, node, "FORWARDED",
            )  # fmt: skip
            if event.direction == "request":
                name = event.pod.split("/")[1]
                chosen[name] = chosen.get(name, 0) + 1
        if protocol == "UDP":
            assert all(e.tcp_flags == () for e in mine)
            assert chosen == answered["backends"]  # one datagram each way per request


def test_refused_requests_are_dropped_with_their_reason(cluster: ObserveCluster) -> None:
    assert cluster.curl(f"http://{EMPTY_VIP}/") == 7  # reset: no usable backend
    assert cluster.curl(f"http://{VIP}:81/") == 7  # reset: no such port
    assert cluster.curl(f"http://{RESTRICTED_VIP}/") == 28  # dropped: curl times out
    settle()
    dropped = observe(cluster, verdicts=("DROPPED",)).events
    reasons = {(e.vip, e.vip_port, e.service, e.reason) for e in dropped}
    assert (EMPTY_VIP, 80, "default/empty", "no-usable-backend") in reasons
    assert (VIP, 81, "", "no-service-port") in reasons
    assert (RESTRICTED_VIP, 80, "default/restricted", "source-range-denied") in reasons
    assert all(e.tcp_flags == ("SYN",) and not e.backend for e in dropped)
    # herald's own resets are not flows of a backend.
    assert not observe(cluster, ips=(EMPTY_VIP,), verdicts=("FORWARDED",)).events


def test_a_flood_beyond_the_rate_limit_is_counted_and_the_reader_answers(
    cluster: ObserveCluster,
) -> None:
    before = observe(cluster).lost["rate_limited"]
    out = cluster.scratch / "flood.json"
    argv = [sys.executable, str(Path(__file__).with_name("traffic.py")), "connect",
            "--vip", VIP, "--count", "3000", "--timeout", "2", "--out", str(out)]  # fmt: skip
    flood = cluster.lab.spawn("c1", argv)
    answered = 0
    try:
        while flood.poll() is None:
            # The status socket keeps answering while the reader is flooded.
            assert query(cluster.socket).node == "n1"
            answered += 1
            time.sleep(0.2)
    finally:
        if flood.poll() is None:
            cluster.lab.stop(flood)
    assert json.loads(out.read_text())["errors"] == {}
    settle()
    stream = observe(cluster)
    limited = stream.lost["rate_limited"] - before
    counter = cluster.lab.exec("n1", "nft", "-j", "list", "counter", "inet", "herald",
                               rules.LOST_COUNTER).stdout  # fmt: skip
    kernel = json.loads(counter)["nftables"][1]["counter"]["packets"]
    assert stream.lost["rate_limited"] == kernel
    # 3,000 connections are some 30,000 packets: far beyond 1,000 a second.
    assert limited > 1000, stream.lost
    cli = subprocess.run(
        [str(Path(sys.executable).with_name("herald")), "observe", "--status-dir",
         str(cluster.socket.parent), "--last", "1"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "EVENTS LOST:" in cli.stderr and "on n1 (rate limited" in cli.stderr
    print(f"flood: {limited} events rate-limited, status answered {answered} times")
