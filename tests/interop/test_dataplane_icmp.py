"""ICMP echo to a VIP: answered, with the VIP as source, by the node that serves it."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from ipaddress import ip_address

import pytest
from dataplane_cluster import BACKENDS, BACKENDS6, CLIENT, VIP, VIP6, Cluster, web
from test_dataplane_failover import SESSIONS, WATCHES, learn_peers

from herald.dataplane.model import NO_PEERS, ForwardingMode, TrafficPolicy

pytestmark = pytest.mark.netns


@pytest.fixture
def restored(cluster: Cluster) -> Iterator[Cluster]:
    try:
        yield cluster
    finally:
        cluster.via("n1")
        cluster.apply([web()])


def ping(cluster: Cluster, vip: str, count: int = 3) -> tuple[int, str]:
    """How many echo requests were answered, and ping's output."""
    result = cluster.lab.exec("c1", "ping", "-n", "-c", str(count), "-i", "0.2", "-W", "1", vip,
                              check=False)  # fmt: skip
    return result.stdout.count(f"from {vip}:"), result.stdout


@pytest.mark.parametrize("mode", list(ForwardingMode))
def test_a_vip_answers_echo_over_ipv4_and_ipv6(restored: Cluster, mode: ForwardingMode) -> None:
    dual = web(
        vips=(ip_address(VIP), ip_address(VIP6)),
        backends=BACKENDS + BACKENDS6,
        forwarding_mode=mode,
    )
    restored.apply([dual])
    for vip in (VIP, VIP6):
        answered, output = ping(restored, vip)
        state = [restored.lab.exec(h, "ip", "neigh").stdout for h in ("r1", "n1")]
        assert answered == 3, (output, *state)


def test_a_service_can_opt_out(restored: Cluster) -> None:
    restored.apply([web(answer_echo=False)])
    answered, output = ping(restored, VIP, count=2)
    assert answered == 0, output
    assert restored.connect(5)["errors"] == {}, "the service itself still serves"


def test_a_node_that_does_not_serve_the_vip_does_not_answer(restored: Cluster) -> None:
    # Local: n3 has no pod of the service, so its rules do not serve the VIP.
    restored.apply([web(external_traffic_policy=TrafficPolicy.LOCAL)])
    assert ping(restored, VIP, count=2)[0] == 2
    restored.via("n3")
    answered, output = ping(restored, VIP, count=2)
    assert answered == 0, output


FORGE = """
import socket, struct, sys
vip, client, cport = sys.argv[1], sys.argv[2], int(sys.argv[3])
def checksum(data):
    data += b"\\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
inner = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1500, 1, 0, 63, 6, 0,
                    socket.inet_aton(vip), socket.inet_aton(client))
inner = inner[:10] + struct.pack("!H", checksum(inner)) + inner[12:]
inner += struct.pack("!HHI", 80, cport, 1)
head = struct.pack("!BBHHH", 3, 4, 0, 0, 1300)
icmp = head[:2] + struct.pack("!H", checksum(head + inner)) + head[4:] + inner
with socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP) as sock:
    sock.sendto(icmp, (vip, 0))
"""


def unreachables_seen(cluster: Cluster, host: str) -> int:
    """ICMP destination-unreachable messages `host`'s stack received so far."""
    lines = cluster.lab.exec(host, "cat", "/proc/net/snmp").stdout.splitlines()
    names, values = (line.split() for line in lines if line.startswith("Icmp:"))
    return int(dict(zip(names, values, strict=True))["InDestUnreachs"])


def test_a_too_big_error_reaches_the_backend_of_its_dsr_flow(restored: Cluster) -> None:
    # The router sends the error to n1 (as ECMP may); the flow's conntrack entry, and its
    # backend p2a, are on n2.
    cluster = restored
    cluster.apply([web(ports=SESSIONS, forwarding_mode=ForwardingMode.DSR)])
    held = cluster.hold(12, duration=20)
    try:
        flows = cluster.lab.exec("n2", "conntrack", "-L", "-p", "tcp", "--dport", "80",
                                 "--dst", VIP, check=False).stdout  # fmt: skip
        ports = re.findall(r"sport=(\d+) dport=80 ", flows)
        assert ports, f"no flow of the held connections on n2:\n{flows}"
        forge = [sys.executable, "-c", FORGE, VIP, CLIENT, ports[0]]
        for datapath in cluster.nodes.values():
            datapath.set_peers(NO_PEERS)
        before = unreachables_seen(cluster, "p2a")
        cluster.lab.exec("r1", *forge)
        time.sleep(0.3)
        assert unreachables_seen(cluster, "p2a") == before, "without the copies, n1 drops it"
        watches = learn_peers(cluster)
        assert all(w.peers.own_mac for w in watches.values())
        cluster.lab.exec("r1", *forge)
        deadline = time.monotonic() + 5
        while unreachables_seen(cluster, "p2a") == before:
            assert time.monotonic() < deadline, "the error never reached p2a"
            time.sleep(0.1)
    finally:
        held.out.with_name(held.out.name + ".stop").write_text("")
        held.result()
        while WATCHES:
            WATCHES.pop().close()
        for datapath in cluster.nodes.values():
            datapath.set_peers(NO_PEERS)
