"""Flow events that never reached the ring, by cause, so that `herald observe` can say
how many it did not show.

- `rate_limited`: beyond the datapath's limit (the nft counter `observe-lost`), read from
  the kernel when asked;
- `undelivered`: logged by the kernel but not received: gaps in NFLOG's per-group sequence
  numbers (the socket's buffer overflowed, ENOBUFS);
- `overruns`: how many times the socket reported ENOBUFS;
- `undecodable`: messages the decoder refused.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Lost:
    rate_limited: int = 0
    undelivered: int = 0
    overruns: int = 0
    undecodable: int = 0
    _next_seq: int | None = None

    def saw(self, seq: int | None) -> None:
        """Count the events skipped before sequence number `seq` (NFLOG's is 32 bits)."""
        if seq is None:
            return
        if self._next_seq is not None:
            gap = (seq - self._next_seq) % 2**32
            # A gap of more than half the space is a restart of the group, not a loss.
            if gap < 2**31:
                self.undelivered += gap
        self._next_seq = (seq + 1) % 2**32

    @property
    def total(self) -> int:
        return self.rate_limited + self.undelivered + self.undecodable

    def to_json(self) -> dict[str, int]:
        return {
            "rate_limited": self.rate_limited,
            "undelivered": self.undelivered,
            "overruns": self.overruns,
            "undecodable": self.undecodable,
        }
