"""Property tests: generated messages survive a round trip; junk only raises CodecError."""

from __future__ import annotations

import contextlib

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herald.bgp.wire import CodecError, Framer, Message, Negotiated, decode_message

from .strategies import SESSIONS, messages

FIXED = settings(
    derandomize=True,
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def _round_trip(message: Message, negotiated: Negotiated) -> None:
    data = message.encode(negotiated)
    decoded = decode_message(data, negotiated)
    assert decoded.treatments == ()
    assert decoded.message == message
    assert decoded.message.encode(negotiated) == data


@FIXED
@given(messages(SESSIONS[0]))
def test_round_trip_four_octet(message: Message) -> None:
    _round_trip(message, SESSIONS[0])


@FIXED
@given(messages(SESSIONS[1]))
def test_round_trip_add_path_extended(message: Message) -> None:
    _round_trip(message, SESSIONS[1])


@FIXED
@given(messages(SESSIONS[2]))
def test_round_trip_two_octet_speaker(message: Message) -> None:
    _round_trip(message, SESSIONS[2])


@FIXED
@given(st.binary(max_size=64), st.sampled_from(SESSIONS))
def test_arbitrary_bytes_raise_only_codec_errors(data: bytes, negotiated: Negotiated) -> None:
    with contextlib.suppress(CodecError):
        decode_message(data, negotiated)


@FIXED
@given(st.lists(st.binary(max_size=40), max_size=8))
def test_framer_on_arbitrary_chunks_raises_only_codec_errors(chunks: list[bytes]) -> None:
    framer = Framer()
    try:
        for chunk in chunks:
            framer.feed(chunk)
            for frame in framer.frames():
                assert len(frame) >= 19
    except CodecError:
        pass


@FIXED
@given(messages(SESSIONS[1]), st.lists(st.integers(1, 50), min_size=1, max_size=20))
def test_framer_reassembles_any_split(message: Message, cuts: list[int]) -> None:
    negotiated = SESSIONS[1]
    data = message.encode(negotiated) * 2
    framer = Framer(negotiated.max_message_size)
    frames: list[bytes] = []
    pos = 0
    for cut in [*cuts, len(data)]:
        framer.feed(data[pos : pos + cut])
        pos += cut
        frames += framer.frames()
    assert frames == [data[: len(data) // 2]] * 2
    assert framer.buffered == 0
