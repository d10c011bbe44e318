"""The five BGP messages as frozen dataclasses, and `decode_message` for a whole frame."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from ipaddress import IPv4Address

from herald.bgp.wire.attributes import (
    AS_TRANS,
    AttributeType,
    MpUnreach,
    PathAttributes,
    decode_attributes,
    encode_attributes,
)
from herald.bgp.wire.capabilities import (
    Capability,
    FourOctetAs,
    decode_capabilities,
    encode_capability,
)
from herald.bgp.wire.errors import (
    AppliedTreatment,
    CodecError,
    ErrorCode,
    HeaderError,
    HeaderSubcode,
    OpenError,
    OpenSubcode,
    Treatment,
    UpdateError,
    UpdateSubcode,
)
from herald.bgp.wire.header import HEADER_SIZE, MessageType, decode_header, encode_header
from herald.bgp.wire.negotiated import INITIAL, IPV4_UNICAST, Family, Negotiated
from herald.bgp.wire.prefix import Prefix, decode_prefixes, encode_prefixes
from herald.bgp.wire.reader import Reader

BGP_VERSION = 4
_CAPABILITIES_PARAMETER = 2


def _frame(message_type: MessageType, body: bytes, negotiated: Negotiated) -> bytes:
    if HEADER_SIZE + len(body) > negotiated.max_message_size:
        raise ValueError(
            f"{message_type.name} of {HEADER_SIZE + len(body)} octets exceeds "
            f"{negotiated.max_message_size}"
        )
    return encode_header(message_type, len(body)) + body


@dataclass(frozen=True)
class Open:
    """OPEN. `asn` is the real AS: above 65535 it goes on the wire as AS_TRANS and the
    FourOctetAs capability carries it (RFC 6793), so callers include that capability."""

    asn: int
    hold_time: int
    bgp_identifier: IPv4Address
    capabilities: tuple[Capability, ...] = ()
    version: int = BGP_VERSION

    def encode(self, negotiated: Negotiated = INITIAL) -> bytes:
        my_as = self.asn if self.asn <= 0xFFFF else AS_TRANS
        parameters = b"".join(
            bytes([_CAPABILITIES_PARAMETER, len(cap)]) + cap
            for cap in map(encode_capability, self.capabilities)
        )
        if len(parameters) > 255:
            raise ValueError("OPEN optional parameters longer than 255 octets")
        body = (
            bytes([self.version])
            + my_as.to_bytes(2, "big")
            + self.hold_time.to_bytes(2, "big")
            + self.bgp_identifier.packed
            + bytes([len(parameters)])
            + parameters
        )
        return _frame(MessageType.OPEN, body, negotiated)

    @property
    def four_octet_as(self) -> int | None:
        return next((c.asn for c in self.capabilities if isinstance(c, FourOctetAs)), None)


@dataclass(frozen=True)
class Update:
    """UPDATE. IPv4 unicast routes use `withdrawn`/`nlri`; other families ride in the
    MP_REACH/MP_UNREACH attributes."""

    withdrawn: tuple[Prefix, ...] = ()
    attributes: PathAttributes = field(default_factory=PathAttributes)
    nlri: tuple[Prefix, ...] = ()

    def encode(self, negotiated: Negotiated = INITIAL) -> bytes:
        if any(p.network.version != 4 for p in self.withdrawn + self.nlri):
            raise ValueError("only IPv4 prefixes go in withdrawn/nlri; others in MP_(UN)REACH")
        add_path = IPV4_UNICAST in negotiated.add_path_send
        withdrawn = encode_prefixes(self.withdrawn, add_path)
        attributes = encode_attributes(self.attributes, negotiated)
        body = (
            len(withdrawn).to_bytes(2, "big")
            + withdrawn
            + len(attributes).to_bytes(2, "big")
            + attributes
            + encode_prefixes(self.nlri, add_path)
        )
        return _frame(MessageType.UPDATE, body, negotiated)

    @classmethod
    def end_of_rib(cls, family: Family) -> Update:
        """RFC 4724 §2: an empty UPDATE for IPv4 unicast, an empty MP_UNREACH otherwise."""
        if family == IPV4_UNICAST:
            return cls()
        return cls(attributes=PathAttributes(mp_unreach=MpUnreach(family)))

    @property
    def end_of_rib_family(self) -> Family | None:
        if self == Update():
            return IPV4_UNICAST
        unreach = self.attributes.mp_unreach
        if unreach is not None and self == Update.end_of_rib(unreach.family):
            return unreach.family
        return None


@dataclass(frozen=True)
class Notification:
    code: int
    subcode: int
    data: bytes = b""

    def encode(self, negotiated: Negotiated = INITIAL) -> bytes:
        return _frame(
            MessageType.NOTIFICATION, bytes([self.code, self.subcode]) + self.data, negotiated
        )

    @classmethod
    def from_error(cls, error: CodecError) -> Notification:
        return cls(error.code, error.subcode, error.data)


@dataclass(frozen=True)
class Keepalive:
    def encode(self, negotiated: Negotiated = INITIAL) -> bytes:
        return _frame(MessageType.KEEPALIVE, b"", negotiated)


@dataclass(frozen=True)
class RouteRefresh:
    """RFC 2918; `subtype` is RFC 7313's (0 request, 1 BoRR, 2 EoRR)."""

    family: Family
    subtype: int = 0

    def encode(self, negotiated: Negotiated = INITIAL) -> bytes:
        body = (
            self.family.afi.to_bytes(2, "big")
            + bytes([self.subtype])
            + self.family.safi.to_bytes(1, "big")
        )
        return _frame(MessageType.ROUTE_REFRESH, body, negotiated)


