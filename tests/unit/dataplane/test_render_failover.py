"""The rules that keep connections alive when a node fails: no packet is forwarded twice,
nothing is forwarded to an unreachable node, and with DSR (Cluster or Local) every node
sends a flow to the same backend."""

from __future__ import annotations

import re
import subprocess
from ipaddress import ip_address

import pytest
from scenarios import NODE, SCENARIOS, pods, web
from test_apply import FakeNft
from test_render import CAN_CHECK

from herald.dataplane.apply import Datapath, Nft
from herald.dataplane.model import (
    NO_PEERS,
    DataplaneService,
    ForwardingMode,
    NodeContext,
    Peers,
    TrafficPolicy,
)
from herald.dataplane.render import NftObject, render, render_service, slot_backends

MACS = frozenset({"02:00:00:00:00:22", "02:00:00:00:00:23"})
THREE_NODES = NodeContext(
    "n1",
    NODE.hash_seed,
    tuple((f"n{i}", ip_address(f"192.0.2.2{i}")) for i in (1, 2, 3)),
    "eth0",
)
# n1 and n2 hold backends, n3 none.
SPREAD = pods(("198.18.1.2", "n1"), ("198.18.1.3", "n1"), ("198.18.2.2", "n2"))
LOCAL_DSR = web(
    backends=SPREAD,
    forwarding_mode=ForwardingMode.DSR,
    external_traffic_policy=TrafficPolicy.LOCAL,
)


def netdev(services: list[DataplaneService], peers: Peers = NO_PEERS) -> dict[str, NftObject]:
    ruleset = render(services, NODE, peers)
    return {o.name: o for o in ruleset.base if o.family == "netdev"}


def rules_of(chain: NftObject) -> list[str]:
    return [line for line in chain.body if not line.startswith("type ")]


def test_ingress_leaves_frames_for_other_hosts_alone() -> None:
    # A switch floods a dead node's frames to every port: forwarding them again toward the
    # dead node from every other node was the storm.
    rules = rules_of(netdev(SCENARIOS["dsr"])["ingress"])
    assert rules[0] == "meta pkttype != host accept"
    assert all("vmap" in r for r in rules[1:])


def test_a_packet_from_another_node_is_never_forwarded_again() -> None:
    rules = rules_of(netdev(SCENARIOS["dsr"], Peers(macs=MACS))["ingress"])
    assert rules[:2] == [
        "meta pkttype != host accept",
        "ether saddr { 02:00:00:00:00:22, 02:00:00:00:00:23 } accept",
    ]
    assert all("vmap" in r for r in rules[2:])


def test_an_unreachable_node_gets_no_packet_and_its_slots_stay_here() -> None:
    reachable = netdev(SCENARIOS["dsr"])
    assert rules_of(reachable["node/n2/v4"]) == ['fwd ip to 192.0.2.22 device "eth0"']
    cut = netdev(SCENARIOS["dsr"], Peers(unreachable=frozenset({("n2", 4), ("n2", 6)})))
    assert rules_of(cut["node/n2/v4"]) == ["accept"]
    assert rules_of(cut["node/n2/v6"]) == ["accept"]
    # Only the node's chains change: the services' elements are the same.
    text = render(
        SCENARIOS["dsr"], NODE, Peers(unreachable=frozenset({("n2", 4), ("n2", 6)}))
    ).text()
    assert "192.0.2.22" not in text


