"""Several nodes' event streams as one, in time order: the job of Hubble Relay.

A recorded stream (`--last`) is sorted as a whole (`merge_sorted`). A live one (`--follow`)
cannot be: an event of one node may still be on its way while another's is at hand.
`Merger` holds each event for `delay` seconds of its own time before releasing it, so an
event that arrives up to `delay` late still takes its place; one later than that is
released at once, out of order, and counted. Time is passed in.
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Iterable

from herald.observe.event import FlowEvent

DEFAULT_DELAY = 0.2


def merge_sorted(streams: Iterable[Iterable[FlowEvent]]) -> list[FlowEvent]:
    """Every event of every stream by time; ties by node, so the order is stable."""
    return sorted((e for stream in streams for e in stream), key=lambda e: (e.time, e.node))


class Merger:
    def __init__(self, delay: float = DEFAULT_DELAY) -> None:
        self.delay = delay
        self._held: list[tuple[float, str, int, FlowEvent]] = []
        self._order = itertools.count()
        self._released_up_to = float("-inf")
        self.late = 0  # events released out of order

    def push(self, event: FlowEvent) -> None:
        heapq.heappush(self._held, (event.time, event.node, next(self._order), event))

    def pop_ready(self, now: float) -> list[FlowEvent]:
        """The events whose time is at least `delay` before `now`, oldest first."""
        ready = []
        while self._held and self._held[0][0] <= now - self.delay:
            ready.append(heapq.heappop(self._held)[3])
        return self._release(ready)

    def flush(self) -> list[FlowEvent]:
        ready = [heapq.heappop(self._held)[3] for _ in range(len(self._held))]
        return self._release(ready)

    def next_deadline(self) -> float | None:
        """When `pop_ready` will next release something."""
        return self._held[0][0] + self.delay if self._held else None

    def _release(self, ready: list[FlowEvent]) -> list[FlowEvent]:
        for event in ready:
            if event.time < self._released_up_to:
                self.late += 1
            self._released_up_to = max(self._released_up_to, event.time)
        return ready
