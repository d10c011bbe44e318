"""The agent's side (FlowReader fed captured datagrams, its `observe` stream on a real unix
socket) and the CLI's (read_stream, follow_all, `herald observe`)."""

from __future__ import annotations

import asyncio
import errno
import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from herald.agent.status import AgentStatus, serve_status
from herald.cli.main import cli
from herald.cli.observe import NodeStream, follow_all, lost_line, read_stream, recorded
from herald.observe import nflog
from herald.observe.event import Directory, FlowEvent
from herald.observe.filter import FlowFilter
from herald.observe.merge import Merger
from herald.observe.reader import ConntrackLookup, FlowReader, ObserveRequest, Tuples

from .goldens import ctnetlink, datagrams
from .test_flow_event import EMPTY, WEB


def reader(clock: Callable[[], float] = lambda: 0.0) -> FlowReader:
    flows = FlowReader("n1", clock=clock)
    flows.directory = Directory.of([WEB, EMPTY])
    return flows


def test_captured_datagrams_fill_the_ring() -> None:
    flows = reader()
    for datagram in datagrams():
        flows.take(datagram)
    assert flows.ring.total == 24
    assert flows.lost.total == 0
    verdicts = [e.verdict for e in flows.ring.last(24)]
    assert verdicts.count("DROPPED") == 4 and verdicts.count("FORWARDED") == 20


def test_events_are_counted_by_verdict_beyond_what_the_ring_keeps() -> None:
    flows = FlowReader("n1", capacity=4, clock=lambda: 0.0)
    flows.directory = Directory.of([WEB, EMPTY])
    for datagram in datagrams():
        flows.take(datagram)
    header = asyncio.run(flows.header())
    # The metrics read these (herald_flow_events_total): every event, not the ring's 4.
    assert header["events"] == {"DROPPED": 4, "FORWARDED": 20}
    assert len(flows.ring) == 4


def test_a_datagram_the_socket_lost_is_counted_from_the_sequence_gap() -> None:
    flows = reader()
    captured = datagrams()
    for datagram in (captured[0], *captured[2:]):
        flows.take(datagram)
    skipped = 24 - flows.ring.total
    assert skipped > 0
    assert flows.lost.undelivered == skipped


def test_garbage_is_counted_as_undecodable() -> None:
    flows = reader()
    flows.take(b"\xff" * 40)
    assert flows.lost.undecodable == 1 and flows.ring.total == 0


