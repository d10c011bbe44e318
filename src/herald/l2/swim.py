"""Agents watching each other over UDP, SWIM-style (pure, sans-IO, time passed in).

The heartbeat (`heartbeat.py`) has every node send to every other: n - 1 datagrams per node
per interval, which at 1,000 nodes is 10 M packets/s on the segment. Here (SWIM, Das, Gupta
and Motivala 2002, with the suspicion of Lifeguard as memberlist and Serf run it) each node
sends O(1) datagrams per interval, and news travels piggybacked on them:

- Probing. Every `interval` a node pings the next member of a shuffled round-robin list.
  Without an ack within `probe_timeout`, it asks `indirect_probes` other members to ping it
  on its behalf (PING_REQ) and relay the ack. Without any ack by the end of the interval
  the member is SUSPECT.
- Suspicion (Lifeguard). A suspicion is gossiped and told to the suspect itself, which
  refutes it by raising its incarnation (ALIVE with a higher version); each node holding a
  suspicion declares the member DEAD when its timer runs out. The timer starts at
  `suspicion_max` and shrinks towards `suspicion_min` as other members independently
  suspect the same member (`confirmations` of them reach the minimum): a dead node is
  probed by many and confirmed fast, a slow one refutes before the long timer ends. A node
  whose own probes fail (`local health`) stretches its probe timeout and its suspicion
  timers, so a node that is itself cut off or starved is slow to accuse others.
- Dissemination. Every datagram carries the sender's own record (its version and the VIPs
  it owns) and, up to a size budget, the freshest pending updates (alive, suspect, dead),
  each sent `retransmit_mult * ceil(log10(n + 1))` times in all; while updates are pending
  they also go to `gossip_fanout` random members every `gossip_interval`. A node talking to
  a member it holds suspect or dead tells it so, so that it refutes.
- Ownership. What the heartbeat carries travels as member records: the VIPs a node owns
  change with its version (bumped and gossiped at once), and LEAVING is a DEAD record about
  itself with the LEFT flag, sent to every member at once (others take over immediately).
- Rejoining. A starting node asks the members it pings for their whole view (SYNC) until
  it has settled; dead members are pinged now and then (`reconnect_interval`), so that
  after a partition heals each side learns it was declared dead and refutes.

Detection with the defaults (50 ms interval, 20 ms probe timeout, 3 indirect probes,
suspicion 200-600 ms): a dead node is first probed after ~Exp(interval) (each member probes
it once per round, at random phases), suspected one interval later, declared after the
suspicion timer (confirmed by other probers it approaches 200 ms), and the DEAD record
reaches every node in a few gossip rounds: `bench/scale/liveness.py` measures the whole
distribution (docs/benchmarks.md).

Datagram (network byte order), sealed as a whole by `heartbeat.seal` (HMAC-SHA256):

    magic "HRLS" | version u8 | type u8 | flags u8 | name length u8 | sender name
    | boot u64 | sequence u64 | timestamp u64 (ms) | probe id u32
    | target length u8 | target name | update count u8 | updates | HMAC (32 bytes)

    update: kind u8 | flags u8 | name length u8 | name | boot u64 | incarnation u32
            | accuser length u8 | accuser | VIP count u16 | VIPs (as in the heartbeat)

Replay protection as in the heartbeat, keyed on the sender's (boot, sequence): `boot` is
the wall clock in ms at start, so it grows across restarts; a window of the last 64
sequence numbers per sender accepts datagrams reordered on the way and nothing twice.

Usage by the shell, as the heartbeat: feed every datagram to `handle_datagram`, call
`handle_timer` at `next_deadline()`, send what `datagrams_to_send()` returns after each.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum, IntFlag

from herald.dataplane.model import IPAddress
from herald.l2.heartbeat import MAGIC as HEARTBEAT_MAGIC
from herald.l2.heartbeat import (
    MAX_VIPS,
    MIN_KEY_SIZE,
    MIXED_MODES,
    SWIM_MAGIC,
    Address,
    ClaimsChanged,
    Event,
    HeartbeatError,
    PeerChanged,
    PeerState,
    PeerTable,
    Rejected,
    pack_vips,
    read_vips,
    seal,
    unseal,
)

MAGIC = SWIM_MAGIC
VERSION = 1
# Updates piggybacked on one datagram stop at this many bytes (one always goes: a record
# with many VIPs makes a larger datagram, fragmented by the kernel).
PIGGYBACK_BUDGET = 1200
MAX_UPDATES = 255
# No datagram is read beyond this (the largest UDP payload).
MAX_DATAGRAM = 65507
# Probes run on behalf of others at once: a flood of PING_REQ costs no more.
MAX_RELAYS = 64
# Sequence numbers below the highest seen that are still accepted once (reordering).
REPLAY_WINDOW = 64

_HEAD = struct.Struct("!QQQI")
_RECORD = struct.Struct("!QI")


class Kind(IntEnum):
    PING = 1
    ACK = 2
    PING_REQ = 3
    GOSSIP = 4
    SYNC = 5
    # A helper's answer to PING_REQ when the target did not ack in time (Lifeguard): the
    # prober that gets no NACK either is the one whose link is bad.
    NACK = 6


class Flags(IntFlag):
    SYNC_REQUEST = 1  # a starting node: answer with your whole view


class Status(IntEnum):
    ALIVE = 1
    SUSPECT = 2
    DEAD = 3


class RecordFlags(IntFlag):
    LEFT = 1  # a DEAD record by the member itself: it is shutting down


@dataclass(frozen=True)
class Update:
    """What one node says about a member: its status at a version (boot, incarnation)."""

    status: Status
    node: str
    boot: int
    incarnation: int
    accuser: str = ""
    vips: tuple[IPAddress, ...] = ()
    left: bool = False

    @property
    def version(self) -> tuple[int, int]:
        return (self.boot, self.incarnation)


@dataclass(frozen=True)
class Message:
    kind: Kind
    node: str
    boot: int
    sequence: int
    timestamp_ms: int
    probe: int = 0
    target: str = ""
    updates: tuple[Update, ...] = ()
    sync_request: bool = False


def _name(text: str) -> bytes:
    raw = text.encode()
    if len(raw) > 255:
        raise ValueError(f"node name {text!r}: at most 255 bytes of UTF-8")
    return bytes((len(raw),)) + raw


def encode_update(update: Update) -> bytes:
    if len(update.vips) > MAX_VIPS:
        raise ValueError(f"{len(update.vips)} VIPs: a record carries at most {MAX_VIPS}")
    return b"".join(
        [
            bytes((update.status, RecordFlags.LEFT if update.left else 0)),
            _name(update.node),
            _RECORD.pack(update.boot, update.incarnation),
            _name(update.accuser),
            struct.pack("!H", len(update.vips)),
            pack_vips(update.vips),
        ]
    )


def encode(message: Message, key: bytes, updates: Iterable[bytes] = ()) -> bytes:
    """The sealed datagram; `updates` are already encoded (`encode_update`) and follow
    `message.updates`."""
    if not message.node:
        raise ValueError("empty node name")
    encoded = [encode_update(u) for u in message.updates] + list(updates)
    if len(encoded) > MAX_UPDATES:
        raise ValueError(f"{len(encoded)} updates: at most {MAX_UPDATES}")
    flags = Flags.SYNC_REQUEST if message.sync_request else 0
    body = b"".join(
        [
            MAGIC,
            bytes((VERSION, message.kind, flags)),
            _name(message.node),
            _HEAD.pack(message.boot, message.sequence, message.timestamp_ms, message.probe),
            _name(message.target),
            bytes((len(encoded),)),
            *encoded,
        ]
    )
    return seal(body, key)


class _Reader:
    def __init__(self, body: bytes, offset: int) -> None:
        self.body, self.offset = body, offset

    def take(self, size: int) -> bytes:
        end = self.offset + size
        if end > len(self.body):
            raise HeartbeatError("truncated")
        chunk, self.offset = self.body[self.offset : end], end
        return chunk

    def byte(self) -> int:
        return self.take(1)[0]

    def name(self) -> str:
        try:
            return self.take(self.byte()).decode()
        except UnicodeDecodeError:
            raise HeartbeatError("node name is not UTF-8") from None

    def unpack(self, layout: struct.Struct) -> tuple[int, ...]:
        return layout.unpack(self.take(layout.size))


def decode(data: bytes, key: bytes) -> Message:
    """The message in `data`, authenticated; HeartbeatError if anything is wrong."""
    if len(data) > MAX_DATAGRAM:
        raise HeartbeatError(f"datagram of {len(data)} bytes is over {MAX_DATAGRAM}")
    if data[:4] == HEARTBEAT_MAGIC:
        raise HeartbeatError(f"a heartbeat datagram, this node runs swim: {MIXED_MODES}")
    if data[:4] != MAGIC:
        raise HeartbeatError("not a SWIM datagram")
    # Authenticate before reading further: nothing unauthenticated is interpreted.
    body = unseal(data, key)
    reader = _Reader(body, 4)
    version, kind, flags = reader.take(3)
    if version != VERSION:
        raise HeartbeatError(f"version {version}, expected {VERSION}")
    if kind not in Kind._value2member_map_:
        raise HeartbeatError(f"unknown type {kind}")
    node = reader.name()
    boot, sequence, timestamp, probe = reader.unpack(_HEAD)
    target = reader.name()
    updates = tuple(_update(reader) for _ in range(reader.byte()))
    if reader.offset != len(body):
        raise HeartbeatError(f"{len(body) - reader.offset} bytes after the updates")
    if not node:
        raise HeartbeatError("empty sender name")
    return Message(
        Kind(kind),
        node,
        boot,
        sequence,
        timestamp,
        probe,
        target,
        updates,
        bool(flags & Flags.SYNC_REQUEST),
    )


def _update(reader: _Reader) -> Update:
    status, flags = reader.take(2)
    if status not in Status._value2member_map_:
        raise HeartbeatError(f"unknown record status {status}")
    node = reader.name()
    boot, incarnation = reader.unpack(_RECORD)
    accuser = reader.name()
    (count,) = struct.unpack("!H", reader.take(2))
    if count > MAX_VIPS:
        raise HeartbeatError(f"{count} VIPs in a record, at most {MAX_VIPS}")
    vips, reader.offset = read_vips(reader.body, reader.offset, count)
    if not node:
        raise HeartbeatError("record about an empty name")
    return Update(
        Status(status), node, boot, incarnation, accuser, vips, bool(flags & RecordFlags.LEFT)
    )


@dataclass(frozen=True)
class Config:
    node: str
    key: bytes = field(repr=False)
    # Chosen at start so that it grows across restarts: the wall clock in ms.
    incarnation: int
    interval: float = 0.05
    probe_timeout: float = 0.02
    indirect_probes: int = 3
    suspicion_min: float = 0.2
    suspicion_max: float = 0.6
    # Independent suspicions that bring the timer down to `suspicion_min`.
    confirmations: int = 3
    gossip_interval: float = 0.02
    gossip_fanout: int = 3
    retransmit_mult: int = 3
    reconnect_interval: float = 0.5
    # A member is "heard" (`View.heard`) for this long after its last datagram to this node:
    # longer than a node that hears nobody goes without any datagram (an ack per interval,
    # pings from others), shorter than it takes to declare anyone dead.
    heard_for: float = 0.3
    max_local_health: int = 8
    wall_offset: float = 0.0
    max_skew: float | None = None

    def __post_init__(self) -> None:
        if len(self.key) < MIN_KEY_SIZE:
            raise ValueError(f"L2 key: at least {MIN_KEY_SIZE} bytes, got {len(self.key)}")
        if not 0 < self.probe_timeout < self.interval:
            raise ValueError("swim: 0 < probe_timeout < interval")
        if not 0 < self.suspicion_min <= self.suspicion_max:
            raise ValueError("swim: 0 < suspicion_min <= suspicion_max")
        if min(self.gossip_interval, self.reconnect_interval, self.heard_for) <= 0:
            raise ValueError("swim: intervals must be > 0")

    @property
    def detection_time(self) -> float:
        """From a probe going unanswered to a DEAD declaration by the node that sent it,
        without confirmations: the start grace, as the heartbeat's."""
        return 2 * self.interval + self.suspicion_max