Message = Open | Update | Notification | Keepalive | RouteRefresh


@dataclass(frozen=True)
class Decoded:
    """A decoded message and, for an UPDATE, the RFC 7606 treatments applied to it."""

    message: Message
    treatments: tuple[AppliedTreatment, ...] = ()


def _decode_open(body: bytes, _: Negotiated) -> Decoded:
    reader = Reader(body, lambda: OpenError(OpenSubcode.UNSPECIFIC, reason="OPEN truncated"))
    version, my_as, hold_time = reader.u8(), reader.u16(), reader.u16()
    identifier = IPv4Address(reader.take(4))
    parameters = Reader(
        reader.take(reader.u8()),
        lambda: OpenError(OpenSubcode.UNSPECIFIC, reason="optional parameter truncated"),
    )
    if reader.remaining:
        raise OpenError(OpenSubcode.UNSPECIFIC, reason="octets after the optional parameters")
    capabilities: list[Capability] = []
    while parameters.remaining:
        kind, value = parameters.u8(), parameters.take(parameters.u8())
        if kind != _CAPABILITIES_PARAMETER:
            raise OpenError(
                OpenSubcode.UNSUPPORTED_OPTIONAL_PARAMETER, reason=f"optional parameter {kind}"
            )
        capabilities += decode_capabilities(value)
    message = Open(my_as, hold_time, identifier, tuple(capabilities), version)
    four_octet = message.four_octet_as
    return Decoded(message if four_octet is None else replace(message, asn=four_octet))


def _network_error(reason: str) -> CodecError:
    return UpdateError(UpdateSubcode.INVALID_NETWORK_FIELD, reason=reason)


def _withdraw_all(update: Update) -> Update:
    """RFC 7606 treat-as-withdraw: every route the UPDATE announces becomes a withdrawal."""
    attributes = update.attributes
    unreach = attributes.mp_unreach
    reach = attributes.mp_reach
    if reach is not None and reach.nlri:
        if unreach is not None and unreach.family != reach.family:
            # One UPDATE can carry only one MP_UNREACH; rather than lose withdrawals we reset.
            raise UpdateError(
                UpdateSubcode.MALFORMED_ATTRIBUTE_LIST,
                reason="treat-as-withdraw with MP_REACH and MP_UNREACH of different families",
            )
        earlier = unreach.withdrawn if unreach is not None else ()
        unreach = MpUnreach(reach.family, earlier + reach.nlri)
    return Update(update.withdrawn + update.nlri, PathAttributes(mp_unreach=unreach))


