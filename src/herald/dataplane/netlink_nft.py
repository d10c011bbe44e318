"""nftables set and map elements written as netlink batches, below nft's text parser.

libnftables parses and evaluates every element of a script (~15 µs for a concatenated
Maglev slot key), so a resync of ten million slots took minutes. The kernel needs none of
that: an element is a few fixed-size attributes. Here they are encoded straight from
render's `Element`s and `SlotMap`s, many per NFT_MSG_NEWSETELEM / NFT_MSG_DELSETELEM
message, all messages of a change between NFNL_MSG_BATCH_BEGIN and BATCH_END: one kernel
transaction, committed whole or not at all, exactly as a `nft -f` script of element
commands. Declarations (tables, chains, sets) stay on the text path: they are few and rare.

The encoding is what nft 1.0.6 sends for the same elements (golden tests compare the
bytes): a concatenated key puts each field in its own 4-byte register (a protocol number
and a port are zero-padded), a single value keeps its own length, an interval set of
concatenations (`flags interval`, the pipapo backend) gives the first and last key of the
range (NFTA_SET_ELEM_KEY_END), a verdict map's data is a verdict with the chain's name,
and `numgen`/`jhash` values are host-endian integers. nft also sends the set's id
(NFTA_SET_ELEM_LIST_SET_ID), which the kernel reads only for a set created in the same
batch; declarations are never in these batches, so it is left out.

`Batch` is pure (encode only); `NetlinkElements` sends a batch on a NETLINK_NETFILTER
socket, opened in a named network namespace or the caller's.
"""

from __future__ import annotations

import array
import ctypes
import errno
import functools
import ipaddress
import itertools
import os
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from herald.dataplane.render import TABLE, Element, NftObject, SlotMap

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFNL_MSG_BATCH_BEGIN = 0x10
NFNL_MSG_BATCH_END = 0x11
NFT_MSG_NEWSETELEM = 12
NFT_MSG_DELSETELEM = 14
NLM_F_REQUEST = 0x1
NLM_F_CREATE = 0x400
NLMSG_ERROR = 2
NLA_F_NESTED = 0x8000
NFTA_SET_ELEM_LIST_TABLE = 1
NFTA_SET_ELEM_LIST_SET = 2
NFTA_SET_ELEM_LIST_ELEMENTS = 3
NFTA_LIST_ELEM = 1
NFTA_SET_ELEM_KEY = 1
NFTA_SET_ELEM_DATA = 2
NFTA_SET_ELEM_KEY_END = 10
NFTA_DATA_VALUE = 1
NFTA_DATA_VERDICT = 2
NFTA_VERDICT_CODE = 1
NFTA_VERDICT_CHAIN = 2
FAMILY_NUMBER = {"inet": 1, "netdev": 5}  # NFPROTO_*
VERDICTS = {"drop": 0, "accept": 1, "continue": -1, "return": -5, "jump": -3, "goto": -4}
PROTOCOLS = {"icmp": 1, "tcp": 6, "udp": 17, "ipv6-icmp": 58, "sctp": 132}
# An attribute's length is 16 bits: a message carries as many elements as fit in one
# NFTA_SET_ELEM_LIST_ELEMENTS.
MAX_ELEMENTS_BYTES = 0xFFFF - 4
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10  # errors without the refused message echoed back (64 KB each)
SO_SNDBUFFORCE = 32
SO_RCVBUFFORCE = 33
CLONE_NEWNET = 0x40000000


assert array.array("I").itemsize == 4, "a netlink attribute word is 32 bits"


class NetlinkUnavailable(OSError):
    """No NETLINK_NETFILTER socket could be opened (no root, no such namespace)."""


class UnknownLayout(ValueError):
    """A set's type is not one this encoder knows; that set stays on the text path."""


# -- encoding (pure) --------------------------------------------------------------------


def attr(kind: int, payload: bytes) -> bytes:
    size = 4 + len(payload)
    return struct.pack("=HH", size, kind) + payload + bytes(-size % 4)


