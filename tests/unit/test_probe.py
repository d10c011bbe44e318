"""What a failover looked like from a client's samples (lab/probe.py's pure part)."""

from __future__ import annotations

import pytest

from herald.lab.probe import Sample, failover, host_port

OLD, NEW = "192.0.2.21", "192.0.2.22"


def samples(rows: list[tuple[float, bool, str | None]]) -> list[Sample]:
    return [Sample(start, start + 0.002, ok, entered) for start, ok, entered in rows]


def test_no_failure_recovery_is_first_answer_through_new_owner() -> None:
    seen = samples([(0.99, True, OLD), (1.2, True, OLD), (1.5, True, NEW), (1.6, True, NEW)])
    result = failover(seen, 1.0, {NEW})
    assert result.recovered_after is not None
    assert abs(result.recovered_after - 0.502) < 1e-9
    assert (result.failed, result.failed_window, result.requests) == (0, 0.0, 3)


def test_window_spans_first_failure_to_first_success_after_the_last() -> None:
    seen = samples(
        [
            (1.0, True, OLD),
            (1.1, False, None),
            (1.2, False, None),
            (1.3, True, NEW),
            (1.4, True, NEW),
        ]
    )
    result = failover(seen, 1.0, {NEW})
    assert result.failed == 2
    assert abs(result.failed_window - 0.2) < 1e-9
    assert result.recovered_after is not None and abs(result.recovered_after - 0.302) < 1e-9


def test_never_recovered() -> None:
    result = failover(samples([(1.1, False, None), (1.2, True, OLD)]), 1.0, {NEW})
    assert result.recovered_after is None
    assert result.failed == 1


def test_urls_of_either_family() -> None:
    assert host_port("http://192.0.2.200/") == ("192.0.2.200", 80)
    assert host_port("http://192.0.2.200:8081/") == ("192.0.2.200", 8081)
    assert host_port("http://[2001:db8:2::200]/") == ("2001:db8:2::200", 80)
    assert host_port("http://[2001:db8:2::200]:8081") == ("2001:db8:2::200", 8081)
    for bad in ("http://2001:db8:2::200/", "https://192.0.2.200/", "http://[x]/"):
        with pytest.raises(ValueError):
            host_port(bad)
