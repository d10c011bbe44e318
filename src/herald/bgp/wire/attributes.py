"""Path attributes: their values, wire form, and RFC 7606 treatment when malformed.

One table (`_SPECS`) says, per attribute type, which field of `PathAttributes` it fills,
its flags, how it is coded and what RFC 7606 prescribes when it is malformed. The decoder
never raises for an attribute RFC 7606 lets the session survive; it records the treatment.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import IntEnum, IntFlag
from ipaddress import IPv4Address, IPv6Address
from typing import Any

from herald.addresses import IPAddress
from herald.bgp.wire.errors import (
    AppliedTreatment,
    CodecError,
    Treatment,
    UpdateError,
    UpdateSubcode,
)
from herald.bgp.wire.negotiated import Family, Negotiated
from herald.bgp.wire.prefix import Prefix, decode_prefixes, encode_prefixes
from herald.bgp.wire.reader import Reader

AS_TRANS = 23456
"""RFC 6793: stands in for a 4-octet AS number towards a speaker that only knows 2 octets."""

NO_EXPORT = 0xFFFFFF01
NO_ADVERTISE = 0xFFFFFF02
NO_EXPORT_SUBCONFED = 0xFFFFFF03


class AttributeType(IntEnum):
    ORIGIN = 1
    AS_PATH = 2
    NEXT_HOP = 3
    MULTI_EXIT_DISC = 4
    LOCAL_PREF = 5
    ATOMIC_AGGREGATE = 6
    AGGREGATOR = 7
    COMMUNITIES = 8
    ORIGINATOR_ID = 9
    CLUSTER_LIST = 10
    MP_REACH_NLRI = 14
    MP_UNREACH_NLRI = 15
    AS4_PATH = 17
    AS4_AGGREGATOR = 18
    LARGE_COMMUNITIES = 32


class AttributeFlag(IntFlag):
    OPTIONAL = 0x80
    TRANSITIVE = 0x40
    PARTIAL = 0x20
    EXTENDED_LENGTH = 0x10


class Origin(IntEnum):
    IGP = 0
    EGP = 1
    INCOMPLETE = 2


class SegmentType(IntEnum):
    AS_SET = 1
    AS_SEQUENCE = 2
    AS_CONFED_SEQUENCE = 3
    AS_CONFED_SET = 4


@dataclass(frozen=True)
class AsPathSegment:
    type: SegmentType
    asns: tuple[int, ...]

    @property
    def path_length(self) -> int:
        """RFC 4271 §9.1.2.2: a set counts as one hop, confederation segments as none."""
        if self.type == SegmentType.AS_SEQUENCE:
            return len(self.asns)
        return 1 if self.type == SegmentType.AS_SET else 0


@dataclass(frozen=True)
class AsPath:
    segments: tuple[AsPathSegment, ...] = ()

    @classmethod
    def sequence(cls, *asns: int) -> AsPath:
        return cls((AsPathSegment(SegmentType.AS_SEQUENCE, asns),) if asns else ())

    @property
    def path_length(self) -> int:
        return sum(s.path_length for s in self.segments)

    @property
    def needs_as4(self) -> bool:
        return any(asn > 0xFFFF for s in self.segments for asn in s.asns)


@dataclass(frozen=True)
class Aggregator:
    asn: int
    address: IPv4Address


@dataclass(frozen=True)
class LargeCommunity:
    """RFC 8092: global administrator (an AS number) and two operator-defined values."""

    global_admin: int
    local_data1: int
    local_data2: int


@dataclass(frozen=True)
class MpReach:
    """RFC 4760 MP_REACH_NLRI; IPv6 may carry a global and a link-local next hop."""

    family: Family
    next_hops: tuple[IPAddress, ...]
    nlri: tuple[Prefix, ...] = ()


@dataclass(frozen=True)
class MpUnreach:
    family: Family
    withdrawn: tuple[Prefix, ...] = ()


@dataclass(frozen=True)
class UnknownAttribute:
    """An optional transitive attribute we do not interpret.

    It is passed on unchanged except for the Partial bit, which RFC 4271 §5 requires on
    every unrecognised attribute we propagate; so `encode` always sets it.
    """

    type_code: int
    value: bytes


@dataclass(frozen=True)
class PathAttributes:
    """The attributes of one UPDATE. `None` (or `False`, `()`) means absent.

    `as_path` and `aggregator` always hold the real, 4-octet values: towards and from a
    2-octet speaker the codec splits them into AS_TRANS plus AS4_PATH/AS4_AGGREGATOR and
    merges them back, so nothing above the codec sees AS_TRANS.
    """

    origin: Origin | None = None
    as_path: AsPath | None = None
    next_hop: IPv4Address | None = None
    med: int | None = None
    local_pref: int | None = None
    atomic_aggregate: bool = False
    aggregator: Aggregator | None = None
    communities: tuple[int, ...] | None = None
    originator_id: IPv4Address | None = None
    cluster_list: tuple[IPv4Address, ...] | None = None
    mp_reach: MpReach | None = None
    mp_unreach: MpUnreach | None = None
    large_communities: tuple[LargeCommunity, ...] | None = None
    unknown: tuple[UnknownAttribute, ...] = ()


class _Malformed(Exception):
    """Internal: an attribute value is malformed; the spec table decides the treatment."""

    def __init__(self, subcode: UpdateSubcode, reason: str, family: Family | None = None):
        super().__init__(reason)
        self.subcode = subcode
        self.reason = reason
        self.family = family


def _reader(value: bytes, what: str) -> Reader:
    def short() -> CodecError:
        # Surfaced as _Malformed by _decode_one; CodecError keeps Reader's contract simple.
        return UpdateError(UpdateSubcode.ATTRIBUTE_LENGTH_ERROR, reason=f"{what} truncated")

    return Reader(value, short)


def _fixed(value: bytes, size: int, what: str) -> None:
    if len(value) != size:
        raise _Malformed(
            UpdateSubcode.ATTRIBUTE_LENGTH_ERROR, f"{what} length {len(value)}, expected {size}"
        )


def _multiple(value: bytes, size: int, what: str) -> None:
    # RFC 7606 §7.8, §7.10 and RFC 8092 §5: a list attribute is never empty.
    if not value or len(value) % size:
        raise _Malformed(
            UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
            f"{what} length {len(value)} is not a non-zero multiple of {size}",
        )


def _u32s(value: bytes) -> tuple[int, ...]:
    return tuple(int.from_bytes(value[i : i + 4], "big") for i in range(0, len(value), 4))


def _pack_u32s(values: tuple[int, ...]) -> bytes:
    return b"".join(v.to_bytes(4, "big") for v in values)


# --- value codecs: decode(value, negotiated) -> field value; encode(field value, negotiated)


def _decode_origin(value: bytes, _: Negotiated) -> Origin:
    _fixed(value, 1, "ORIGIN")
    if value[0] not in {o.value for o in Origin}:
        raise _Malformed(UpdateSubcode.INVALID_ORIGIN_ATTRIBUTE, f"ORIGIN value {value[0]}")
    return Origin(value[0])


def _encode_origin(origin: Origin, _: Negotiated) -> bytes:
    return bytes([origin])


def _decode_as_path_octets(value: bytes, asn_size: int) -> AsPath:
    reader = _reader(value, "AS_PATH")
    segments = []
    while reader.remaining:
        if reader.remaining < 2:
            raise _Malformed(UpdateSubcode.MALFORMED_AS_PATH, "AS_PATH segment header truncated")
        kind, count = reader.u8(), reader.u8()
        if kind not in {s.value for s in SegmentType}:
            raise _Malformed(UpdateSubcode.MALFORMED_AS_PATH, f"AS_PATH segment type {kind}")
        if count == 0 or reader.remaining < count * asn_size:
            raise _Malformed(UpdateSubcode.MALFORMED_AS_PATH, "AS_PATH segment length wrong")
        asns = tuple(reader.uint(asn_size) for _ in range(count))
        segments.append(AsPathSegment(SegmentType(kind), asns))
    return AsPath(tuple(segments))


def _encode_as_path_octets(path: AsPath, asn_size: int) -> bytes:
    out = bytearray()
    for segment in path.segments:
        # A segment holds at most 255 ASNs; a longer sequence continues in the next one.
        for start in range(0, len(segment.asns), 255):
            chunk = segment.asns[start : start + 255]
            out += bytes([segment.type, len(chunk)])
            for asn in chunk:
                if asn_size == 2 and asn > 0xFFFF:
                    asn = AS_TRANS
                out += asn.to_bytes(asn_size, "big")
    return bytes(out)


def _asn_size(negotiated: Negotiated) -> int:
    return 4 if negotiated.four_octet_as else 2


def _decode_as_path(value: bytes, negotiated: Negotiated) -> AsPath:
    return _decode_as_path_octets(value, _asn_size(negotiated))


def _encode_as_path(path: AsPath, negotiated: Negotiated) -> bytes:
    return _encode_as_path_octets(path, _asn_size(negotiated))


def _decode_as4_path(value: bytes, _: Negotiated) -> AsPath:
    return _decode_as_path_octets(value, 4)


def _encode_as4_path(path: AsPath, _: Negotiated) -> bytes:
    # RFC 6793 §3: confederation segments never go into AS4_PATH.
    plain = tuple(
        s for s in path.segments if s.type in (SegmentType.AS_SEQUENCE, SegmentType.AS_SET)
    )
    return _encode_as_path_octets(AsPath(plain), 4)


def _decode_ipv4(value: bytes, what: str) -> IPv4Address:
    _fixed(value, 4, what)
    return IPv4Address(value)


def _decode_next_hop(value: bytes, _: Negotiated) -> IPv4Address:
    address = _decode_ipv4(value, "NEXT_HOP")
    # RFC 4271 §6.3: syntactically a next hop must be a unicast host address. Whether it is
    # our own address is the speaker's check, not the codec's.
    if address.is_unspecified or address.is_multicast or address == IPv4Address(0xFFFFFFFF):
        raise _Malformed(UpdateSubcode.INVALID_NEXT_HOP_ATTRIBUTE, f"NEXT_HOP {address}")
    return address


def _decode_originator_id(value: bytes, _: Negotiated) -> IPv4Address:
    return _decode_ipv4(value, "ORIGINATOR_ID")


def _encode_address(address: IPv4Address, _: Negotiated) -> bytes:
    return address.packed


def _decode_u32(what: str) -> Callable[[bytes, Negotiated], int]:
    def decode(value: bytes, _: Negotiated) -> int:
        _fixed(value, 4, what)
        return int.from_bytes(value, "big")

    return decode


def _encode_u32(number: int, _: Negotiated) -> bytes:
    return number.to_bytes(4, "big")


def _decode_atomic_aggregate(value: bytes, _: Negotiated) -> bool:
    _fixed(value, 0, "ATOMIC_AGGREGATE")
    return True


def _encode_atomic_aggregate(_: bool, __: Negotiated) -> bytes:
    return b""


def _decode_aggregator_octets(value: bytes, asn_size: int) -> Aggregator:
    _fixed(value, asn_size + 4, "AGGREGATOR")
    return Aggregator(int.from_bytes(value[:asn_size], "big"), IPv4Address(value[asn_size:]))


def _decode_aggregator(value: bytes, negotiated: Negotiated) -> Aggregator:
    return _decode_aggregator_octets(value, _asn_size(negotiated))


def _encode_aggregator(aggregator: Aggregator, negotiated: Negotiated) -> bytes:
    asn = aggregator.asn
    if not negotiated.four_octet_as and asn > 0xFFFF:
        asn = AS_TRANS
    return asn.to_bytes(_asn_size(negotiated), "big") + aggregator.address.packed


def _decode_as4_aggregator(value: bytes, _: Negotiated) -> Aggregator:
    return _decode_aggregator_octets(value, 4)


def _encode_as4_aggregator(aggregator: Aggregator, _: Negotiated) -> bytes:
    return aggregator.asn.to_bytes(4, "big") + aggregator.address.packed


def _decode_communities(value: bytes, _: Negotiated) -> tuple[int, ...]:
    _multiple(value, 4, "COMMUNITIES")
    return _u32s(value)


def _encode_u32s(values: tuple[int, ...], _: Negotiated) -> bytes:
    return _pack_u32s(values)


def _decode_cluster_list(value: bytes, _: Negotiated) -> tuple[IPv4Address, ...]:
    _multiple(value, 4, "CLUSTER_LIST")
    return tuple(IPv4Address(v) for v in _u32s(value))


def _encode_cluster_list(cluster_list: tuple[IPv4Address, ...], _: Negotiated) -> bytes:
    return b"".join(a.packed for a in cluster_list)


def _decode_large_communities(value: bytes, _: Negotiated) -> tuple[LargeCommunity, ...]:
    _multiple(value, 12, "LARGE_COMMUNITIES")
    numbers = _u32s(value)
    return tuple(LargeCommunity(*numbers[i : i + 3]) for i in range(0, len(numbers), 3))


def _encode_large_communities(values: tuple[LargeCommunity, ...], _: Negotiated) -> bytes:
    return _pack_u32s(
        tuple(n for c in values for n in (c.global_admin, c.local_data1, c.local_data2))
    )


def _mp_family(reader: Reader, what: str, negotiated: Negotiated) -> Family:
    if reader.remaining < 3:
        # Without AFI/SAFI there is no family to disable: RFC 7606 §7.11 session reset.
        raise UpdateError(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, reason=f"{what} too short")
    family = Family(reader.u16(), reader.u8())
    if family not in negotiated.families:
        raise _Malformed(
            UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, f"{what} for unnegotiated {family}", family
        )
    return family


def _mp_prefixes(
    data: bytes, family: Family, negotiated: Negotiated, what: str
) -> tuple[Prefix, ...]:
    def error(reason: str) -> CodecError:
        return UpdateError(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, reason=f"{what}: {reason}")

    try:
        return decode_prefixes(data, family.afi, family in negotiated.add_path_receive, error)
    except CodecError as e:
        raise _Malformed(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, e.reason, family) from None


def _decode_next_hops(data: bytes, family: Family) -> tuple[IPAddress, ...]:
    # 4: IPv4; 16: IPv6 global (also IPv4 NLRI over IPv6, RFC 8950); 32: global + link-local.
    if len(data) == 4:
        return (IPv4Address(data),)
    if len(data) in (16, 32):
        return tuple(IPv6Address(data[i : i + 16]) for i in range(0, len(data), 16))
    raise _Malformed(
        UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, f"MP_REACH next hop length {len(data)}", family
    )


def _decode_mp_reach(value: bytes, negotiated: Negotiated) -> MpReach:
    reader = _reader(value, "MP_REACH_NLRI")
    family = _mp_family(reader, "MP_REACH_NLRI", negotiated)
    hop_length = reader.u8() if reader.remaining else -1
    if hop_length < 0 or reader.remaining < hop_length + 1:
        raise _Malformed(UpdateSubcode.OPTIONAL_ATTRIBUTE_ERROR, "MP_REACH_NLRI truncated", family)
    next_hops = _decode_next_hops(reader.take(hop_length), family)
    reader.u8()  # reserved (was SNPA count in RFC 2858)
    nlri = _mp_prefixes(reader.rest(), family, negotiated, "MP_REACH_NLRI")
    return MpReach(family, next_hops, nlri)


def _encode_family(family: Family) -> bytes:
    return family.afi.to_bytes(2, "big") + family.safi.to_bytes(1, "big")


def _encode_mp_reach(reach: MpReach, negotiated: Negotiated) -> bytes:
    hops = b"".join(h.packed for h in reach.next_hops)
    add_path = reach.family in negotiated.add_path_send
    return (
        _encode_family(reach.family)
        + bytes([len(hops)])
        + hops
        + b"\x00"
        + encode_prefixes(reach.nlri, add_path)
    )


def _decode_mp_unreach(value: bytes, negotiated: Negotiated) -> MpUnreach:
    reader = _reader(value, "MP_UNREACH_NLRI")
    family = _mp_family(reader, "MP_UNREACH_NLRI", negotiated)
    return MpUnreach(family, _mp_prefixes(reader.rest(), family, negotiated, "MP_UNREACH_NLRI"))


def _encode_mp_unreach(unreach: MpUnreach, negotiated: Negotiated) -> bytes:
    add_path = unreach.family in negotiated.add_path_send
    return _encode_family(unreach.family) + encode_prefixes(unreach.withdrawn, add_path)


@dataclass(frozen=True)
class _Spec:
    """How one attribute type is coded, and RFC 7606's treatment when it is malformed."""

    field: str
    flags: AttributeFlag
    treatment: Treatment
    decode: Callable[[bytes, Negotiated], Any]
    encode: Callable[[Any, Negotiated], bytes]


