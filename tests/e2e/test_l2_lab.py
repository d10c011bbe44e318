"""L2 mode end to end in the lab: herald's controller and agents in namespaces, the router and
the clients on the node segment, ARP answered by the owner, a failover seen by a client.

One lab for the module per membership protocol (heartbeat, SWIM; building it and starting 6
agents is the slow part); the tests that end an owner restore it before the next. They take
over the machine's lab like test_lab.py.
"""

from __future__ import annotations

import collections
import ipaddress
import os
import signal
import statistics
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from herald.agent.status import DEFAULT_STATUS_DIR, AgentStatus, query_all
from herald.cli.l2 import owner_rows
from herald.cli.source_option import DEFAULT_MANIFESTS
from herald.l2.liveness import DEFAULT_PORT as HEARTBEAT_PORT
from herald.lab import cluster
from herald.lab.demo import external_ip
from herald.lab.failover import (
    FAILOVER_MANIFESTS,
    FAILOVER_SERVICE,
    Kind,
    all_live,
    fail_owner,
    mac_of,
    neighbour_mac,
    owner_of,
    owners,
    restore,
    url,
)
from herald.lab.netns import alive, children, run
from herald.lab.topology import Topology

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parents[2]
L2_SEED = ROOT / "examples" / "l2-seed"
SPREAD = 97
SHARED_IP = "192.0.2.220"
IPV6_SERVICE = "default/web-v6"
# In front of the web1-l2 pods, whose IPv6 addresses the lab's kubelet lists in a slice of
# addressType IPv6; its VIP comes from the seed pool's IPv6 range.
IPV6_MANIFEST = """\
apiVersion: v1
kind: Service
metadata: {name: web-v6, namespace: default}
spec:
  type: LoadBalancer
  loadBalancerClass: herald.io/l2
  ipFamilyPolicy: SingleStack
  ipFamilies: [IPv6]
  selector: {app: web1-l2}
  ports: [{name: http, port: 80, targetPort: 8080}]
"""
MEMBERSHIP = "HERALD_L2_MEMBERSHIP"
NOT_FAILOVER = (
    "  serviceSelector:\n    matchExpressions:\n      - {key: failover, operator: DoesNotExist}\n"
)


def extra_services() -> str:
    """60 Services of their own IP and two sharing one, all in front of the web1-l2 pods."""
    docs = []
    for i in range(SPREAD):
        docs.append(_service(f"spread-{i:02}", 80, {}))
    for name, port in (("shared-a", 80), ("shared-b", 8081)):
        docs.append(
            _service(name, port, {"herald.io/sharing-key": "shared", "herald.io/ips": SHARED_IP})
        )
    return "---\n".join(docs)


def _service(name: str, port: int, annotations: dict[str, str]) -> str:
    notes = "".join(f"    {k}: {v}\n" for k, v in annotations.items())
    return (
        "apiVersion: v1\nkind: Service\n"
        f"metadata:\n  name: {name}\n  namespace: default\n"
        + (f"  annotations:\n{notes}" if notes else "")
        + "spec:\n  type: LoadBalancer\n  loadBalancerClass: herald.io/l2\n"
        f"  selector: {{app: web1-l2}}\n  ports:\n    - {{port: {port}, targetPort: 8080}}\n"
    )


def extra_pool() -> str:
    # The seed's pool has 21 addresses; the spread needs 100, still in the node segment.
    return (
        "apiVersion: herald.io/v1alpha1\nkind: LoadBalancerIPPool\n"
        "metadata:\n  name: spread\nspec:\n  blocks:\n"
        "    - {start: 192.0.2.110, stop: 192.0.2.191}\n"
    )


def _write(name: str, text: str) -> None:
    target = DEFAULT_MANIFESTS / name
    target.with_suffix(".tmp").write_text(text)
    target.with_suffix(".tmp").rename(target)


def vips() -> dict[str, str]:
    keys = ["default/web1-l2", *(f"default/spread-{i:02}" for i in range(SPREAD))]
    keys += ["default/shared-a", "default/shared-b", FAILOVER_SERVICE]
    found = {key: external_ip(key) for key in keys}
    return {k: v for k, v in found.items() if v is not None}


def every_vip_owned(agents: list[AgentStatus] | None = None) -> dict[str, list[str]] | None:
    """Each VIP's answering node, if every VIP has exactly one, seen by one status query of
    every agent (VIPs looked up one query each would stitch views of different moments, and
    an agent that did not answer would hide the VIPs it answers for)."""
    addresses = set(vips().values())
    if agents is None:
        agents = query_all(DEFAULT_STATUS_DIR)
    if len(addresses) != SPREAD + 3 or not agents or any(a.error for a in agents):
        return None
    seen: dict[str, list[str]] = {vip: [] for vip in addresses}
    for row in owner_rows(agents):
        if row.vip in seen and row.owner is not None:
            seen[row.vip].append(row.owner)
    return seen if all(len(nodes) == 1 for nodes in seen.values()) else None


