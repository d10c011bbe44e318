"""What the OPEN exchange agreed, carried into every encode and decode call."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import NamedTuple


class Afi(IntEnum):
    IPV4 = 1
    IPV6 = 2


class Safi(IntEnum):
    UNICAST = 1


class Family(NamedTuple):
    """An address family as on the wire; values outside the enums are kept as plain ints."""

    afi: int
    safi: int

    def __str__(self) -> str:
        return f"{_name(Afi, self.afi)}-{_name(Safi, self.safi)}"


def _name(enum: type[IntEnum], value: int) -> str:
    try:
        return enum(value).name.lower()
    except ValueError:
        return str(value)


IPV4_UNICAST = Family(Afi.IPV4, Safi.UNICAST)
IPV6_UNICAST = Family(Afi.IPV6, Safi.UNICAST)
SUPPORTED_FAMILIES = frozenset({IPV4_UNICAST, IPV6_UNICAST})

STANDARD_MAX_MESSAGE_SIZE = 4096
EXTENDED_MAX_MESSAGE_SIZE = 65535


@dataclass(frozen=True)
class Negotiated:
    """The codec's view of one session.

    Before the OPEN exchange completes, the defaults are what RFC 4271 assumes of any peer,
    except `four_octet_as`, which we default on because every OPEN we send advertises it and
    no AS_PATH travels before both OPENs are known.

    Add-path is directional: `add_path_receive` families carry a path identifier in what we
    decode, `add_path_send` families in what we encode.
    """

    four_octet_as: bool = True
    families: frozenset[Family] = frozenset({IPV4_UNICAST})
    add_path_receive: frozenset[Family] = field(default_factory=frozenset)
    add_path_send: frozenset[Family] = field(default_factory=frozenset)
    extended_message: bool = False

    @property
    def max_message_size(self) -> int:
        return EXTENDED_MAX_MESSAGE_SIZE if self.extended_message else STANDARD_MAX_MESSAGE_SIZE


INITIAL = Negotiated()
"""What holds before the OPEN exchange: the default for calls that do not pass a session's."""
