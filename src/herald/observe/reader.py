"""The agent's flow events: the NFLOG socket read into the ring, and the `observe` stream
of the status socket.

The socket is read from the agent's event loop (`add_reader`), at most `BATCH` datagrams
per wake-up, so a flood leaves the BGP and BFD timers their turn; what the socket cannot
hold the kernel drops and the sequence gaps count (`lost.py`). Nothing here blocks: the
kernel batches packets (`QUEUE_THRESHOLD`, `FLUSH_CS`) and the nft rate limit bounds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import socket
import time
from collections import Counter, OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from herald.dataplane.apply import NftApi
from herald.observe import nflog, rules
from herald.observe.event import Directory, to_event
from herald.observe.filter import FlowFilter
from herald.observe.lost import Lost
from herald.observe.ring import DEFAULT_CAPACITY, Ring

log = logging.getLogger(__name__)

BATCH = 64
QUEUE_THRESHOLD = 32
FLUSH_CS = 5  # the kernel sends a partial batch after 50 ms
RECEIVE_BUFFER = 1 << 21
SO_RCVBUFFORCE = 33  # linux/asm-generic/socket.h; not in Python's socket module
# How often a follower is told the lost counts.
LOST_INTERVAL = 1.0


def netfilter_socket(receive_buffer: int) -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, nflog.NETLINK_NETFILTER)
    try:
        try:
            # Beyond net.core.rmem_max: the agent runs as root (CAP_NET_ADMIN).
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, receive_buffer)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        sock.bind((0, 0))
        sock.settimeout(2.0)
    except Exception:
        sock.close()
        raise
    return sock


def acknowledged(sock: socket.socket, message: bytes, what: str) -> None:
    """Send a request and wait for its acknowledgement; a refusal raises OSError."""
    sock.send(message)
    seq = int.from_bytes(message[8:12], "little")
    while True:
        for reply in nflog.messages(sock.recv(65536)):
            if reply.kind == nflog.NLMSG_ERROR and reply.seq == seq:
                code = nflog.error_code(reply)
                if code:
                    raise OSError(-code, f"{what}: {os.strerror(-code)}")
                return


class NflogSocket:
    """One netlink socket bound to an NFLOG group of the current network namespace.
    `with_conntrack` says whether the kernel attaches the conntrack entry."""

    def __init__(self, group: int = rules.LOG_GROUP, receive_buffer: int = RECEIVE_BUFFER):
        self.group = group
        self.with_conntrack = True
        self.sock = netfilter_socket(receive_buffer)
        try:
            what = f"NFLOG group {group}"
            # EBUSY: another socket of this namespace holds the group.
            acknowledged(self.sock, nflog.bind_message(group), what)
            try:
                acknowledged(self.sock, self._mode(with_conntrack=True), what)
            except OSError as err:
                if err.errno != errno.EOPNOTSUPP:
                    raise
                self.with_conntrack = False
                acknowledged(self.sock, self._mode(with_conntrack=False), what)
            self.sock.setblocking(False)
        except Exception:
            self.sock.close()
            raise

    def _mode(self, with_conntrack: bool) -> bytes:
        return nflog.mode_message(
            self.group, rules.SNAPLEN, QUEUE_THRESHOLD, FLUSH_CS, with_conntrack
        )

    def fileno(self) -> int:
        return self.sock.fileno()

    def receive(self) -> bytes | None:
        """One datagram, or None when none is waiting. ENOBUFS propagates as OSError."""
        try:
            return self.sock.recv(1 << 16)
        except BlockingIOError:
            return None

    def close(self) -> None:
        self.sock.close()


Tuples = tuple[nflog.Tuple | None, nflog.Tuple | None]


class ConntrackLookup:
    """The conntrack entry of a logged packet, asked of ctnetlink by the packet's tuple
    (the original one for a request, the reply one for a reply), when NFLOG cannot attach
    it. One answer serves a flow's packets for `ttl` seconds; at most `size` are kept."""

    def __init__(self, ttl: float = 10.0, size: int = 16384) -> None:
        self.ttl = ttl
        self.size = size
        self.sock = netfilter_socket(1 << 16)
        self.sock.settimeout(0.05)
        self._seq = 0
        self._cache: OrderedDict[tuple[nflog.Tuple, bool], tuple[float, Tuples]] = OrderedDict()
        self.misses = 0  # entries the kernel no longer (or not yet) had

    def find(self, flow: nflog.Tuple, reply: bool, now: float) -> Tuples:
        key = (flow, reply)
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        found = self._ask(flow, reply)
        original, answer = found
        if original is not None and answer is not None and answer.source != original.destination:
            # Kept once DNAT is set up (the flow's first packet may be asked about just
            # before). One answer serves both directions: the reply packets are looked up by the
            # reply tuple, the requests by the original one.
            for other in ((original, False), (answer, True)):
                self._cache[other] = (now + self.ttl, found)
                self._cache.move_to_end(other)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return found

    def _ask(self, flow: nflog.Tuple, reply: bool) -> Tuples:
        self._seq = (self._seq + 1) % 2**32
        try:
            self.sock.send(nflog.conntrack_request(flow, reply, self._seq))
            while True:
                for message in nflog.messages(self.sock.recv(65536)):
                    if message.seq != self._seq:
                        continue
                    if nflog.is_conntrack(message):
                        return nflog.decode_conntrack(message)
                    if message.kind == nflog.NLMSG_ERROR:
                        self.misses += 1
                        return None, None
        except (OSError, nflog.NflogError):
            self.misses += 1
            return None, None

    def close(self) -> None:
        self.sock.close()