_WELL_KNOWN = AttributeFlag.TRANSITIVE
_OPTIONAL = AttributeFlag.OPTIONAL
_OPTIONAL_TRANSITIVE = AttributeFlag.OPTIONAL | AttributeFlag.TRANSITIVE
_WITHDRAW = Treatment.TREAT_AS_WITHDRAW
_DISCARD = Treatment.ATTRIBUTE_DISCARD
_DISABLE = Treatment.AFI_SAFI_DISABLE

# RFC 7606 §7 for each type; AS4_* per RFC 6793 §6.
_SPECS: dict[int, _Spec] = {
    AttributeType.ORIGIN: _Spec("origin", _WELL_KNOWN, _WITHDRAW, _decode_origin, _encode_origin),
    AttributeType.AS_PATH: _Spec(
        "as_path", _WELL_KNOWN, _WITHDRAW, _decode_as_path, _encode_as_path
    ),
    AttributeType.NEXT_HOP: _Spec(
        "next_hop", _WELL_KNOWN, _WITHDRAW, _decode_next_hop, _encode_address
    ),
    AttributeType.MULTI_EXIT_DISC: _Spec(
        "med", _OPTIONAL, _WITHDRAW, _decode_u32("MULTI_EXIT_DISC"), _encode_u32
    ),
    AttributeType.LOCAL_PREF: _Spec(
        "local_pref", _WELL_KNOWN, _WITHDRAW, _decode_u32("LOCAL_PREF"), _encode_u32
    ),
    AttributeType.ATOMIC_AGGREGATE: _Spec(
        "atomic_aggregate",
        _WELL_KNOWN,
        _DISCARD,
        _decode_atomic_aggregate,
        _encode_atomic_aggregate,
    ),
    AttributeType.AGGREGATOR: _Spec(
        "aggregator", _OPTIONAL_TRANSITIVE, _DISCARD, _decode_aggregator, _encode_aggregator
    ),
    AttributeType.COMMUNITIES: _Spec(
        "communities", _OPTIONAL_TRANSITIVE, _WITHDRAW, _decode_communities, _encode_u32s
    ),
    AttributeType.ORIGINATOR_ID: _Spec(
        "originator_id", _OPTIONAL, _WITHDRAW, _decode_originator_id, _encode_address
    ),
    AttributeType.CLUSTER_LIST: _Spec(
        "cluster_list", _OPTIONAL, _WITHDRAW, _decode_cluster_list, _encode_cluster_list
    ),
    AttributeType.MP_REACH_NLRI: _Spec(
        "mp_reach", _OPTIONAL, _DISABLE, _decode_mp_reach, _encode_mp_reach
    ),
    AttributeType.MP_UNREACH_NLRI: _Spec(
        "mp_unreach", _OPTIONAL, _DISABLE, _decode_mp_unreach, _encode_mp_unreach
    ),
    AttributeType.AS4_PATH: _Spec(
        "as4_path", _OPTIONAL_TRANSITIVE, _DISCARD, _decode_as4_path, _encode_as4_path
    ),
    AttributeType.AS4_AGGREGATOR: _Spec(
        "as4_aggregator",
        _OPTIONAL_TRANSITIVE,
        _DISCARD,
        _decode_as4_aggregator,
        _encode_as4_aggregator,
    ),
    AttributeType.LARGE_COMMUNITIES: _Spec(
        "large_communities",
        _OPTIONAL_TRANSITIVE,
        _WITHDRAW,
        _decode_large_communities,
        _encode_large_communities,
    ),
}

