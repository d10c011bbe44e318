"""What the agent and its BFD process (`bfd.process`) say to each other, pure: one JSON
object per line over a unix stream socket, in both directions.

The agent sends its desired state, whole, each time it changes:

    {"op": "sessions", "orphan_timeout": 120.0,
     "sessions": [{"peer": "192.0.2.1", "tx_us": 300000, "rx_us": 300000, "mult": 3,
                   "passive": false}]}

and `{"op": "stop"}` when BFD is to end for good (the process tells the peers AdminDown and
exits). The process answers a new connection with `hello` (its pid and every session it
runs, so an adopting agent knows their state without waiting for a change) and then reports
each `state` change as it happens. An agent's end of the socket closing is not a command:
the sessions keep running for `orphan_timeout` seconds, long enough for a restarted agent
to adopt them (that is why they carry the C bit).

Lines are capped (`MAX_LINE`): a peer that sends an endless line is cut off, not buffered.
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from typing import Any

from herald.addresses import IPAddress
from herald.bfd.packet import Diag, State
from herald.bfd.session import StateChange, Timers

MAX_LINE = 1 << 20
# The orphan timeout when the agent names none: the default graceful restart time.
DEFAULT_ORPHAN_TIMEOUT = 120.0


class ControlError(ValueError):
    """A line that is not a message of this protocol."""


@dataclass(frozen=True)
class Sessions:
    """The agent's desired sessions (peer -> timers) and how long they outlive the agent."""

    timers: dict[IPAddress, Timers]
    orphan_timeout: float = DEFAULT_ORPHAN_TIMEOUT


@dataclass(frozen=True)
class Stop:
    """End every session (AdminDown to the peers) and the process."""


@dataclass(frozen=True)
class Hello:
    pid: int
    states: dict[IPAddress, State]


@dataclass(frozen=True)
class Changed:
    peer: IPAddress
    change: StateChange


Command = Sessions | Stop
Report = Hello | Changed


def encode(message: Command | Report) -> bytes:
    return json.dumps(_plain(message), separators=(",", ":")).encode() + b"\n"


def _plain(message: Command | Report) -> dict[str, Any]:
    if isinstance(message, Sessions):
        return {
            "op": "sessions",
            "orphan_timeout": message.orphan_timeout,
            "sessions": [
                {
                    "peer": str(peer),
                    "tx_us": t.desired_min_tx,
                    "rx_us": t.required_min_rx,
                    "mult": t.detect_mult,
                    "passive": t.passive,
                }
                for peer, t in sorted(message.timers.items(), key=lambda i: str(i[0]))
            ],
        }
    if isinstance(message, Stop):
        return {"op": "stop"}
    if isinstance(message, Hello):
        states = {str(peer): state.name for peer, state in message.states.items()}
        return {"op": "hello", "pid": message.pid, "states": states}
    change = message.change
    return {
        "op": "state",
        "peer": str(message.peer),
        "old": change.old.name,
        "new": change.new.name,
        "diag": change.diag.name,
        "by_peer_admin": change.by_peer_admin,
    }


def decode_command(line: bytes) -> Command:
    data = _object(line)
    op = data.get("op")
    if op == "stop":
        return Stop()
    if op != "sessions":
        raise ControlError(f"unknown command {op!r}")
    timeout = data.get("orphan_timeout", DEFAULT_ORPHAN_TIMEOUT)
    if not isinstance(timeout, int | float) or isinstance(timeout, bool) or timeout < 0:
        raise ControlError(f"orphan_timeout {timeout!r}: a number of seconds >= 0")
    sessions = data.get("sessions")
    if not isinstance(sessions, list):
        raise ControlError("sessions: a list expected")
    timers: dict[IPAddress, Timers] = {}
    for index, item in enumerate(sessions):
        try:
            peer = ipaddress.ip_address(item["peer"])
            values = (item["tx_us"], item["rx_us"], item["mult"])
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
                raise ValueError(f"tx_us, rx_us, mult must be integers: {values}")
            timers[peer] = Timers(*values, passive=bool(item.get("passive", False)))
        except (KeyError, TypeError, ValueError) as err:
            raise ControlError(f"sessions[{index}]: {err}") from err
    return Sessions(timers, float(timeout))


def decode_report(line: bytes) -> Report:
    data = _object(line)
    try:
        if data.get("op") == "hello":
            states = {ipaddress.ip_address(p): State[s] for p, s in data["states"].items()}
            return Hello(int(data["pid"]), states)
        if data.get("op") == "state":
            change = StateChange(
                State[data["old"]],
                State[data["new"]],
                Diag[data["diag"]],
                bool(data["by_peer_admin"]),
            )
            return Changed(ipaddress.ip_address(data["peer"]), change)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise ControlError(f"report {data.get('op')!r}: {err!r}") from err
    raise ControlError(f"unknown report {data.get('op')!r}")


def _object(line: bytes) -> dict[str, Any]:
    if len(line) > MAX_LINE:
        raise ControlError(f"line of {len(line)} bytes, at most {MAX_LINE}")
    try:
        data = json.loads(line)
    except ValueError as err:
        raise ControlError(f"not JSON: {err}") from err
    if not isinstance(data, dict):
        raise ControlError("a JSON object expected")
    return data
