"""Leader election decided on a fake clock: two candidates share one in-memory Lease."""

from __future__ import annotations

import pytest

from herald.controller.leader import LeaderElection, LeaseRecord, LeaseTimings

TIMINGS = LeaseTimings(lease_duration=15.0, renew_deadline=10.0, retry_period=2.0)


class Lease:
    """The server's Lease: a write succeeds only against the record the writer read."""

    def __init__(self) -> None:
        self.record: LeaseRecord | None = None

    def step(self, candidate: LeaderElection, now: float, reachable: bool = True) -> None:
        """One retry period of `candidate`: read, then write its proposal."""
        if not reachable:
            return
        candidate.observe(self.record, now)
        proposal = candidate.proposal(now, f"t={now}")
        if proposal is not None:
            self.record = proposal
            candidate.written(proposal, now)


def test_the_first_candidate_takes_a_missing_lease() -> None:
    lease, a = Lease(), LeaderElection("a", TIMINGS)
    lease.step(a, 0.0)
    assert a.leading(0.0)
    assert lease.record == LeaseRecord("a", 15, "t=0.0", "t=0.0", 0)


def test_a_standby_waits_while_the_leader_renews() -> None:
    lease, a, b = Lease(), LeaderElection("a", TIMINGS), LeaderElection("b", TIMINGS)
    for tick in range(0, 60, 2):
        lease.step(a, float(tick))
        lease.step(b, float(tick) + 1)
        assert a.leading(float(tick) + 1)
        assert not b.leading(float(tick) + 1)
    assert lease.record is not None and lease.record.holder == "a"


def test_a_dead_leader_is_replaced_after_the_lease_duration_and_no_sooner() -> None:
    lease, a, b = Lease(), LeaderElection("a", TIMINGS), LeaderElection("b", TIMINGS)
    lease.step(a, 0.0)
    lease.step(b, 1.0)  # b sees a's record at 1.0
    # a dies at once. b takes over exactly when a's record is lease_duration old by its clock.
    taken_at = None
    now = 1.0
    while taken_at is None and now < 100:
        now += 0.5
        lease.step(b, now)
        if b.leading(now):
            taken_at = now
    assert taken_at == 16.0
    assert lease.record is not None and lease.record.transitions == 1


def test_a_leader_that_cannot_renew_stops_before_anyone_may_take_over() -> None:
    lease, a, b = Lease(), LeaderElection("a", TIMINGS), LeaderElection("b", TIMINGS)
    lease.step(a, 0.0)
    now = 0.0
    a_stopped = b_started = None
    # From 0.5 on, a cannot reach the server; b can.
    while b_started is None:
        now += 0.5
        lease.step(a, now, reachable=False)
        lease.step(b, now)
        if a_stopped is None and not a.leading(now):
            a_stopped = now
        if b.leading(now):
            b_started = now
            assert not a.leading(now), "two leaders at once"
    assert a_stopped == TIMINGS.renew_deadline
    assert b_started >= TIMINGS.lease_duration
    assert a.deadline() == TIMINGS.renew_deadline


def test_a_leader_that_sees_another_holder_steps_down_at_once() -> None:
    a = LeaderElection("a", TIMINGS)
    a.observe(None, 0.0)
    proposal = a.proposal(0.0, "t0")
    assert proposal is not None
    a.written(proposal, 0.0)
    assert a.leading(1.0)
    a.observe(LeaseRecord("b", 15, "t1", "t1", 1), 2.0)
    assert not a.leading(2.0)
    assert a.proposal(3.0, "t3") is None


def test_release_hands_the_lease_over_without_waiting() -> None:
    lease, a, b = Lease(), LeaderElection("a", TIMINGS), LeaderElection("b", TIMINGS)
    lease.step(a, 0.0)
    lease.step(b, 0.5)
    released = a.release("t=1")
    assert released is not None and released.holder == ""
    lease.record = released
    lease.step(b, 1.0)
    assert b.leading(1.0)
    assert lease.record.holder == "b" and lease.record.transitions == 1


def test_release_of_a_lease_held_by_another_writes_nothing() -> None:
    b = LeaderElection("b", TIMINGS)
    b.observe(LeaseRecord("a", 15, "t", "t", 0), 0.0)
    assert b.release("t") is None


@pytest.mark.parametrize(
    ("lease", "renew", "retry"), [(10.0, 10.0, 2.0), (15.0, 2.0, 2.0), (15.0, 10.0, 0.0)]
)
def test_timings_that_would_allow_two_writers_are_refused(
    lease: float, renew: float, retry: float
) -> None:
    with pytest.raises(ValueError):
        LeaseTimings(lease, renew, retry)
