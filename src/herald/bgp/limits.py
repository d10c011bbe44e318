"""The values a BGP peer setting may take, defined once.

`PeerConfig` (what the speaker runs) and the API models (what `herald validate` accepts)
both check against these, so a value the validator lets through can never be refused later
by the speaker, where it would cost a whole BGP instance instead of one located problem.
Pure data.
"""

from __future__ import annotations

from dataclasses import dataclass

from herald.bgp.wire.attributes import AS_TRANS

DEFAULT_MAX_PREFIXES = 10_000
"""Received prefixes a peer may send before its session is ended with Cease/1 (RFC 4486).

herald announces and never installs what it hears (the Adj-RIB-In is for observation), and
a node's routers normally send it nothing or a default route. 10,000 is far above any
sensible table for a node and far below what would hurt it (a full Internet table is about
a million routes); a router leaking its table to a node is cut instead of filling memory."""


@dataclass(frozen=True)
class Limit:
    """An integer setting: `low`..`high`, except the `excluded` values (each with why)."""

    low: int
    high: int
    excluded: tuple[tuple[int, str], ...] = ()

    @property
    def allowed(self) -> str:
        text = f"{self.low}..{self.high}"
        if self.excluded:
            text += " except " + ", ".join(str(value) for value, _ in self.excluded)
        return text

    def problem(self, value: float) -> str | None:
        """What is wrong with `value` and what is allowed, or None when it is allowed."""
        for excluded, why in self.excluded:
            if value == excluded:
                return f"{value} {why}; use {self.allowed}"
        if not self.low <= value <= self.high:
            return f"{value} is outside {self.allowed}"
        return None


AS_NUMBER = Limit(
    1,
    0xFFFFFFFF,
    excluded=(
        (AS_TRANS, "is AS_TRANS (RFC 6793), which only stands in for a 4-octet AS on the wire"),
    ),
)
"""A configured AS (ours or a peer's). 0 is reserved (RFC 7607): herald has no "accept any
peer AS" (Cilium's peerASN 0); the peer's OPEN is always checked against its AS."""

HOLD_TIME = Limit(
    0,
    0xFFFF,
    excluded=(
        (1, "is below 3 seconds (RFC 4271 §4.2); 0 turns the hold timer off"),
        (2, "is below 3 seconds (RFC 4271 §4.2); 0 turns the hold timer off"),
    ),
)
PORT = Limit(1, 0xFFFF)
CONNECT_RETRY_TIME = Limit(1, 0xFFFF)
"""Seconds; the API takes whole seconds, PeerConfig any positive value up to the maximum."""
EBGP_MULTIHOP = Limit(1, 255)
TTL_SECURITY_HOPS = Limit(1, 254)
"""GTSM hops: the accepted minimum TTL is 256 - hops, so 255 hops would accept anything."""
GRACEFUL_RESTART_TIME = Limit(1, 4095)
"""Seconds; the capability carries 12 bits (RFC 4724 §3). Off is None, not 0."""
MAX_PREFIXES = Limit(1, 0xFFFFFFFF)
