"""BFD control packets: a hand-built vector from RFC 5880's layout, round trips, and the
discard rules of §6.8.6 (any input gives a packet or BfdError, nothing else)."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from herald.bfd.packet import BfdError, ControlPacket, Diag, State, decode

# Version 1, diag 0 | state Up, Poll | mult 3 | length 24 | my 1 | your 2 |
# desired TX 300 ms | required RX 300 ms | echo RX 0.
UP_POLL = bytes.fromhex("20e803180000000100000002000493e0000493e000000000")


def test_vector_decodes_and_encodes_back() -> None:
    packet = decode(UP_POLL)
    assert packet == ControlPacket(
        State.UP, 3, 1, 2, 300_000, 300_000, poll=True, control_plane_independent=True
    )
    assert packet.encode() == UP_POLL


@given(
    state=st.sampled_from(State),
    diag=st.sampled_from(Diag),
    mult=st.integers(1, 255),
    mine=st.integers(1, 2**32 - 1),
    yours=st.integers(1, 2**32 - 1),
    tx=st.integers(0, 2**32 - 1),
    rx=st.integers(0, 2**32 - 1),
    flags=st.tuples(st.booleans(), st.booleans(), st.booleans()),
)
def test_round_trip(
    state: State,
    diag: Diag,
    mult: int,
    mine: int,
    yours: int,
    tx: int,
    rx: int,
    flags: tuple[bool, bool, bool],
) -> None:
    poll, final, demand = flags
    packet = ControlPacket(state, mult, mine, yours, tx, rx, 0, diag, poll, final, False, demand)
    assert decode(packet.encode()) == packet


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda b: b[:23], "at least 24"),
        (lambda b: bytes([0x40]) + b[1:], "version 2"),
        (lambda b: b[:3] + bytes([30]) + b[4:], "length field 30"),
        (lambda b: b[:1] + bytes([b[1] | 0x04]) + b[2:], "authentication"),
        (lambda b: b[:1] + bytes([b[1] | 0x01]) + b[2:], "multipoint"),
        (lambda b: b[:2] + bytes([0]) + b[3:], "multiplier 0"),
        (lambda b: b[:4] + bytes(4) + b[8:], "my discriminator 0"),
        (lambda b: b[:8] + bytes(4) + b[12:], "your discriminator 0 in state UP"),
    ],
)
def test_discarded_packets_say_why(change: object, message: str) -> None:
    with pytest.raises(BfdError, match=message):
        decode(change(UP_POLL))  # type: ignore[operator]


def test_your_discriminator_may_be_zero_while_down() -> None:
    down = ControlPacket(State.DOWN, 3, 7, 0, 1_000_000, 300_000).encode()
    assert decode(down).your_discriminator == 0


@given(st.binary(max_size=64))
def test_arbitrary_bytes_give_a_packet_or_bfd_error(data: bytes) -> None:
    with contextlib.suppress(BfdError):
        decode(data)
