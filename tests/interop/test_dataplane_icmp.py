"""ICMP echo to a VIP: answered, with the VIP as source, by the node that serves it."""

from __future__ import annotations

import re
import sys
import time
from collections.abc import Iterator
from ipaddress import ip_address

import pytest
from dataplane_cluster import BACKENDS, BACKENDS6, CLIENT, CLIENT6, VIP, VIP6, Cluster, web
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


# The error a router on the path sends the VIP when a reply (VIP:80 -> client:port) is
# too big for its next link: IPv4 "fragmentation needed" (MTU 1300) or ICMPv6 "packet too
# big" (MTU 1280), quoting the reply's IP header and the first 8 bytes of its TCP header.
FORGE = """
import socket, struct, sys
vip, client, cport = sys.argv[1], sys.argv[2], int(sys.argv[3])
def checksum(data):
    data += b"\\0" * (len(data) % 2)
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xFFFF)
    return ~(total + (total >> 16)) & 0xFFFF
tcp = struct.pack("!HHI", 80, cport, 1)
if ":" in vip:
    six = socket.AF_INET6
    inner = struct.pack("!IHBB16s16s", 6 << 28, 1440, 6, 63,
                        socket.inet_pton(six, vip), socket.inet_pton(six, client)) + tcp
    # The kernel computes the checksum of an ICMPv6 raw socket's messages.
    icmp = struct.pack("!BBHI", 2, 0, 0, 1280) + inner
    family, protocol = six, socket.IPPROTO_ICMPV6
else:
    inner = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 1500, 1, 0, 63, 6, 0,
                        socket.inet_aton(vip), socket.inet_aton(client))
    inner = inner[:10] + struct.pack("!H", checksum(inner)) + inner[12:] + tcp
    head = struct.pack("!BBHHH", 3, 4, 0, 0, 1300)
    icmp = head[:2] + struct.pack("!H", checksum(head + inner)) + head[4:] + inner
    family, protocol = socket.AF_INET, socket.IPPROTO_ICMP
with socket.socket(family, socket.SOCK_RAW, protocol) as sock:
    sock.sendto(icmp, (vip, 0))
"""


def too_big_seen(cluster: Cluster, host: str, version: int) -> int:
    """The ICMP errors of path MTU discovery `host`'s stack received so far (over IPv4,
    every destination-unreachable: the kernel does not count fragmentation-needed apart)."""
    if version == 4:
        lines = cluster.lab.exec(host, "cat", "/proc/net/snmp").stdout.splitlines()
        names, values = (line.split() for line in lines if line.startswith("Icmp:"))
        return int(dict(zip(names, values, strict=True))["InDestUnreachs"])
    lines = cluster.lab.exec(host, "cat", "/proc/net/snmp6").stdout.splitlines()
    return int(dict(line.split() for line in lines if line.strip())["Icmp6InPktTooBigs"])


@pytest.mark.parametrize(("vip", "client"), [(VIP, CLIENT), (VIP6, CLIENT6)], ids=["v4", "v6"])
def test_a_too_big_error_reaches_the_backend_of_its_dsr_flow(
    restored: Cluster, vip: str, client: str
) -> None:
    # The router sends the error to n1 (as ECMP may); the flow's conntrack entry, and its
    # backend p2a, are on n2.
    cluster = restored
    version = ip_address(vip).version
    dual = web(
        vips=(ip_address(VIP), ip_address(VIP6)),
        backends=BACKENDS + BACKENDS6,
        ports=SESSIONS,
        forwarding_mode=ForwardingMode.DSR,
    )
    cluster.apply([dual])
    held = cluster.hold(12, duration=20, vip=vip)
    try:
        family = f"ipv{version}"
        flows = cluster.lab.exec("n2", "conntrack", "-L", "-f", family, "-p", "tcp",
                                 "--dport", "80", "--dst", vip, check=False).stdout  # fmt: skip
        ports = re.findall(r"sport=(\d+) dport=80 ", flows)
        assert ports, f"no flow of the held connections on n2:\n{flows}"
        forge = [sys.executable, "-c", FORGE, vip, client, ports[0]]
        for datapath in cluster.nodes.values():
            datapath.set_peers(NO_PEERS)
        before = too_big_seen(cluster, "p2a", version)
        cluster.lab.exec("r1", *forge)
        time.sleep(0.3)
        assert too_big_seen(cluster, "p2a", version) == before, "without the copies, n1 drops it"
        watches = learn_peers(cluster)
        assert all(w.peers.own_mac for w in watches.values())
        cluster.lab.exec("r1", *forge)
        deadline = time.monotonic() + 5
        while too_big_seen(cluster, "p2a", version) == before:
            assert time.monotonic() < deadline, "the error never reached p2a"
            time.sleep(0.1)
    finally:
        held.out.with_name(held.out.name + ".stop").write_text("")
        held.result()
        while WATCHES:
            WATCHES.pop().close()
        for datapath in cluster.nodes.values():
            datapath.set_peers(NO_PEERS)
