"""The 19-octet message header (RFC 4271 §4.1) and its checks."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from herald.bgp.wire.errors import HeaderError, HeaderSubcode
from herald.bgp.wire.negotiated import STANDARD_MAX_MESSAGE_SIZE

MARKER = b"\xff" * 16
HEADER_SIZE = 19


class MessageType(IntEnum):
    OPEN = 1
    UPDATE = 2
    NOTIFICATION = 3
    KEEPALIVE = 4
    ROUTE_REFRESH = 5


# RFC 4271 §6.1: the smallest legal length of each type (KEEPALIVE's is also its largest).
_MIN_LENGTH = {
    MessageType.OPEN: 29,
    MessageType.UPDATE: 23,
    MessageType.NOTIFICATION: 21,
    MessageType.KEEPALIVE: HEADER_SIZE,
    MessageType.ROUTE_REFRESH: HEADER_SIZE,
}


@dataclass(frozen=True)
class Header:
    length: int
    type: MessageType


def encode_header(message_type: MessageType, body_length: int) -> bytes:
    return MARKER + (HEADER_SIZE + body_length).to_bytes(2, "big") + bytes([message_type])


def decode_header(header: bytes, max_message_size: int) -> Header:
    """Check a complete 19-octet header against RFC 4271 §6.1 (and RFC 8654 §4)."""
    if header[:16] != MARKER:
        raise HeaderError(HeaderSubcode.CONNECTION_NOT_SYNCHRONIZED, reason="marker not all ones")
    length_field = header[16:18]
    length = int.from_bytes(length_field, "big")
    type_code = header[18]
    if type_code not in {t.value for t in MessageType}:
        raise HeaderError(
            HeaderSubcode.BAD_MESSAGE_TYPE, bytes([type_code]), f"message type {type_code}"
        )
    message_type = MessageType(type_code)
    # OPEN and KEEPALIVE stay within 4096 octets even after extended messages are agreed.
    limit = max_message_size
    if message_type in (MessageType.OPEN, MessageType.KEEPALIVE):
        limit = STANDARD_MAX_MESSAGE_SIZE
    too_long = length > limit or (message_type is MessageType.KEEPALIVE and length != HEADER_SIZE)
    if length < _MIN_LENGTH[message_type] or too_long:
        raise HeaderError(
            HeaderSubcode.BAD_MESSAGE_LENGTH,
            length_field,
            f"{message_type.name} length {length} outside {_MIN_LENGTH[message_type]}..{limit}",
        )
    return Header(length, message_type)