_MP_TYPES = (AttributeType.MP_REACH_NLRI, AttributeType.MP_UNREACH_NLRI)
_FIELD_TYPES = {spec.field: code for code, spec in _SPECS.items()}
_FLAG_MASK = AttributeFlag.OPTIONAL | AttributeFlag.TRANSITIVE


def encode_attribute(type_code: int, flags: int, value: bytes) -> bytes:
    """One attribute on the wire; the extended-length bit is chosen by the value's size."""
    if len(value) > 0xFFFF:
        raise ValueError(f"attribute {type_code} value longer than 65535 octets")
    if len(value) > 0xFF:
        flags |= AttributeFlag.EXTENDED_LENGTH
        return bytes([flags, type_code]) + len(value).to_bytes(2, "big") + value
    return bytes([flags & ~AttributeFlag.EXTENDED_LENGTH, type_code, len(value)]) + value


def _wire_values(attributes: PathAttributes, negotiated: Negotiated) -> dict[int, Any]:
    """Field values by attribute type, with the AS4 attributes a 2-octet peer needs."""
    values: dict[int, Any] = {}
    for f in fields(attributes):
        value = getattr(attributes, f.name)
        # An empty list attribute would be malformed on the wire (RFC 7606), so it is absent.
        absent = value is None or value is False or value == ()
        if f.name in _FIELD_TYPES and not absent:
            values[_FIELD_TYPES[f.name]] = value
    if not negotiated.four_octet_as:
        if attributes.as_path is not None and attributes.as_path.needs_as4:
            values[AttributeType.AS4_PATH] = attributes.as_path
        if attributes.aggregator is not None and attributes.aggregator.asn > 0xFFFF:
            values[AttributeType.AS4_AGGREGATOR] = attributes.aggregator
    return values


