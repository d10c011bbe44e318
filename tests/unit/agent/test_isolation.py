"""One bad object costs only that object: the plan and the agent name it and keep everything
else planned, committed and announced (each case stopped every agent once)."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import subprocess
from collections.abc import AsyncIterator, Sequence

import pytest

from herald.agent.plan import PeerPlan, SpeakerKey, plan_node
from herald.agent.run import Agent, AgentConfig, _routes
from herald.api.snapshot import ClusterState
from herald.bgp.export import RouteAttributes
from herald.bgp.fsm import State
from herald.bgp.peer import PeerConfig
from herald.bgp.speaker import PeerStatus
from herald.dataplane.apply import Nft

from .test_plan import SEED_STATUS, endpoints, seed_files, state

NODE = "k8s-worker1"
WEB2 = (
    "apiVersion: v1\nkind: Service\nmetadata: {name: web2, annotations: ANNOTATIONS}\n"
    "spec: {type: LoadBalancer, ports: [{port: 80, targetPort: 8080}]}\n"
)


class FakeNft:
    """Takes every transaction and records it."""

    def __init__(self) -> None:
        self.scripts: list[str] = []

    def __call__(self, argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        if "list" in argv:
            return subprocess.CompletedProcess(argv, 0, json.dumps({"nftables": []}), "")
        self.scripts.append(stdin)
        return subprocess.CompletedProcess(argv, 0, "", "")


def two_services(annotations: str = "{}", web2_backends: int = 1) -> ClusterState:
    """The seed's web1-lb and a second Service web2, without BGP (no sockets here)."""
    files = {k: v for k, v in seed_files().items() if not k.endswith("bgp.yaml")}
    files["web2.yaml"] = WEB2.replace("ANNOTATIONS", annotations)
    pods = [(f"198.18.{1 + i // 250}.{10 + i % 240}", NODE, True) for i in range(web2_backends)]
    files["eps.yaml"] = endpoints("web1-lb", [("198.18.1.9", NODE, True)])
    if pods:
        files["eps.yaml"] += "---\n" + endpoints("web2", pods)
    return state(files, {**SEED_STATUS, "default/web2": "203.0.113.2"})


def agent(nft: FakeNft) -> Agent:
    # No uplink interface: what a lab started without one has.
    return Agent(AgentConfig(NODE), source=None, nft=Nft(runner=nft))  # type: ignore[arg-type]


def committed(runner: Agent) -> list[str]:
    assert runner._datapath is not None
    return sorted(runner._datapath.committed)


def test_dsr_without_an_uplink_is_a_problem_on_that_service_only() -> None:
    nft = FakeNft()
    runner = agent(nft)
    asyncio.run(runner.apply_snapshot(two_services("{herald.io/forwarding-mode: dsr}")))
    assert committed(runner) == ["default/web1-lb"]
    assert any("203.0.113.0" in script for script in nft.scripts)
    (problem,) = runner.status().problems
    assert "default/web2" in problem and "uplink interface" in problem


def test_a_service_changed_to_what_this_node_cannot_render_keeps_its_rules() -> None:
    nft = FakeNft()
    runner = agent(nft)
    asyncio.run(runner.apply_snapshot(two_services()))
    asyncio.run(runner.apply_snapshot(two_services("{herald.io/forwarding-mode: dsr}")))
    # web2 still forwards as it did (snat); DSR is refused and said.
    assert committed(runner) == ["default/web1-lb", "default/web2"]
    assert runner._datapath is not None
    assert runner._datapath.committed["default/web2"].forwarding_mode.value == "snat"
    assert any("uplink" in p for p in runner.status().problems)


