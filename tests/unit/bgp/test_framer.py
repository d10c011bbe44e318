"""The framer: header errors carry the right code, the size limit can rise mid-stream."""

from __future__ import annotations

import pytest

from herald.bgp.wire import (
    EXTENDED_MAX_MESSAGE_SIZE,
    CodecError,
    Framer,
    Keepalive,
    Negotiated,
    Update,
)

from .cases import VALID

KEEPALIVE = Keepalive().encode()
BIG_UPDATE = next(c for c in VALID if c.name == "update-extended-message")


def test_partial_header_waits() -> None:
    framer = Framer()
    framer.feed(KEEPALIVE[:10])
    assert framer.next_frame() is None
    framer.feed(KEEPALIVE[10:] + KEEPALIVE[:5])
    assert list(framer.frames()) == [KEEPALIVE]
    assert framer.buffered == 5


@pytest.mark.parametrize(
    ("data", "subcode"),
    [
        (b"\x00" * 16 + b"\x00\x13\x04", 1),
        (b"\xff" * 16 + b"\x00\x12\x04", 2),
        (b"\xff" * 16 + b"\x10\x01\x02", 2),
        (b"\xff" * 16 + b"\x00\x13\x07", 3),
    ],
)
def test_header_errors_are_message_header_notifications(data: bytes, subcode: int) -> None:
    framer = Framer()
    framer.feed(data)
    for _ in range(2):  # the framer stays failed: the stream has lost its framing
        with pytest.raises(CodecError) as raised:
            framer.next_frame()
        assert (raised.value.code, raised.value.subcode) == (1, subcode)


def test_oversized_length_rejected_before_the_body_arrives() -> None:
    framer = Framer()
    framer.feed(b"\xff" * 16 + (5000).to_bytes(2, "big") + b"\x02")
    with pytest.raises(CodecError) as raised:
        framer.next_frame()
    assert raised.value.data == (5000).to_bytes(2, "big")


def test_limit_raised_between_frames_of_one_read() -> None:
    """KEEPALIVE then an extended UPDATE in one read: the session raises the limit between."""
    assert BIG_UPDATE.message is not None
    negotiated = Negotiated(extended_message=True)
    big = BIG_UPDATE.message.encode(negotiated)
    assert len(big) > 4096
    framer = Framer()
    framer.feed(KEEPALIVE + big)
    frames = framer.frames()
    assert next(frames) == KEEPALIVE
    framer.max_message_size = EXTENDED_MAX_MESSAGE_SIZE
    assert next(frames) == big


def test_encoder_refuses_what_the_peer_would_reject() -> None:
    assert BIG_UPDATE.message is not None
    assert isinstance(BIG_UPDATE.message, Update)
    with pytest.raises(ValueError, match="exceeds 4096"):
        BIG_UPDATE.message.encode(Negotiated())
