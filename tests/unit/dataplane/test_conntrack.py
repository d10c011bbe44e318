"""Which UDP flows a change leaves on a backend that no longer takes flows."""

from __future__ import annotations

import subprocess
from collections.abc import Sequence
from dataclasses import replace
from ipaddress import ip_address

import pytest
from scenarios import HTTP, NODE, THREE, web

from herald.dataplane.apply import ApplyError, Datapath, Nft
from herald.dataplane.conntrack import Conntrack, Flow, stale_flows
from herald.dataplane.model import DataplaneService, Protocol, ServicePort, TrafficPolicy

DNS = ServicePort("dns", Protocol.UDP, 53, 5353)
VIP = ip_address("203.0.113.10")


def dns(**changes: object) -> DataplaneService:
    return web(**{"ports": (DNS,), "backends": THREE, **changes})


def flow(backend: str) -> Flow:
    return Flow(VIP, 53, ip_address(backend), 5353)


def test_a_removed_backend_leaves_its_flows_stale() -> None:
    before = dns()
    after = replace(before, backends=THREE[:2])
    assert stale_flows(before, after, "n1") == [flow("198.18.2.2")]


def test_no_backend_left_or_service_gone_forgets_the_whole_vip_port_at_once() -> None:
    everyone = [Flow(VIP, 53)]
    assert stale_flows(dns(), dns(backends=()), "n1") == everyone
    assert stale_flows(dns(), None, "n1") == everyone


def test_a_backend_that_stops_being_ready_leaves_its_flows_stale() -> None:
    unready = (replace(THREE[0], ready=False), *THREE[1:])
    assert stale_flows(dns(), dns(backends=unready), "n1") == [flow("198.18.1.2")]


def test_tcp_flows_and_unchanged_backends_stay() -> None:
    assert stale_flows(web(ports=(HTTP,)), web(ports=(HTTP,), backends=()), "n1") == []
    assert stale_flows(None, dns(), "n1") == []
    assert stale_flows(dns(), dns(), "n1") == []


def test_local_policy_only_counts_this_nodes_backends() -> None:
    local = dns(external_traffic_policy=TrafficPolicy.LOCAL)
    assert stale_flows(local, dns(backends=THREE[:2]), "n2") == [flow("198.18.2.2")]
    assert stale_flows(local, local, "n1") == []


class Recorder:
    def __init__(self) -> None:
        self.commands: list[list[str]] = []
        self.refuse = False

    def __call__(self, argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        self.commands.append(list(argv))
        refused = self.refuse and "nft" in argv and "element" in stdin
        return subprocess.CompletedProcess(argv, int(refused), '{"nftables": []}', "refused")

    def conntrack(self) -> list[list[str]]:
        return [c for c in self.commands if "conntrack" in c]


def test_the_datapath_forgets_stale_flows_after_committing_the_rules() -> None:
    recorder = Recorder()
    datapath = Datapath(NODE, Nft("hd-x", runner=recorder))
    datapath.sync([dns()])
    assert not [c for c in recorder.commands if "conntrack" in c]
    datapath.sync([dns(backends=THREE[:2])])
    nft_at = max(i for i, c in enumerate(recorder.commands) if "nft" in c and "-f" in c)
    deletes = [(i, c) for i, c in enumerate(recorder.commands) if "conntrack" in c]
    assert [" ".join(c) for _, c in deletes] == [
        "ip netns exec hd-x conntrack -D -f ipv4 -p udp --orig-dst 203.0.113.10"
        " --orig-port-dst 53 --reply-src 198.18.2.2 --reply-port-src 5353"
    ]
    assert deletes[0][0] > nft_at, "flows are forgotten once the new rules serve"
    datapath.sync([dns(backends=THREE[:2])])
    assert len([c for c in recorder.commands if "conntrack" in c]) == 1, "nothing twice"


def test_conntrack_speaks_the_family_of_the_address() -> None:
    recorder = Recorder()
    v6 = Flow(ip_address("2001:db8::10"), 53, ip_address("2001:db8:18::2"), 53)
    Conntrack(runner=recorder).forget([v6])
    assert recorder.commands[0][:5] == ["conntrack", "-D", "-f", "ipv6", "-p"]


def test_a_refused_change_keeps_its_flows_until_it_commits() -> None:
    # The old rules still serve: flows forgotten now would be bound to the old backend
    # again, and nothing would forget them once the retry commits.
    recorder = Recorder()
    datapath = Datapath(NODE, Nft("hd-x", runner=recorder))
    datapath.sync([dns()])
    recorder.refuse = True
    with pytest.raises(ApplyError):
        datapath.sync([dns(backends=THREE[:2])])
    assert recorder.conntrack() == []
    recorder.refuse = False
    datapath.sync([dns(backends=THREE[:2])])
    assert [c[-3] for c in recorder.conntrack()] == ["198.18.2.2"]


def test_without_the_conntrack_tool_the_change_still_applies() -> None:
    def missing(argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        raise FileNotFoundError("conntrack")

    Conntrack(runner=missing).forget([flow("198.18.2.2")])  # logged, not raised