def _missing_mandatory(update: Update, already: set[int]) -> list[AppliedTreatment]:
    """RFC 4271 §5 well-known mandatory attributes, needed only when routes are announced."""
    attributes = update.attributes
    reach = attributes.mp_reach
    if not update.nlri and not (reach is not None and reach.nlri):
        return []
    required: dict[AttributeType, object] = {
        AttributeType.ORIGIN: attributes.origin,
        AttributeType.AS_PATH: attributes.as_path,
    }
    if update.nlri:
        required[AttributeType.NEXT_HOP] = attributes.next_hop
    return [
        AppliedTreatment(
            Treatment.TREAT_AS_WITHDRAW,
            code,
            UpdateSubcode.MISSING_WELL_KNOWN_ATTRIBUTE,
            f"{code.name} missing",
        )
        for code, value in required.items()
        if value is None and code not in already
    ]


def _decode_update(body: bytes, negotiated: Negotiated) -> Decoded:
    reader = Reader(
        body,
        lambda: UpdateError(
            UpdateSubcode.MALFORMED_ATTRIBUTE_LIST, reason="length fields exceed the UPDATE"
        ),
    )
    add_path = IPV4_UNICAST in negotiated.add_path_receive
    withdrawn = decode_prefixes(reader.take(reader.u16()), 1, add_path, _network_error)
    attribute_field = reader.take(reader.u16())
    nlri = decode_prefixes(reader.rest(), 1, add_path, _network_error)
    decoded = decode_attributes(attribute_field, negotiated)
    update = Update(withdrawn, decoded.attributes, nlri)
    treatments = list(decoded.treatments)
    treatments += _missing_mandatory(update, {t.attribute_type for t in treatments})
    if any(t.treatment is Treatment.TREAT_AS_WITHDRAW for t in treatments):
        update = _withdraw_all(update)
    return Decoded(update, tuple(treatments))


def _decode_notification(body: bytes, _: Negotiated) -> Decoded:
    return Decoded(Notification(body[0], body[1], body[2:]))


def _decode_keepalive(_: bytes, __: Negotiated) -> Decoded:
    return Decoded(Keepalive())


def _decode_route_refresh(body: bytes, _: Negotiated) -> Decoded:
    if len(body) != 4:
        # RFC 7313 §5: ROUTE-REFRESH error, subcode 1 (invalid message length).
        raise CodecError(ErrorCode.ROUTE_REFRESH, 1, body, "ROUTE-REFRESH length")
    family = Family(int.from_bytes(body[:2], "big"), body[3])
    return Decoded(RouteRefresh(family, body[2]))


_BODY_DECODERS: dict[MessageType, Callable[[bytes, Negotiated], Decoded]] = {
    MessageType.OPEN: _decode_open,
    MessageType.UPDATE: _decode_update,
    MessageType.NOTIFICATION: _decode_notification,
    MessageType.KEEPALIVE: _decode_keepalive,
    MessageType.ROUTE_REFRESH: _decode_route_refresh,
}


def decode_message(data: bytes, negotiated: Negotiated = INITIAL) -> Decoded:
    """Decode one whole message, header included. Raises only `CodecError`."""
    if len(data) < HEADER_SIZE:
        raise HeaderError(HeaderSubcode.BAD_MESSAGE_LENGTH, reason="shorter than a header")
    header = decode_header(data[:HEADER_SIZE], negotiated.max_message_size)
    if header.length != len(data):
        raise HeaderError(
            HeaderSubcode.BAD_MESSAGE_LENGTH, data[16:18], "length field disagrees with the frame"
        )
    return _BODY_DECODERS[header.type](data[HEADER_SIZE:], negotiated)


def encode_message(message: Message, negotiated: Negotiated = INITIAL) -> bytes:
    return message.encode(negotiated)