def translated(packet: nflog.LoggedPacket) -> bool:
    """The attached conntrack entry already names the backend (its DNAT is set up)."""
    original, reply = packet.original, packet.reply
    if original is None or reply is None:
        return False
    return (reply.source, reply.source_port) != (original.destination, original.destination_port)


@dataclass(frozen=True)
class ObserveRequest:
    last: int = 0
    follow: bool = False
    filter: FlowFilter = field(default_factory=FlowFilter)

    def encode(self) -> bytes:
        body = {"last": self.last, "follow": self.follow, "filter": self.filter.to_json()}
        return b"observe " + json.dumps(body).encode() + b"\n"

    @classmethod
    def decode(cls, line: bytes) -> ObserveRequest:
        data: dict[str, Any] = json.loads(line.removeprefix(b"observe").strip() or b"{}")
        return cls(
            last=int(data.get("last", 0)),
            follow=bool(data.get("follow", False)),
            filter=FlowFilter.from_json(data.get("filter") or {}),
        )


class FlowReader:
    """The node's flow events: socket, ring, losses and the plan's directory."""

    def __init__(
        self,
        node: str,
        capacity: int = DEFAULT_CAPACITY,
        group: int = rules.LOG_GROUP,
        clock: Callable[[], float] = time.time,
        rate: rules.FlowRate | None = None,
    ) -> None:
        self.node = node
        self.group = group
        # The budget the agent gives its table (`enforce_rate`); rate 0: events off.
        self.rate = rate or rules.FlowRate()
        self.ring = Ring(capacity)
        # Events taken into the ring, by verdict, since the agent started (metrics).
        self.verdicts: Counter[str] = Counter()
        self.lost = Lost()
        self.directory = Directory()
        self.nft: NftApi | None = None  # for the rate-limit counter
        self.error: str | None = None  # why no events are read
        self._clock = clock
        self._socket: NflogSocket | None = None
        self._conntrack: ConntrackLookup | None = None
        self._arrived = asyncio.Event()

    def start(self) -> bool:
        """Bind the group from the running loop; False (and `error` says why) if it cannot."""
        if not self.rate.on:
            self.error = "flow events off on this node (--flow-rate 0)"
            log.info("event=flow_events_off node=%s reason=rate_zero", self.node)
            return False
        try:
            self._socket = NflogSocket(self.group)
            self._conntrack = ConntrackLookup()
        except OSError as err:
            self.error = f"flow events off: NFLOG group {self.group} unavailable: {err}"
            log.warning("event=flow_events_off node=%s error=%r", self.node, str(err))
            return False
        asyncio.get_running_loop().add_reader(self._socket.fileno(), self._readable)
        log.info("event=flow_events_on node=%s group=%d", self.node, self.group)
        return True

    def close(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self._socket.fileno())
            self._socket.close()
            self._socket = None
        if self._conntrack is not None:
            self._conntrack.close()
            self._conntrack = None

    def _readable(self) -> None:
        assert self._socket is not None
        for _ in range(BATCH):
            try:
                datagram = self._socket.receive()
            except OSError as err:
                if err.errno == errno.ENOBUFS:
                    self.lost.overruns += 1
                    continue
                # The socket itself failed: said in `herald observe`, not retried in a loop.
                self.error = f"flow events stopped: reading NFLOG group {self.group}: {err}"
                log.error("event=flow_events_failed node=%s error=%r", self.node, str(err))
                self.close()
                return
            if datagram is None:
                break
            try:
                self.take(datagram)
            except Exception as err:
                # One datagram the decoder did not foresee costs that datagram only.
                self.lost.undecodable += 1
                log.warning("event=flow_undecodable node=%s error=%r", self.node, err)

    def take(self, datagram: bytes) -> None:
        """Decode one datagram into the ring (what the socket delivers, or a fixture)."""
        try:
            for message in nflog.messages(datagram):
                if not nflog.is_packet(message):
                    continue
                try:
                    packet = nflog.decode_packet(message)
                except nflog.NflogError as err:
                    self.lost.undecodable += 1
                    log.debug("event=flow_undecodable node=%s error=%r", self.node, str(err))
                    continue
                self.lost.saw(packet.seq)
                now = self._clock()
                packet = self.with_conntrack(packet, now)
                event = to_event(packet, self.node, self.directory, now)
                self.ring.append(event)
                self.verdicts[event.verdict] += 1
        except nflog.NflogError:
            self.lost.undecodable += 1
        self._arrived.set()  # wake the followers

    def with_conntrack(self, packet: nflog.LoggedPacket, now: float) -> nflog.LoggedPacket:
        """The packet with its flow's conntrack entry, whose reply source is the backend.
        Logged before DNAT, a flow's first packet carries an entry not yet translated, and
        kernels without CONFIG_NETFILTER_NETLINK_GLUE_CT attach none: then ctnetlink is
        asked. Dropped packets are not: their entry is never confirmed."""
        verdict = rules.parse_prefix(packet.prefix)
        if verdict is None or verdict.verdict != rules.FORWARDED.verdict:
            return packet
        if translated(packet) or self._conntrack is None:
            return packet
        original, reply = self._conntrack.find(packet.flow, verdict.reply, now)
        return replace(packet, original=original, reply=reply)

    def enforce_rate(self) -> bool:
        """Give the kernel's table this node's rate if it has another (blocking: after each
        datapath commit, which may have created the table anew with the default); True if
        it was changed. A refusal is raised as OSError: the datapath itself is unaffected."""
        if self.nft is None:
            return False
        limits = self.nft.list_json("limit", "inet", "herald", rules.LIMIT)
        limit = next((v for i in limits if isinstance(v := i.get("limit"), dict)), None)
        if limit is None:
            return False  # no table yet: the first commit renders it
        chain = self.nft.list_json("chain", "inet", "herald", rules.chain_of(rules.FORWARDED))
        current = rules.applied_rate(limit, any("rule" in item for item in chain))
        if current == self.rate or (current is not None and not (current.on or self.rate.on)):
            return False
        error = self.nft.transaction(rules.rate_script(self.rate))
        if error is not None:
            raise OSError(f"setting the flow-event rate {self.rate.limit}: {error}")
        log.info("event=flow_rate_set node=%s rate=%d burst=%d", self.node,
                 self.rate.per_second, self.rate.burst)  # fmt: skip
        return True

    def rate_limited(self) -> int:
        """Events the datapath's limit withheld (the `observe-lost` counter)."""
        if self.nft is None:
            return self.lost.rate_limited
        for item in self.nft.list_json("counter", "inet", "herald", rules.LOST_COUNTER):
            counter = item.get("counter")
            if isinstance(counter, dict):
                self.lost.rate_limited = int(counter.get("packets", 0))
        return self.lost.rate_limited

    async def header(self) -> dict[str, object]:
        """The node, why events are off if they are, the losses and the ring's fill. The
        counter is read in a worker thread: libnftables waits while a commit runs."""
        if self.nft is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.rate_limited)
        return {
            "node": self.node,
            "error": self.error,
            "lost": self.lost.to_json(),
            "events": dict(sorted(self.verdicts.items())),
            "ring": {
                "capacity": self.ring.capacity,
                "size": len(self.ring),
                "total": self.ring.total,
            },
        }

    async def stream(self, line: bytes, writer: asyncio.StreamWriter) -> None:
        """Answer an `observe` request: a header line, the last events that match, then
        (following) new ones as they come, and the losses when they change."""
        try:
            request = ObserveRequest.decode(line)
        except (ValueError, TypeError) as err:
            writer.write(
                json.dumps({"node": self.node, "error": f"bad request: {err}"}).encode() + b"\n"
            )
            return
        header = await self.header()
        writer.write(json.dumps(header).encode() + b"\n")
        position = self.ring.total
        matching = [e for e in self.ring.last(self.ring.capacity) if request.filter.matches(e)]
        for event in matching[max(0, len(matching) - request.last) :] if request.last else ():
            writer.write(json.dumps({"flow": event.to_json()}).encode() + b"\n")
        await writer.drain()
        if not request.follow:
            return
        # A follower that hangs up ends its stream; nothing else is affected.
        with contextlib.suppress(ConnectionError):
            await self._follow(request, writer, position)

    async def _follow(
        self, request: ObserveRequest, writer: asyncio.StreamWriter, position: int
    ) -> None:
        next_told = self._clock() + LOST_INTERVAL
        while not writer.is_closing():
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), LOST_INTERVAL)
            batch = self.ring.after(position)
            position = batch.position
            if batch.missed:
                writer.write(json.dumps({"missed": batch.missed}).encode() + b"\n")
            for event in batch.events:
                if request.filter.matches(event):
                    writer.write(json.dumps({"flow": event.to_json()}).encode() + b"\n")
            if self._clock() >= next_told:
                # Every interval, changed or not: the write also finds a follower that
                # hung up (a half-closed unix socket is not seen otherwise).
                next_told = self._clock() + LOST_INTERVAL
                lost = (await self.header())["lost"]
                writer.write(json.dumps({"lost": lost}).encode() + b"\n")
            await writer.drain()
