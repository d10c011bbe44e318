"""The agent <-> BFD process protocol: every message both ways, and lines it refuses."""

from __future__ import annotations

import re
from ipaddress import IPv4Address, IPv6Address

import pytest

from herald.bfd.control import (
    MAX_LINE,
    Changed,
    ControlError,
    Hello,
    Sessions,
    Stop,
    decode_command,
    decode_report,
    encode,
)
from herald.bfd.packet import Diag, State
from herald.bfd.session import StateChange, Timers

V4, V6 = IPv4Address("192.0.2.1"), IPv6Address("2001:db8::1")


def test_commands_round_trip() -> None:
    sessions = Sessions(
        {V4: Timers.from_ms(300, 300, 3), V6: Timers.from_ms(50, 100, 5, passive=True)}, 30.0
    )
    assert decode_command(encode(sessions)) == sessions
    assert decode_command(encode(Sessions({}, 0.0))) == Sessions({}, 0.0)
    assert decode_command(encode(Stop())) == Stop()


def test_reports_round_trip() -> None:
    hello = Hello(1234, {V4: State.UP, V6: State.DOWN})
    assert decode_report(encode(hello)) == hello
    changed = Changed(V4, StateChange(State.UP, State.DOWN, Diag.NEIGHBOR_DOWN, True))
    assert decode_report(encode(changed)) == changed


def test_each_message_is_one_line() -> None:
    line = encode(Sessions({V4: Timers()}, 1.0))
    assert line.endswith(b"\n") and line.count(b"\n") == 1


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"not json\n", "not JSON"),
        (b"[1]\n", "object expected"),
        (b'{"op": "dance"}\n', "unknown command"),
        (b'{"op": "sessions", "sessions": {}}\n', "list expected"),
        (b'{"op": "sessions", "sessions": [], "orphan_timeout": -1}\n', "orphan_timeout"),
        (b'{"op": "sessions", "sessions": [], "orphan_timeout": true}\n', "orphan_timeout"),
        (b'{"op": "sessions", "sessions": [{"peer": "x", "tx_us": 1, "rx_us": 1, "mult": 3}]}',
         "sessions[0]"),
        (b'{"op": "sessions", "sessions": [{"peer": "192.0.2.1", "tx_us": 1.5, "rx_us": 1, '
         b'"mult": 3}]}', "integers"),
        (b'{"op": "sessions", "sessions": [{"peer": "192.0.2.1", "tx_us": 0, "rx_us": 1, '
         b'"mult": 3}]}', "positive"),
        (b'{"op": "sessions", "sessions": [{"peer": "192.0.2.1", "rx_us": 1, "mult": 3}]}',
         "tx_us"),
    ],
)  # fmt: skip
def test_bad_commands_are_refused_with_the_reason(line: bytes, reason: str) -> None:
    with pytest.raises(ControlError, match=re.escape(reason)):
        decode_command(line)


def test_an_endless_line_is_refused_before_parsing() -> None:
    with pytest.raises(ControlError, match="at most"):
        decode_command(b" " * (MAX_LINE + 1))


@pytest.mark.parametrize(
    "line",
    [
        b'{"op": "hello", "pid": 1, "states": {"192.0.2.1": "SIDEWAYS"}}',
        b'{"op": "hello", "states": {}}',
        b'{"op": "state", "peer": "192.0.2.1", "old": "UP"}',
        b'{"op": "sessions"}',
    ],
)
def test_bad_reports_are_refused(line: bytes) -> None:
    with pytest.raises(ControlError):
        decode_report(line)
