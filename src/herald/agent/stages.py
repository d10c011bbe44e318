"""Where the time goes between a change and the UPDATE leaving the agent, stage by stage.

An agent applies a snapshot in steps; `StageTimer` (clock passed in) takes the time of each
as the span since the previous mark, so the stages add up to the whole with nothing counted
twice. The first mark covers the source: from the change being noticed (the watch's first
event) to the snapshot being ready, which includes waiting behind the previous apply.

The stages of one applied snapshot, in order:
- `source`: change noticed -> snapshot loaded (watch coalescing, queueing, read and parse);
- `plan`: plan_node;
- `datapath`: withdrawals, L2 release, the nftables commit (and the flow-event rate check
  that follows every commit);
- `routes`: the unreachable routes of aggregates (netlink);
- `bgp`: the speakers told the new routes and their UPDATEs written to the sockets;
- `l2`: the L2 announcer told what it now answers for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

STAGES = ("source", "plan", "datapath", "routes", "bgp", "l2")

Stage = tuple[str, float]


class StageTimer:
    """Spans between marks, in seconds, on `clock` (time.perf_counter in the agent)."""

    def __init__(self, clock: Callable[[], float], start: float | None = None) -> None:
        self._clock = clock
        self._last = clock() if start is None else start
        self._stages: list[Stage] = []

    def mark(self, stage: str) -> float:
        """Ends `stage` now; returns its span."""
        now = self._clock()
        span = max(0.0, now - self._last)
        self._last = now
        self._stages.append((stage, span))
        return span

    @property
    def stages(self) -> tuple[Stage, ...]:
        return tuple(self._stages)

    @property
    def total(self) -> float:
        return sum(span for _, span in self._stages)


def stages_text(stages: Sequence[Stage]) -> str:
    """`source:3.1ms,plan:5.0ms,...` for a log line (one field, no spaces)."""
    return ",".join(f"{name}:{span * 1000:.1f}ms" for name, span in stages)


def parse_stages(text: str) -> dict[str, float]:
    """The inverse of `stages_text` (seconds by stage), for benchmarks reading agent logs;
    a stage named twice adds up."""
    stages: dict[str, float] = {}
    for item in text.split(","):
        name, sep, value = item.partition(":")
        if not sep or not value.endswith("ms"):
            raise ValueError(f"not a stage: {item!r}")
        stages[name] = stages.get(name, 0.0) + float(value.removesuffix("ms")) / 1000
    return stages
