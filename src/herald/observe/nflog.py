"""NFLOG over netlink, sans-IO: the configuration messages the agent sends and a decoder of
the packet messages the kernel returns (pyroute2 0.9 has no NFLOG support); and the
conntrack entry of a flow, attached to the message (NFULA_CT) or asked of ctnetlink by
one of its tuples (`conntrack_request`): both carry the same CTA_* attributes.

Bytes in, `LoggedPacket`s out. A message is an nlmsghdr, an nfgenmsg (family, version,
group) and netlink attributes (linux/netfilter/nfnetlink_log.h). The attributes used:
NFULA_PACKET_HDR (the hook), NFULA_TIMESTAMP, NFULA_PREFIX (herald's verdict), NFULA_SEQ
(to count what the kernel could not deliver), NFULA_PAYLOAD (the network header onwards:
protocol, addresses, ports, TCP flags), NFULA_CT (the conntrack entry: original and reply
tuples, so the chosen backend is known) and NFULA_CT_INFO (which direction the packet
went). Anything malformed raises `NflogError` naming the attribute; unknown attributes are
skipped.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from herald.addresses import IPAddress

NETLINK_NETFILTER = 12
NFNL_SUBSYS_ULOG = 4
NFULNL_MSG_PACKET = 0
NFULNL_MSG_CONFIG = 1
NLMSG_NOOP, NLMSG_ERROR, NLMSG_DONE, NLMSG_OVERRUN = 1, 2, 3, 4
NLM_F_REQUEST, NLM_F_ACK = 0x1, 0x4
NLA_TYPE_MASK = 0x3FFF

# Configuration attributes and values.
NFULA_CFG_CMD, NFULA_CFG_MODE, NFULA_CFG_NLBUFSIZ = 1, 2, 3
NFULA_CFG_TIMEOUT, NFULA_CFG_QTHRESH, NFULA_CFG_FLAGS = 4, 5, 6
CMD_BIND, CMD_UNBIND = 1, 2
COPY_PACKET = 2
FLAG_SEQ, FLAG_CONNTRACK = 0x1, 0x4

# Packet attributes.
NFULA_PACKET_HDR, NFULA_TIMESTAMP, NFULA_PAYLOAD, NFULA_PREFIX = 1, 3, 9, 10
NFULA_SEQ, NFULA_CT, NFULA_CT_INFO = 12, 18, 19

# ctnetlink: a GET of one entry, answered by a NEW message.
NFNL_SUBSYS_CTNETLINK = 1
IPCTNL_MSG_CT_NEW, IPCTNL_MSG_CT_GET = 0, 1
NLA_F_NESTED = 0x8000
AF_INET, AF_INET6 = 2, 10

# Conntrack attributes (linux/netfilter/nfnetlink_conntrack.h) inside NFULA_CT.
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY, CTA_STATUS, CTA_ID = 1, 2, 3, 12
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3
# enum ip_conntrack_info: values from IP_CT_IS_REPLY on are replies.
IP_CT_IS_REPLY = 3

HOOKS = {0: "prerouting", 1: "input", 2: "forward", 3: "output", 4: "postrouting"}
PROTOCOLS = {1: "ICMP", 6: "TCP", 17: "UDP", 58: "ICMPv6", 132: "SCTP"}
# TCP header flag bits, in the order Hubble prints them.
TCP_FLAGS = (
    (0x02, "SYN"),
    (0x10, "ACK"),
    (0x08, "PSH"),
    (0x01, "FIN"),
    (0x04, "RST"),
    (0x20, "URG"),
    (0x40, "ECE"),
    (0x80, "CWR"),
)


class NflogError(ValueError):
    """A message that does not decode; the text names the attribute or header."""


@dataclass(frozen=True)
class Tuple:
    """One direction of a conntrack entry."""

    source: IPAddress
    destination: IPAddress
    protocol: int
    source_port: int | None = None
    destination_port: int | None = None

    @property
    def version(self) -> int:
        return self.source.version


@dataclass(frozen=True)
class LoggedPacket:
    """One NFLOG packet message, decoded."""

    group: int
    hook: str
    prefix: str
    timestamp: float | None  # the kernel's, seconds; None when the packet had none
    seq: int | None
    protocol: int
    source: IPAddress
    destination: IPAddress
    source_port: int | None
    destination_port: int | None
    tcp_flags: tuple[str, ...]
    original: Tuple | None  # conntrack tuples, when the entry was attached
    reply: Tuple | None
    reply_direction: bool  # the packet went in the conntrack entry's reply direction

    @property
    def flow(self) -> Tuple:
        """The packet's own tuple (before NAT, as herald logs it)."""
        return Tuple(
            self.source, self.destination, self.protocol, self.source_port, self.destination_port
        )


