from __future__ import annotations

from herald.observe.event import FlowEvent
from herald.observe.merge import Merger, merge_sorted


def event(time: float, node: str) -> FlowEvent:
    return FlowEvent(time, node, "request", "TCP", "c", 1, "v", 80, "FORWARDED", "to-node")


def order(events: list[FlowEvent]) -> list[tuple[float, str]]:
    return [(e.time, e.node) for e in events]


def test_recorded_streams_merge_in_time_order() -> None:
    n1 = [event(1.0, "n1"), event(3.0, "n1"), event(5.0, "n1")]
    n2 = [event(2.0, "n2"), event(3.0, "n2"), event(4.0, "n2")]
    assert order(merge_sorted([n2, n1])) == [
        (1.0, "n1"), (2.0, "n2"), (3.0, "n1"), (3.0, "n2"), (4.0, "n2"), (5.0, "n1"),
    ]  # fmt: skip


def test_live_streams_wait_for_late_events_up_to_the_delay() -> None:
    merger = Merger(delay=0.5)
    merger.push(event(10.0, "n1"))
    merger.push(event(10.2, "n1"))
    assert merger.pop_ready(now=10.4) == []
    assert merger.next_deadline() == 10.5
    merger.push(event(10.1, "n2"))  # arrives after n1's later event: still placed
    assert order(merger.pop_ready(now=10.65)) == [(10.0, "n1"), (10.1, "n2")]
    assert order(merger.pop_ready(now=11.0)) == [(10.2, "n1")]
    assert merger.late == 0 and merger.next_deadline() is None


def test_an_event_later_than_the_delay_is_released_and_counted() -> None:
    merger = Merger(delay=0.5)
    merger.push(event(10.0, "n1"))
    merger.pop_ready(now=11.0)
    merger.push(event(9.0, "n2"))
    assert order(merger.pop_ready(now=11.0)) == [(9.0, "n2")]
    assert merger.late == 1


def test_flush_releases_everything_in_order() -> None:
    merger = Merger(delay=5.0)
    for time, node in ((3.0, "n1"), (1.0, "n2"), (2.0, "n3")):
        merger.push(event(time, node))
    assert order(merger.flush()) == [(1.0, "n2"), (2.0, "n3"), (3.0, "n1")]