@dataclass
class _Member:
    address: Address
    state: PeerState = PeerState.UNKNOWN
    boot: int = 0
    incarnation: int = 0
    vips: frozenset[IPAddress] = frozenset()
    left: bool = False
    # Suspicion: when it started, who confirmed it, when it ends.
    suspected_at: float = 0.0
    accusers: set[str] = field(default_factory=set)
    suspect_until: float = math.inf
    last_heard: float | None = None
    # Replay: the highest (boot, sequence) accepted and a bitmap of the sequences below it.
    counter: tuple[int, int] = (-1, -1)
    seen: int = 0

    @property
    def version(self) -> tuple[int, int]:
        return (self.boot, self.incarnation)


@dataclass
class _Probe:
    id: int
    target: str
    direct_until: float
    ends: float
    acked: bool = False
    indirect: bool = False
    helpers: int = 0
    nacks: int = 0


@dataclass
class _Relay:
    requester: str
    probe: int
    target: str
    ends: float


@dataclass
class _Broadcast:
    node: str
    data: bytes
    left: int


@dataclass
class Swim(PeerTable):
    """One agent's side of the protocol; the same interface as `heartbeat.Heartbeat`."""

    config: Config
    started: float
    peers: dict[str, _Member] = field(default_factory=dict)
    owned: frozenset[IPAddress] = frozenset()
    incarnation: int = 0
    sequence: int = 0
    outbox: list[tuple[bytes, Address]] = field(default_factory=list)
    quiet: bool = False
    local_health: int = 0
    awake: float = 0.0

    def __post_init__(self) -> None:
        self.awake = self.started
        self._random = random.Random(f"{self.config.node}/{self.config.incarnation}")
        self._order: list[str] = []
        self._probe: _Probe | None = None
        # A random phase: members started together must not probe in step.
        self._next_probe = self.started + self._random.random() * self.config.interval
        self._next_gossip = self.started
        self._next_reconnect = self.started + self.config.reconnect_interval
        self._relays: dict[int, _Relay] = {}
        self._probe_ids = 0
        # Pending updates, one per member (the newest), in the order they were queued.
        self._broadcasts: dict[str, _Broadcast] = {}
        # When each peer was last sent our whole view (SYNC): once an interval at most.
        self._synced: dict[str, float] = {}
        self._own = self._self_record()
        # A starting node announces itself, as after any change of its record.
        self._queue(self._own_update(), own=True)
        # Members whose state changes on the timer (suspects), so that the timer and
        # `next_deadline` do not walk every member.
        self._suspects: set[str] = set()
        self._unsettled = True
        self._names: list[str] = []

    # -- inputs ----------------------------------------------------------------------

    def set_peers(self, peers: Mapping[str, Address]) -> None:
        """The other members and their addresses; a new one starts UNKNOWN, a removed one
        is forgotten."""
        for name in list(self.peers):
            if name not in peers:
                del self.peers[name]
                self._suspects.discard(name)
                self._broadcasts.pop(name, None)
                self._synced.pop(name, None)
        for name, address in peers.items():
            if name == self.config.node:
                continue
            if name in self.peers:
                self.peers[name].address = address
            else:
                self.peers[name] = _Member(address)
        self._names = sorted(self.peers)

    def set_owned(self, vips: Iterable[IPAddress], now: float) -> None:
        """What this node answers for; a change raises its version and is gossiped at once."""
        owned = frozenset(vips)
        if owned != self.owned:
            self.owned = owned
            self._announce_self(now)

    def leave(self, now: float) -> None:
        """Shutting down: tell every member at once, so they take over without waiting."""
        self.owned = frozenset()
        self.incarnation += 1
        record = encode_update(
            Update(
                Status.DEAD,
                self.config.node,
                self.config.incarnation,
                self.incarnation,
                self.config.node,
                left=True,
            )
        )
        self._broadcasts.clear()
        for member in self.peers.values():
            self._send(Kind.GOSSIP, member.address, now, extra=[record], piggyback=False)

    def set_quiet(self, quiet: bool, now: float) -> None:
        """Quiet: say this node leaves, then send nothing (still listening) until resumed."""
        if quiet == self.quiet:
            return
        if quiet:
            self.leave(now)
            self.quiet = True
            self._probe = None
        else:
            self.quiet = False
            self._announce_self(now)
            self._next_probe = min(self._next_probe, now)

    def handle_datagram(self, data: bytes, address: Address, now: float) -> list[Event]:
        try:
            message = decode(data, self.config.key)
        except HeartbeatError as error:
            return [Rejected(address, str(error))]
        sender = self.peers.get(message.node)
        if sender is None:
            return [Rejected(address, f"node {message.node!r} is not a peer")]
        if not _fresh(sender, message.boot, message.sequence):
            return [Rejected(address, f"replayed or old: ({message.boot}, {message.sequence})")]
        skew = self.config.max_skew
        if skew is not None and abs(message.timestamp_ms / 1000 - self._wall(now)) > skew:
            return [Rejected(address, f"timestamp further than {skew}s from our clock")]
        sender.last_heard = now
        events: list[Event] = []
        for update in message.updates:
            events += self._apply(update, now, spread=message.kind is not Kind.SYNC)
        if self.quiet:
            return events
        if message.kind is Kind.PING:
            self._send(
                Kind.ACK,
                sender.address,
                now,
                probe=message.probe,
                target=self.config.node,
                to=message.node,
            )
            if message.sync_request:
                self._send_sync(message.node, now)
        elif message.kind is Kind.ACK:
            self._acked(message, now)
        elif message.kind is Kind.PING_REQ:
            self._relay(message, now)
        elif message.kind is Kind.NACK:
            probe = self._probe
            if probe is not None and probe.id == message.probe and probe.target == message.target:
                probe.nacks += 1
        return events

    def handle_timer(self, now: float) -> list[Event]:
        events: list[Event] = []
        self._forgive_stall(now)
        if not self.quiet:
            self._run_probe(now)
            if now >= self._next_reconnect:
                self._reconnect(now)
                self._next_reconnect = max(
                    self._next_reconnect + self.config.reconnect_interval, now
                )
            if now >= self._next_gossip:
                self._gossip(now)
                self._next_gossip = max(self._next_gossip + self.config.gossip_interval, now)
        for name in sorted(self._suspects):
            member = self.peers[name]
            if now >= member.suspect_until:
                events += self._set_state(name, member, PeerState.DEAD, now)
                self._queue(
                    Update(Status.DEAD, name, member.boot, member.incarnation, self.config.node)
                )
        if self._unsettled and self.settled(now):
            self._unsettled = False
            for name, member in self.peers.items():
                if member.state is PeerState.UNKNOWN:
                    events += self._set_state(name, member, PeerState.DEAD, now)
        for key, relay in list(self._relays.items()):
            if now >= relay.ends:
                del self._relays[key]
                requester = self.peers.get(relay.requester)
                if requester is not None and not self.quiet:
                    self._send(
                        Kind.NACK,
                        requester.address,
                        now,
                        probe=relay.probe,
                        target=relay.target,
                        to=relay.requester,
                    )
        return events

    # -- outputs ---------------------------------------------------------------------

    def next_deadline(self) -> float:
        deadlines = []
        if not self.quiet:
            deadlines += [self._next_probe, self._next_reconnect]
            if self._broadcasts:
                deadlines.append(self._next_gossip)
        probe = self._probe
        if probe is not None and not self.quiet:
            deadlines.append(probe.ends if probe.indirect or probe.acked else probe.direct_until)
        deadlines += [self.peers[name].suspect_until for name in self._suspects]
        deadlines += [relay.ends for relay in self._relays.values()]
        if self._unsettled:
            deadlines.append(self.started + self.config.detection_time)
        # Quiet and nothing pending: nothing to do until an input comes.
        return min(deadlines, default=math.inf)

    def datagrams_to_send(self) -> list[tuple[bytes, Address]]:
        out, self.outbox = self.outbox, []
        return out

    def heard(self, now: float | None = None) -> frozenset[str]:
        """ALIVE members that sent this node a datagram within `heard_for` (as of the last
        call when `now` is not given). Not every member: each hears few others directly;
        what ownership needs is "not cut off" (it hears someone) and that still holds."""
        at = self.awake if now is None else now
        return frozenset(
            n
            for n, m in self.peers.items()
            if m.state is PeerState.ALIVE
            and m.last_heard is not None
            and at < m.last_heard + self.config.heard_for
        )

    def pending_broadcasts(self) -> int:
        return len(self._broadcasts)

    def relays(self) -> int:
        return len(self._relays)

    # -- membership ------------------------------------------------------------------

    def _apply(self, update: Update, now: float, spread: bool = True) -> list[Event]:
        if update.node == self.config.node:
            self._refute(update, now)
            return []
        member = self.peers.get(update.node)
        if member is None:
            return []
        version, known = update.version, member.version
        events: list[Event] = []
        if update.status is Status.ALIVE:
            if not (version > known or member.state is PeerState.UNKNOWN):
                return []
            member.boot, member.incarnation, member.left = update.boot, update.incarnation, False
            member.suspect_until = math.inf
            events += self._set_state(update.node, member, PeerState.ALIVE, now)
            vips = frozenset(update.vips)
            if vips != member.vips:
                member.vips = vips
                events.append(ClaimsChanged(update.node, vips))
        elif update.status is Status.SUSPECT:
            if member.state is PeerState.SUSPECT and version == known:
                self._confirm(member, update.accuser, now)
                return []
            if version < known or (version == known and member.state is PeerState.DEAD):
                return []
            member.boot, member.incarnation = update.boot, update.incarnation
            events += self._suspect(update.node, member, update.accuser, now)
        else:
            if version < known or (member.state is PeerState.DEAD and version == known):
                return []
            member.boot, member.incarnation, member.left = (
                update.boot,
                update.incarnation,
                update.left,
            )
            if update.left:
                member.vips = frozenset()
            events += self._set_state(update.node, member, PeerState.DEAD, now)
        # Accepted news is passed on; a SYNC is old news to everyone but its receiver.
        if spread:
            self._queue(update)
        return events

    def _suspect(self, name: str, member: _Member, accuser: str, now: float) -> list[Event]:
        member.suspected_at = now
        member.accusers = {accuser}
        member.suspect_until = now + self._suspicion_timeout(0)
        return self._set_state(name, member, PeerState.SUSPECT, now)

    def _confirm(self, member: _Member, accuser: str, now: float) -> None:
        if accuser in member.accusers:
            return
        member.accusers.add(accuser)
        timeout = self._suspicion_timeout(len(member.accusers) - 1)
        member.suspect_until = min(member.suspect_until, member.suspected_at + timeout)

    def _suspicion_timeout(self, confirmations: int) -> float:
        """Lifeguard: from `suspicion_max` down to `suspicion_min` as confirmations come,
        stretched by this node's own ill health."""
        low, high = self.config.suspicion_min, self.config.suspicion_max
        # No more can confirm than the other members (memberlist caps it so too).
        wanted = max(1, min(self.config.confirmations, len(self.peers) - 1))
        fraction = math.log(min(confirmations, wanted) + 1) / math.log(wanted + 1)
        return max(low, high - (high - low) * fraction) * (1 + self.local_health)

    def _refute(self, update: Update, now: float) -> None:
        if update.status is Status.ALIVE or self.quiet:
            return
        if update.boot != self.config.incarnation or update.incarnation < self.incarnation:
            return
        self.incarnation = update.incarnation
        self._health(+1)
        self._announce_self(now)

    def _announce_self(self, now: float) -> None:
        self.incarnation += 1
        self._own = self._self_record()
        self._broadcasts.pop(self.config.node, None)
        self._queue(self._own_update(), own=True)
        self._next_gossip = min(self._next_gossip, now)

    def _set_state(self, name: str, member: _Member, state: PeerState, now: float) -> list[Event]:
        if state is not PeerState.SUSPECT:
            member.suspect_until = math.inf
            member.accusers = set()
        if state is member.state:
            return []
        if state is PeerState.SUSPECT:
            self._suspects.add(name)
        else:
            self._suspects.discard(name)
        before, member.state = member.state, state
        return [PeerChanged(name, before, state, now)]

    def _health(self, change: int) -> None:
        self.local_health = min(self.config.max_local_health, max(0, self.local_health + change))

    # -- probing ---------------------------------------------------------------------

    def _run_probe(self, now: float) -> None:
        probe = self._probe
        waited = probe is not None and not probe.acked and not probe.indirect
        if probe is not None and waited and now >= probe.direct_until:
            probe.indirect = True
            helpers = self._pick(self.config.indirect_probes, exclude=probe.target)
            probe.helpers = len(helpers)
            for helper in helpers:
                self._send(
                    Kind.PING_REQ,
                    self.peers[helper].address,
                    now,
                    probe=probe.id,
                    target=probe.target,
                    to=helper,
                )
        if probe is not None and now >= probe.ends:
            self._probe = None
            member = self.peers.get(probe.target)
            if probe.acked:
                self._health(-1)
            else:
                # Helpers that did not even send a NACK point at this node's own link; with
                # no helper to ask, the failure is this node's as much as the target's.
                self._health(probe.helpers - probe.nacks if probe.helpers else 1)
                if member is not None and member.state is PeerState.SUSPECT:
                    # Another independent suspicion: it shortens every holder's timer.
                    self._confirm(member, self.config.node, now)
                    self._queue(
                        Update(
                            Status.SUSPECT,
                            probe.target,
                            member.boot,
                            member.incarnation,
                            self.config.node,
                        )
                    )
                elif member is not None and member.state is PeerState.ALIVE:
                    self._suspect(probe.target, member, self.config.node, now)
                    update = Update(
                        Status.SUSPECT,
                        probe.target,
                        member.boot,
                        member.incarnation,
                        self.config.node,
                    )
                    self._queue(update)
                    # The suspect hears it first, so that it refutes before any timer ends.
                    self._send(Kind.GOSSIP, member.address, now, to=probe.target)
        if now >= self._next_probe:
            self._next_probe = max(self._next_probe + self.config.interval, now)
            target = self._next_target()
            if target is not None:
                self._probe_ids = (self._probe_ids + 1) & 0xFFFFFFFF
                timeout = self.config.probe_timeout * (1 + self.local_health)
                self._probe = _Probe(
                    self._probe_ids,
                    target,
                    now + min(timeout, self.config.interval / 2),
                    now + self.config.interval,
                )
                self._send(
                    Kind.PING,
                    self.peers[target].address,
                    now,
                    probe=self._probe_ids,
                    to=target,
                    sync_request=self._unsettled and self._unknown_left(),
                )

    def _unknown_left(self) -> bool:
        return any(m.state is PeerState.UNKNOWN for m in self.peers.values())

    def _next_target(self) -> str | None:
        for _ in range(2):
            while self._order:
                name = self._order.pop()
                member = self.peers.get(name)
                if member is not None and member.state is not PeerState.DEAD:
                    return name
            self._order = sorted(self.peers)
            self._random.shuffle(self._order)
        return None

    def _acked(self, message: Message, now: float) -> None:
        probe = self._probe
        if probe is not None and probe.id == message.probe and probe.target == message.target:
            probe.acked = True
            return
        relay = self._relays.pop(message.probe, None)
        if relay is not None and relay.target == message.node and relay.requester in self.peers:
            self._send(
                Kind.ACK,
                self.peers[relay.requester].address,
                now,
                probe=relay.probe,
                target=relay.target,
                to=relay.requester,
            )

    def _relay(self, message: Message, now: float) -> None:
        target = self.peers.get(message.target)
        if target is None or len(self._relays) >= MAX_RELAYS:
            return
        self._probe_ids = (self._probe_ids + 1) & 0xFFFFFFFF
        self._relays[self._probe_ids] = _Relay(
            message.node, message.probe, message.target, now + self.config.probe_timeout
        )
        self._send(Kind.PING, target.address, now, probe=self._probe_ids, to=message.target)

    def _reconnect(self, now: float) -> None:
        """Ping one dead member now and then: after a partition heals, this is how each
        side learns the other was declared dead (the ping says so) and refutes."""
        dead = sorted(n for n, m in self.peers.items() if m.state is PeerState.DEAD)
        if dead:
            name = self._random.choice(dead)
            self._probe_ids = (self._probe_ids + 1) & 0xFFFFFFFF
            self._send(Kind.PING, self.peers[name].address, now, probe=self._probe_ids, to=name)

    def _forgive_stall(self, now: float) -> None:
        """A node that was stalled (its timer runs at least once per probe interval) did
        not hear acks and datagrams it could not read: its probe in flight is dropped, not
        failed, and the suspicions it holds are stretched by the stall."""
        gap = now - self.awake
        self.awake = now
        if gap <= 2 * self.config.interval:
            return
        stall = gap - self.config.interval
        self._probe = None
        for name in self._suspects:
            self.peers[name].suspect_until += stall

    # -- dissemination ---------------------------------------------------------------

    def _self_record(self) -> bytes:
        return encode_update(self._own_update())

    def _own_update(self) -> Update:
        vips = tuple(sorted(self.owned, key=lambda a: (a.version, a.packed)))
        return Update(
            Status.ALIVE, self.config.node, self.config.incarnation, self.incarnation, vips=vips
        )

    def _retransmits(self) -> int:
        return self.config.retransmit_mult * math.ceil(math.log10(len(self.peers) + 2))

    def _queue(self, update: Update, own: bool = False) -> None:
        data = self._own if own else encode_update(update)
        self._broadcasts.pop(update.node, None)
        self._broadcasts[update.node] = _Broadcast(update.node, data, self._retransmits())

    def _piggyback(self, to: str) -> list[bytes]:
        chosen = [self._own]
        member = self.peers.get(to)
        if member is not None and member.state in (PeerState.SUSPECT, PeerState.DEAD):
            status = Status.SUSPECT if member.state is PeerState.SUSPECT else Status.DEAD
            # Tell it what we hold, so that it refutes.
            chosen.append(
                encode_update(
                    Update(
                        status,
                        to,
                        member.boot,
                        member.incarnation,
                        self.config.node,
                        left=member.left,
                    )
                )
            )
        size = sum(map(len, chosen))
        spent = []
        # The newest first (the queue is in the order news came): the freshest news goes
        # furthest, and a send costs what it carries, not the length of the queue.
        for broadcast in reversed(self._broadcasts.values()):
            if broadcast.node == to:
                continue
            if broadcast.node == self.config.node:
                spent.append(broadcast)
                continue
            if size + len(broadcast.data) > PIGGYBACK_BUDGET or len(chosen) >= MAX_UPDATES:
                break
            chosen.append(broadcast.data)
            size += len(broadcast.data)
            spent.append(broadcast)
        own = self._broadcasts.get(self.config.node)
        if own is not None and own not in spent:
            spent.append(own)
        for broadcast in spent:
            broadcast.left -= 1
            if broadcast.left <= 0:
                del self._broadcasts[broadcast.node]
        return chosen

    def _gossip(self, now: float) -> None:
        if not self._broadcasts:
            return
        for name in self._pick(self.config.gossip_fanout):
            self._send(Kind.GOSSIP, self.peers[name].address, now, to=name)

    def _pick(self, count: int, exclude: str = "") -> list[str]:
        """Up to `count` random ALIVE members other than `exclude`, drawn without walking
        every member while most are alive."""
        names = self._names
        chosen: list[str] = []
        for _ in range(4 * count):
            if len(chosen) == count or not names:
                return chosen
            name = names[self._random.randrange(len(names))]
            if name != exclude and name not in chosen and self.peers[name].state is PeerState.ALIVE:
                chosen.append(name)
        rest = [
            n
            for n in names
            if n != exclude and n not in chosen and self.peers[n].state is PeerState.ALIVE
        ]
        return chosen + self._random.sample(rest, min(count - len(chosen), len(rest)))

    def _send_sync(self, to: str, now: float) -> None:
        """Our whole view to a starting member, in datagrams of the piggyback budget."""
        if now < self._synced.get(to, -math.inf) + self.config.interval:
            return
        self._synced[to] = now
        records = [
            encode_update(
                Update(
                    Status.ALIVE
                    if m.state is PeerState.ALIVE
                    else Status.SUSPECT
                    if m.state is PeerState.SUSPECT
                    else Status.DEAD,
                    name,
                    m.boot,
                    m.incarnation,
                    accuser=self.config.node if m.state is not PeerState.ALIVE else "",
                    vips=tuple(sorted(m.vips, key=lambda a: (a.version, a.packed))),
                    left=m.left,
                )
            )
            for name, m in self.peers.items()
            if name != to and m.state is not PeerState.UNKNOWN
        ]
        address = self.peers[to].address
        chunk: list[bytes] = []
        size = 0
        for record in records:
            if chunk and (size + len(record) > PIGGYBACK_BUDGET or len(chunk) >= MAX_UPDATES - 1):
                self._send(Kind.SYNC, address, now, extra=chunk, piggyback=False)
                chunk, size = [], 0
            chunk.append(record)
            size += len(record)
        if chunk:
            self._send(Kind.SYNC, address, now, extra=chunk, piggyback=False)

    def _send(
        self,
        kind: Kind,
        address: Address,
        now: float,
        probe: int = 0,
        target: str = "",
        to: str = "",
        extra: list[bytes] | None = None,
        piggyback: bool = True,
        sync_request: bool = False,
    ) -> None:
        self.sequence += 1
        updates = self._piggyback(to) if piggyback else [self._own]
        message = Message(
            kind,
            self.config.node,
            self.config.incarnation,
            self.sequence,
            int(self._wall(now) * 1000),
            probe,
            target,
            sync_request=sync_request,
        )
        self.outbox.append((encode(message, self.config.key, updates + (extra or [])), address))

    def _wall(self, now: float) -> float:
        return now + self.config.wall_offset


def _fresh(member: _Member, boot: int, sequence: int) -> bool:
    """Whether (boot, sequence) was not accepted before from this member, and marks it."""
    last_boot, last = member.counter
    if (boot, sequence) > member.counter:
        shift = sequence - last if boot == last_boot else REPLAY_WINDOW
        member.seen = ((member.seen << shift) | 1) & ((1 << REPLAY_WINDOW) - 1)
        member.counter = (boot, sequence)
        return True
    if boot != last_boot or last - sequence >= REPLAY_WINDOW:
        return False
    bit = 1 << (last - sequence)
    if member.seen & bit:
        return False
    member.seen |= bit
    return True
