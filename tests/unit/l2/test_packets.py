"""ARP and NDP frames: golden bytes, parsing, the owner's answers, and tcpdump's reading."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

import pytest

from herald.l2.packets import (
    ARP_REQUEST,
    Arp,
    NeighborSolicitation,
    answer,
    arp_frame,
    gratuitous_arp,
    icmpv6_checksum,
    mac_text,
    neighbor_advertisement,
    neighbor_solicitation,
    parse_arp,
    parse_mac,
    parse_neighbor_solicitation,
    solicited_node,
)

OWNER = parse_mac("02:00:00:00:00:21")
CLIENT = parse_mac("02:00:00:00:00:10")
VIP = IPv4Address("203.0.113.10")
OTHER = IPv4Address("203.0.113.11")
CLIENT_IP = IPv4Address("192.0.2.10")
VIP6 = IPv6Address("2001:db8:113::10")
OTHER6 = IPv6Address("2001:db8:113::11")
CLIENT6 = IPv6Address("2001:db8:2::10")
OWNED = frozenset({VIP, VIP6})
PAD = "00" * 18  # a 42-byte ARP frame padded to Ethernet's 60


def h(*parts: str) -> bytes:
    return bytes.fromhex("".join(parts).replace(" ", ""))


# -- golden bytes, laid out field by field -----------------------------------------------

GARP_REQUEST = h(
    "ffffffffffff 020000000021 0806",  # broadcast, from the owner, ARP
    "0001 0800 06 04 0001",  # Ethernet/IPv4, request
    "020000000021 cb00710a",  # sender: owner MAC, VIP
    "000000000000 cb00710a",  # target: zero MAC, VIP
    PAD,
)
GARP_REPLY = h(
    "ffffffffffff 020000000021 0806",
    "0001 0800 06 04 0002",  # reply
    "020000000021 cb00710a",
    "020000000021 cb00710a",  # target MAC: the owner's own, as arping -A sends it
    PAD,
)
ARP_REPLY_TO_CLIENT = h(
    "020000000010 020000000021 0806",  # unicast back to the asker
    "0001 0800 06 04 0002",
    "020000000021 cb00710a",
    "020000000010 c000020a",  # target: the client, 192.0.2.10
    PAD,
)
UNSOLICITED_NA = h(
    "333300000001 020000000021 86dd",  # all-nodes multicast MAC
    "60000000 0020 3a ff",  # IPv6, 32 bytes of ICMPv6, hop limit 255
    "20010db8011300000000000000000010",  # from the VIP
    "ff020000000000000000000000000001",  # to ff02::1
    "88 00 f6c6 20000000",  # NA, checksum, flags: override only
    "20010db8011300000000000000000010",  # target: the VIP
    "02 01 020000000021",  # target link-layer address option
)
SOLICITATION = h(
    "3333ff000010 020000000010 86dd",  # solicited-node multicast MAC
    "60000000 0020 3a ff",
    "20010db8000200000000000000000010",  # from the client 2001:db8:2::10
    "ff0200000000000000000001ff000010",  # to ff02::1:ff00:10
    "87 00 1ad8 00000000",  # NS, checksum
    "20010db8011300000000000000000010",  # target: the VIP
    "01 01 020000000010",  # source link-layer address option
)


def test_gratuitous_arp_request_and_reply_bytes() -> None:
    assert gratuitous_arp(VIP, OWNER, reply=False) == GARP_REQUEST
    assert gratuitous_arp(VIP, OWNER, reply=True) == GARP_REPLY


def test_neighbour_discovery_bytes() -> None:
    assert neighbor_advertisement(VIP6, OWNER) == UNSOLICITED_NA
    assert neighbor_solicitation(VIP6, CLIENT6, CLIENT) == SOLICITATION
    assert solicited_node(VIP6) == IPv6Address("ff02::1:ff00:10")


def test_icmpv6_checksums_verify() -> None:
    for frame in (UNSOLICITED_NA, SOLICITATION):
        source, destination = IPv6Address(frame[22:38]), IPv6Address(frame[38:54])
        assert icmpv6_checksum(source, destination, frame[54:]) == 0
        # Independently: ones' complement sum of pseudo-header and message is all ones.
        data = frame[22:54] + struct.pack("!I3xB", len(frame) - 54, 58) + frame[54:]
        total = sum(struct.unpack(f"!{len(data) // 2}H", data))
        while total >> 16:
            total = (total & 0xFFFF) + (total >> 16)
        assert total == 0xFFFF


def test_parsing_reads_requests_and_solicitations() -> None:
    request = arp_frame(Arp(ARP_REQUEST, CLIENT, CLIENT_IP, b"\0" * 6, VIP))
    assert parse_arp(request) == Arp(ARP_REQUEST, CLIENT, CLIENT_IP, b"\0" * 6, VIP)
    assert parse_neighbor_solicitation(SOLICITATION) == NeighborSolicitation(CLIENT6, VIP6, CLIENT)
    assert parse_arp(SOLICITATION) is None
    assert parse_neighbor_solicitation(GARP_REQUEST) is None
    assert parse_arp(GARP_REQUEST[:30]) is None


def test_solicitations_failing_rfc4861_checks_are_ignored() -> None:
    bad_checksum = SOLICITATION[:56] + b"\x00\x00" + SOLICITATION[58:]
    low_hop_limit = SOLICITATION[:21] + b"\x40" + SOLICITATION[22:]
    zero_option = SOLICITATION[:-7] + b"\x00" + SOLICITATION[-6:]
    for frame in (bad_checksum, low_hop_limit, zero_option, SOLICITATION[:70]):
        assert parse_neighbor_solicitation(frame) is None


def test_owner_answers_arp_for_owned_vips_only() -> None:
    asked = arp_frame(Arp(ARP_REQUEST, CLIENT, CLIENT_IP, b"\0" * 6, VIP))
    assert answer(asked, OWNER, OWNED) == ARP_REPLY_TO_CLIENT
    other = arp_frame(Arp(ARP_REQUEST, CLIENT, CLIENT_IP, b"\0" * 6, OTHER))
    assert answer(other, OWNER, OWNED) is None
    assert answer(asked, OWNER, frozenset()) is None
    # Another node's gratuitous ARP for the VIP, replies and our own frames: never answered.
    for frame in (GARP_REQUEST, GARP_REPLY, ARP_REPLY_TO_CLIENT):
        assert answer(frame, parse_mac("02:00:00:00:00:22"), OWNED) is None
    assert answer(asked, CLIENT, OWNED) is None


def test_owner_answers_solicitations_for_owned_vips_only() -> None:
    reply = answer(SOLICITATION, OWNER, OWNED)
    assert reply == neighbor_advertisement(
        VIP6, OWNER, destination=CLIENT6, destination_mac=CLIENT, solicited=True
    )
    assert reply is not None and reply[54] == 136 and reply[58] == 0x60  # solicited, override
    assert answer(neighbor_solicitation(OTHER6, CLIENT6, CLIENT), OWNER, OWNED) is None
    # Someone's duplicate address detection for the VIP: told to all nodes, not solicited.
    dad = neighbor_solicitation(VIP6, IPv6Address("::"), CLIENT)
    assert parse_neighbor_solicitation(dad) == NeighborSolicitation(IPv6Address("::"), VIP6, CLIENT)
    assert answer(dad, OWNER, OWNED) == neighbor_advertisement(VIP6, OWNER)


def test_mac_text_round_trip() -> None:
    assert mac_text(parse_mac("02:00:00:0a:bc:21")) == "02:00:00:0a:bc:21"
    with pytest.raises(ValueError, match="MAC"):
        parse_mac("02:00")


# -- tcpdump reads every frame without complaint -----------------------------------------


def pcap(frames: list[bytes]) -> bytes:
    """A classic pcap file (Ethernet link type): a 24-byte header, then per frame a 16-byte
    record header and the bytes."""
    out = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    for i, frame in enumerate(frames):
        out += struct.pack("<IIII", 1_700_000_000 + i, 0, len(frame), len(frame)) + frame
    return out


def decoded(tmp_path: Path, frame: bytes) -> str:
    path = tmp_path / "frame.pcap"
    path.write_bytes(pcap([frame]))
    result = subprocess.run(
        ["tcpdump", "-r", str(path), "-nn", "-vv", "-e"], capture_output=True, text=True, check=True
    )
    text = result.stdout
    for trouble in ("bad", "truncated", "malformed", "[|", "invalid"):
        assert trouble not in text.lower(), text
    return text


# Skipped only off CI: in CI (where scripts/setup.sh installs tcpdump) a missing tcpdump
# must fail the run, not hide the check.
needs_tcpdump = pytest.mark.skipif(
    shutil.which("tcpdump") is None
    and os.environ.get("CI", "").lower() not in ("1", "true", "yes"),
    reason="TCPDUMP CHECK NOT RUN: needs tcpdump (scripts/setup.sh installs it)",
)


@needs_tcpdump
def test_tcpdump_decodes_the_arp_frames(tmp_path: Path) -> None:
    text = decoded(tmp_path, GARP_REQUEST)
    assert "Request who-has 203.0.113.10 tell 203.0.113.10" in text
    assert "02:00:00:00:00:21 > ff:ff:ff:ff:ff:ff" in text
    text = decoded(tmp_path, GARP_REPLY)
    assert "Reply 203.0.113.10 is-at 02:00:00:00:00:21" in text
    text = decoded(tmp_path, ARP_REPLY_TO_CLIENT)
    assert "Reply 203.0.113.10 is-at 02:00:00:00:00:21" in text
    assert "02:00:00:00:00:21 > 02:00:00:00:00:10" in text


@needs_tcpdump
def test_tcpdump_decodes_the_ndp_frames_and_checks_their_checksums(tmp_path: Path) -> None:
    text = decoded(tmp_path, UNSOLICITED_NA)
    assert "2001:db8:113::10 > ff02::1" in text
    assert "neighbor advertisement" in text and "tgt is 2001:db8:113::10" in text
    assert "Flags [override]" in text
    assert "destination link-address option (2), length 8 (1): 02:00:00:00:00:21" in text
    assert "icmp6 sum ok" in text
    text = decoded(tmp_path, SOLICITATION)
    assert "neighbor solicitation" in text and "who has 2001:db8:113::10" in text
    assert "source link-address option (1), length 8 (1): 02:00:00:00:00:10" in text
    assert "icmp6 sum ok" in text
    reply = answer(SOLICITATION, OWNER, OWNED)
    assert reply is not None
    text = decoded(tmp_path, reply)
    assert "2001:db8:113::10 > 2001:db8:2::10" in text
    assert "Flags [solicited, override]" in text and "icmp6 sum ok" in text