def test_observe_request_round_trip() -> None:
    request = ObserveRequest(last=5, follow=True, filter=FlowFilter(ports=(80,)))
    assert ObserveRequest.decode(request.encode().strip()) == request


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[FlowReader, Path, asyncio.AbstractEventLoop]]:
    """A reader behind a status socket, on a loop of its own thread (as in the agent)."""
    flows = reader(time.time)  # the lost counts are sent every second of it
    path = tmp_path / "n1.sock"
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    async def start() -> asyncio.Server:
        return await serve_status(path, lambda _: AgentStatus(node="n1"), flows.stream)

    async def stop(server: asyncio.Server) -> None:
        server.close()
        others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in others:
            task.cancel()
        await asyncio.gather(*others, return_exceptions=True)

    server = asyncio.run_coroutine_threadsafe(start(), loop).result(5)
    yield flows, path, loop
    asyncio.run_coroutine_threadsafe(stop(server), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_last_n_that_match_the_filter(
    served: tuple[FlowReader, Path, asyncio.AbstractEventLoop],
) -> None:
    flows, path, loop = served
    for datagram in datagrams():
        loop.call_soon_threadsafe(flows.take, datagram)
    request = ObserveRequest(last=3, filter=FlowFilter(verdicts=("DROPPED",)))
    (stream,) = asyncio.run(recorded([path], request))
    assert stream.error is None and stream.node == "n1"
    assert [e.reason for e in stream.events] == [
        "no-service-port", "source-range-denied", "source-range-denied",
    ]  # fmt: skip
    assert stream.lost == {"rate_limited": 0, "undelivered": 0, "overruns": 0, "undecodable": 0}


def test_follow_streams_new_events_and_lost_counts(
    served: tuple[FlowReader, Path, asyncio.AbstractEventLoop],
) -> None:
    flows, path, loop = served
    seen: list[FlowEvent] = []
    warnings: list[str] = []

    async def run() -> None:
        async def feed() -> None:
            await asyncio.sleep(0.2)
            captured = datagrams()
            for datagram in (captured[0], *captured[2:]):  # one lost on the way
                loop.call_soon_threadsafe(flows.take, datagram)

        feeding = asyncio.create_task(feed())
        await follow_all(
            [path],
            ObserveRequest(follow=True),
            seen.append,
            warnings.append,
            Merger(delay=0.0),
            until=lambda: bool(warnings) and len(seen) >= 10,
        )
        await feeding

    asyncio.run(asyncio.wait_for(run(), 10))
    times = [e.time for e in seen]
    assert times == sorted(times) and len(seen) >= 10
    assert any(w.startswith("EVENTS LOST:") and "on n1 (undelivered" in w for w in warnings)


def test_an_agent_that_does_not_answer_is_named(tmp_path: Path) -> None:
    stream = asyncio.run(read_stream(tmp_path / "gone.sock", ObserveRequest()))
    assert stream.node == "gone" and stream.error and "no answer" in stream.error


def test_lost_line_only_when_something_was_lost() -> None:
    assert lost_line(NodeStream("n1", lost={"rate_limited": 0, "overruns": 3})) is None
    text = lost_line(NodeStream("n1", lost={"rate_limited": 5, "undelivered": 2}, missed=1))
    assert text == "EVENTS LOST: 8 on n1 (rate limited 5, undelivered 2, ring overwritten 1)"


def test_cli_prints_merged_lines_and_json(
    served: tuple[FlowReader, Path, asyncio.AbstractEventLoop],
) -> None:
    flows, path, loop = served
    for datagram in datagrams():
        loop.call_soon_threadsafe(flows.take, datagram)
    runner = CliRunner()
    args = ["observe", "--status-dir", str(path.parent), "--last", "2", "--service", "empty"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    (line,) = result.stdout.splitlines()
    assert "203.0.113.11:80 (default/empty) DROPPED no-usable-backend (TCP Flags: SYN)" in line
    result = runner.invoke(cli, [*args[:5], "--port", "46652", "-o", "json"])
    events = [json.loads(text) for text in result.stdout.splitlines()]
    assert len(events) == 2 and {e["client_port"] for e in events} == {46652}
    result = runner.invoke(cli, ["observe", "--status-dir", str(path.parent), "--since", "x"])
    assert result.exit_code != 0 and "--since 'x'" in result.output


class AnsweringLookup(ConntrackLookup):
    """ctnetlink's answers replaced by the captured entry, counted."""

    def __init__(self, answer: Tuples) -> None:
        super().__init__(ttl=10.0)
        self.answer = answer
        self.asked = 0

    def _ask(self, flow: nflog.Tuple, reply: bool) -> Tuples:
        self.asked += 1
        known = self.answer[1] if reply else self.answer[0]
        return self.answer if flow == known else (None, None)


def test_one_conntrack_answer_serves_both_directions_until_it_expires() -> None:
    original, reply = nflog.decode_conntrack(ctnetlink("by-original"))
    assert original is not None and reply is not None
    lookup = AnsweringLookup((original, reply))
    try:
        assert lookup.find(original, False, now=0.0) == (original, reply)
        assert lookup.find(reply, True, now=1.0) == (original, reply)
        assert lookup.asked == 1
        lookup.find(reply, True, now=11.0)
        assert lookup.asked == 2
        # Asked before its DNAT was set up: not kept, the next packet asks again.
        untranslated = nflog.Tuple(original.destination, original.source, 6, 80, 46652)
        early = AnsweringLookup((original, untranslated))
        assert early.find(original, False, now=0.0)[1] == untranslated
        early.find(original, False, now=0.1)
        assert early.asked == 2
        early.close()
    finally:
        lookup.close()


def test_a_forwarded_packet_gets_its_backend_from_conntrack() -> None:
    flows = reader()
    original, reply = nflog.decode_conntrack(ctnetlink("by-original"))
    lookup = flows._conntrack = AnsweringLookup((original, reply))
    try:
        for datagram in datagrams():
            flows.take(datagram)
    finally:
        flows.close()
    second = [e for e in flows.ring.last(24) if e.client_port == 46652]
    # One question for the known flow; every packet of the unknown one asks again.
    assert len(second) == 10 and lookup.asked == 1 + 10
    assert {(e.pod, e.backend_node, e.reason) for e in second} == {("default/p2", "n2", "to-node")}
    # Without its entry a request knows no backend; a reply names the one that sent it.
    first = [e for e in flows.ring.last(24) if 46648 in (e.client_port, e.backend_port)]
    assert {(e.direction, e.backend, e.reason) for e in first} == {
        ("request", "", "to-unknown-backend"),
        ("reply", "198.18.2.2", "to-node"),
    }
    dropped = [e for e in flows.ring.last(24) if e.verdict == "DROPPED"]
    assert {e.backend for e in dropped} == {""}  # refusals are not looked up


class FakeSocket:
    """What `NflogSocket.receive` returns, in order: datagrams, None, or an error raised."""

    def __init__(self, *answers: bytes | OSError) -> None:
        self.answers = list(answers)
        self.closed = False

    def receive(self) -> bytes | None:
        if not self.answers:
            return None
        answer = self.answers.pop(0)
        if isinstance(answer, OSError):
            raise answer
        return answer

    def fileno(self) -> int:
        return -1

    def close(self) -> None:
        self.closed = True


def test_overruns_are_counted_and_a_bad_datagram_costs_only_itself() -> None:
    flows = reader()
    captured = datagrams()
    flows._socket = FakeSocket(  # type: ignore[assignment]
        captured[0], OSError(errno.ENOBUFS, "overrun"), b"\xff" * 40, captured[1]
    )
    flows._readable()
    assert flows.lost.overruns == 1 and flows.lost.undecodable == 1
    assert flows.ring.total > 0 and flows.error is None
    before = flows.ring.total
    broken = FakeSocket(captured[2], captured[3])
    flows._socket = broken  # type: ignore[assignment]
    flows.directory = None  # type: ignore[assignment]  # a fault the decoder did not foresee
    flows._readable()
    assert flows.lost.undecodable == 3 and flows.ring.total == before


def test_a_failing_socket_stops_the_reader_and_says_why() -> None:
    flows = reader()
    failing = FakeSocket(OSError(errno.EBADF, "gone"))
    flows._socket = failing  # type: ignore[assignment]
    flows._readable()
    assert failing.closed and flows.error is not None and "flow events stopped" in flows.error