def test_rules_kept_because_the_new_ones_cannot_be_rendered_are_not_announced() -> None:
    """web2's first rules (no endpoint yet) reject; when its endpoints come, DSR cannot be
    rendered and the rejecting rules stay: its VIP must not be announced on their strength."""
    runner = agent(FakeNft())
    dsr = "{herald.io/forwarding-mode: dsr}"
    asyncio.run(runner.apply_snapshot(two_services(dsr, web2_backends=0)))
    asyncio.run(runner.apply_snapshot(two_services(dsr)))
    assert committed(runner) == ["default/web1-lb", "default/web2"]
    assert runner._applied.served == {ipaddress.ip_address("203.0.113.0")}


def test_a_service_of_1500_backends_is_forwarded_beside_the_others() -> None:
    runner = agent(FakeNft())
    asyncio.run(runner.apply_snapshot(two_services(web2_backends=1500)))
    assert committed(runner) == ["default/web1-lb", "default/web2"]
    assert runner.status().problems == ()


def test_a_peer_the_speaker_refuses_is_a_problem_on_that_peer_only() -> None:
    files = seed_files()
    files["eps.yaml"] = endpoints("web1-lb", [("198.18.1.9", NODE, True)])
    snapshot = state(files, SEED_STATUS)
    [config] = snapshot.bgp_cluster_configs
    [instance] = config.spec.bgp_instances
    [peer] = instance.peers
    # What validation now refuses, built past it: the plan must not trust validation alone.
    bad = peer.model_copy(update={"name": "zero", "peer_asn": 0})
    other = peer.model_copy(update={"name": "other", "peer_address": "192.0.2.2"})
    instance = instance.model_copy(update={"peers": (peer, bad, other)})
    config = config.model_copy(
        update={"spec": config.spec.model_copy(update={"bgp_instances": (instance,)})}
    )
    plan = plan_node(dataclasses.replace(snapshot, bgp_cluster_configs=(config,)), NODE)
    assert [p.name for p in plan.peers] == ["other", "router"]
    assert all(p.routes for p in plan.peers)
    (problem,) = plan.problems
    assert "peer zero" in problem and "AS 0" in problem


def test_a_service_the_datapath_model_refuses_is_a_problem_on_that_service_only() -> None:
    snapshot = two_services()
    web2 = snapshot.services_by_key["default/web2"]
    port = web2.spec.ports[0]
    twice = web2.model_copy(update={"spec": web2.spec.model_copy(update={"ports": (port, port)})})
    services = tuple(twice if s.key == "default/web2" else s for s in snapshot.services)
    plan = plan_node(dataclasses.replace(snapshot, services=services), NODE)
    assert [s.key for s in plan.services] == ["default/web1-lb"]
    (problem,) = plan.problems
    assert problem.startswith("Service default/web2: ") and "not forwarded" in problem


def test_routes_of_addresses_the_node_does_not_forward_are_held_back() -> None:
    host = ipaddress.ip_network("203.0.113.0/32")
    refused = ipaddress.ip_network("203.0.113.2/32")
    pods = ipaddress.ip_network("198.18.1.0/24")
    aggregate = ipaddress.ip_network("203.0.114.0/24")
    peer = PeerPlan(
        SpeakerKey("i", 64512, "192.0.2.21", 179),
        "router",
        PeerConfig(ipaddress.ip_address("192.0.2.1"), 64512),
        tuple((n, RouteAttributes()) for n in (pods, host, refused, aggregate)),
        tuple(
            (n, tuple(a)) for n, a in [
                (host, [host.network_address]),
                (refused, [refused.network_address]),
                (aggregate, [ipaddress.ip_address("203.0.114.1"), ipaddress.ip_address("203.0.114.9")]),
            ]
        ),
    )  # fmt: skip
    assert set(_routes(peer, frozenset({host.network_address}))) == {pods, host}
    # An aggregate is announced while one of the addresses it carries is forwarded.
    forwarded = frozenset({ipaddress.ip_address("203.0.114.9")})
    assert set(_routes(peer, forwarded)) == {pods, aggregate}


class Snapshots:
    """A source of the given snapshots, then the end of the stream."""

    def __init__(self, *snapshots: ClusterState) -> None:
        self.items = snapshots

    async def snapshots(self) -> AsyncIterator[ClusterState]:
        for item in self.items:
            yield item


