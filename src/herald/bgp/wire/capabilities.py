"""OPEN capabilities (RFC 5492) and what two capability lists negotiate to."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from typing import ClassVar, Self

from herald.bgp.wire.errors import OpenError, OpenSubcode
from herald.bgp.wire.negotiated import IPV4_UNICAST, Family, Negotiated
from herald.bgp.wire.reader import Reader


class CapabilityCode(IntEnum):
    MULTIPROTOCOL = 1
    ROUTE_REFRESH = 2
    EXTENDED_MESSAGE = 6
    GRACEFUL_RESTART = 64
    FOUR_OCTET_AS = 65
    ADD_PATH = 69


def _reader(data: bytes, what: str) -> Reader:
    return Reader(data, lambda: OpenError(OpenSubcode.UNSPECIFIC, reason=f"{what} truncated"))


def _expect_end(reader: Reader, what: str) -> None:
    if reader.remaining:
        raise OpenError(OpenSubcode.UNSPECIFIC, reason=f"{what} has trailing octets")


def _encode_family(family: Family) -> bytes:
    return family.afi.to_bytes(2, "big") + family.safi.to_bytes(1, "big")


def _read_family(reader: Reader) -> Family:
    return Family(reader.u16(), reader.u8())


@dataclass(frozen=True)
class MultiProtocol:
    """RFC 4760: the peer can carry this family in MP_REACH/MP_UNREACH."""

    code: ClassVar[int] = CapabilityCode.MULTIPROTOCOL
    family: Family

    def value(self) -> bytes:
        return self.family.afi.to_bytes(2, "big") + bytes([0, self.family.safi])

    @classmethod
    def decode(cls, data: bytes) -> MultiProtocol:
        reader = _reader(data, "multiprotocol capability")
        afi = reader.u16()
        reader.u8()  # reserved
        family = Family(afi, reader.u8())
        _expect_end(reader, "multiprotocol capability")
        return cls(family)


class _Presence:
    """A capability whose presence is all it says: an empty value."""

    code: ClassVar[int]

    def value(self) -> bytes:
        return b""

    @classmethod
    def decode(cls, data: bytes) -> Self:
        _expect_end(_reader(data, cls.__name__), cls.__name__)
        return cls()


@dataclass(frozen=True)
class RouteRefreshCapability(_Presence):
    """RFC 2918."""

    code: ClassVar[int] = CapabilityCode.ROUTE_REFRESH


@dataclass(frozen=True)
class ExtendedMessage(_Presence):
    """RFC 8654: messages up to 65535 octets once both sides advertise it."""

    code: ClassVar[int] = CapabilityCode.EXTENDED_MESSAGE


@dataclass(frozen=True)
class FourOctetAs:
    """RFC 6793: the speaker's real AS number, which may not fit the OPEN's 2-octet field."""

    code: ClassVar[int] = CapabilityCode.FOUR_OCTET_AS
    asn: int

    def value(self) -> bytes:
        return self.asn.to_bytes(4, "big")

    @classmethod
    def decode(cls, data: bytes) -> FourOctetAs:
        reader = _reader(data, "4-octet AS capability")
        asn = reader.u32()
        _expect_end(reader, "4-octet AS capability")
        return cls(asn)


@dataclass(frozen=True)
class GracefulRestartFamily:
    family: Family
    forwarding_preserved: bool = False


@dataclass(frozen=True)
class GracefulRestart:
    """RFC 4724 (with RFC 8538's N bit): restart time and families whose state is kept."""

    code: ClassVar[int] = CapabilityCode.GRACEFUL_RESTART
    restart_time: int = 120
    restarting: bool = False
    notification: bool = False
    families: tuple[GracefulRestartFamily, ...] = ()

    def value(self) -> bytes:
        flags = (0x8 if self.restarting else 0) | (0x4 if self.notification else 0)
        head = ((flags << 12) | (self.restart_time & 0xFFF)).to_bytes(2, "big")
        return head + b"".join(
            _encode_family(f.family) + bytes([0x80 if f.forwarding_preserved else 0])
            for f in self.families
        )

    @classmethod
    def decode(cls, data: bytes) -> GracefulRestart:
        reader = _reader(data, "graceful restart capability")
        head = reader.u16()
        families = []
        while reader.remaining:
            family = _read_family(reader)
            families.append(GracefulRestartFamily(family, bool(reader.u8() & 0x80)))
        return cls(head & 0xFFF, bool(head & 0x8000), bool(head & 0x4000), tuple(families))


class AddPathMode(IntEnum):
    RECEIVE = 1
    SEND = 2
    BOTH = 3


@dataclass(frozen=True)
class AddPathFamily:
    family: Family
    mode: AddPathMode


@dataclass(frozen=True)
class AddPath:
    """RFC 7911: per family, whether the speaker sends and/or receives path identifiers."""

    code: ClassVar[int] = CapabilityCode.ADD_PATH
    families: tuple[AddPathFamily, ...]

    def value(self) -> bytes:
        return b"".join(_encode_family(f.family) + bytes([f.mode]) for f in self.families)

    @classmethod
    def decode(cls, data: bytes) -> AddPath:
        reader = _reader(data, "add-path capability")
        families = []
        while reader.remaining:
            family = _read_family(reader)
            mode = reader.u8()
            if mode not in {m.value for m in AddPathMode}:
                raise OpenError(OpenSubcode.UNSPECIFIC, reason=f"add-path mode {mode} unknown")
            families.append(AddPathFamily(family, AddPathMode(mode)))
        return cls(tuple(families))


@dataclass(frozen=True)
class UnknownCapability:
    """Any capability we do not interpret, kept so it can be logged and shown."""

    code: int
    data: bytes

    def value(self) -> bytes:
        return self.data


Capability = (
    MultiProtocol
    | RouteRefreshCapability
    | ExtendedMessage
    | FourOctetAs
    | GracefulRestart
    | AddPath
    | UnknownCapability
)

_DECODERS: dict[int, Callable[[bytes], Capability]] = {
    CapabilityCode.MULTIPROTOCOL: MultiProtocol.decode,
    CapabilityCode.ROUTE_REFRESH: RouteRefreshCapability.decode,
    CapabilityCode.EXTENDED_MESSAGE: ExtendedMessage.decode,
    CapabilityCode.GRACEFUL_RESTART: GracefulRestart.decode,
    CapabilityCode.FOUR_OCTET_AS: FourOctetAs.decode,
    CapabilityCode.ADD_PATH: AddPath.decode,
}


def encode_capability(capability: Capability) -> bytes:
    value = capability.value()
    if len(value) > 255:
        raise ValueError(f"capability {capability.code} value longer than 255 octets")
    return bytes([capability.code, len(value)]) + value


def decode_capabilities(data: bytes) -> tuple[Capability, ...]:
    """Decode the capabilities inside one Capabilities optional parameter."""
    reader = _reader(data, "capability")
    out: list[Capability] = []
    while reader.remaining:
        code = reader.u8()
        value = reader.take(reader.u8())
        decoder = _DECODERS.get(code)
        out.append(decoder(value) if decoder else UnknownCapability(code, value))
    return tuple(out)


def _families(capabilities: Iterable[Capability]) -> frozenset[Family]:
    found = frozenset(c.family for c in capabilities if isinstance(c, MultiProtocol))
    # RFC 4760 §8: a speaker without the capability speaks IPv4 unicast only.
    return found or frozenset({IPV4_UNICAST})


def _add_path_modes(capabilities: Iterable[Capability]) -> dict[Family, AddPathMode]:
    return {f.family: f.mode for c in capabilities if isinstance(c, AddPath) for f in c.families}


def _has(capabilities: Iterable[Capability], kind: type) -> bool:
    return any(isinstance(c, kind) for c in capabilities)


def negotiate(local: Iterable[Capability], remote: Iterable[Capability]) -> Negotiated:
    """What two OPENs agree: each feature needs both sides, add-path needs opposite roles."""
    local, remote = tuple(local), tuple(remote)
    families = _families(local) & _families(remote)
    ours, theirs = _add_path_modes(local), _add_path_modes(remote)
    receive = frozenset(
        f
        for f in families
        if ours.get(f, 0) & AddPathMode.RECEIVE and theirs.get(f, 0) & AddPathMode.SEND
    )
    send = frozenset(
        f
        for f in families
        if ours.get(f, 0) & AddPathMode.SEND and theirs.get(f, 0) & AddPathMode.RECEIVE
    )
    return Negotiated(
        four_octet_as=_has(local, FourOctetAs) and _has(remote, FourOctetAs),
        families=families,
        add_path_receive=receive,
        add_path_send=send,
        extended_message=_has(local, ExtendedMessage) and _has(remote, ExtendedMessage),
    )
