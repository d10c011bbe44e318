from __future__ import annotations

import pytest

from herald.observe.event import FlowEvent
from herald.observe.lost import Lost
from herald.observe.ring import DEFAULT_CAPACITY, Ring


def event(n: int) -> FlowEvent:
    return FlowEvent(float(n), "n1", "request", "TCP", "c", n, "v", 80, "FORWARDED", "to-node")


def test_default_capacity_is_hubbles() -> None:
    assert Ring().capacity == DEFAULT_CAPACITY == 4096


def test_keeps_the_newest_in_order() -> None:
    ring = Ring(4)
    for n in range(10):
        ring.append(event(n))
    assert len(ring) == 4 and ring.total == 10
    assert [e.client_port for e in ring.last(3)] == [7, 8, 9]
    assert [e.client_port for e in ring.last(100)] == [6, 7, 8, 9]
    assert ring.last(0) == ()


def test_follower_gets_what_came_since_and_counts_what_it_missed() -> None:
    ring = Ring(4)
    ring.append(event(0))
    position = ring.total
    for n in range(1, 3):
        ring.append(event(n))
    batch = ring.after(position)
    assert [e.client_port for e in batch.events] == [1, 2] and batch.missed == 0
    for n in range(3, 10):  # 7 more into 4 places: 3 overwritten before being read
        ring.append(event(n))
    batch = ring.after(batch.position)
    assert [e.client_port for e in batch.events] == [6, 7, 8, 9]
    assert batch.missed == 3
    assert ring.after(batch.position).events == ()


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity"):
        Ring(0)


def test_sequence_gaps_count_undelivered_events() -> None:
    lost = Lost()
    for seq in (0, 1, 2, 5, 6, 10):
        lost.saw(seq)
    assert lost.undelivered == 2 + 3
    lost.saw(None)
    assert lost.undelivered == 5


def test_sequence_wraps_and_restarts() -> None:
    lost = Lost()
    lost.saw(2**32 - 1)
    lost.saw(1)  # 0 went missing across the wrap
    assert lost.undelivered == 1
    lost.saw(0)  # the group was bound again: counting starts over, no loss
    assert lost.undelivered == 1
    lost.rate_limited = 7
    assert lost.total == 8