# -- configuration ----------------------------------------------------------------------


def attribute(kind: int, value: bytes) -> bytes:
    header = struct.pack("=HH", 4 + len(value), kind)
    return header + value + b"\0" * (-len(value) % 4)


def config_message(group: int, attributes: bytes, seq: int, family: int = 0) -> bytes:
    """An NFULNL_MSG_CONFIG request for `group`, asking for an acknowledgement."""
    body = struct.pack("=BB", family, 0) + struct.pack(">H", group) + attributes
    kind = (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_CONFIG
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST | NLM_F_ACK, seq, 0) + body


def bind_message(group: int) -> bytes:
    """Bind `group` to the sending socket (the kernel unbinds it when the socket closes, so
    a crashed agent leaves no binding behind)."""
    return config_message(group, attribute(NFULA_CFG_CMD, bytes([CMD_BIND])), 1)


def mode_message(
    group: int, copy_range: int, queue_threshold: int, timeout_cs: int, with_conntrack: bool
) -> bytes:
    """Copy the first `copy_range` bytes, batch up to `queue_threshold` packets or
    `timeout_cs` hundredths of a second, attach the sequence number and (`with_conntrack`)
    the conntrack entry: refused with EOPNOTSUPP by kernels built without
    CONFIG_NETFILTER_NETLINK_GLUE_CT."""
    flags = FLAG_SEQ | (FLAG_CONNTRACK if with_conntrack else 0)
    return config_message(
        group,
        attribute(NFULA_CFG_MODE, struct.pack(">IBB", copy_range, COPY_PACKET, 0))
        + attribute(NFULA_CFG_QTHRESH, struct.pack(">I", queue_threshold))
        + attribute(NFULA_CFG_TIMEOUT, struct.pack(">I", timeout_cs))
        + attribute(NFULA_CFG_FLAGS, struct.pack(">H", flags)),
        2,
    )