@pytest.mark.skipif(not CAN_CHECK, reason="nft -c needs the nft command and root")
def test_nft_accepts_the_peer_rules() -> None:
    node = NodeContext(NODE.node_name, NODE.hash_seed, NODE.node_addresses, "lo")
    peers = Peers(macs=MACS, unreachable=frozenset({("n2", 4), ("n2", 6)}))
    text = render(SCENARIOS["dsr"], node, peers).text()
    result = subprocess.run(
        ["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_set_peers_changes_the_netdev_chains_only() -> None:
    fake = FakeNft()
    datapath = Datapath(NODE, Nft(netns="hd-x", runner=fake))
    datapath.sync(SCENARIOS["dsr"])
    datapath.set_peers(Peers(macs=MACS, unreachable=frozenset({("n2", 4), ("n2", 6)})))
    script = fake.scripts[-1]
    assert "flush chain netdev herald ingress" in script
    assert "flush chain netdev herald node/n2/v4" in script
    assert "element" not in script and "inet" not in script
    before = len(fake.scripts)
    datapath.set_peers(Peers(macs=MACS, unreachable=frozenset({("n2", 4), ("n2", 6)})))
    assert len(fake.scripts) == before, "no change, no transaction"


def test_set_peers_without_dsr_touches_nothing() -> None:
    fake = FakeNft()
    datapath = Datapath(NODE, Nft(netns="hd-x", runner=fake))
    datapath.sync(SCENARIOS["snat"])
    before = len(fake.scripts)
    datapath.set_peers(Peers(macs=MACS))
    assert len(fake.scripts) == before
    assert "netdev herald ingress" not in "".join(fake.scripts)


def on(name: str) -> NodeContext:
    return NodeContext(name, THREE_NODES.hash_seed, THREE_NODES.node_addresses, "eth0")


def slot_values(service: DataplaneService, node: NodeContext) -> dict[str, tuple[str, ...]]:
    """{container: values} of a service's slot maps for its one port, on `node`: the
    netdev sets of the slots each other node owns, and as `backends-v4` the backend each
    slot DNATs to here."""
    rules = render_service(service, node)
    values = {s.container: s.values for s in rules.slots if s.family == "netdev"}
    (key,) = {e.key for e in rules.elements if e.container == "services-v4"}
    if dnat := slot_backends(rules, key):
        values["backends-v4"] = dnat
    return values


def entered_at(service: DataplaneService, entry: str) -> list[str]:
    """Per slot, the backend a flow of that slot reaches when it enters by `entry`: the
    netdev stage forwards it to the node whose set holds the slot, and that node's inet
    stage DNATs it."""
    nodes = {name: on(name) for name in ("n1", "n2", "n3")}
    entry_slots = slot_values(service, nodes[entry])
    size = len(next(iter(entry_slots.values())))
    result = []
    for slot in range(size):
        owner = next(
            (
                name
                for name in nodes
                if entry_slots.get(f"node/{name}/slots-v4", ("",) * size)[slot]
            ),
            entry,
        )
        result.append(slot_values(service, nodes[owner])["backends-v4"][slot])
    return result


@pytest.mark.parametrize("policy", list(TrafficPolicy))
def test_dsr_sends_a_flow_to_the_same_backend_whatever_node_it_enters(
    policy: TrafficPolicy,
) -> None:
    service = web(
        backends=SPREAD, forwarding_mode=ForwardingMode.DSR, external_traffic_policy=policy
    )
    by_entry = {entry: entered_at(service, entry) for entry in ("n1", "n2", "n3")}
    assert by_entry["n1"] == by_entry["n2"] == by_entry["n3"]
    assert set(by_entry["n1"]) == {"198.18.1.2", "198.18.1.3", "198.18.2.2"}


def test_plain_local_picks_another_backend_when_a_flow_moves() -> None:
    # The failure the DSR variant avoids: each node picks among its own backends.
    service = web(backends=SPREAD, external_traffic_policy=TrafficPolicy.LOCAL)
    n1 = slot_values(service, on("n1"))["backends-v4"]
    n2 = slot_values(service, on("n2"))["backends-v4"]
    assert set(n1).isdisjoint(n2)


def test_local_dsr_never_dnats_to_another_nodes_backend() -> None:
    service = LOCAL_DSR
    mine = slot_values(service, on("n1"))
    # Every slot DNATs to a local backend, also those of n2 (used while n2 is unreachable).
    assert set(mine["backends-v4"]) == {"198.18.1.2", "198.18.1.3"}
    # The slots it forwards are n2's only: n3 has no backend.
    assert set(mine) == {"backends-v4", "node/n2/slots-v4"}
    # Where the cluster-wide table gives a slot to n1, n1 DNATs to that slot's backend.
    dsr = web(backends=SPREAD, forwarding_mode=ForwardingMode.DSR)
    cluster = slot_values(dsr, on("n1"))["backends-v4"]
    for slot, backend in enumerate(cluster):
        if backend != "198.18.2.2":
            assert mine["backends-v4"][slot] == backend
    rules = render_service(service, on("n1"))
    assert not any("ct label" in line for c in rules.chains for line in c.body)


def test_local_dsr_on_a_node_without_backends_forwards_and_refuses_the_rest() -> None:
    service = LOCAL_DSR
    rules = render_service(service, on("n3"))
    containers = {(e.family, e.container) for e in rules.elements}
    assert ("inet", "unserved-v4") in containers
    assert ("netdev", "services-v4") in containers
    assert {s.container for s in rules.slots} == {"node/n1/slots-v4", "node/n2/slots-v4"}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_no_rule_refuses_a_mid_flow_packet_of_a_served_port(name: str) -> None:
    # A flow that ECMP moves arrives at a node without its conntrack entry: its first
    # packet there is an ACK that conntrack picks up as new (nf_conntrack_tcp_loose). Only
    # a service without backends and the unserved ports of a VIP may refuse packets.
    text = render(SCENARIOS[name], NODE).text()
    for line in text.splitlines():
        if re.search(r"\b(reject|drop)\b", line):
            assert "@unserved-" in line or "@vips-" in line or "@restricted-" in line, line
        assert "ct state invalid" not in line and "tcp flags" not in line, line


def echo_elements(service: DataplaneService, node: NodeContext = NODE) -> set[str]:
    return {e.key for e in render_service(service, node).elements if e.container == "echo-v4"}


def test_a_served_vip_answers_echo_unless_its_service_opts_out() -> None:
    assert echo_elements(web()) == {"203.0.113.10"}
    assert echo_elements(web(answer_echo=False)) == set()
    assert echo_elements(web(backends=())) == set(), "a VIP without backends is not served"
    # Local: only the nodes with pods of the service serve it.
    local = web(backends=SPREAD, external_traffic_policy=TrafficPolicy.LOCAL)
    assert echo_elements(local, on("n1")) == {"203.0.113.10"}
    assert echo_elements(local, on("n3")) == set()


def test_echo_is_accepted_before_other_ports_are_refused_and_redirected() -> None:
    base = {o.name: o for o in render([web()], NODE).base}
    rules = rules_of(base["filter-prerouting"])
    echo = rules.index("icmp type echo-request ip daddr @echo-v4 accept")
    assert echo < min(i for i, r in enumerate(rules) if "reject" in r)
    assert "icmp type echo-request ip daddr @echo-v4 redirect" in rules_of(base["nat-prerouting"])
    assert "icmpv6 type echo-request ip6 daddr @echo-v6 redirect" in rules_of(base["nat-output"])


def test_too_big_errors_to_a_dsr_vip_are_copied_to_every_other_node() -> None:
    own = "02:00:00:00:00:21"
    rules = rules_of(netdev(SCENARIOS["dsr"], Peers(macs=MACS, own_mac=own))["ingress"])
    copies = (
        f'ether saddr set {own} ether daddr set 02:00:00:00:00:22 dup to "eth0" '
        'ether daddr set 02:00:00:00:00:23 dup to "eth0"'
    )
    assert rules[2] == (
        "icmp type destination-unreachable icmp code frag-needed ip daddr @vips-v4 "
        f"limit rate 1000/second {copies}"
    )
    assert rules[4].startswith("icmpv6 type packet-too-big ip6 daddr @vips-v6 limit")
    # Copies leave from this node's MAC, which the others never copy or forward again.
    assert rules[1].startswith("ether saddr {") and rules[1].endswith("accept")
    vips = {e.key for e in render_service(web(forwarding_mode=ForwardingMode.DSR), NODE).elements
            if (e.family, e.container) == ("netdev", "vips-v4")}  # fmt: skip
    assert vips == {"203.0.113.10"}


def test_no_copies_without_the_node_macs() -> None:
    rules = rules_of(netdev(SCENARIOS["dsr"], Peers(macs=MACS))["ingress"])
    assert not any("dup" in r for r in rules)
