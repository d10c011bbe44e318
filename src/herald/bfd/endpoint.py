"""Single-hop BFD over UDP (RFC 5881) on the event loop: the shell around `session`.

Control packets go to port 3784 from one source port in 49152-65535 with TTL 255. A packet
that arrives with a TTL below 255 was routed, so it cannot come from a neighbour on the link,
and is dropped (RFC 5881 §5). A packet is matched to its session by Your Discriminator, or
while that is still 0 by the sender's address. Removing a session sends AdminDown first, so
the peer takes it as administrative, not as a failure.

A session whose handling raises (a bug: the pure core does not raise on any packet) is
logged as `event=task_failed task=bfd peer=...` and started afresh after a back-off (1 s,
doubling to 30 s while it keeps failing), with a new discriminator: the peer sees it go
Down and come back, the owner hears the new session's changes, and the other sessions and
the caller of `add` never notice.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import random
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from herald.addresses import IPAddress
from herald.bfd.packet import BfdError, State, decode
from herald.bfd.session import Session, StateChange, Timers

log = logging.getLogger(__name__)

BFD_PORT = 3784
IP_RECVTTL = 12  # linux/in.h; not exported by Python's socket module
_SOURCE_PORTS = range(49152, 65536)
_READ_BATCH = 64
_CMSG_SPACE = socket.CMSG_SPACE(4)
_FIRST_RESTART = 1.0
_MAX_RESTART = 30.0

OnChange = Callable[[IPAddress, StateChange], None]


@dataclass
class _Peer:
    address: IPAddress
    session: Session
    on_change: OnChange
    timer: asyncio.TimerHandle | None = None
    restart: asyncio.TimerHandle | None = None  # set while a failed session waits
    failures: int = 0  # in a row; reset when the session comes Up


class Endpoint:
    """`port` is where we listen, `peer_port` where peers listen (both 3784 but in tests).
    `control_plane_independent` sets the C bit of every session: for an endpoint that runs
    in a process of its own (`bfd.process`), not in the BGP speaker's."""

    def __init__(
        self,
        port: int = BFD_PORT,
        peer_port: int = BFD_PORT,
        control_plane_independent: bool = False,
    ) -> None:
        self.port = port
        self.peer_port = peer_port
        self.control_plane_independent = control_plane_independent
        self._peers: dict[IPAddress, _Peer] = {}
        self._by_discriminator: dict[int, _Peer] = {}
        self._receivers: list[socket.socket] = []
        self._senders: dict[int, socket.socket] = {}
        self._loop = asyncio.get_running_loop()

    def start(self) -> None:
        """Opens the sockets; IPv6 is skipped (and logged) where the host has none."""
        for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            try:
                self._open(family, address)
            except OSError as err:
                if family == socket.AF_INET:
                    self.close()
                    raise
                log.warning("event=bfd_no_ipv6 error=%r", str(err))

    def _open(self, family: int, address: str) -> None:
        v6 = family == socket.AF_INET6
        receiver = _udp(
            family,
            (socket.IPPROTO_IPV6, socket.IPV6_RECVHOPLIMIT)
            if v6
            else (socket.IPPROTO_IP, IP_RECVTTL),
        )
        try:
            receiver.bind((address, self.port))
            sender = _sender(family, address)
        except OSError:
            receiver.close()
            raise
        self._receivers.append(receiver)
        self._senders[family] = sender
        self._loop.add_reader(receiver.fileno(), self._read, receiver)

    def close(self) -> None:
        for peer in list(self._peers):
            self.remove(peer)
        for sock in self._receivers:
            self._loop.remove_reader(sock.fileno())
            sock.close()
        for sock in self._senders.values():
            sock.close()
        self._receivers.clear()
        self._senders.clear()

    # -- sessions ------------------------------------------------------------------------

    def add(self, address: IPAddress, timers: Timers, on_change: OnChange) -> None:
        """A session towards `address` (replacing one with other timers)."""
        existing = self._peers.get(address)
        if existing is not None:
            if existing.session.timers == timers:
                existing.on_change = on_change
                return
            self.remove(address)
        discriminator = self._new_discriminator()
        session = self._session(discriminator, timers)
        peer = _Peer(address, session, on_change)
        self._peers[address] = peer
        self._by_discriminator[discriminator] = peer
        self._run(peer)

    def _failed(self, peer: _Peer, error: Exception) -> None:
        """The session's state is unknown after an exception: drop it, start anew later."""
        peer.failures += 1
        delay = min(_MAX_RESTART, _FIRST_RESTART * 2.0 ** min(peer.failures - 1, 30))
        log.error(
            "event=task_failed task=bfd peer=%s error=%r failures=%d restart_in=%.1fs",
            peer.address, error, peer.failures, delay, exc_info=error,
        )  # fmt: skip
        if peer.timer is not None:
            peer.timer.cancel()
            peer.timer = None
        if peer.restart is None:
            peer.restart = self._loop.call_later(delay, self._restart, peer)

    def _restart(self, peer: _Peer) -> None:
        peer.restart = None
        if self._peers.get(peer.address) is not peer:
            return  # removed meanwhile
        old = peer.session
        self._by_discriminator.pop(old.local_discriminator, None)
        discriminator = self._new_discriminator()
        peer.session = self._session(discriminator, old.timers)
        self._by_discriminator[discriminator] = peer
        log.info("event=bfd_restarted peer=%s", peer.address)
        self._run(peer)

    def _session(self, discriminator: int, timers: Timers) -> Session:
        return Session(
            discriminator,
            timers,
            self._loop.time(),
            control_plane_independent=self.control_plane_independent,
        )

    def remove(self, address: IPAddress) -> None:
        peer = self._peers.pop(address, None)
        if peer is None:
            return
        self._by_discriminator.pop(peer.session.local_discriminator, None)
        if peer.timer is not None:
            peer.timer.cancel()
        if peer.restart is not None:
            peer.restart.cancel()
            return  # the failed session is gone already; nothing to tell the peer
        session = peer.session
        if session.remote_discriminator:
            # §6.8.16: AdminDown for about a detection time, so a lost packet does not make
            # the peer see a failure where there is a decision.
            interval = max(session.desired_min_tx, session.remote_min_rx) / 1e6
            data = session.admin_down().encode()
            self._transmit(address, data)  # now: `close` shuts the sockets right after
            for k in range(1, session.timers.detect_mult):
                self._loop.call_later(k * interval, self._transmit, address, data)

    def state(self, address: IPAddress) -> State | None:
        peer = self._peers.get(address)
        if peer is None:
            return None
        return State.DOWN if peer.restart is not None else peer.session.state

    def sessions(self) -> dict[IPAddress, tuple[Timers, State]]:
        """Every session's timers and state."""
        return {
            address: (peer.session.timers, self.state(address) or State.DOWN)
            for address, peer in self._peers.items()
        }

    def _new_discriminator(self) -> int:
        while True:
            value = random.randrange(1, 2**32)
            if value not in self._by_discriminator:
                return value

    # -- the loop --------------------------------------------------------------------------

    def _read(self, sock: socket.socket) -> None:
        for _ in range(_READ_BATCH):
            try:
                data, ancillary, _flags, source = sock.recvmsg(128, _CMSG_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as err:
                log.warning("event=bfd_receive_failed error=%r", str(err))
                return
            try:
                ttl = next((struct.unpack("i", d[:4])[0] for _l, _t, d in ancillary), None)
                if ttl != 255:
                    continue  # routed: not a neighbour on the link
                self._deliver(data, ipaddress.ip_address(source[0]))
            except Exception as error:  # one packet's trouble; the socket keeps being read
                log.error(
                    "event=task_failed task=bfd_receive source=%s error=%r",
                    source[0], error, exc_info=error,
                )  # fmt: skip

    def _deliver(self, data: bytes, source: IPAddress) -> None:
        try:
            packet = decode(data)
        except BfdError as err:
            log.debug("event=bfd_discarded source=%s error=%r", source, str(err))
            return
        if packet.your_discriminator:
            peer = self._by_discriminator.get(packet.your_discriminator)
        else:
            peer = self._peers.get(source)
        if peer is None or peer.address != source or peer.restart is not None:
            return
        try:
            changes = peer.session.receive(packet, self._loop.time())
        except Exception as error:
            self._failed(peer, error)
            return
        self._run(peer, changes)

    def _fire(self, peer: _Peer) -> None:
        peer.timer = None
        try:
            changes = peer.session.expire(self._loop.time())
        except Exception as error:
            self._failed(peer, error)
            return
        self._run(peer, changes)

    def _run(self, peer: _Peer, changes: list[StateChange] | None = None) -> None:
        # Packet and timer first: whatever a callback does, the session keeps running.
        try:
            self._send(peer)
            if peer.timer is not None:
                peer.timer.cancel()
            deadline = peer.session.deadline()
        except Exception as error:
            self._failed(peer, error)
            return
        peer.timer = None if deadline is None else self._loop.call_at(deadline, self._fire, peer)
        if peer.session.state is State.UP:
            peer.failures = 0
        for change in changes or ():
            log.info(
                "event=bfd_state peer=%s before=%s after=%s diag=%s",
                peer.address,
                change.old.name,
                change.new.name,
                change.diag.name,
            )
            try:
                peer.on_change(peer.address, change)
            except Exception:
                log.exception("event=bfd_callback_failed peer=%s", peer.address)

    def _send(self, peer: _Peer) -> None:
        packet = peer.session.due(self._loop.time())
        if packet is not None:
            self._transmit(peer.address, packet.encode())

    def _transmit(self, address: IPAddress, data: bytes) -> None:
        family = socket.AF_INET if address.version == 4 else socket.AF_INET6
        sender = self._senders.get(family)
        if sender is None:
            return
        with contextlib.suppress(OSError):  # no route yet: the detection timer will say so
            sender.sendto(data, (str(address), self.peer_port))


def _udp(family: int, option: tuple[int, int], value: int = 1) -> socket.socket:
    """A non-blocking UDP socket of one family only, with one option set."""
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.setsockopt(*option, value)
    except OSError:
        sock.close()
        raise
    return sock


def _sender(family: int, address: str) -> socket.socket:
    """Sends with TTL 255 from a port in 49152-65535 (RFC 5881 §4)."""
    v6 = family == socket.AF_INET6
    hops = (
        (socket.IPPROTO_IPV6, socket.IPV6_UNICAST_HOPS)
        if v6
        else (socket.IPPROTO_IP, socket.IP_TTL)
    )
    sock = _udp(family, hops, 255)
    for port in random.sample(_SOURCE_PORTS, 64):
        try:
            sock.bind((address, port))
            return sock
        except OSError:
            continue
    sock.close()
    raise OSError("no free source port in 49152-65535")
