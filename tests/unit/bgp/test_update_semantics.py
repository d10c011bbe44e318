"""UPDATE behaviour beyond single vectors: treat-as-withdraw, End-of-RIB, AS4 merging."""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv6Network

import pytest
from hypothesis import given, settings

from herald.bgp.wire import (
    AS_TRANS,
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPath,
    AsPathSegment,
    CodecError,
    Negotiated,
    PathAttributes,
    Prefix,
    SegmentType,
    Treatment,
    Update,
    decode_message,
)

from .cases import BASIC, VIP
from .strategies import SESSIONS, updates

BROKEN_COMMUNITIES = bytes.fromhex("c00803fde800")


def with_extra_attribute(data: bytes, attribute: bytes) -> bytes:
    """Append one raw attribute to an encoded UPDATE, fixing both length fields."""
    withdrawn_length = int.from_bytes(data[19:21], "big")
    at = 21 + withdrawn_length
    attributes_length = int.from_bytes(data[at : at + 2], "big")
    end = at + 2 + attributes_length
    body = (
        data[19:at]
        + (attributes_length + len(attribute)).to_bytes(2, "big")
        + data[at + 2 : end]
        + attribute
        + data[end:]
    )
    return data[:16] + (19 + len(body)).to_bytes(2, "big") + data[18:19] + body


@settings(derandomize=True, max_examples=100, deadline=None)
@given(updates(SESSIONS[0]))
def test_treat_as_withdraw_withdraws_everything_announced(update: Update) -> None:
    negotiated = SESSIONS[0]
    # A second COMMUNITIES would only be discarded as a repeat, so the first must be absent.
    update = replace(update, attributes=replace(update.attributes, communities=None))
    data = with_extra_attribute(update.encode(negotiated), BROKEN_COMMUNITIES)
    reach, unreach = update.attributes.mp_reach, update.attributes.mp_unreach
    announced = reach.nlri if reach is not None else ()
    if announced and unreach is not None and reach is not None and unreach.family != reach.family:
        # Not expressible as one UPDATE of withdrawals: escalated to a session reset.
        with pytest.raises(CodecError):
            decode_message(data, negotiated)
        return
    decoded = decode_message(data, negotiated)
    assert [t.treatment for t in decoded.treatments] == [Treatment.TREAT_AS_WITHDRAW]
    result = decoded.message
    assert isinstance(result, Update)
    assert result.nlri == ()
    assert set(update.nlri) | set(update.withdrawn) == set(result.withdrawn)
    assert result.attributes.mp_reach is None
    kept = unreach.withdrawn if unreach is not None else ()
    if announced or unreach is not None:
        assert result.attributes.mp_unreach is not None
        assert set(result.attributes.mp_unreach.withdrawn) == set(kept) | set(announced)
    assert replace(result.attributes, mp_unreach=None) == PathAttributes()


def test_end_of_rib_is_recognised_and_nothing_else_is() -> None:
    assert Update.end_of_rib(IPV6_UNICAST).end_of_rib_family == IPV6_UNICAST
    assert Update().end_of_rib_family == IPV4_UNICAST
    assert Update(attributes=BASIC, nlri=(VIP,)).end_of_rib_family is None


def test_ipv6_prefixes_belong_in_mp_reach() -> None:
    v6 = Prefix(IPv6Network("2001:db8::/32"))
    with pytest.raises(ValueError, match="only IPv4"):
        Update(attributes=BASIC, nlri=(v6,)).encode()


def test_long_as_sequence_is_split_into_segments_of_255() -> None:
    path = AsPath.sequence(*range(1, 301))
    update = Update(attributes=replace(BASIC, as_path=path), nlri=(VIP,))
    decoded = decode_message(update.encode())
    assert isinstance(decoded.message, Update)
    got = decoded.message.attributes.as_path
    assert got is not None
    assert [len(s.asns) for s in got.segments] == [255, 45]
    assert got.path_length == 300


def test_stale_as4_path_is_ignored_when_aggregator_is_not_as_trans() -> None:
    """RFC 6793 §4.2.3: an old speaker aggregated, so the AS4 information is out of date."""
    two_octet = Negotiated(four_octet_as=False)
    path = AsPath.sequence(64512, 4200000000)
    update = Update(attributes=replace(BASIC, as_path=path), nlri=(VIP,))
    data = update.encode(two_octet)
    aggregator = bytes.fromhex("c00706fc01") + IPv4Address("192.0.2.9").packed
    decoded = decode_message(with_extra_attribute(data, aggregator), two_octet)
    assert isinstance(decoded.message, Update)
    assert decoded.message.attributes.as_path == AsPath(
        (AsPathSegment(SegmentType.AS_SEQUENCE, (64512, AS_TRANS)),)
    )
