from __future__ import annotations

import struct
from ipaddress import ip_address

import pytest

from herald.observe import nflog

from .goldens import ctnetlink, datagrams, packets

CLIENT, VIP, POD, NODE = "198.51.100.10", "203.0.113.10", "198.18.2.2", "192.0.2.21"


def test_captured_session_decodes_packet_by_packet() -> None:
    decoded = packets()
    assert [p.seq for p in decoded] == list(range(24))
    assert {p.group for p in decoded} == {7130}
    assert {p.hook for p in decoded} == {"prerouting"}
    first = [p for p in decoded if 46648 in (p.source_port, p.destination_port)]
    assert [(p.prefix, p.tcp_flags) for p in first] == [
        ("herald FORWARDED", ("SYN",)),
        ("herald FORWARDED reply", ("SYN", "ACK")),
        ("herald FORWARDED", ("ACK",)),
        ("herald FORWARDED", ("ACK", "PSH")),
        ("herald FORWARDED reply", ("ACK",)),
        ("herald FORWARDED reply", ("ACK", "PSH")),
        ("herald FORWARDED", ("ACK",)),
        ("herald FORWARDED reply", ("ACK", "FIN")),
        ("herald FORWARDED", ("ACK", "FIN")),
        ("herald FORWARDED reply", ("ACK",)),
    ]
    syn, synack = first[0], first[1]
    # Logged before NAT: a request as the client sent it, a reply as the backend sent it.
    assert (str(syn.source), syn.source_port, str(syn.destination), syn.destination_port) == (
        CLIENT, 46648, VIP, 80,
    )  # fmt: skip
    assert (str(synack.source), synack.source_port, str(synack.destination)) == (POD, 8080, NODE)
    assert syn.protocol == 6 and syn.original is None and syn.reply is None
    assert syn.timestamp is not None and synack.timestamp is not None
    assert 0 <= synack.timestamp - syn.timestamp < 1


def test_captured_refusals_carry_their_reason() -> None:
    refused = [(p.prefix, str(p.destination), p.destination_port) for p in packets()[20:]]
    assert refused == [
        ("herald DROPPED no-usable-backend", "203.0.113.11", 80),
        ("herald DROPPED no-service-port", "203.0.113.10", 81),
        ("herald DROPPED source-range-denied", "203.0.113.12", 80),
        ("herald DROPPED source-range-denied", "203.0.113.12", 80),
    ]


def test_batches_end_with_done_and_only_packets_decode() -> None:
    kinds = [m.kind for d in datagrams() for m in nflog.messages(d)]
    assert kinds.count(nflog.NLMSG_DONE) == 3
    assert len(kinds) == 24 + 3


@pytest.mark.parametrize("name", ["by-original", "by-reply"])
def test_captured_conntrack_entry_names_the_backend(name: str) -> None:
    message = ctnetlink(name)
    assert nflog.is_conntrack(message)
    original, reply = nflog.decode_conntrack(message)
    assert original == nflog.Tuple(ip_address(CLIENT), ip_address(VIP), 6, 46652, 80)
    assert reply == nflog.Tuple(ip_address(POD), ip_address(NODE), 6, 8080, 46652)


def test_missing_conntrack_entry_is_enoent() -> None:
    message = ctnetlink("missing")
    assert message.kind == nflog.NLMSG_ERROR
    assert nflog.error_code(message) == -2


def test_conntrack_request_carries_the_tuple_it_asks_for() -> None:
    flow = nflog.Tuple(ip_address(POD), ip_address(NODE), 6, 8080, 46652)
    (message,) = nflog.messages(nflog.conntrack_request(flow, reply=True, seq=8))
    assert message.seq == 8
    found = dict(nflog.attributes(message.body[4:], "request"))
    assert list(found) == [nflog.CTA_TUPLE_REPLY]
    assert nflog.ct_tuple(found[nflog.CTA_TUPLE_REPLY], "request") == flow
    # The kernel's answer to this same request (by-reply.hex) echoes the tuple back.
    assert nflog.decode_conntrack(ctnetlink("by-reply"))[1] == flow


def with_attached_conntrack(message: nflog.Message, entry: nflog.Message, info: int) -> bytes:
    """A packet message as a kernel with CONFIG_NETFILTER_NETLINK_GLUE_CT sends it: the
    entry's attributes nested in NFULA_CT, and NFULA_CT_INFO."""
    body = (
        message.body
        + nflog.attribute(nflog.NFULA_CT | nflog.NLA_F_NESTED, entry.body[4:])
        + nflog.attribute(nflog.NFULA_CT_INFO, struct.pack(">I", info))
    )
    return struct.pack("=IHHII", 16 + len(body), message.kind, 0, 0, 0) + body


def test_attached_conntrack_entry_decodes() -> None:
    (message,) = [
        m
        for d in datagrams()
        for m in nflog.messages(d)
        if nflog.is_packet(m) and nflog.decode_packet(m).seq == 11  # the second SYN-ACK
    ]
    data = with_attached_conntrack(message, ctnetlink("by-original"), info=3)
    (composed,) = nflog.messages(data)
    packet = nflog.decode_packet(composed)
    assert packet.reply_direction  # IP_CT_ESTABLISHED_REPLY
    assert packet.original is not None and packet.reply is not None
    assert str(packet.reply.source) == POD and packet.original.source_port == 46652


def test_every_truncation_decodes_or_says_what_is_wrong() -> None:
    data = datagrams()[0]
    first = next(nflog.messages(data))
    whole = struct.pack("=IHHII", 16 + len(first.body), first.kind, 0, 0, 0) + first.body
    for cut in range(len(whole)):
        broken = struct.pack("=I", cut) + whole[4:cut] if cut >= 16 else whole[:cut]
        try:
            for message in nflog.messages(broken):
                nflog.decode_packet(message)
        except nflog.NflogError as err:
            assert str(err)


def test_payload_of_other_ip_version_is_refused() -> None:
    with pytest.raises(nflog.NflogError, match="IP version 5"):
        nflog.network_header(bytes([0x50]) + bytes(39))


def test_ipv6_tcp_header() -> None:
    src, dst = ip_address("2001:db8:100::10"), ip_address("2001:db8:113::10")
    header = bytes([0x60, 0, 0, 0, 0, 20, 6, 64]) + src.packed + dst.packed
    tcp = struct.pack(">HHIIBB", 40000, 80, 1, 0, 5 << 4, 0x12) + bytes(6)
    assert nflog.network_header(header + tcp) == (6, src, dst, 40000, 80, ("SYN", "ACK"))


def test_bind_and_mode_messages() -> None:
    (bind,) = nflog.messages(nflog.bind_message(7130))
    assert bind.kind == (nflog.NFNL_SUBSYS_ULOG << 8) | nflog.NFULNL_MSG_CONFIG
    assert struct.unpack_from(">H", bind.body, 2)[0] == 7130
    assert dict(nflog.attributes(bind.body[4:], "cfg")) == {nflog.NFULA_CFG_CMD: b"\x01"}
    (mode,) = nflog.messages(nflog.mode_message(7130, 128, 32, 5, with_conntrack=False))
    found = dict(nflog.attributes(mode.body[4:], "cfg"))
    assert found[nflog.NFULA_CFG_FLAGS][:2] == struct.pack(">H", nflog.FLAG_SEQ)
    assert found[nflog.NFULA_CFG_MODE][:5] == struct.pack(">IB", 128, nflog.COPY_PACKET)