def encode_attributes(attributes: PathAttributes, negotiated: Negotiated) -> bytes:
    """Encode in type order, except MP_(UN)REACH first as RFC 7606 §5.1 asks of senders."""
    values = _wire_values(attributes, negotiated)
    order = sorted(values, key=lambda code: (code not in _MP_TYPES, code))
    out = [
        encode_attribute(code, _SPECS[code].flags, _SPECS[code].encode(values[code], negotiated))
        for code in order
    ]
    partial = AttributeFlag.OPTIONAL | AttributeFlag.TRANSITIVE | AttributeFlag.PARTIAL
    out += [encode_attribute(u.type_code, partial, u.value) for u in attributes.unknown]
    return b"".join(out)


@dataclass(frozen=True)
class DecodedAttributes:
    attributes: PathAttributes
    treatments: tuple[AppliedTreatment, ...]


@dataclass
class _Collector:
    values: dict[str, Any] = field(default_factory=dict)
    unknown: list[UnknownAttribute] = field(default_factory=list)
    treatments: list[AppliedTreatment] = field(default_factory=list)

    def treat(
        self,
        treatment: Treatment,
        type_code: int,
        subcode: UpdateSubcode,
        reason: str,
        family: Family | None = None,
    ) -> None:
        afi, safi = family if family is not None else (0, 0)
        self.treatments.append(AppliedTreatment(treatment, type_code, subcode, reason, afi, safi))


