"""NLRI: prefixes as (length, significant octets), optionally led by an add-path path id."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from ipaddress import IPv4Network, IPv6Network

from herald.addresses import IPNetwork
from herald.bgp.wire.errors import CodecError
from herald.bgp.wire.negotiated import Afi
from herald.bgp.wire.reader import Reader

Network = IPNetwork


@dataclass(frozen=True, order=True)
class Prefix:
    """A route's destination; `path_id` is set only on sessions that negotiated add-path."""

    network: Network
    path_id: int | None = None

    @property
    def afi(self) -> Afi:
        return Afi.IPV4 if self.network.version == 4 else Afi.IPV6


def encode_prefix(prefix: Prefix, add_path: bool) -> bytes:
    head = b""
    if add_path:
        head = (prefix.path_id or 0).to_bytes(4, "big")
    length = prefix.network.prefixlen
    octets = prefix.network.network_address.packed[: (length + 7) // 8]
    return head + bytes([length]) + octets


def encode_prefixes(prefixes: Iterable[Prefix], add_path: bool) -> bytes:
    return b"".join(encode_prefix(p, add_path) for p in prefixes)


def decode_prefixes(
    data: bytes, afi: int, add_path: bool, error: Callable[[str], CodecError]
) -> tuple[Prefix, ...]:
    """Decode a whole NLRI field; `error(reason)` builds what a bad field raises.

    Host bits beyond the prefix length are not an error on the wire (RFC 4271 leaves them
    irrelevant), so they are masked rather than rejected.
    """
    if afi == Afi.IPV4:
        width, make = 32, _ipv4
    elif afi == Afi.IPV6:
        width, make = 128, _ipv6
    else:
        raise error(f"NLRI of unsupported AFI {afi}")
    reader = Reader(data, lambda: error("NLRI truncated"))
    out: list[Prefix] = []
    while reader.remaining:
        path_id = reader.u32() if add_path else None
        length = reader.u8()
        if length > width:
            raise error(f"prefix length {length} exceeds {width}")
        octets = reader.take((length + 7) // 8)
        padded = octets + bytes(width // 8 - len(octets))
        out.append(Prefix(make(padded, length), path_id))
    return tuple(out)


# From an integer, not an address object: ipaddress builds a network from an address by
# way of its text form, which made decoding a million prefixes several times slower.


def _ipv4(packed: bytes, length: int) -> Network:
    return IPv4Network((int.from_bytes(packed, "big"), length), strict=False)


def _ipv6(packed: bytes, length: int) -> Network:
    return IPv6Network((int.from_bytes(packed, "big"), length), strict=False)
