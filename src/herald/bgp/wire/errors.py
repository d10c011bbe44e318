"""Codec errors and RFC 7606 treatments.

Every error the codec raises carries the NOTIFICATION it calls for, so the session only has
to copy code, subcode and data into a `Notification`. Errors that RFC 7606 lets a session
survive are not raised at all: the UPDATE decoder records them as `AppliedTreatment`s.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, IntEnum

from herald.bgp.wire.negotiated import Family


class ErrorCode(IntEnum):
    """NOTIFICATION error codes (RFC 4271 §4.5, RFC 7313 for route refresh)."""

    MESSAGE_HEADER = 1
    OPEN_MESSAGE = 2
    UPDATE_MESSAGE = 3
    HOLD_TIMER_EXPIRED = 4
    FSM = 5
    CEASE = 6
    ROUTE_REFRESH = 7


class HeaderSubcode(IntEnum):
    CONNECTION_NOT_SYNCHRONIZED = 1
    BAD_MESSAGE_LENGTH = 2
    BAD_MESSAGE_TYPE = 3


class OpenSubcode(IntEnum):
    UNSPECIFIC = 0
    UNSUPPORTED_VERSION = 1
    BAD_PEER_AS = 2
    BAD_BGP_IDENTIFIER = 3
    UNSUPPORTED_OPTIONAL_PARAMETER = 4
    UNACCEPTABLE_HOLD_TIME = 6
    UNSUPPORTED_CAPABILITY = 7


class UpdateSubcode(IntEnum):
    MALFORMED_ATTRIBUTE_LIST = 1
    UNRECOGNIZED_WELL_KNOWN_ATTRIBUTE = 2
    MISSING_WELL_KNOWN_ATTRIBUTE = 3
    ATTRIBUTE_FLAGS_ERROR = 4
    ATTRIBUTE_LENGTH_ERROR = 5
    INVALID_ORIGIN_ATTRIBUTE = 6
    INVALID_NEXT_HOP_ATTRIBUTE = 8
    OPTIONAL_ATTRIBUTE_ERROR = 9
    INVALID_NETWORK_FIELD = 10
    MALFORMED_AS_PATH = 11


class FsmSubcode(IntEnum):
    """RFC 6608: which state the unexpected message arrived in."""

    UNSPECIFIED = 0
    UNEXPECTED_IN_OPEN_SENT = 1
    UNEXPECTED_IN_OPEN_CONFIRM = 2
    UNEXPECTED_IN_ESTABLISHED = 3


class CeaseSubcode(IntEnum):
    """RFC 4486; 10 from RFC 9384."""

    MAXIMUM_PREFIXES_REACHED = 1
    ADMINISTRATIVE_SHUTDOWN = 2
    PEER_DECONFIGURED = 3
    ADMINISTRATIVE_RESET = 4
    CONNECTION_REJECTED = 5
    OTHER_CONFIGURATION_CHANGE = 6
    CONNECTION_COLLISION_RESOLUTION = 7
    OUT_OF_RESOURCES = 8
    BFD_DOWN = 10


class Treatment(Enum):
    """RFC 7606 §2 error-handling approaches, mildest last in severity order."""

    SESSION_RESET = "session-reset"
    AFI_SAFI_DISABLE = "afi-safi-disable"
    TREAT_AS_WITHDRAW = "treat-as-withdraw"
    ATTRIBUTE_DISCARD = "attribute-discard"

    @property
    def severity(self) -> int:
        return _SEVERITY[self]


_SEVERITY = {
    Treatment.SESSION_RESET: 3,
    Treatment.AFI_SAFI_DISABLE: 2,
    Treatment.TREAT_AS_WITHDRAW: 1,
    Treatment.ATTRIBUTE_DISCARD: 0,
}


class CodecError(Exception):
    """A message cannot be accepted: the session must send this NOTIFICATION and close.

    This is the only exception type the decoders raise for bad input.
    """

    def __init__(self, code: int, subcode: int, data: bytes = b"", reason: str = "") -> None:
        self.code = code
        self.subcode = subcode
        self.data = data
        self.reason = reason
        super().__init__(f"code {code} subcode {subcode}: {reason or 'malformed'}")

    @property
    def treatment(self) -> Treatment:
        return Treatment.SESSION_RESET


class HeaderError(CodecError):
    def __init__(self, subcode: HeaderSubcode, data: bytes = b"", reason: str = "") -> None:
        super().__init__(ErrorCode.MESSAGE_HEADER, subcode, data, reason)


class OpenError(CodecError):
    def __init__(self, subcode: OpenSubcode | int, data: bytes = b"", reason: str = "") -> None:
        super().__init__(ErrorCode.OPEN_MESSAGE, subcode, data, reason)


class UpdateError(CodecError):
    def __init__(self, subcode: UpdateSubcode, data: bytes = b"", reason: str = "") -> None:
        super().__init__(ErrorCode.UPDATE_MESSAGE, subcode, data, reason)


@dataclass(frozen=True)
class AppliedTreatment:
    """One malformed attribute and what the decoder did about it.

    `code`/`subcode` say which NOTIFICATION RFC 4271 would have sent, for logs and counters.
    `afi`/`safi` name the family to disable when the treatment is AFI/SAFI disable.
    """

    treatment: Treatment
    attribute_type: int
    subcode: UpdateSubcode
    reason: str
    afi: int = 0
    safi: int = 0

    @property
    def code(self) -> ErrorCode:
        return ErrorCode.UPDATE_MESSAGE

    @property
    def family(self) -> Family:
        return Family(self.afi, self.safi)
