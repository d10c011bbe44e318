"""Leader election on a Lease, decided without I/O (time passed in), as client-go does it.

Every candidate reads the Lease every `retry_period`. The holder renews it; a candidate
takes it only when the record it last saw has not changed for `lease_duration` by its own
clock (the holder's timestamps are never trusted: clocks differ between nodes). The holder
counts its renew deadline from when it *sent* its last successful renew, which is no later
than when the server stored it and so no later than when any other candidate saw it. A
holder that could not renew for `renew_deadline` stops leading; as `renew_deadline` is
shorter than `lease_duration`, it has stopped before any other candidate may take the
lease: there are never two writers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

# client-go's defaults (k8s.io/client-go/tools/leaderelection).
LEASE_DURATION = 15.0
RENEW_DEADLINE = 10.0
RETRY_PERIOD = 2.0
# client-go's JitterFactor: renewDeadline must exceed retryPeriod by this much.
JITTER_FACTOR = 1.2


@dataclass(frozen=True)
class LeaseTimings:
    lease_duration: float = LEASE_DURATION
    renew_deadline: float = RENEW_DEADLINE
    retry_period: float = RETRY_PERIOD

    def __post_init__(self) -> None:
        if not self.lease_duration > self.renew_deadline:
            raise ValueError(
                f"lease duration ({self.lease_duration} s) must be longer than the renew "
                f"deadline ({self.renew_deadline} s): a leader that cannot renew must stop "
                "before another may take over"
            )
        if not self.renew_deadline > JITTER_FACTOR * self.retry_period:
            raise ValueError(
                f"renew deadline ({self.renew_deadline} s) must be longer than "
                f"{JITTER_FACTOR} x the retry period ({self.retry_period} s)"
            )
        if self.retry_period <= 0:
            raise ValueError("retry period must be positive")


@dataclass(frozen=True)
class LeaseRecord:
    """The Lease's spec as herald reads and writes it (times as the API's MicroTime text)."""

    holder: str
    duration_seconds: int
    acquire_time: str | None = None
    renew_time: str | None = None
    transitions: int = 0


class LeaderElection:
    """One candidate's view of the Lease; the caller reads and writes it and passes the time
    (monotonic seconds) and the wall-clock text for the record."""

    def __init__(self, identity: str, timings: LeaseTimings = LeaseTimings()) -> None:
        if not identity:
            raise ValueError("a candidate needs a non-empty identity")
        self.identity = identity
        self.timings = timings
        self.observed: LeaseRecord | None = None
        # When this candidate saw `observed` change (its own clock).
        self.observed_at: float | None = None
        # When the last successful acquire or renew was sent; None while not leading.
        self.renewed_at: float | None = None

    def observe(self, record: LeaseRecord | None, now: float) -> None:
        """The Lease as just read (None: there is none)."""
        if record != self.observed or self.observed_at is None:
            self.observed, self.observed_at = record, now
        if record is None or record.holder != self.identity:
            self.renewed_at = None  # another holds it (or nobody): certainly not leading

    def proposal(self, now: float, wall: str) -> LeaseRecord | None:
        """The record to write now, or None while another holds a lease that has not
        expired by this candidate's clock."""
        # The API keeps whole seconds; rounding up only makes a standby wait longer.
        duration = math.ceil(self.timings.lease_duration)
        current = self.observed
        if current is None:
            return LeaseRecord(self.identity, duration, wall, wall, 0)
        if current.holder == self.identity:
            return replace(current, duration_seconds=duration, renew_time=wall)
        if current.holder and not self.expired(now):
            return None
        return LeaseRecord(self.identity, duration, wall, wall, current.transitions + 1)

    def expired(self, now: float) -> bool:
        current = self.observed
        if current is None or not current.holder or self.observed_at is None:
            return True
        return now >= self.observed_at + current.duration_seconds

    def written(self, record: LeaseRecord, sent_at: float) -> None:
        """`record` (our proposal) was stored; it was sent at `sent_at`."""
        self.observed, self.observed_at = record, sent_at
        if record.holder == self.identity:
            self.renewed_at = sent_at

    def leading(self, now: float) -> bool:
        return (
            self.renewed_at is not None
            and self.observed is not None
            and self.observed.holder == self.identity
            and now < self.renewed_at + self.timings.renew_deadline
        )

    def deadline(self) -> float | None:
        """When leadership ends unless renewed first (None while not leading)."""
        if self.renewed_at is None:
            return None
        return self.renewed_at + self.timings.renew_deadline

    def release(self, wall: str) -> LeaseRecord | None:
        """The record that hands the lease back on a clean exit (client-go's
        ReleaseOnCancel), so a standby need not wait for it to expire; None if not ours."""
        current = self.observed
        if current is None or current.holder != self.identity:
            return None
        return replace(current, holder="", duration_seconds=1, renew_time=wall)

    def stepped_down(self) -> None:
        self.renewed_at = None
