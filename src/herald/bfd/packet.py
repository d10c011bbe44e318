"""BFD control packets (RFC 5880 §4.1), pure: encoding, and decoding with the checks of
§6.8.6 that need no session state.

    version(3) diag(5) | state(2) P F C A D M | detect mult | length
    my discriminator | your discriminator
    desired min TX | required min RX | required min echo RX      (microseconds)

herald sends no authentication section and refuses packets that carry one (A bit): a
session with authentication configured on the other side stays down rather than being
accepted unauthenticated.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

VERSION = 1
_FORMAT = struct.Struct("!BBBBIIIII")
LENGTH = _FORMAT.size  # 24

_POLL, _FINAL, _CPI, _AUTH, _DEMAND, _MULTIPOINT = 0x20, 0x10, 0x08, 0x04, 0x02, 0x01


class State(IntEnum):
    ADMIN_DOWN = 0
    DOWN = 1
    INIT = 2
    UP = 3


class Diag(IntEnum):
    NONE = 0
    DETECTION_EXPIRED = 1
    ECHO_FAILED = 2
    NEIGHBOR_DOWN = 3
    FORWARDING_RESET = 4
    PATH_DOWN = 5
    CONCATENATED_PATH_DOWN = 6
    ADMIN_DOWN = 7
    REVERSE_CONCATENATED_PATH_DOWN = 8


class BfdError(ValueError):
    """A packet §6.8.6 says to discard."""


@dataclass(frozen=True)
class ControlPacket:
    state: State
    detect_mult: int
    my_discriminator: int
    your_discriminator: int
    desired_min_tx: int  # microseconds
    required_min_rx: int
    required_min_echo_rx: int = 0
    diag: Diag = Diag.NONE
    poll: bool = False
    final: bool = False
    control_plane_independent: bool = False
    demand: bool = False

    def encode(self) -> bytes:
        flags = (
            self.state << 6
            | _POLL * self.poll
            | _FINAL * self.final
            | _CPI * self.control_plane_independent
            | _DEMAND * self.demand
        )
        return _FORMAT.pack(
            VERSION << 5 | self.diag,
            flags,
            self.detect_mult,
            LENGTH,
            self.my_discriminator,
            self.your_discriminator,
            self.desired_min_tx,
            self.required_min_rx,
            self.required_min_echo_rx,
        )


def decode(data: bytes) -> ControlPacket:
    if len(data) < LENGTH:
        raise BfdError(f"{len(data)} bytes, a control packet has at least {LENGTH}")
    first, flags, mult, length, mine, yours, tx, rx, echo = _FORMAT.unpack_from(data)
    if first >> 5 != VERSION:
        raise BfdError(f"version {first >> 5}, expected {VERSION}")
    if not LENGTH <= length <= len(data):
        raise BfdError(f"length field {length} with {len(data)} bytes received")
    if flags & _AUTH:
        raise BfdError("authentication present, and none is configured")
    if flags & _MULTIPOINT:
        raise BfdError("multipoint bit set")
    if mult == 0:
        raise BfdError("detect multiplier 0")
    if mine == 0:
        raise BfdError("my discriminator 0")
    state = State(flags >> 6)
    if yours == 0 and state not in (State.DOWN, State.ADMIN_DOWN):
        raise BfdError(f"your discriminator 0 in state {state.name}")
    diag = first & 0x1F
    return ControlPacket(
        state=state,
        detect_mult=mult,
        my_discriminator=mine,
        your_discriminator=yours,
        desired_min_tx=tx,
        required_min_rx=rx,
        required_min_echo_rx=echo,
        # Diagnostic codes above 8 are reserved: kept as "none" rather than refused.
        diag=Diag(diag) if diag <= max(Diag) else Diag.NONE,
        poll=bool(flags & _POLL),
        final=bool(flags & _FINAL),
        control_plane_independent=bool(flags & _CPI),
        demand=bool(flags & _DEMAND),
    )