def settled() -> bool:
    """One owner for every VIP, and every agent has applied a plan with every Service: a
    restarted agent's first commit (100 Maglev tables) is seconds of CPU on this 2-CPU
    machine, and the next failover is measured on a quiet lab, not during that."""
    agents = query_all(DEFAULT_STATUS_DIR)
    applied = {len(a.services) for a in agents if a.applied_at}
    return (
        len(applied) == 1
        and all(a.applied_at for a in agents)
        and every_vip_owned(agents) is not None
    )


@pytest.fixture(scope="module", params=["heartbeat", "swim"])
def l2_lab(request: pytest.FixtureRequest) -> Iterator[Topology]:
    # Every test once per membership protocol: agents (and those restarted after a
    # failover) take it from the environment the lab passes on.
    before = os.environ.get(MEMBERSHIP)
    os.environ[MEMBERSHIP] = request.param
    try:
        topology = cluster.up(mode="l2")
        for manifest in sorted(L2_SEED.glob("*.yaml")):
            text = manifest.read_text()
            if manifest.name == "l2.yaml":
                # The failover Service is announced by its own policy only.
                text = text.replace("spec:\n", f"spec:\n{NOT_FAILOVER}", 1)
            _write(manifest.name, text)
        _write("failover.yaml", FAILOVER_MANIFESTS)
        _write("ipv6.yaml", IPV6_MANIFEST)
        # Owners stay where they are placed (a node that turns live later takes nothing):
        # the spread is even only if every agent hears every other when the VIPs arrive.
        cluster.wait_until(lambda: all_live(len(topology.nodes)), 60, "every agent live")
        _write("spread-pool.yaml", extra_pool())
        _write("services.yaml", extra_services())
        cluster.wait_until(settled, 90, "every agent applied, one owner for every VIP")
        yield topology
    finally:
        if before is None:
            del os.environ[MEMBERSHIP]
        else:
            os.environ[MEMBERSHIP] = before
        state = cluster.read_state()
        cluster.down()
        assert cluster.leftovers(state) == []


def curl(vip: str, port: int = 80, host: str = "client1") -> str:
    """The answer; when it is not a 200, followed by what explains it (curl's error, the
    client's neighbour entry, who answers for the VIP, what each agent last applied)."""
    # -g: the brackets of an IPv6 URL are not a glob.
    command = ("curl", "-g", "-sS", "-m", "3", "-w", "status=%{http_code}", url(vip, port))
    result = run(["ip", "netns", "exec", cluster.PREFIX + host, *command], check=False)
    if result.stdout.endswith("status=200"):
        return result.stdout
    return f"{result.stdout}\n{diagnosis(vip, host, result.stderr)}"


def diagnosis(vip: str, host: str, error: str) -> str:
    agents = query_all(DEFAULT_STATUS_DIR)
    rows = [row for row in owner_rows(agents) if row.vip == vip]
    now = time.time()
    applied = [
        f"{a.node}: {len(a.services)} services applied "
        f"{now - a.applied_at:.1f} s ago in {a.apply_ms or 0:.0f} ms, "
        f"live {len(a.l2.live) if a.l2 else 0}"
        if a.applied_at
        else f"{a.node}: {a.error or 'nothing applied'}"
        for a in agents
    ]
    return "\n".join(
        [
            f"curl from {host}: {error.strip()}",
            f"neighbour: {cluster.run_in(host, 'ip', 'neigh', 'show', vip).strip()}",
            f"owners: {[(r.owner, r.interfaces, r.since) for r in rows]}",
            *applied,
        ]
    )


def test_neighbour_tables_hold_the_owners_mac(l2_lab: Topology) -> None:
    vip = vips()["default/web1-l2"]
    owner = owner_of(vip)
    for host in ("router", "client1", "client2"):
        assert "pod=web1-l2-" in curl(vip, host=host)
        assert neighbour_mac(host, vip) == mac_of(owner), host


def ipv6_vip() -> str:
    vip: str = cluster.wait_until(lambda: external_ip(IPV6_SERVICE), 30, "an IPv6 VIP")
    assert ipaddress.ip_address(vip) in ipaddress.ip_network("2001:db8:2::/64"), vip
    return vip