def _decode_one(
    collector: _Collector, flags: int, type_code: int, value: bytes, negotiated: Negotiated
) -> None:
    spec = _SPECS.get(type_code)
    if spec is None:
        if not flags & AttributeFlag.OPTIONAL:
            raise UpdateError(
                UpdateSubcode.UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE,
                data=encode_attribute(type_code, flags, value),
                reason=f"unrecognized well-known attribute {type_code}",
            )
        # Unrecognised optional non-transitive attributes are quietly ignored (RFC 4271 §5).
        if flags & AttributeFlag.TRANSITIVE:
            collector.unknown.append(UnknownAttribute(type_code, value))
        return
    name = AttributeType(type_code).name
    if flags & _FLAG_MASK != spec.flags:
        # RFC 7606 §3(c): a flags conflict is a malformation with the attribute's treatment.
        family = None
        if type_code in _MP_TYPES and len(value) >= 3:
            family = Family(int.from_bytes(value[:2], "big"), value[2])
        if type_code in _MP_TYPES and family is None:
            raise UpdateError(UpdateSubcode.ATTRIBUTE_FLAGS_ERROR, reason=f"{name} flags")
        collector.treat(
            spec.treatment, type_code, UpdateSubcode.ATTRIBUTE_FLAGS_ERROR, f"{name} flags", family
        )
        return
    try:
        collector.values[spec.field] = spec.decode(value, negotiated)
    except _Malformed as e:
        collector.treat(spec.treatment, type_code, e.subcode, e.reason, e.family)
    except CodecError as e:
        if type_code in _MP_TYPES:
            raise
        collector.treat(spec.treatment, type_code, UpdateSubcode.ATTRIBUTE_LENGTH_ERROR, e.reason)


