"""The ARP/NDP responder on a real segment: the owner answers, nobody else does, and a new
owner's announcements move the client's neighbour entry."""

from __future__ import annotations

import re
import struct
from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest
from l2_segment import Segment, frames, running_segment

from herald.l2.packets import icmpv6_checksum, parse_mac

pytestmark = pytest.mark.netns

VIP = "203.0.113.10"
OTHER = "203.0.113.11"
VIP6 = "2001:db8:113::10"
OTHER6 = "2001:db8:113::11"


@pytest.fixture(scope="module")
def segment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Segment]:
    with running_segment(tmp_path_factory.mktemp("l2")) as built:
        yield built


@pytest.fixture(autouse=True)
def nobody_owns_anything(segment: Segment) -> Iterator[None]:
    for node in ("n1", "n2"):
        segment.own(node, ())
    for host in ("c1",):
        segment.lab.ip(host, "neigh", "flush", "dev", "eth0")
    yield


def test_the_client_learns_the_owners_mac_over_arp(segment: Segment) -> None:
    segment.own("n1", [VIP])
    assert segment.arping(VIP, count=2) == [segment.macs["n1"]] * 2
    segment.resolve("c1", VIP)
    assert segment.neighbour("c1", VIP) == segment.macs["n1"]


def test_the_client_learns_the_owners_mac_over_ndp(segment: Segment) -> None:
    segment.own("n2", [VIP6])
    assert segment.ndisc(VIP6) == segment.macs["n2"]
    segment.resolve("c1", VIP6)
    assert segment.neighbour("c1", VIP6) == segment.macs["n2"]


def test_no_node_answers_for_a_vip_it_does_not_own(segment: Segment, tmp_path: Path) -> None:
    segment.own("n1", [VIP, VIP6])
    segment.own("n2", [VIP6])
    with segment.capture(tmp_path / "segment.pcap") as pcap:
        assert segment.arping(OTHER, count=2) == []
        assert segment.ndisc(OTHER6) is None
        assert segment.arping(VIP) == [segment.macs["n1"]]
    text = segment.decode(pcap)
    # The capture saw the questions, so the silence is real.
    assert f"who-has {OTHER}" in text and f"who has {OTHER6}" in text
    assert f"Reply {OTHER}" not in text
    assert not re.search(rf"neighbor advertisement.*tgt is {re.escape(OTHER6)}", text)
    # Only n1 answered for VIP: no reply carries n2's MAC for it.
    replies = re.findall(rf"Reply {re.escape(VIP)} is-at ([0-9a-f:]{{17}})", text)
    assert replies and set(replies) == {segment.macs["n1"]}


def test_a_new_owner_announces_and_the_client_follows(segment: Segment, tmp_path: Path) -> None:
    segment.own("n1", [VIP, VIP6])
    for address in (VIP, VIP6):
        segment.resolve("c1", address)
        assert segment.neighbour("c1", address) == segment.macs["n1"]
    with segment.capture(tmp_path / "failover.pcap") as pcap:
        segment.own("n1", [])
        segment.own("n2", [VIP, VIP6])
        moved = [segment.wait_neighbour("c1", a, segment.macs["n2"]) for a in (VIP, VIP6)]
        # The old owner is silent, the new one answers.
        assert segment.arping(VIP, count=2) == [segment.macs["n2"]] * 2
        assert segment.ndisc(VIP6) == segment.macs["n2"]
    # Announced at once: the client moved long before a neighbour entry would expire.
    assert max(moved) < 0.5, moved
    text = segment.decode(pcap)
    n2 = segment.macs["n2"]
    assert f"Request who-has {VIP} tell {VIP}" in text  # gratuitous request
    assert f"Reply {VIP} is-at {n2}" in text  # gratuitous reply (and the arping answers)
    assert f"tgt is {VIP6}" in text and "Flags [override]" in text  # unsolicited NA
    # And nothing from the old owner about the VIPs once it let them go.
    n1 = re.escape(segment.macs["n1"])
    assert not re.search(rf"{n1} > .*(Reply {re.escape(VIP)}|tgt is {re.escape(VIP6)})", text)
    print(f"client neighbour entry moved after {moved[0]:.3f} s (ARP), {moved[1]:.3f} s (NDP)")


def test_our_answers_are_built_like_the_kernels_own(segment: Segment, tmp_path: Path) -> None:
    """Real packets to compare with: n1's kernel answers for its own address 192.0.2.21 /
    2001:db8:2::21, n1's responder for the VIPs; with the addresses swapped and the
    checksum recomputed, the kernel's frames must equal ours byte for byte."""
    segment.own("n1", [VIP, VIP6])
    with segment.capture(tmp_path / "compare.pcap") as pcap:
        assert segment.arping("192.0.2.21") == [segment.macs["n1"]]
        assert segment.arping(VIP) == [segment.macs["n1"]]
        assert segment.ndisc("2001:db8:2::21") == segment.macs["n1"]
        assert segment.ndisc(VIP6) == segment.macs["n1"]
    # Frames from n1 to the client: the answers, not the announcements.
    n1, c1 = parse_mac(segment.macs["n1"]), parse_mac(segment.macs["c1"])
    sent = [f for f in frames(pcap) if f[6:12] == n1 and f[:6] == c1]
    kernel_arp = next(
        f for f in sent if f[12:14] == b"\x08\x06" and f[28:32] == IPv4Address("192.0.2.21").packed
    )
    our_arp = next(
        f for f in sent if f[12:14] == b"\x08\x06" and f[28:32] == IPv4Address(VIP).packed
    )
    # The kernel sends 42 bytes on a veth and lets the NIC pad; herald pads to 60 itself.
    assert our_arp[:42] == kernel_arp[:28] + IPv4Address(VIP).packed + kernel_arp[32:42]
    assert our_arp[42:] == bytes(18)

    def advertisement_of(target: str) -> bytes:
        return next(
            f
            for f in sent
            if f[12:14] == b"\x86\xdd" and f[54] == 136 and f[62:78] == IPv6Address(target).packed
        )

    kernel_na, our_na = advertisement_of("2001:db8:2::21"), advertisement_of(VIP6)
    vip6 = IPv6Address(VIP6).packed
    expected = bytearray(kernel_na[:22] + vip6 + kernel_na[38:62] + vip6 + kernel_na[78:])
    expected[56:58] = b"\0\0"
    checksum = icmpv6_checksum(
        IPv6Address(vip6), IPv6Address(bytes(expected[38:54])), bytes(expected[54:])
    )
    expected[56:58] = struct.pack("!H", checksum)
    assert our_na == bytes(expected)