def conntrack_request(flow: Tuple, reply: bool, seq: int) -> bytes:
    """A ctnetlink GET of the entry with `flow` as its original (or, `reply`, its reply)
    tuple."""
    if flow.version == 4:
        family, src_kind, dst_kind = AF_INET, CTA_IP_V4_SRC, CTA_IP_V4_DST
    else:
        family, src_kind, dst_kind = AF_INET6, CTA_IP_V6_SRC, CTA_IP_V6_DST
    ip = attribute(src_kind, flow.source.packed) + attribute(dst_kind, flow.destination.packed)
    proto = attribute(CTA_PROTO_NUM, bytes([flow.protocol]))
    if flow.source_port is not None and flow.destination_port is not None:
        proto += attribute(CTA_PROTO_SRC_PORT, struct.pack(">H", flow.source_port))
        proto += attribute(CTA_PROTO_DST_PORT, struct.pack(">H", flow.destination_port))
    tuple_ = attribute(CTA_TUPLE_IP | NLA_F_NESTED, ip) + attribute(
        CTA_TUPLE_PROTO | NLA_F_NESTED, proto
    )
    which = CTA_TUPLE_REPLY if reply else CTA_TUPLE_ORIG
    body = struct.pack("=BBH", family, 0, 0) + attribute(which | NLA_F_NESTED, tuple_)
    kind = (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_GET
    return struct.pack("=IHHII", 16 + len(body), kind, NLM_F_REQUEST, seq, 0) + body


def is_conntrack(message: Message) -> bool:
    return message.kind == (NFNL_SUBSYS_CTNETLINK << 8) | IPCTNL_MSG_CT_NEW


def decode_conntrack(message: Message) -> tuple[Tuple | None, Tuple | None]:
    """The original and reply tuples of a ctnetlink entry message."""
    if len(message.body) < 4:
        raise NflogError("ctnetlink nfgenmsg: truncated")
    return conntrack(message.body[4:])


# -- decoding ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Message:
    kind: int
    flags: int
    seq: int
    body: bytes


def messages(data: bytes) -> Iterator[Message]:
    """The netlink messages of one datagram."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind, flags, seq, _ = struct.unpack_from("=IHHII", data, offset)
        if length < 16 or offset + length > len(data):
            raise NflogError(f"nlmsghdr: length {length} at offset {offset} overruns")
        yield Message(kind, flags, seq, data[offset + 16 : offset + length])
        offset += (length + 3) & ~3


def error_code(message: Message) -> int:
    """The (negative) errno of an NLMSG_ERROR; 0 is an acknowledgement."""
    if len(message.body) < 4:
        raise NflogError("nlmsgerr: truncated")
    code: int = struct.unpack_from("=i", message.body)[0]
    return code


def attributes(data: bytes, where: str) -> Iterator[tuple[int, bytes]]:
    offset = 0
    while offset + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, offset)
        if length < 4 or offset + length > len(data):
            raise NflogError(f"{where}: attribute {kind & NLA_TYPE_MASK} length {length} overruns")
        yield kind & NLA_TYPE_MASK, data[offset + 4 : offset + length]
        offset += (length + 3) & ~3


def is_packet(message: Message) -> bool:
    return message.kind == (NFNL_SUBSYS_ULOG << 8) | NFULNL_MSG_PACKET


def decode_packet(message: Message) -> LoggedPacket:
    """One NFULNL_MSG_PACKET message."""
    if len(message.body) < 4:
        raise NflogError("nfgenmsg: truncated")
    group = struct.unpack_from(">H", message.body, 2)[0]
    found = dict(attributes(message.body[4:], "nflog"))
    header = found.get(NFULA_PACKET_HDR)
    if header is None or len(header) < 3:
        raise NflogError("NFULA_PACKET_HDR: missing or truncated")
    payload = found.get(NFULA_PAYLOAD)
    if payload is None:
        raise NflogError("NFULA_PAYLOAD: missing (the group must copy packets)")
    protocol, source, destination, sport, dport, flags = network_header(payload)
    original = reply = None
    if NFULA_CT in found:
        original, reply = conntrack(found[NFULA_CT])
    info = found.get(NFULA_CT_INFO)
    return LoggedPacket(
        group=group,
        hook=HOOKS.get(header[2], str(header[2])),
        prefix=found.get(NFULA_PREFIX, b"").split(b"\0", 1)[0].decode(errors="replace"),
        timestamp=timestamp(found.get(NFULA_TIMESTAMP)),
        seq=u32(found[NFULA_SEQ], "NFULA_SEQ") if NFULA_SEQ in found else None,
        protocol=protocol,
        source=source,
        destination=destination,
        source_port=sport,
        destination_port=dport,
        tcp_flags=flags,
        original=original,
        reply=reply,
        reply_direction=info is not None and u32(info, "NFULA_CT_INFO") >= IP_CT_IS_REPLY,
    )


def u32(value: bytes, where: str) -> int:
    if len(value) < 4:
        raise NflogError(f"{where}: truncated")
    result: int = struct.unpack_from(">I", value)[0]
    return result


def timestamp(value: bytes | None) -> float | None:
    if value is None:
        return None
    if len(value) < 16:
        raise NflogError("NFULA_TIMESTAMP: truncated")
    seconds: int
    micros: int
    seconds, micros = struct.unpack_from(">QQ", value)
    return seconds + micros / 1e6


Header = tuple[int, IPAddress, IPAddress, int | None, int | None, tuple[str, ...]]


def network_header(payload: bytes) -> Header:
    """Protocol, addresses, ports and TCP flags of an IPv4 or IPv6 packet."""
    if not payload:
        raise NflogError("NFULA_PAYLOAD: empty")
    version = payload[0] >> 4
    source: IPAddress
    destination: IPAddress
    if version == 4:
        if len(payload) < 20:
            raise NflogError("NFULA_PAYLOAD: truncated IPv4 header")
        header_length = (payload[0] & 0x0F) * 4
        protocol = payload[9]
        source = ipaddress.IPv4Address(payload[12:16])
        destination = ipaddress.IPv4Address(payload[16:20])
        # Only the first fragment carries the transport header.
        fragment_offset = struct.unpack_from(">H", payload, 6)[0] & 0x1FFF
        transport = payload[header_length:] if fragment_offset == 0 else b""
    elif version == 6:
        if len(payload) < 40:
            raise NflogError("NFULA_PAYLOAD: truncated IPv6 header")
        protocol = payload[6]
        source = ipaddress.IPv6Address(payload[8:24])
        destination = ipaddress.IPv6Address(payload[24:40])
        # Extension headers are not walked: their flows show without ports.
        transport = payload[40:]
    else:
        raise NflogError(f"NFULA_PAYLOAD: IP version {version}")
    sport = dport = None
    flags: tuple[str, ...] = ()
    if protocol in (6, 17, 132) and len(transport) >= 4:
        sport, dport = struct.unpack_from(">HH", transport)
    if protocol == 6 and len(transport) >= 14:
        bits = transport[13]
        flags = tuple(name for bit, name in TCP_FLAGS if bits & bit)
    return protocol, source, destination, sport, dport, flags


def conntrack(data: bytes) -> tuple[Tuple | None, Tuple | None]:
    found = dict(attributes(data, "NFULA_CT"))
    return (
        ct_tuple(found[CTA_TUPLE_ORIG], "CTA_TUPLE_ORIG") if CTA_TUPLE_ORIG in found else None,
        ct_tuple(found[CTA_TUPLE_REPLY], "CTA_TUPLE_REPLY") if CTA_TUPLE_REPLY in found else None,
    )


def ct_tuple(data: bytes, where: str) -> Tuple:
    found = dict(attributes(data, where))
    if CTA_TUPLE_IP not in found or CTA_TUPLE_PROTO not in found:
        raise NflogError(f"{where}: needs CTA_TUPLE_IP and CTA_TUPLE_PROTO")
    ip = dict(attributes(found[CTA_TUPLE_IP], f"{where}.CTA_TUPLE_IP"))
    source: IPAddress
    destination: IPAddress
    if CTA_IP_V4_SRC in ip and CTA_IP_V4_DST in ip:
        source = ipaddress.IPv4Address(ip[CTA_IP_V4_SRC][:4])
        destination = ipaddress.IPv4Address(ip[CTA_IP_V4_DST][:4])
    elif CTA_IP_V6_SRC in ip and CTA_IP_V6_DST in ip:
        source = ipaddress.IPv6Address(ip[CTA_IP_V6_SRC][:16])
        destination = ipaddress.IPv6Address(ip[CTA_IP_V6_DST][:16])
    else:
        raise NflogError(f"{where}.CTA_TUPLE_IP: no source and destination address")
    proto = dict(attributes(found[CTA_TUPLE_PROTO], f"{where}.CTA_TUPLE_PROTO"))
    if CTA_PROTO_NUM not in proto or not proto[CTA_PROTO_NUM]:
        raise NflogError(f"{where}.CTA_TUPLE_PROTO: no CTA_PROTO_NUM")
    return Tuple(
        source=source,
        destination=destination,
        protocol=proto[CTA_PROTO_NUM][0],
        source_port=port(proto.get(CTA_PROTO_SRC_PORT)),
        destination_port=port(proto.get(CTA_PROTO_DST_PORT)),
    )


def port(value: bytes | None) -> int | None:
    if value is None or len(value) < 2:
        return None
    result: int = struct.unpack_from(">H", value)[0]
    return result