def nested(kind: int, payload: bytes) -> bytes:
    return attr(kind | NLA_F_NESTED, payload)


def string(kind: int, text: str) -> bytes:
    return attr(kind, text.encode() + b"\0")


# Layouts and fields are compared by identity: they key the encoders' caches, and
# hashing their contents on every element would cost more than the encoding.
@dataclass(frozen=True, eq=False)
class Field:
    """One part of a key or a map's data: how its text becomes bytes."""

    name: str
    encode: Callable[[str], bytes]


def _address(family: socket.AddressFamily) -> Callable[[str], bytes]:
    # The same VIPs and backends recur in every element of a service: parse each once.
    @functools.lru_cache(maxsize=1 << 16)
    def encode(text: str) -> bytes:
        try:
            return socket.inet_pton(family, text)
        except OSError:
            raise ValueError(f"{text!r} is not of the field's type ({family.name})") from None

    return encode


@functools.lru_cache(maxsize=1024)
def _protocol(text: str) -> bytes:
    return bytes([PROTOCOLS[text] if text in PROTOCOLS else int(text)])


@functools.lru_cache(maxsize=1 << 16)
def _port(text: str) -> bytes:
    return struct.pack("!H", int(text))


def _host_u32(text: str) -> bytes:
    return _U32.pack(int(text))


_U32 = struct.Struct("=I")


FIELDS = {
    "ipv4_addr": Field("ipv4_addr", _address(socket.AF_INET)),
    "ipv6_addr": Field("ipv6_addr", _address(socket.AF_INET6)),
    "inet_proto": Field("inet_proto", _protocol),
    "inet_service": Field("inet_service", _port),
    "integer": Field("integer", _host_u32),
}
# `typeof` expressions -> the datatype nft gives them.
EXPRESSIONS = {
    "ip daddr": "ipv4_addr",
    "ip saddr": "ipv4_addr",
    "ip6 daddr": "ipv6_addr",
    "ip6 saddr": "ipv6_addr",
    "meta l4proto": "inet_proto",
    "th dport": "inet_service",
    "th sport": "inet_service",
}


def _field(part: str) -> Field:
    part = part.strip()
    if part in FIELDS:
        return FIELDS[part]
    if part in EXPRESSIONS:
        return FIELDS[EXPRESSIONS[part]]
    if part.startswith(("numgen ", "jhash ")):
        return FIELDS["integer"]
    raise UnknownLayout(f"no encoding for {part!r}")


@dataclass(frozen=True, eq=False)
class Layout:
    """A set's or map's key fields and data (None: a set; "verdict": a verdict map)."""

    family: str
    name: str
    key: tuple[Field, ...]
    data: Field | str | None
    interval: bool

    def key_bytes(self, text: str) -> bytes:
        head, _, last = text.rpartition(" . ")
        if not head:
            if len(self.key) != 1:
                raise ValueError(f"{self.name}: {text!r} has 1 field, not {len(self.key)}")
            return self.key[0].encode(text)
        # Each field of a concatenation takes whole 4-byte registers; a change lists one
        # key prefix with many slot numbers, so the prefix is encoded once.
        return _concatenation(self.key[:-1], head) + _register(self.key[-1].encode(last))

    def key_range(self, text: str) -> tuple[bytes, bytes]:
        """An interval element's first and last key: its last field may be a network."""
        *head, last = text.split(" . ")
        if "/" not in last:
            key = self.key_bytes(text)
            return key, key
        network = ipaddress.ip_network(last)
        prefix = " . ".join(head)
        first = self.key_bytes(f"{prefix} . {network.network_address}" if head else last)
        end = self.key_bytes(
            f"{prefix} . {network.broadcast_address}" if head else str(network.broadcast_address)
        )
        return first, end

    def data_attr(self, text: str) -> bytes:
        if self.data == "verdict":
            word, _, chain = text.partition(" ")
            verdict = attr(NFTA_VERDICT_CODE, struct.pack("!i", VERDICTS[word]))
            if chain:
                verdict += string(NFTA_VERDICT_CHAIN, chain)
            return nested(NFTA_SET_ELEM_DATA, nested(NFTA_DATA_VERDICT, verdict))
        if isinstance(self.data, Field):
            return nested(NFTA_SET_ELEM_DATA, attr(NFTA_DATA_VALUE, self.data.encode(text)))
        raise ValueError(f"{self.name} is a set: an element has no value ({text!r})")

    def element(self, key: str, value: str = "", delete: bool = False) -> bytes:
        """One NFTA_LIST_ELEM's attributes (its header comes with its position in the
        message); a deletion names the key only."""
        if self.interval:
            first, end = self.key_range(key)
            body = nested(NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, first))
            body += nested(NFTA_SET_ELEM_KEY_END, attr(NFTA_DATA_VALUE, end))
        else:
            body = nested(NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, self.key_bytes(key)))
        if value and not delete:
            body += _data_attr(self, value)
        elif self.data is not None and not delete:
            raise ValueError(f"{self.name}: element {key!r} needs a value")
        return body