def _merge_as4(collector: _Collector, negotiated: Negotiated) -> None:
    """RFC 6793 §4.2.3: rebuild the real AS_PATH and AGGREGATOR from a 2-octet peer's."""
    values = collector.values
    as4_path: AsPath | None = values.pop("as4_path", None)
    as4_aggregator: Aggregator | None = values.pop("as4_aggregator", None)
    if negotiated.four_octet_as:
        return  # §4.1: a 4-octet speaker's AS4_* attributes are discarded.
    aggregator: Aggregator | None = values.get("aggregator")
    if aggregator is not None and aggregator.asn != AS_TRANS:
        # The aggregating speaker was old, so the AS4 information is stale.
        return
    if aggregator is not None and as4_aggregator is not None:
        values["aggregator"] = as4_aggregator
    as_path: AsPath | None = values.get("as_path")
    if as_path is not None and as4_path is not None:
        values["as_path"] = _merge_paths(as_path, as4_path)


def _merge_paths(as_path: AsPath, as4_path: AsPath) -> AsPath:
    keep = as_path.path_length - as4_path.path_length
    if keep < 0:
        return as_path  # AS4_PATH longer than AS_PATH: ignore it (§4.2.3)
    leading: list[AsPathSegment] = []
    for segment in as_path.segments:
        if keep <= 0:
            break
        if segment.type == SegmentType.AS_SEQUENCE and len(segment.asns) > keep:
            segment = AsPathSegment(segment.type, segment.asns[:keep])
        leading.append(segment)
        keep -= segment.path_length
    return AsPath(tuple(leading) + as4_path.segments)


