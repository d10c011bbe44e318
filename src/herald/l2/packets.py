"""ARP and IPv6 neighbour discovery frames: building, parsing, and the answer an owner gives
(pure; bytes in, bytes out).

- ARP (RFC 826) over Ethernet: requests, replies, and the two gratuitous forms a new owner
  sends (a request and a reply whose sender and target IP are both the VIP; RFC 5227 §3
  calls the request form an ARP Announcement; some hosts only update on the reply form).
- Neighbour discovery (RFC 4861): neighbour solicitations and advertisements in ICMPv6
  (hop limit 255, checksum over the IPv6 pseudo-header), with the source / target
  link-layer address options. An unsolicited advertisement goes to all nodes (ff02::1)
  with the override flag set, so neighbours replace the old owner's MAC (§7.2.6).

`answer(frame, mac, owned)` is the responder's whole decision: the reply to send, or None
for anything that is not a request for an owned VIP.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Collection
from dataclasses import dataclass

from herald.dataplane.model import IPAddress

ETH_P_ARP = 0x0806
ETH_P_IPV4 = 0x0800
ETH_P_IPV6 = 0x86DD
BROADCAST = b"\xff" * 6
ZERO_MAC = b"\x00" * 6
ALL_NODES = ipaddress.IPv6Address("ff02::1")
UNSPECIFIED = ipaddress.IPv6Address("::")
# Ethernet's minimum frame without its checksum; a NIC pads shorter frames, a veth does not,
# so frames are padded here and look the same on every link.
MIN_FRAME = 60

ARP_REQUEST = 1
ARP_REPLY = 2
ICMPV6 = 58
ND_NEIGHBOR_SOLICIT = 135
ND_NEIGHBOR_ADVERT = 136
OPT_SOURCE_LLADDR = 1
OPT_TARGET_LLADDR = 2
NA_ROUTER = 0x80
NA_SOLICITED = 0x40
NA_OVERRIDE = 0x20
ND_HOP_LIMIT = 255

_ETHERNET = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV6 = struct.Struct("!IHBB16s16s")
_ND = struct.Struct("!BBHB3x16s")  # type, code, checksum, flags, reserved, target


# -- Ethernet ----------------------------------------------------------------------------


def ethernet(destination: bytes, source: bytes, ethertype: int, payload: bytes) -> bytes:
    frame = _ETHERNET.pack(destination, source, ethertype) + payload
    return frame.ljust(MIN_FRAME, b"\x00")


def mac_text(mac: bytes) -> str:
    return ":".join(f"{octet:02x}" for octet in mac)


def parse_mac(text: str) -> bytes:
    octets = bytes(int(part, 16) for part in text.split(":"))
    if len(octets) != 6:
        raise ValueError(f"{text!r} is not a MAC address such as 02:00:00:00:00:01")
    return octets


# -- ARP ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Arp:
    operation: int
    sender_mac: bytes
    sender_ip: ipaddress.IPv4Address
    target_mac: bytes
    target_ip: ipaddress.IPv4Address


def arp_frame(arp: Arp, destination: bytes = BROADCAST) -> bytes:
    payload = _ARP.pack(
        1,  # hardware: Ethernet
        ETH_P_IPV4,
        6,
        4,
        arp.operation,
        arp.sender_mac,
        arp.sender_ip.packed,
        arp.target_mac,
        arp.target_ip.packed,
    )
    return ethernet(destination, arp.sender_mac, ETH_P_ARP, payload)


def gratuitous_arp(vip: ipaddress.IPv4Address, mac: bytes, reply: bool) -> bytes:
    """Both forms are broadcast with the VIP as sender and target. The request form leaves
    the target MAC zero (RFC 5227); the reply form names the owner's MAC there, as Linux's
    `arping -A` does."""
    if reply:
        return arp_frame(Arp(ARP_REPLY, mac, vip, mac, vip))
    return arp_frame(Arp(ARP_REQUEST, mac, vip, ZERO_MAC, vip))


def parse_arp(frame: bytes) -> Arp | None:
    """The ARP packet of an Ethernet/IPv4 ARP frame, or None for anything else."""
    if len(frame) < _ETHERNET.size + _ARP.size:
        return None
    _, _, ethertype = _ETHERNET.unpack_from(frame)
    if ethertype != ETH_P_ARP:
        return None
    hardware, protocol, hlen, plen, operation, smac, sip, tmac, tip = _ARP.unpack_from(
        frame, _ETHERNET.size
    )
    if (hardware, protocol, hlen, plen) != (1, ETH_P_IPV4, 6, 4):
        return None
    return Arp(operation, smac, ipaddress.IPv4Address(sip), tmac, ipaddress.IPv4Address(tip))


# -- IPv6 neighbour discovery ------------------------------------------------------------


@dataclass(frozen=True)
class NeighborSolicitation:
    source: ipaddress.IPv6Address  # :: for duplicate address detection
    target: ipaddress.IPv6Address
    # Where to answer: the source link-layer address option, else the frame's source.
    reply_mac: bytes


def solicited_node(address: ipaddress.IPv6Address) -> ipaddress.IPv6Address:
    """ff02::1:ffXX:XXXX, the group a solicitation for `address` is sent to."""
    return ipaddress.IPv6Address(
        int(ipaddress.IPv6Address("ff02::1:ff00:0")) | (int(address) & 0xFFFFFF)
    )


def multicast_mac(group: ipaddress.IPv6Address) -> bytes:
    """33:33 and the group's last 32 bits (RFC 2464 §7)."""
    return b"\x33\x33" + group.packed[-4:]


