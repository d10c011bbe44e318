"""Fuzzing the message parser: mutated real messages, a bounded run, zero crashes.

Random bytes rarely get past the header check, so the inputs start from valid messages
(generated, and every golden file) and are mutated: octets overwritten, cut or inserted,
with the header's length kept consistent half the time so the body parsers are reached.
"""

from __future__ import annotations

import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from herald.bgp.wire import CodecError, Framer, Negotiated, decode_message

from .golden import load_all, negotiated_from_json
from .strategies import SESSIONS, messages

BUDGET_SECONDS = 10.0
SEEDS = [
    (bytes.fromhex(g["hex"]), negotiated_from_json(g)) for _, g in load_all() if "error" not in g
]


@st.composite
def mutated(draw: st.DrawFn) -> tuple[bytes, Negotiated]:
    if draw(st.booleans()):
        data, negotiated = draw(st.sampled_from(SEEDS))
    else:
        negotiated = draw(st.sampled_from(SESSIONS))
        data = draw(messages(negotiated)).encode(negotiated)
    buffer = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        action = draw(st.sampled_from(["set", "cut", "insert"]))
        pos = draw(st.integers(19, max(19, len(buffer))))
        if action == "set" and pos < len(buffer):
            buffer[pos] = draw(st.integers(0, 255))
        elif action == "cut":
            del buffer[pos : pos + draw(st.integers(1, 8))]
        else:
            buffer[pos:pos] = draw(st.binary(min_size=1, max_size=8))
    if draw(st.booleans()) and len(buffer) >= 19:
        buffer[16:18] = len(buffer).to_bytes(2, "big")
    return bytes(buffer), negotiated


_deadline = {"end": 0.0}


@settings(
    derandomize=True,
    max_examples=2500,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(mutated())
def _fuzz_one(case: tuple[bytes, Negotiated]) -> None:
    if time.monotonic() > _deadline["end"]:
        return
    data, negotiated = case
    try:
        decoded = decode_message(data, negotiated)
    except CodecError as e:
        assert 0 <= e.code <= 255 and 0 <= e.subcode <= 255
        return
    if negotiated.four_octet_as:
        # What the codec accepted it can send again, and that decodes to the same thing.
        again = decode_message(decoded.message.encode(negotiated), negotiated)
        assert again.message == decoded.message
    framer = Framer(negotiated.max_message_size)
    framer.feed(data)
    assert list(framer.frames()) == [data]


def test_fuzz_message_parser() -> None:
    _deadline["end"] = time.monotonic() + BUDGET_SECONDS
    _fuzz_one()