@functools.lru_cache(maxsize=1 << 14)
def _concatenation(fields: tuple[Field, ...], text: str) -> bytes:
    parts = text.split(" . ")
    if len(parts) != len(fields):
        raise ValueError(f"{text!r} has {len(parts) + 1} fields, not {len(fields) + 1}")
    return b"".join(_register(f.encode(p)) for f, p in zip(fields, parts, strict=True))


@functools.lru_cache(maxsize=1 << 14)
def _data_attr(layout: Layout, text: str) -> bytes:
    # Few values recur in many elements: a service's backends, its chains.
    return layout.data_attr(text)


def _register(value: bytes) -> bytes:
    return value + bytes(-len(value) % 4)


@functools.lru_cache(maxsize=1024)
def layout(declared: NftObject) -> Layout:
    """A set's or map's layout from its declaration (`typeof …` or `type …`)."""
    if declared.kind not in ("set", "map"):
        raise UnknownLayout(f"{declared.name} is a {declared.kind}")
    kind_line = next((line for line in declared.body if line.startswith(("typeof ", "type "))), "")
    if not kind_line:
        raise UnknownLayout(f"{declared.name} declares no type")
    spec = kind_line.split(" ", 1)[1]
    key_spec, _, data_spec = spec.partition(" : ")
    data: Field | str | None = None
    if data_spec:
        data = "verdict" if data_spec.strip() == "verdict" else _field(data_spec)
    interval = any("interval" in line for line in declared.body if line.startswith("flags"))
    key = tuple(_field(p) for p in key_spec.split(" . "))
    return Layout(declared.family, declared.name, key, data, interval)


def layouts(objects: Iterable[NftObject]) -> dict[tuple[str, str], Layout]:
    """The layouts of every set and map in `objects` this encoder knows."""
    found = {}
    for o in objects:
        if o.kind in ("set", "map"):
            try:
                found[(o.family, o.name)] = layout(o)
            except UnknownLayout:
                continue
    return found


# A batch encoded only when it is sent: a resync's ten million slots would otherwise all be
# bytes in memory at once (~400 MB), rather than one batch's worth.
DeferredBatch = Callable[[], "Batch"]


def slot_batches(
    known: Mapping[tuple[str, str], Layout], tables: Iterable[SlotMap], chunk: int
) -> list[DeferredBatch]:
    """The Maglev `tables` in batches of at most `chunk` slots each, in order."""
    plans: list[list[tuple[SlotMap, int, int]]] = []
    plan: list[tuple[SlotMap, int, int]] = []
    room = chunk
    for table in tables:
        done = 0
        while done < len(table.values):
            stop = min(len(table.values), done + room)
            plan.append((table, done, stop))
            room -= stop - done
            done = stop
            if room <= 0:
                plans.append(plan)
                plan, room = [], chunk
    if plan:
        plans.append(plan)
    return [functools.partial(_slot_batch, known, p) for p in plans]


