"""Agents watching each other over UDP: the heartbeat protocol (pure, sans-IO, time passed in).

Every agent sends a small authenticated datagram to every peer each `interval` seconds; a
peer not heard from for `interval * multiplier` seconds is dead, and its VIPs go to other
nodes (`owners.choose_owners` with `live()`). With the defaults (100 ms x 5) a dead peer is
declared 400-500 ms after it sent its last heartbeat.

Datagram (network byte order), authenticated as a whole by the HMAC at its end:

    magic "HRLD" | version u8 | flags u8 | name length u8 | node name (UTF-8)
    | incarnation u64 | sequence u64 | timestamp u64 (sender's wall clock, ms)
    | VIP count u16 | VIPs (family u8 = 4 or 6, then 4 or 16 bytes) | HMAC-SHA256 (32 bytes)

Flags: VIPS (the list of VIPs the sender owns is present; without it the receiver keeps
the last list it had) and LEAVING (the sender is shutting down: take over at once instead
of waiting for the timeout).

Replay protection: a receiver accepts a datagram from a peer only if (incarnation,
sequence) is greater than the last it accepted from that peer. The incarnation is chosen
by the sender at start (its wall clock in ms), so a restarted agent's new sequence 1 is
accepted while a recording of its previous life is not. A receiver that restarts itself
knows no past: `max_skew` (off by default, because a node with a wrong clock would then
look dead to everyone) rejects datagrams whose timestamp is further than that from the
receiver's clock, which bounds what such a replay can use.

Usage by the shell: feed every datagram to `handle_datagram`, call `handle_timer` at
`next_deadline()`, and send what `datagrams_to_send()` returns after each call.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import struct
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntFlag, StrEnum
from typing import Protocol

from herald.dataplane.model import IPAddress

MAGIC = b"HRLD"
# SWIM's datagrams (`swim.py`): told apart so that a node of the other mode is named as such.
SWIM_MAGIC = b"HRLS"
MIXED_MODES = "every node of a segment must run the same --l2-membership"
VERSION = 1
MAC_SIZE = 32
MIN_KEY_SIZE = 16
# A cap on what a datagram may carry, so no input makes the receiver allocate much. 1,024
# IPv6 VIPs fit; a datagram larger than the path MTU is fragmented by the kernel.
MAX_VIPS = 1024
MAX_DATAGRAM = 4 + 3 + 255 + 24 + 2 + MAX_VIPS * 17 + MAC_SIZE

_FIXED = struct.Struct("!QQQH")

Address = tuple[str, int]


class Flags(IntFlag):
    VIPS = 1
    LEAVING = 2


class PeerState(StrEnum):
    UNKNOWN = "unknown"  # not heard from yet, still within the start grace
    ALIVE = "alive"
    SUSPECT = "suspect"  # missed heartbeats, still counted as live
    DEAD = "dead"


class HeartbeatError(ValueError):
    """A datagram that is not a valid heartbeat; `reason` goes into the log."""


@dataclass(frozen=True)
class Message:
    node: str
    incarnation: int
    sequence: int
    timestamp_ms: int
    vips: tuple[IPAddress, ...] | None = None
    leaving: bool = False


def encode(message: Message, key: bytes) -> bytes:
    name = message.node.encode()
    if not 1 <= len(name) <= 255:
        raise ValueError(f"node name {message.node!r}: must be 1..255 bytes of UTF-8")
    vips = message.vips or ()
    if len(vips) > MAX_VIPS:
        raise ValueError(f"{len(vips)} VIPs: a heartbeat carries at most {MAX_VIPS}")
    flags = (Flags.VIPS if message.vips is not None else 0) | (
        Flags.LEAVING if message.leaving else 0
    )
    body = b"".join(
        [
            MAGIC,
            bytes((VERSION, flags, len(name))),
            name,
            _FIXED.pack(message.incarnation, message.sequence, message.timestamp_ms, len(vips)),
            pack_vips(vips),
        ]
    )
    return seal(body, key)


def seal(body: bytes, key: bytes) -> bytes:
    """`body` with its HMAC-SHA256 appended (every L2 liveness datagram is sealed so)."""
    return body + hmac.digest(key, body, hashlib.sha256)


def unseal(data: bytes, key: bytes) -> bytes:
    """The body of a sealed datagram; HeartbeatError unless the HMAC matches."""
    if len(data) < MAC_SIZE:
        raise HeartbeatError("shorter than its HMAC")
    body, mac = data[:-MAC_SIZE], data[-MAC_SIZE:]
    if not hmac.compare_digest(mac, hmac.digest(key, body, hashlib.sha256)):
        raise HeartbeatError("bad HMAC (wrong key or altered)")
    return body


def pack_vips(vips: Iterable[IPAddress]) -> bytes:
    """VIPs as the wire carries them (the count goes before, in the caller's header)."""
    return b"".join(bytes((vip.version,)) + vip.packed for vip in vips)


def decode(data: bytes, key: bytes) -> Message:
    """The message in `data`, authenticated; HeartbeatError if anything is wrong."""
    if len(data) > MAX_DATAGRAM:
        raise HeartbeatError(f"datagram of {len(data)} bytes is over {MAX_DATAGRAM}")
    if data[:4] == SWIM_MAGIC:
        raise HeartbeatError(f"a SWIM datagram, this node runs heartbeat: {MIXED_MODES}")
    if len(data) < len(MAGIC) + 3 + _FIXED.size + MAC_SIZE or data[:4] != MAGIC:
        raise HeartbeatError("not a heartbeat")
    # Authenticate before reading further: nothing unauthenticated is interpreted.
    body = unseal(data, key)
    version, flags, name_length = body[4], body[5], body[6]
    if version != VERSION:
        raise HeartbeatError(f"version {version}, expected {VERSION}")
    offset = 7 + name_length
    try:
        node = body[7:offset].decode()
        incarnation, sequence, timestamp, count = _FIXED.unpack_from(body, offset)
    except (UnicodeDecodeError, struct.error) as error:
        raise HeartbeatError(f"malformed header: {error}") from None
    vips, offset = read_vips(body, offset + _FIXED.size, count)
    if offset != len(body):
        raise HeartbeatError(f"{len(body) - offset} bytes after the VIP list")
    return Message(
        node=node,
        incarnation=incarnation,
        sequence=sequence,
        timestamp_ms=timestamp,
        vips=vips if flags & Flags.VIPS else None,
        leaving=bool(flags & Flags.LEAVING),
    )


def read_vips(body: bytes, offset: int, count: int) -> tuple[tuple[IPAddress, ...], int]:
    vips: list[IPAddress] = []
    for _ in range(count):
        family = body[offset : offset + 1]
        size = {b"\x04": 4, b"\x06": 16}.get(family)
        if size is None or offset + 1 + size > len(body):
            raise HeartbeatError(f"VIP {len(vips)}: bad family or truncated")
        vips.append(ipaddress.ip_address(body[offset + 1 : offset + 1 + size]))
        offset += 1 + size
    return tuple(vips), offset


@dataclass(frozen=True)
class Config:
    node: str
    # Not in the repr, which may end up in a log.
    key: bytes = field(repr=False)
    # Chosen at start so that it grows across restarts: the wall clock in ms.
    incarnation: int
    interval: float = 0.1
    multiplier: int = 5
    # Wall clock minus the `now` clock of the calls, for timestamps (0: `now` is wall time).
    wall_offset: float = 0.0
    max_skew: float | None = None

    def __post_init__(self) -> None:
        if len(self.key) < MIN_KEY_SIZE:
            raise ValueError(f"heartbeat key: at least {MIN_KEY_SIZE} bytes, got {len(self.key)}")
        if self.interval <= 0 or self.multiplier < 2:
            raise ValueError("heartbeat: interval must be > 0 and multiplier >= 2")

    @property
    def detection_time(self) -> float:
        return self.interval * self.multiplier


@dataclass(frozen=True)
class View:
    """What the heartbeats know at one moment, read in one piece: the nodes not declared
    dead (`live`, this one included), the peers heard lately (`heard`), how many peers
    there are, what each live node claims (this one included), whether the start grace
    is over, and the dead peers that said they were leaving (`left`: they answer nothing
    while away)."""

    live: frozenset[str]
    heard: frozenset[str]
    peer_count: int
    claims: dict[str, Collection[IPAddress]]
    settled: bool
    left: frozenset[str] = frozenset()


@dataclass(frozen=True)
class PeerChanged:
    node: str
    before: PeerState
    after: PeerState
    at: float


@dataclass(frozen=True)
class Rejected:
    address: Address
    reason: str


@dataclass(frozen=True)
class ClaimsChanged:
    """A live peer now says it owns other VIPs than before."""

    node: str
    vips: frozenset[IPAddress]


Event = PeerChanged | ClaimsChanged | Rejected


@dataclass
class _Peer:
    address: Address
    state: PeerState = PeerState.UNKNOWN
    last_heard: float | None = None
    # (incarnation, sequence) of the last accepted datagram: anything not above it is old.
    last_counter: tuple[int, int] = (-1, -1)
    vips: frozenset[IPAddress] = frozenset()
    # Its last datagram said LEAVING.
    left: bool = False


class _Named(Protocol):
    @property
    def node(self) -> str: ...
    @property
    def detection_time(self) -> float: ...


class _Known(Protocol):
    @property
    def state(self) -> PeerState: ...
    @property
    def vips(self) -> frozenset[IPAddress]: ...
    @property
    def left(self) -> bool: ...


class PeerTable:
    """What a membership protocol answers from its table of peers, the same for the
    heartbeat and for SWIM (`swim.Swim`): the view ownership reads."""

    config: _Named
    started: float
    owned: frozenset[IPAddress]
    peers: Mapping[str, _Known]

    def heard(self, now: float | None = None) -> frozenset[str]:
        raise NotImplementedError

    def state_of(self, node: str) -> PeerState:
        return PeerState.ALIVE if node == self.config.node else self.peers[node].state

    def live(self) -> frozenset[str]:
        """This node and the peers not declared dead (suspects count: one late heartbeat
        or one failed probe must not move VIPs)."""
        return frozenset(
            [self.config.node]
            + [n for n, p in self.peers.items() if p.state in (PeerState.ALIVE, PeerState.SUSPECT)]
        )

    def settled(self, now: float) -> bool:
        """True once every peer had the time to be heard: before that, an agent that has
        just started must not take VIPs from peers it simply has not heard yet."""
        return now >= self.started + self.config.detection_time

    def claims(self) -> dict[str, Collection[IPAddress]]:
        """VIPs each live node says it owns, this node included."""
        live = self.live()
        claims: dict[str, Collection[IPAddress]] = {self.config.node: self.owned}
        claims.update({n: p.vips for n, p in self.peers.items() if n in live})
        return claims

    def left(self) -> frozenset[str]:
        """The dead peers whose last word was LEAVING."""
        return frozenset(n for n, p in self.peers.items() if p.left and p.state is PeerState.DEAD)

    def view(self, now: float) -> View:
        return View(
            self.live(),
            self.heard(now),
            len(self.peers),
            self.claims(),
            self.settled(now),
            self.left(),
        )


@dataclass
class Heartbeat(PeerTable):
    """One agent's side of the protocol: its peers' states and its own sending schedule."""

    config: Config
    started: float
    peers: dict[str, _Peer] = field(default_factory=dict)
    owned: frozenset[IPAddress] = frozenset()
    sequence: int = 0
    next_send: float = 0.0
    outbox: list[tuple[bytes, Address]] = field(default_factory=list)
    # A flapping node is silent (`set_quiet`): it still hears its peers.
    quiet: bool = False
    # When the timer last ran. It runs at least once an interval, so a longer gap means this
    # node itself was stalled (starved of CPU, paused): see `_forgive_stall`.
    awake: float = 0.0

    def __post_init__(self) -> None:
        self.next_send = self.awake = self.started

    # -- inputs ----------------------------------------------------------------------

    def set_peers(self, peers: Mapping[str, Address]) -> None:
        """The other nodes and their heartbeat addresses (from the cluster's Node objects);
        a new peer starts UNKNOWN, a removed one is forgotten."""
        for name in list(self.peers):
            if name not in peers:
                del self.peers[name]
        for name, address in peers.items():
            if name == self.config.node:
                continue
            if name in self.peers:
                self.peers[name].address = address
            else:
                self.peers[name] = _Peer(address)

    def set_owned(self, vips: Iterable[IPAddress], now: float) -> None:
        """What this node answers for; a change is told to peers at once."""
        owned = frozenset(vips)
        if owned != self.owned:
            self.owned = owned
            self.next_send = min(self.next_send, now)

    def leave(self, now: float) -> None:
        """Shutting down: tell every peer, so they take over without waiting."""
        self.owned = frozenset()
        self._send_all(now, leaving=True)

    def set_quiet(self, quiet: bool, now: float) -> None:
        """Going quiet tells every peer this node is leaving (they take its VIPs over at
        once), then sends nothing until it resumes; peers are still heard meanwhile."""
        if quiet == self.quiet:
            return
        self.quiet = quiet
        if quiet:
            self.leave(now)
        else:
            self.next_send = min(self.next_send, now)

    def handle_datagram(self, data: bytes, address: Address, now: float) -> list[Event]:
        try:
            message = decode(data, self.config.key)
        except HeartbeatError as error:
            return [Rejected(address, str(error))]
        peer = self.peers.get(message.node)
        if peer is None:
            return [Rejected(address, f"node {message.node!r} is not a peer")]
        counter = (message.incarnation, message.sequence)
        if counter <= peer.last_counter:
            return [Rejected(address, f"replayed or old: {counter} <= {peer.last_counter}")]
        skew = self.config.max_skew
        if skew is not None and abs(message.timestamp_ms / 1000 - self._wall(now)) > skew:
            return [Rejected(address, f"timestamp further than {skew}s from our clock")]
        peer.last_counter = counter
        peer.left = message.leaving
        if message.leaving:
            peer.vips = frozenset()
            peer.last_heard = None
            return self._set_state(message.node, peer, PeerState.DEAD, now)
        peer.last_heard = now
        events = self._set_state(message.node, peer, PeerState.ALIVE, now)
        if message.vips is not None and frozenset(message.vips) != peer.vips:
            peer.vips = frozenset(message.vips)
            events.append(ClaimsChanged(message.node, peer.vips))
        return events

    def handle_timer(self, now: float) -> list[Event]:
        self._forgive_stall(now)
        if now >= self.next_send:
            if not self.quiet:
                self._send_all(now)
            # Keep the grid: a late timer does not push every later heartbeat back.
            self.next_send = max(self.next_send + self.config.interval, now)
        events: list[Event] = []
        for name, peer in self.peers.items():
            events += self._set_state(name, peer, self._state_at(peer, now), now)
        return events

    # -- outputs ---------------------------------------------------------------------

    def next_deadline(self) -> float:
        deadlines = [self.next_send]
        for peer in self.peers.values():
            deadlines += self._transitions(peer)
        return min(deadlines)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self.outbox = self.outbox, []
        return out

    def heard(self, now: float | None = None) -> frozenset[str]:
        """The peers heard within the last two intervals (ALIVE, not even suspect); `now`
        changes nothing here (states change on the timer)."""
        return frozenset(n for n, p in self.peers.items() if p.state is PeerState.ALIVE)

    # -- internals -------------------------------------------------------------------

    def _send_all(self, now: float, leaving: bool = False) -> None:
        self.sequence += 1
        message = Message(
            node=self.config.node,
            incarnation=self.config.incarnation,
            sequence=self.sequence,
            timestamp_ms=int(self._wall(now) * 1000),
            vips=tuple(sorted(self.owned, key=lambda a: (a.version, a.packed))),
            leaving=leaving,
        )
        data = encode(message, self.config.key)
        self.outbox += [(data, peer.address) for peer in self.peers.values()]

    def _forgive_stall(self, now: float) -> None:
        """Silence that fell while this node was stalled is not held against its peers.

        A stalled node neither reads nor sends; when it runs again, its timer may fire
        before it has read the heartbeats queued in its socket, and every peer would look
        dead because of this node's own stall. So a stall (the timer more than two
        intervals apart, where it runs at least once an interval) is added, beyond the one
        interval the timer may take, to the time each peer was last heard: a peer that
        really failed is still declared dead, at most `detection_time` after the stall
        ends. Ordinary lateness (under an interval) is not forgiven, so it cannot add up.
        """
        gap = now - self.awake
        self.awake = now
        if gap <= 2 * self.config.interval:
            return
        stall = gap - self.config.interval
        for peer in self.peers.values():
            if peer.last_heard is not None:
                peer.last_heard = min(peer.last_heard + stall, now)

    def _state_at(self, peer: _Peer, now: float) -> PeerState:
        interval, multiplier = self.config.interval, self.config.multiplier
        if peer.last_heard is None:
            if peer.state is PeerState.UNKNOWN and not self.settled(now):
                return PeerState.UNKNOWN
            return PeerState.DEAD
        # Thresholds are computed as `_transitions` computes the deadlines, so a timer set
        # for a deadline always finds the transition due (no float rounding in between).
        if now >= peer.last_heard + interval * multiplier:
            return PeerState.DEAD
        # One heartbeat may be late or lost; two in a row make the peer suspect.
        if now >= peer.last_heard + interval * 2:
            return PeerState.SUSPECT
        return PeerState.ALIVE

    def _transitions(self, peer: _Peer) -> list[float]:
        if peer.last_heard is None:
            if peer.state is PeerState.UNKNOWN:
                return [self.started + self.config.detection_time]
            return []
        interval, multiplier = self.config.interval, self.config.multiplier
        if peer.state is PeerState.ALIVE:
            return [peer.last_heard + interval * 2]
        if peer.state is PeerState.SUSPECT:
            return [peer.last_heard + interval * multiplier]
        return []

    def _set_state(self, name: str, peer: _Peer, state: PeerState, now: float) -> list[Event]:
        if state is peer.state:
            return []
        before, peer.state = peer.state, state
        return [PeerChanged(name, before, state, now)]

    def _wall(self, now: float) -> float:
        return now + self.config.wall_offset
