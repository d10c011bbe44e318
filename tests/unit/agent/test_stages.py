"""The stage timer on a fake clock (spans between marks add up to the whole), and the stages
an agent reports for each snapshot."""

from __future__ import annotations

import asyncio
import time

import pytest

from herald.agent.stages import STAGES, StageTimer, parse_stages, stages_text
from herald.sources.files import SnapshotTiming

from .test_isolation import FakeNft, agent, two_services


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_each_stage_is_the_span_since_the_previous_mark() -> None:
    clock = FakeClock()
    timer = StageTimer(clock, start=99.997)  # the source noticed the change 3 ms ago
    timer.mark("source")
    clock.now += 0.005
    timer.mark("plan")
    clock.now += 0.012
    timer.mark("datapath")
    assert [name for name, _ in timer.stages] == ["source", "plan", "datapath"]
    assert [round(span, 6) for _, span in timer.stages] == [0.003, 0.005, 0.012]
    assert timer.total == pytest.approx(0.020)


def test_a_start_after_now_counts_zero_not_negative() -> None:
    # A clock read in another thread may be a hair ahead of this one's.
    timer = StageTimer(FakeClock(10.0), start=10.001)
    assert timer.mark("source") == 0.0


def test_the_log_field_reads_back() -> None:
    clock = FakeClock()
    timer = StageTimer(clock)
    clock.now += 0.0031
    timer.mark("source")
    clock.now += 0.0124
    timer.mark("datapath")
    text = stages_text(timer.stages)
    assert text == "source:3.1ms,datapath:12.4ms"
    assert parse_stages(text) == pytest.approx({"source": 0.0031, "datapath": 0.0124})


def test_a_garbled_field_is_refused() -> None:
    with pytest.raises(ValueError, match="not a stage"):
        parse_stages("source:3.1ms,plan")


def test_an_applied_snapshot_reports_its_stages_from_when_the_change_was_noticed() -> None:
    runner = agent(FakeNft())
    told: list[tuple[tuple[str, float], ...]] = []
    runner.on_stages = told.append
    noticed = time.perf_counter() - 0.050  # the source saw the change 50 ms ago
    timing = SnapshotTiming(noticed, time.time() - 0.050, noticed + 0.001)
    asyncio.run(runner.apply_snapshot(two_services(), timing))
    ((stages),) = told
    assert [name for name, _ in stages] == list(STAGES)
    assert dict(stages)["source"] >= 0.050


def test_an_unchanged_plan_reports_only_source_and_plan() -> None:
    runner = agent(FakeNft())
    told: list[tuple[tuple[str, float], ...]] = []
    asyncio.run(runner.apply_snapshot(two_services()))
    runner.on_stages = told.append
    asyncio.run(runner.apply_snapshot(two_services()))  # a status echo: the same plan
    assert [[name for name, _ in stages] for stages in told] == [["plan"]]
