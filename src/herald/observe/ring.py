"""The agent's last flow events, as Hubble keeps them: a ring of fixed capacity (4,096 by
default) in which the newest event overwrites the oldest.

Every event gets a position (how many came before it), so a follower that reads
`after(position)` learns how many it missed when the ring wrapped past it: those are
counted, not skipped silently.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from herald.observe.event import FlowEvent

DEFAULT_CAPACITY = 4096


@dataclass(frozen=True)
class Batch:
    events: tuple[FlowEvent, ...]
    position: int  # pass to the next `after` call
    missed: int  # events overwritten before this reader got to them


class Ring:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"ring capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self._events: deque[FlowEvent] = deque(maxlen=capacity)
        self.total = 0  # events ever appended

    def __len__(self) -> int:
        return len(self._events)

    def append(self, event: FlowEvent) -> None:
        self._events.append(event)
        self.total += 1

    def last(self, count: int) -> tuple[FlowEvent, ...]:
        if count <= 0:
            return ()
        kept = len(self._events)
        return tuple(self._events[i] for i in range(max(0, kept - count), kept))

    def after(self, position: int) -> Batch:
        """The events appended since `position` (a previous `Batch.position` or `total`)."""
        first = self.total - len(self._events)  # position of the oldest event kept
        missed = max(0, first - position)
        start = max(position, first) - first
        events = tuple(self._events[i] for i in range(start, len(self._events)))
        return Batch(events, self.total, missed)