def test_a_fault_in_one_snapshot_does_not_end_the_agent(monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = two_services(), two_services(web2_backends=2)
    nft = FakeNft()
    runner = Agent(AgentConfig(NODE), source=Snapshots(first, second), nft=Nft(runner=nft))  # type: ignore[arg-type]
    real = runner.apply_snapshot
    seen = []

    async def faulty(snapshot: ClusterState) -> None:
        seen.append(snapshot)
        if snapshot is first:
            raise RuntimeError("injected")
        await real(snapshot)

    monkeypatch.setattr(runner, "apply_snapshot", faulty)
    asyncio.run(runner.run())
    assert seen == [first, second]
    assert committed(runner) == ["default/web1-lb", "default/web2"]


def test_why_the_source_keeps_an_older_snapshot_is_in_the_agents_problems() -> None:
    runner = agent(FakeNft())
    good = two_services()
    kept = dataclasses.replace(good, problems=("manifests invalid, keeping ...: bad.yaml:1",))
    asyncio.run(runner.apply_snapshot(good))
    asyncio.run(runner.apply_snapshot(kept))
    assert runner.status().problems == kept.problems
    asyncio.run(runner.apply_snapshot(good))
    assert runner.status().problems == ()


class SpeakerWithUnsentRoutes:
    """What a speaker reports when its peer did not negotiate IPv6."""

    def __init__(self, address: ipaddress.IPv4Address) -> None:
        self.address = address

    def status(self) -> list[PeerStatus]:
        return [
            PeerStatus(
                self.address, 64512, State.ESTABLISHED, 5.0, 0, 0, 1, 3, 3, None,
                families=("ipv4-unicast",), unsent_prefixes=1, unsent_families=("ipv6-unicast",),
            )
        ]  # fmt: skip

    def advertised_routes(self, peer: object) -> list[object]:
        return []


def test_routes_a_session_cannot_carry_are_a_problem() -> None:
    runner = agent(FakeNft())
    address = ipaddress.IPv4Address("192.0.2.1")
    key = SpeakerKey("i", 64512, "192.0.2.21", 179)
    runner._applied.peers["i/router"] = (key, PeerConfig(address, 64512))
    runner._speakers[key] = SpeakerWithUnsentRoutes(address)  # type: ignore[assignment]
    status = runner.status()
    assert status.peers[0].unsent_families == ("ipv6-unicast",)
    (problem,) = status.problems
    assert "peer i/router (192.0.2.1): 1 routes of ipv6-unicast not sent" in problem
    assert "negotiated: ipv4-unicast" in problem


class FailingOnce:
    """A source whose first watch yields one snapshot and then fails; the next one works."""

    def __init__(self, first: ClusterState, second: ClusterState) -> None:
        self.items = (first, second)
        self.watches = 0
        self.seen_problems: tuple[str, ...] = ()

    async def snapshots(self) -> AsyncIterator[ClusterState]:
        self.watches += 1
        if self.watches == 1:
            yield self.items[0]
            raise OSError("inotify watch limit reached")
        yield self.items[1]


def test_a_failed_watch_is_said_and_watched_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("herald.agent.run.WATCH_RETRY_FIRST", 0.05)
    source = FailingOnce(two_services(), two_services(web2_backends=2))
    runner = Agent(AgentConfig(NODE), source=source, nft=Nft(runner=FakeNft()))  # type: ignore[arg-type]
    said: list[tuple[str, ...]] = []
    real_sleep = asyncio.sleep

    async def sleep(delay: float) -> None:
        said.append(runner.status().problems)
        await real_sleep(delay)

    monkeypatch.setattr("herald.agent.run.asyncio.sleep", sleep)
    asyncio.run(runner.run())
    assert source.watches == 2
    assert committed(runner) == ["default/web1-lb", "default/web2"]
    ((problem,),) = said
    assert "watching failed" in problem and "inotify" in problem
