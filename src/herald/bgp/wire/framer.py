"""Cuts a TCP byte stream into whole BGP messages."""

from __future__ import annotations

from collections.abc import Iterator

from herald.bgp.wire.errors import CodecError
from herald.bgp.wire.header import HEADER_SIZE, decode_header
from herald.bgp.wire.negotiated import STANDARD_MAX_MESSAGE_SIZE


class Framer:
    """Feed received bytes in; take whole messages (header included) out.

    Frames are taken one at a time because the OPEN exchange can raise the size limit
    (RFC 8654) between two messages that arrived in the same read: the session sets
    `max_message_size` after the OPEN and before asking for the next frame.

    A header is checked as soon as its 19 octets are in, so no message larger than the
    limit is ever waited for: the incomplete tail of the buffer stays below
    `max_message_size`, and everything before it is whole frames waiting to be taken.

    After an error the framer stays failed: the stream has lost its framing and the session
    must close.
    """

    def __init__(self, max_message_size: int = STANDARD_MAX_MESSAGE_SIZE) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()
        self._error: CodecError | None = None

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def next_frame(self) -> bytes | None:
        """The next whole message, or None until more bytes arrive."""
        if self._error is not None:
            raise self._error
        if len(self._buffer) < HEADER_SIZE:
            return None
        try:
            header = decode_header(bytes(self._buffer[:HEADER_SIZE]), self.max_message_size)
        except CodecError as e:
            self._error = e
            raise
        if len(self._buffer) < header.length:
            return None
        frame = bytes(self._buffer[: header.length])
        del self._buffer[: header.length]
        return frame

    def frames(self) -> Iterator[bytes]:
        """Every whole message buffered now; reads `max_message_size` afresh for each."""
        while (frame := self.next_frame()) is not None:
            yield frame