def test_an_ipv6_vip_is_announced_by_ndp_and_reachable(l2_lab: Topology) -> None:
    vip = ipv6_vip()
    owner = owner_of(vip)
    for host in ("client1", "client2", "router"):
        answer = curl(vip, host=host)
        assert "pod=web1-l2-" in answer and answer.endswith("status=200"), (host, answer)
        # The entry was made by a neighbour solicitation the owner answered.
        assert "2001:db8:2::" in cluster.run_in(host, "ip", "-6", "neigh", "show", vip)
        assert neighbour_mac(host, vip) == mac_of(owner), host


def test_services_spread_over_every_node_with_one_owner_each(l2_lab: Topology) -> None:
    seen = every_vip_owned()
    assert seen is not None
    load = collections.Counter(nodes[0] for nodes in seen.values())
    assert set(load) == {node.name for node in l2_lab.nodes}, load
    # The cap is ceil(1.1 x 100 / 6) = 19 VIPs, max/mean 1.14. It holds here only if no
    # agent is declared dead while the VIPs arrive (its VIPs would move and stay moved);
    # six agents share two CPUs. Measured with the heartbeat process: 1.14 in 17 of 18
    # runs, 1.20 once; 1.14-1.62 with heartbeats on the agent's event loop (docs/l2.md).
    assert max(load.values()) / statistics.mean(load.values()) <= 1.3, load
    # Every VIP answers through its owner; a sample of them, from the other client.
    for vip in sorted(seen)[:: len(seen) // 6]:
        assert "pod=" in curl(vip, host="client2")
        assert neighbour_mac("client2", vip) == mac_of(seen[vip][0]), vip


def test_services_sharing_an_ip_have_one_owner(l2_lab: Topology) -> None:
    found = vips()
    assert found["default/shared-a"] == found["default/shared-b"] == SHARED_IP
    (owner,) = owners(SHARED_IP)
    assert "pod=web1-l2-" in curl(SHARED_IP, 80)
    assert "pod=web1-l2-" in curl(SHARED_IP, 8081)
    assert neighbour_mac("client1", SHARED_IP) == mac_of(owner)


@pytest.mark.parametrize("kind", ["agent", "link"])
def test_owner_failure_moves_the_vip_and_requests_succeed_again(
    l2_lab: Topology, kind: Kind
) -> None:
    vip = vips()[FAILOVER_SERVICE]
    round_ = fail_owner(l2_lab, vip, kind)
    try:
        assert round_.new != round_.old
        result = round_.result
        assert result.recovered_after is not None, result
        # Detection is 0.5 s (heartbeat 100 ms x 5; SWIM ~0.4 s); a second leaves room for a
        # loaded machine.
        assert result.recovered_after < 1.5, result
        assert neighbour_mac("client1", vip) == mac_of(round_.new)
        assert "pod=web-failover-0 node=k8s-worker1" in curl(vip)
        # Requests fail for a moment at most: with a cut link, what goes to its MAC until
        # the segment moves; with a killed agent (whose rules still forward), a few
        # hundred ms of failures were seen under this file's load (see docs/l2.md).
        assert result.failed_window < 1.5, result
    finally:
        restore(round_.old, kind)
    # Back to one owner per VIP before the next test (a healed link resolves duplicates).
    cluster.wait_until(settled, 60, "every agent applied, one owner for every VIP again")
    time.sleep(0.5)


def test_only_the_owner_answers_during_a_failover(l2_lab: Topology) -> None:
    """A capture on the segment's switch: every ARP answer or announcement for the VIP comes
    from the old owner until the new one speaks, and from the new one only after that."""
    vip = vips()[FAILOVER_SERVICE]
    capture = subprocess.Popen(
        ["ip", "netns", "exec", cluster.PREFIX + "sw",
         "tcpdump", "-l", "-n", "-e", "-i", "br0", "arp"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )  # fmt: skip
    try:
        time.sleep(0.5)  # tcpdump attaches
        round_ = fail_owner(l2_lab, vip, "agent", before=0.5, duration=2.5)
        time.sleep(1.5)  # the new owner's repeated announcements (0.5, 1, 2 s)
    finally:
        capture.terminate()
        out, _ = capture.communicate(timeout=5)
    restore(round_.old, "agent")
    speakers = [
        line.split()[1]
        for line in out.splitlines()
        if f"Reply {vip} is-at" in line or f"who-has {vip} tell {vip}" in line
    ]
    old, new = mac_of(round_.old), mac_of(round_.new)
    assert new in speakers, out
    switch = speakers.index(new)
    assert set(speakers[:switch]) <= {old}, speakers
    assert set(speakers[switch:]) == {new}, speakers
    cluster.wait_until(settled, 60, "every agent applied, one owner for every VIP again")


def test_ipv6_owner_failure_moves_the_vip(l2_lab: Topology) -> None:
    """The IPv6 VIP's owner's agent killed: a survivor takes it over with unsolicited
    neighbour advertisements and the client's requests succeed again through it."""
    vip = ipv6_vip()
    round_ = fail_owner(l2_lab, vip, "agent")
    try:
        assert round_.new != round_.old
        result = round_.result
        assert result.recovered_after is not None, result
        assert result.recovered_after < 1.5, result
        assert result.failed_window < 1.5, result
        assert neighbour_mac("client1", vip) == mac_of(round_.new)
        assert curl(vip).endswith("status=200")
    finally:
        restore(round_.old, "agent")
    cluster.wait_until(settled, 60, "every agent applied, one owner for every VIP again")


# -- chaos (see tests/e2e/test_chaos.py for the BGP lab's) ---------------------------------


def test_a_killed_heartbeat_process_is_said_and_started_again(l2_lab: Topology) -> None:
    """A crashed long-lived task: the heartbeat process of one agent is killed. The agent
    lives on, says why it answers no ARP, starts a new heartbeat process with back-off, and
    the node is live again for every peer; every VIP keeps one owner and answers."""
    node = "k8s-worker3"
    agent = int(cluster.read_state()["agents"][node])
    (heartbeat,) = heartbeat_processes(agent)
    os.kill(heartbeat, signal.SIGKILL)

    def said() -> bool:
        (status,) = [a for a in query_all(DEFAULT_STATUS_DIR) if a.node == node]
        return any("heartbeat process ended" in p for p in status.problems)

    cluster.wait_until(said, 10, f"{node} says its heartbeat process ended")
    cluster.wait_until(
        lambda: all_live(len(l2_lab.nodes)) and settled(), 60, f"{node} live again, settled"
    )
    assert alive(agent) and heartbeat_processes(agent) not in ([], [heartbeat])
    (status,) = [a for a in query_all(DEFAULT_STATUS_DIR) if a.node == node]
    assert status.problems == ()
    seen = every_vip_owned()
    assert seen is not None
    for vip in sorted(seen)[:: len(seen) // 6]:
        assert "pod=" in curl(vip, host="client2")


def heartbeat_processes(agent: int) -> list[int]:
    return [
        pid for pid in children(agent) if b"heartbeat" in Path(f"/proc/{pid}/cmdline").read_bytes()
    ]


HEARTBEAT_CUT = """\
table inet chaos {{
  chain in {{ type filter hook input priority -300; udp dport {port} drop; }}
  chain out {{ type filter hook output priority -300; udp dport {port} drop; }}
}}
"""


@pytest.mark.parametrize("victim", ["k8s-worker1", "k8s-worker2"])
def test_after_a_heartbeat_cut_heals_the_client_is_on_every_final_owner(
    l2_lab: Topology, victim: str
) -> None:
    """Heartbeats dropped both ways at one node while ARP still flows: it believes every
    peer dead and answers for every VIP, while its peers take its VIPs. When it heals, the
    client's neighbour entry of every VIP must end at the MAC of its final owner (the node
    giving a VIP up must not be the last to announce it)."""
    addresses = sorted(set(vips().values()), key=ipaddress.ip_address)
    for vip in addresses:  # the client has an entry for each, which announcements update
        assert curl(vip).endswith("status=200"), vip
    before = every_vip_owned()
    assert before is not None
    mine = [vip for vip, nodes in before.items() if nodes == [victim]]
    assert mine, before
    script = HEARTBEAT_CUT.format(port=HEARTBEAT_PORT)
    subprocess.run(
        ["ip", "netns", "exec", cluster.PREFIX + victim, "nft", "-f", "-"],
        input=script,
        text=True,
        check=True,
    )
    try:
        # Its peers take its VIPs; it keeps answering for them (it hears no one, so it
        # may be the one cut off: it takes nothing of theirs).
        cluster.wait_until(
            lambda: all(len(owners(vip)) == 2 for vip in mine),
            10,
            f"{victim} and a peer both answer for each of {victim}'s VIPs",
        )
        time.sleep(3.0)
    finally:
        cluster.run_in(victim, "nft", "delete", "table", "inet", "chaos", check=True)
    cluster.wait_until(settled, 60, "one owner for every VIP after the heal")
    time.sleep(3.0)  # every announcement of the heal (0.5, 1, 2 s after) is out
    seen = every_vip_owned()
    assert seen is not None
    wrong = {
        vip: (neighbour_mac("client1", vip), seen[vip][0])
        for vip in addresses
        if neighbour_mac("client1", vip) != mac_of(seen[vip][0])
    }
    assert not wrong, f"the client holds these VIPs at a MAC not their owner's: {wrong}"
