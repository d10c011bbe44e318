"""The ARP/NDP responder of one interface: answers for the VIPs this node owns there, and
announces a VIP when it takes it over (the imperative shell around `packets`).

Sockets, all bound to the interface:
- an AF_PACKET socket for ARP (EtherType 0x0806): requests in, replies and gratuitous ARP
  out;
- an AF_PACKET socket for IPv6 with a classic BPF filter that keeps only ICMPv6 neighbour
  solicitations (type 135), so the rest of the IPv6 traffic never reaches Python;
- a UDP/IPv6 socket that joins, per owned IPv6 VIP, the VIP's solicited-node group
  (ff02::1:ffXX:XXXX). The VIP is not an address of the node, so nothing else joins that
  group: without the membership a NIC's multicast filter drops the solicitation before any
  socket sees it, and a switch doing MLD snooping never forwards it to the node. Joining at
  the IP level does both: the kernel programs the NIC filter (33:33:ff:XX:XX:XX) and sends
  MLD reports. The kernel itself ignores the solicitation (not its address); this socket
  answers it.

The VIP is deliberately not a local address of the node. If it were, the kernel would
answer ARP/NDP for it on every node (and take the traffic locally). The owner receives
frames for the VIP because it answered with its own MAC; the datapath's nftables rules in
prerouting translate them to a backend before any routing decision, and reject every other
port of the VIP, so nothing is routed back out. This needs ip_forward, which the datapath
needs anyway.

Ownership changes are immediate: `set_owned` stops answering for removed VIPs at once (and
cancels their pending announcements) and announces added ones at once, then again after
each delay of `ANNOUNCE_AT`, so a neighbour that missed one frame still moves. The
announcer schedules announcements itself (`ownership.Ownership` decides when a node may
announce, e.g. not while a peer has just come back): it passes `announce=False` and sends
each announcement with `send_announcements`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import socket
import struct
from collections import Counter
from collections.abc import Iterable

from herald.dataplane.model import IPAddress
from herald.l2.ownership import ANNOUNCE_AT
from herald.l2.packets import (
    ETH_P_ARP,
    ETH_P_IPV6,
    ICMPV6,
    ND_NEIGHBOR_SOLICIT,
    answer,
    gratuitous_arp,
    mac_text,
    neighbor_advertisement,
    solicited_node,
)
from herald.l2.policy import address_order

log = logging.getLogger(__name__)

__all__ = ["ANNOUNCE_AT", "Responder"]
# Frames read per wakeup: bounded, so a flood cannot starve the event loop.
READ_BATCH = 64
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26

# Keep ICMPv6 neighbour solicitations in untagged frames without extension headers (as
# RFC 4861 senders emit them): EtherType at 12, next header at 20, ICMPv6 type at 54.
_NS_FILTER = (
    (0x28, 0, 0, 12),  # ldh [12]
    (0x15, 0, 5, ETH_P_IPV6),  # jeq IPv6, else drop
    (0x30, 0, 0, 20),  # ldb [20]
    (0x15, 0, 3, ICMPV6),  # jeq ICMPv6, else drop
    (0x30, 0, 0, 54),  # ldb [54]
    (0x15, 0, 1, ND_NEIGHBOR_SOLICIT),  # jeq NS, else drop
    (0x06, 0, 0, 0xFFFF),  # accept
    (0x06, 0, 0, 0),  # drop
)


class Responder:
    def __init__(self, interface: str, announce_at: Iterable[float] = ANNOUNCE_AT) -> None:
        self.interface = interface
        self.announce_at = tuple(announce_at)
        self.owned: frozenset[IPAddress] = frozenset()
        self.mac = b""
        self.answered = 0
        # By EtherType: a frame is sent on the socket bound to its protocol, so the kernel
        # marks it with the right one (tc, offloads and taps look at that mark).
        self._sockets: dict[int, socket.socket] = {}
        self._groups: Counter[ipaddress.IPv6Address] = Counter()
        self._membership: socket.socket | None = None
        self._pending: dict[IPAddress, list[asyncio.TimerHandle]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    def open(self) -> None:
        """Opens the sockets and starts answering (nothing is owned yet)."""
        self._loop = asyncio.get_running_loop()
        arp = self._packet_socket(ETH_P_ARP)
        ndp = self._packet_socket(ETH_P_IPV6)
        _attach_filter(ndp, _NS_FILTER)
        # Frames that arrived between bind and attach passed no filter: drop them.
        _drain(ndp)
        self.mac = arp.getsockname()[4]
        self._membership = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        log.info("event=l2_responder_open interface=%s mac=%s", self.interface, mac_text(self.mac))

    def set_owned(self, vips: Iterable[IPAddress], announce: bool = True) -> None:
        """Answers for exactly `vips` from now on; with `announce`, the added ones are
        announced on the schedule."""
        owned = frozenset(vips)
        removed, added = self.owned - owned, owned - self.owned
        # Stop first: not one more answer for a VIP that is no longer ours.
        self.owned = owned
        for vip in sorted(removed, key=address_order):
            for handle in self._pending.pop(vip, []):
                handle.cancel()
            if isinstance(vip, ipaddress.IPv6Address):
                self._leave(solicited_node(vip))
            log.info("event=l2_released interface=%s vip=%s", self.interface, vip)
        for vip in sorted(added, key=address_order):
            if isinstance(vip, ipaddress.IPv6Address):
                self._join(solicited_node(vip))
            log.info("event=l2_owned interface=%s vip=%s", self.interface, vip)
        if announce:
            self.announce(added)

    def send_announcements(self, vips: Iterable[IPAddress]) -> None:
        """Announces the owned ones of `vips` once, now (the caller keeps the schedule)."""
        for vip in sorted(set(vips) & self.owned, key=address_order):
            self._announce(vip)

    def announce(self, vips: Iterable[IPAddress]) -> None:
        """Announces owned `vips` now and at each later delay of the schedule (restarting
        it): on takeover, and when another node that also answered for a VIP stops."""
        for vip in sorted(set(vips) & self.owned, key=address_order):
            for handle in self._pending.pop(vip, []):
                handle.cancel()
            self._announce(vip)
            self._pending[vip] = [
                self._running_loop().call_later(delay, self._announce, vip)
                for delay in self.announce_at
                if delay > 0
            ]

    def close(self) -> None:
        self.set_owned(())
        for sock in self._sockets.values():
            if self._loop is not None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        self._sockets.clear()
        if self._membership is not None:
            self._membership.close()
            self._membership = None

    # -- I/O ---------------------------------------------------------------------------

    def _packet_socket(self, ethertype: int) -> socket.socket:
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ethertype))
        sock.setblocking(False)
        sock.bind((self.interface, ethertype))
        self._sockets[ethertype] = sock
        self._running_loop().add_reader(sock.fileno(), self._readable, sock)
        return sock

    def _readable(self, sock: socket.socket) -> None:
        for _ in range(READ_BATCH):
            try:
                frame, address = sock.recvfrom(65535)
            except BlockingIOError:
                return
            if address[2] == PACKET_OUTGOING:  # our own frames, looped back to us
                continue
            reply = answer(frame, self.mac, self.owned)
            if reply is not None:
                self._send(reply)
                self.answered += 1

    def _announce(self, vip: IPAddress) -> None:
        if vip not in self.owned:
            return
        if isinstance(vip, ipaddress.IPv4Address):
            self._send(gratuitous_arp(vip, self.mac, reply=False))
            self._send(gratuitous_arp(vip, self.mac, reply=True))
        else:
            self._send(neighbor_advertisement(vip, self.mac))
        log.debug("event=l2_announced interface=%s vip=%s", self.interface, vip)

    def _send(self, frame: bytes) -> None:
        try:
            self._sockets[int.from_bytes(frame[12:14], "big")].send(frame)
        except OSError as error:  # a link going down must not stop the responder
            log.warning("event=l2_send_failed interface=%s error=%r", self.interface, str(error))

    def _join(self, group: ipaddress.IPv6Address) -> None:
        self._groups[group] += 1
        if self._groups[group] == 1:
            self._membership_option(socket.IPV6_JOIN_GROUP, group)

    def _leave(self, group: ipaddress.IPv6Address) -> None:
        self._groups[group] -= 1
        if self._groups[group] == 0:
            del self._groups[group]
            self._membership_option(socket.IPV6_LEAVE_GROUP, group)

    def _membership_option(self, option: int, group: ipaddress.IPv6Address) -> None:
        if self._membership is None:
            return
        request = group.packed + struct.pack("@I", socket.if_nametoindex(self.interface))
        try:
            self._membership.setsockopt(socket.IPPROTO_IPV6, option, request)
        except OSError as error:
            log.warning(
                "event=l2_multicast_failed interface=%s group=%s error=%r",
                self.interface,
                group,
                str(error),
            )

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("Responder.open() must be called first")
        return self._loop


def _attach_filter(sock: socket.socket, program: tuple[tuple[int, int, int, int], ...]) -> None:
    """SO_ATTACH_FILTER takes a struct sock_fprog {u16 len; struct sock_filter *filter}."""
    code = b"".join(struct.pack("HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buffer))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def _drain(sock: socket.socket) -> None:
    with contextlib.suppress(BlockingIOError):
        for _ in range(10_000):
            sock.recv(65535)