def element_batches(
    known: Mapping[tuple[str, str], Layout], elements: Sequence[Element], chunk: int
) -> list[DeferredBatch]:
    """`elements` added in batches of at most `chunk` each, in order."""
    return [
        functools.partial(_element_batch, known, elements[i : i + chunk])
        for i in range(0, len(elements), chunk)
    ]


def _element_batch(known: Mapping[tuple[str, str], Layout], elements: Sequence[Element]) -> Batch:
    return Batch(known).add(elements)


def _slot_batch(
    known: Mapping[tuple[str, str], Layout], plan: Sequence[tuple[SlotMap, int, int]]
) -> Batch:
    batch = Batch(known)
    for table, first, stop in plan:
        batch.add_slots(table, first, stop)
    return batch


def _words(data: bytes) -> array.array[int]:
    return array.array("I", data)


@functools.lru_cache(maxsize=8)
def _numbers(stop: int) -> array.array[int]:
    return array.array("I", range(stop))


@functools.lru_cache(maxsize=64)
def _header_words(size: int, count: int) -> array.array[int]:
    """The NFTA_LIST_ELEM headers of `count` elements of `size` bytes, numbered from 1."""
    return _words(
        b"".join(struct.pack("=HH", 4 + size, i | NLA_F_NESTED) for i in range(1, count + 1))
    )