def neighbor_solicitation(
    target: ipaddress.IPv6Address, source: ipaddress.IPv6Address, mac: bytes
) -> bytes:
    group = solicited_node(target)
    options = b"" if source == UNSPECIFIED else _lladdr_option(OPT_SOURCE_LLADDR, mac)
    return _icmpv6_frame(
        multicast_mac(group), mac, source, group, ND_NEIGHBOR_SOLICIT, 0, target, options
    )


def neighbor_advertisement(
    target: ipaddress.IPv6Address,
    mac: bytes,
    destination: ipaddress.IPv6Address = ALL_NODES,
    destination_mac: bytes | None = None,
    solicited: bool = False,
) -> bytes:
    """An advertisement of `target` at `mac`, from `target` itself, with the override flag
    and the target link-layer address option; to all nodes unless told otherwise."""
    flags = NA_OVERRIDE | (NA_SOLICITED if solicited else 0)
    if destination_mac is None:
        destination_mac = multicast_mac(destination)
    return _icmpv6_frame(
        destination_mac,
        mac,
        target,
        destination,
        ND_NEIGHBOR_ADVERT,
        flags,
        target,
        _lladdr_option(OPT_TARGET_LLADDR, mac),
    )


def parse_neighbor_solicitation(frame: bytes) -> NeighborSolicitation | None:
    """A valid neighbour solicitation (RFC 4861 §7.1.1 checks), or None."""
    start = _ETHERNET.size + _IPV6.size
    if len(frame) < start + _ND.size:
        return None
    _, eth_source, ethertype = _ETHERNET.unpack_from(frame)
    _, length, next_header, hop_limit, src, dst = _IPV6.unpack_from(frame, _ETHERNET.size)
    if ethertype != ETH_P_IPV6 or next_header != ICMPV6 or hop_limit != ND_HOP_LIMIT:
        return None
    icmp = frame[start : start + length]
    if len(icmp) != length or length < _ND.size:
        return None
    kind, code, _, _, target = _ND.unpack_from(icmp)
    source, destination = ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst)
    target_address = ipaddress.IPv6Address(target)
    if kind != ND_NEIGHBOR_SOLICIT or code != 0 or target_address.is_multicast:
        return None
    if icmpv6_checksum(source, destination, icmp) != 0:
        return None
    options = _options(icmp[_ND.size :])
    if options is None:
        return None
    lladdr = options.get(OPT_SOURCE_LLADDR)
    if source == UNSPECIFIED and (
        lladdr is not None or destination != solicited_node(target_address)
    ):
        return None
    return NeighborSolicitation(source, target_address, lladdr or eth_source)


def icmpv6_checksum(
    source: ipaddress.IPv6Address, destination: ipaddress.IPv6Address, message: bytes
) -> int:
    """The Internet checksum over the pseudo-header and `message`; 0 when `message`
    already holds a correct checksum."""
    pseudo = source.packed + destination.packed + struct.pack("!I3xB", len(message), ICMPV6)
    data = pseudo + message + b"\x00" * (len(message) % 2)
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _icmpv6_frame(
    destination_mac: bytes,
    source_mac: bytes,
    source: ipaddress.IPv6Address,
    destination: ipaddress.IPv6Address,
    kind: int,
    flags: int,
    target: ipaddress.IPv6Address,
    options: bytes,
) -> bytes:
    message = _ND.pack(kind, 0, 0, flags, target.packed) + options
    checksum = icmpv6_checksum(source, destination, message)
    message = message[:2] + struct.pack("!H", checksum) + message[4:]
    header = _IPV6.pack(
        6 << 28, len(message), ICMPV6, ND_HOP_LIMIT, source.packed, destination.packed
    )
    return ethernet(destination_mac, source_mac, ETH_P_IPV6, header + message)


def _lladdr_option(kind: int, mac: bytes) -> bytes:
    return bytes((kind, 1)) + mac  # length in units of 8 bytes


def _options(data: bytes) -> dict[int, bytes] | None:
    """Link-layer address options by type; None when the option list is malformed (a zero
    length must make the packet be dropped, §7.1.1)."""
    found: dict[int, bytes] = {}
    while data:
        if len(data) < 2 or data[1] == 0 or len(data) < data[1] * 8:
            return None
        kind, size = data[0], data[1] * 8
        if kind in (OPT_SOURCE_LLADDR, OPT_TARGET_LLADDR) and size == 8:
            found[kind] = data[2:8]
        data = data[size:]
    return found


# -- the owner's answer ------------------------------------------------------------------


def answer(frame: bytes, mac: bytes, owned: Collection[IPAddress]) -> bytes | None:
    """The reply an owner of `owned` sends to `frame` from interface address `mac`: an ARP
    reply to an ARP request, a neighbour advertisement to a solicitation, for an owned
    address only. Everything else, including another node's gratuitous ARP for a VIP
    (sender IP equal to target IP), gets None."""
    arp = parse_arp(frame)
    if arp is not None:
        if (
            arp.operation != ARP_REQUEST
            or arp.target_ip not in owned
            or arp.sender_ip == arp.target_ip
            or arp.sender_mac == mac
        ):
            return None
        reply = Arp(ARP_REPLY, mac, arp.target_ip, arp.sender_mac, arp.sender_ip)
        return arp_frame(reply, destination=arp.sender_mac)
    solicitation = parse_neighbor_solicitation(frame)
    if solicitation is None or solicitation.target not in owned or solicitation.reply_mac == mac:
        return None
    if solicitation.source == UNSPECIFIED:
        # Duplicate address detection by someone else: tell all nodes the address is taken.
        return neighbor_advertisement(solicitation.target, mac)
    return neighbor_advertisement(
        solicitation.target,
        mac,
        destination=solicitation.source,
        destination_mac=solicitation.reply_mac,
        solicited=True,
    )
