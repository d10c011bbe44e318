"""UPDATE packing: many prefixes, few messages. Pure.

Prefixes that share attributes go together, as many per UPDATE as the negotiated maximum
message size allows; withdrawals likewise. IPv4 unicast uses the UPDATE's own NLRI and
withdrawn fields, other families MP_REACH/MP_UNREACH (RFC 4760).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import replace

from herald.bgp.wire import (
    IPV4_UNICAST,
    Family,
    MpUnreach,
    Negotiated,
    PathAttributes,
    Prefix,
    Update,
)
from herald.bgp.wire.attributes import encode_attributes
from herald.bgp.wire.header import HEADER_SIZE

_LENGTH_FIELDS = 4  # withdrawn routes length + total path attribute length
_EXTENDED_ATTRIBUTE_HEADER = 4  # flags, type, 2-octet length
_MP_FAMILY = 3  # AFI + SAFI


def prefix_size(prefix: Prefix, add_path: bool) -> int:
    return (4 if add_path else 0) + 1 + (prefix.network.prefixlen + 7) // 8


def _chunks(
    prefixes: Sequence[Prefix], budget: int, add_path: bool
) -> Iterator[tuple[Prefix, ...]]:
    """Consecutive runs of `prefixes` whose encodings fit `budget` octets."""
    start, used = 0, 0
    for index, prefix in enumerate(prefixes):
        size = prefix_size(prefix, add_path)
        if used + size > budget and index > start:
            yield tuple(prefixes[start:index])
            start, used = index, 0
        used += size
    if start < len(prefixes):
        yield tuple(prefixes[start:])


def announcements(
    routes: Mapping[Prefix, PathAttributes], family: Family, negotiated: Negotiated
) -> list[Update]:
    """UPDATEs announcing `routes` of one family. For IPv4 the attributes carry NEXT_HOP;
    for other families an MP_REACH with the next hop and no NLRI, filled in here."""
    groups: dict[PathAttributes, list[Prefix]] = defaultdict(list)
    for prefix, attributes in routes.items():
        groups[attributes].append(prefix)
    add_path = family in negotiated.add_path_send
    fixed = HEADER_SIZE + _LENGTH_FIELDS
    updates: list[Update] = []
    for attributes, prefixes in groups.items():
        prefixes.sort()
        # The MP_REACH header may grow to its extended form once NLRI is added.
        attribute_size = len(encode_attributes(attributes, negotiated)) + (
            0 if family == IPV4_UNICAST else 1
        )
        budget = negotiated.max_message_size - fixed - attribute_size
        for chunk in _chunks(prefixes, budget, add_path):
            if family == IPV4_UNICAST:
                updates.append(Update(attributes=attributes, nlri=chunk))
            else:
                reach = attributes.mp_reach
                assert reach is not None, "non-IPv4 routes carry MP_REACH"
                updates.append(
                    Update(attributes=replace(attributes, mp_reach=replace(reach, nlri=chunk)))
                )
    return updates


def withdrawals(prefixes: Iterable[Prefix], family: Family, negotiated: Negotiated) -> list[Update]:
    ordered = sorted(prefixes)
    add_path = family in negotiated.add_path_send
    budget = negotiated.max_message_size - HEADER_SIZE - _LENGTH_FIELDS
    if family == IPV4_UNICAST:
        return [Update(withdrawn=chunk) for chunk in _chunks(ordered, budget, add_path)]
    budget -= _EXTENDED_ATTRIBUTE_HEADER + _MP_FAMILY
    return [
        Update(attributes=PathAttributes(mp_unreach=MpUnreach(family, chunk)))
        for chunk in _chunks(ordered, budget, add_path)
    ]


def encode_all(updates: Iterable[Update], negotiated: Negotiated) -> list[bytes]:
    return [update.encode(negotiated) for update in updates]