@dataclass
class Batch:
    """Element deletions and additions in the order given: one kernel transaction.

    Consecutive elements of the same verb and set share a message until it is full.
    """

    layouts: Mapping[tuple[str, str], Layout]
    # (verb, family, container, numbered) and the encoded elements, in order: each one's
    # attributes, or when numbered, each message's elements with their headers.
    parts: list[tuple[tuple[int, str, str, bool], list[bytes]]] = field(default_factory=list)
    elements: int = 0

    def _target(
        self, verb: int, family: str, container: str, numbered: bool = False
    ) -> list[bytes]:
        where = (verb, family, container, numbered)
        if not self.parts or self.parts[-1][0] != where:
            self.parts.append((where, []))
        return self.parts[-1][1]

    def _layout(self, family: str, container: str) -> Layout:
        found = self.layouts.get((family, container))
        if found is None:
            raise UnknownLayout(f"no declared set or map {family} {container}")
        return found

    def delete(self, elements: Iterable[Element]) -> Batch:
        for e in elements:
            encoded = self._layout(e.family, e.container).element(e.key, delete=True)
            self._target(NFT_MSG_DELSETELEM, e.family, e.container).append(encoded)
            self.elements += 1
        return self

    def add(self, elements: Iterable[Element]) -> Batch:
        for e in elements:
            encoded = self._layout(e.family, e.container).element(e.key, e.value)
            self._target(NFT_MSG_NEWSETELEM, e.family, e.container).append(encoded)
            self.elements += 1
        return self

    def add_slots(self, slots: SlotMap, first: int = 0, stop: int | None = None) -> Batch:
        """Slots `first` to `stop` of a Maglev table, encoded without text or a Python
        object per element: every element of a table has the same layout (headers, the
        key's prefix, the slot number, the owner's address), so the table is one array of
        32-bit words filled column by column, cut into full messages."""
        found = self._layout(slots.family, slots.container)
        stop = len(slots.values) if stop is None else stop
        values = slots.values[first:stop]
        present: Sequence[int] = range(first, first + len(values))
        owners: Sequence[str] = values
        if not all(values):
            present = [slot for slot, value in enumerate(values, first) if value]
            owners = [values[slot - first] for slot in present]
        if not present:
            return self
        data = {v: b"" if slots.member else found.data_attr(v) for v in set(owners)}
        if len({len(d) for d in data.values()}) != 1:  # owners of two families
            return self.add(slots.elements(present))
        key = nested(
            NFTA_SET_ELEM_KEY, attr(NFTA_DATA_VALUE, found.key_bytes(f"{slots.prefix} . 0"))
        )
        some = next(iter(data.values()))
        size = len(key) + len(some)
        width = 1 + size // 4  # words per element, its NFTA_LIST_ELEM header first
        slot_column = len(key) // 4  # the slot number ends the key
        words = array.array("I", _words(bytes(4) + key + some) * len(present))
        words[slot_column::width] = (
            _numbers(stop)[first:stop] if isinstance(present, range) else array.array("I", present)
        )
        for column in range(len(some) // 4):
            by_owner = {v: _words(d)[column] for v, d in data.items()}
            words[1 + slot_column + column :: width] = array.array(
                "I", map(by_owner.__getitem__, owners)
            )
        per_message = MAX_ELEMENTS_BYTES // (4 * width)
        headers = _header_words(size, per_message)
        whole, rest = divmod(len(present), per_message)
        words[0::width] = headers * whole + headers[:rest]
        encoded = words.tobytes()
        step = per_message * width * 4
        target = self._target(NFT_MSG_NEWSETELEM, slots.family, slots.container, numbered=True)
        target.extend(encoded[i : i + step] for i in range(0, len(encoded), step))
        self.elements += len(present)
        return self

    def messages(self, seq: int = 0) -> list[bytes]:
        """BATCH_BEGIN, the element messages, BATCH_END, with sequence numbers from `seq`."""
        out = [_batch_marker(NFNL_MSG_BATCH_BEGIN, seq)]
        for (verb, family, container, numbered), encoded in self.parts:
            for payload in encoded if numbered else map(_numbered, _fill(encoded)):
                seq += 1
                body = string(NFTA_SET_ELEM_LIST_TABLE, TABLE)
                body += string(NFTA_SET_ELEM_LIST_SET, container)
                body += nested(NFTA_SET_ELEM_LIST_ELEMENTS, payload)
                flags = NLM_F_REQUEST | (NLM_F_CREATE if verb == NFT_MSG_NEWSETELEM else 0)
                out.append(_message((NFNL_SUBSYS_NFTABLES << 8) | verb, flags, seq, family, body))
        out.append(_batch_marker(NFNL_MSG_BATCH_END, seq + 1))
        return out

    def describe(self, index: int) -> str:
        """What the `index`-th message of `messages()` (0: BATCH_BEGIN) asks."""
        if index <= 0:  # the kernel names the batch when its commit fails
            return "the batch"
        position = 0
        for (verb, family, container, numbered), encoded in self.parts:
            position += len(encoded) if numbered else len(_fill(encoded))
            if index <= position:
                action = "add" if verb == NFT_MSG_NEWSETELEM else "delete"
                return f"{action} element {family} {TABLE} {container}"
        return "the batch"


def _fill(encoded: Sequence[bytes]) -> list[Sequence[bytes]]:
    chunks: list[Sequence[bytes]] = []
    start = size = 0
    for i, e in enumerate(encoded):
        if size + 4 + len(e) > MAX_ELEMENTS_BYTES:
            chunks.append(encoded[start:i])
            start, size = i, 0
        size += 4 + len(e)
    if start < len(encoded):
        chunks.append(encoded[start:])
    return chunks


def _numbered(bodies: Sequence[bytes]) -> bytes:
    """The elements of one message, each in an NFTA_LIST_ELEM numbered from 1 as libnftnl
    numbers them (the kernel ignores the number)."""
    sizes = {len(b) for b in bodies}
    if len(sizes) == 1:
        headers: Sequence[bytes] = _headers(sizes.pop())[: len(bodies)]
    else:
        headers = [
            struct.pack("=HH", 4 + len(b), i | NLA_F_NESTED) for i, b in enumerate(bodies, 1)
        ]
    return b"".join(itertools.chain.from_iterable(zip(headers, bodies, strict=True)))


@functools.lru_cache(maxsize=64)
def _headers(size: int) -> list[bytes]:
    count = MAX_ELEMENTS_BYTES // (4 + size) + 1
    return [struct.pack("=HH", 4 + size, i | NLA_F_NESTED) for i in range(1, count + 1)]


def _message(kind: int, flags: int, seq: int, family: int | str, body: bytes) -> bytes:
    number = FAMILY_NUMBER[family] if isinstance(family, str) else family
    header = struct.pack("=IHHII", 16 + 4 + len(body), kind, flags, seq, 0)
    return header + struct.pack("=BBH", number, 0, 0) + body


def _batch_marker(kind: int, seq: int) -> bytes:
    header = struct.pack("=IHHII", 20, kind, NLM_F_REQUEST, seq, 0)
    return header + struct.pack("=BB", 0, 0) + struct.pack("!H", NFNL_SUBSYS_NFTABLES)


# -- the socket (IO) --------------------------------------------------------------------


def _open_in(netns: str | None) -> socket.socket:
    if netns is None:
        return socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
    # setns changes the calling thread's namespace only: a short-lived thread enters the
    # namespace and opens the socket, which stays bound to it.
    opened: list[socket.socket] = []
    failed: list[BaseException] = []

    def enter() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), f"setns {netns}")
            finally:
                os.close(fd)
            opened.append(socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER))
        except BaseException as err:  # reported to the caller below
            failed.append(err)

    thread = threading.Thread(target=enter, name=f"netns-{netns}")
    thread.start()
    thread.join()
    if failed:
        raise NetlinkUnavailable(str(failed[0])) from failed[0]
    return opened[0]