def decode_attributes(data: bytes, negotiated: Negotiated) -> DecodedAttributes:
    """Decode a path attribute field; raises `CodecError` only for session-reset cases."""
    collector = _Collector()
    seen: set[int] = set()
    pos = 0
    while pos < len(data):
        flags, header = data[pos], 4 if data[pos] & AttributeFlag.EXTENDED_LENGTH else 3
        if len(data) - pos < header:
            # RFC 7606 §4: too short for an attribute header; the rest is unusable.
            collector.treat(
                _WITHDRAW, 0, UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, "attribute header truncated"
            )
            break
        type_code = data[pos + 1]
        length = int.from_bytes(data[pos + 2 : pos + header], "big")
        if pos + header + length > len(data):
            collector.treat(
                _WITHDRAW,
                type_code,
                UpdateSubcode.ATTRIBUTE_LENGTH_ERROR,
                f"attribute {type_code} overruns the attribute field",
            )
            break
        value = data[pos + header : pos + header + length]
        pos += header + length
        if type_code in seen:
            if type_code in _MP_TYPES:
                raise UpdateError(
                    UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, reason=f"attribute {type_code} repeated"
                )
            collector.treat(
                _DISCARD,
                type_code,
                UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                f"attribute {type_code} repeated",
            )
            continue
        seen.add(type_code)
        _decode_one(collector, flags, type_code, value, negotiated)
    _merge_as4(collector, negotiated)
    attributes = PathAttributes(**collector.values, unknown=tuple(collector.unknown))
    return DecodedAttributes(attributes, tuple(collector.treatments))


def without_nlri_attributes(attributes: PathAttributes) -> PathAttributes:
    """What is left of attributes once their routes are withdrawn: only MP_UNREACH."""
    return PathAttributes(mp_unreach=attributes.mp_unreach)