class NetlinkElements:
    """Sends `Batch`es on one NETLINK_NETFILTER socket, one call at a time."""

    def __init__(self, netns: str | None = None) -> None:
        try:
            self._sock = _open_in(netns)
            self._sock.bind((0, 0))
            self._sock.setsockopt(SOL_NETLINK, NETLINK_CAP_ACK, 1)
            self._sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 4 << 20)
        except OSError as err:
            raise NetlinkUnavailable(f"NETLINK_NETFILTER socket: {err}") from err
        self.netns = netns
        self._seq = 0
        self._sndbuf = 0
        self._lock = threading.Lock()

    def commit(self, batch: Batch) -> str | None:
        """Send `batch` as one transaction; the kernel's error when it refuses it."""
        if not batch.parts:
            return None
        with self._lock:
            self._drain()
            first = self._seq
            messages = batch.messages(first)
            self._seq = (first + len(messages)) & 0x7FFFFFFF
            data = b"".join(messages)
            if len(data) + 4096 > self._sndbuf:
                self._sndbuf = len(data) + 4096
                self._sock.setsockopt(socket.SOL_SOCKET, SO_SNDBUFFORCE, self._sndbuf)
            try:
                # One datagram: the kernel sees the batch whole or not at all.
                sent = self._sock.send(data)
            except OSError as err:
                return f"netlink batch not sent: {err}"
            if sent != len(data):
                return f"netlink batch cut short: {sent} of {len(data)} bytes sent"
            # The kernel runs the whole batch inside sendmsg: any error is queued by now.
            return self._errors(batch, first)

    def _errors(self, batch: Batch, first: int) -> str | None:
        problems = []
        for seq, code in self._pending():
            if code != 0 and (seq == -1 or first <= seq <= self._seq):
                what = batch.describe(seq - first) if seq != -1 else "the batch"
                problems.append(f"{what}: {os.strerror(-code)} ({errno.errorcode.get(-code)})")
        return "; ".join(problems) or None

    def _pending(self) -> list[tuple[int, int]]:
        """(sequence number, error code) of every NLMSG_ERROR waiting on the socket."""
        found: list[tuple[int, int]] = []
        while True:
            try:
                data = self._sock.recv(1 << 20, socket.MSG_DONTWAIT)
            except BlockingIOError:
                return found
            except OSError as err:  # ENOBUFS: errors were lost, the batch failed
                found.append((-1, -(err.errno or errno.EIO)))
                return found
            offset = 0
            while offset + 16 <= len(data):
                size, kind, _, seq, _ = struct.unpack_from("=IHHII", data, offset)
                if kind == NLMSG_ERROR:
                    (code,) = struct.unpack_from("=i", data, offset + 16)
                    found.append((seq, code))
                offset += max(size + (-size % 4), 16)

    def _drain(self) -> None:
        self._pending()

    def close(self) -> None:
        self._sock.close()
