"""A node's configured flow-event rate (`--flow-rate`, `--flow-burst`) set in the kernel's
table after the datapath's commits: the budget holds, a later commit keeps it, and rate 0
logs nothing. Namespaces `obs<pid>-*` (observe_cluster.py), torn down even on failure."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest
from observe_cluster import VIP, WEB, ObserveCluster, running

from herald.cli.observe import NodeStream, recorded
from herald.dataplane.apply import Nft
from herald.observe import rules
from herald.observe.reader import FlowReader, ObserveRequest

pytestmark = pytest.mark.netns


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ObserveCluster]:
    with running(tmp_path_factory.mktemp("observe-rate")) as built:
        built.apply([WEB])
        built.start_runner([WEB])
        yield built


def set_rate(cluster: ObserveCluster, rate: rules.FlowRate) -> bool:
    """What the agent does after a commit: its reader sets the rate through nft."""
    reader = FlowReader("n1", rate=rate)
    reader.nft = Nft(cluster.lab.ns("n1"))
    return reader.enforce_rate()


def recorded_stream(cluster: ObserveCluster) -> NodeStream:
    (stream,) = asyncio.run(recorded([cluster.socket], ObserveRequest(last=4096)))
    assert stream.error is None, stream.error
    return stream


def events_and_lost(cluster: ObserveCluster) -> tuple[int, int]:
    stream = recorded_stream(cluster)
    listed = cluster.lab.exec("n1", "nft", "-j", "list", "counter", "inet", "herald",
                              rules.LOST_COUNTER).stdout  # fmt: skip
    lost = json.loads(listed)["nftables"][1]["counter"]["packets"]
    return len(stream.events), int(lost)


def settle() -> None:
    time.sleep(0.3)  # the kernel sends a partial batch of logged packets after 50 ms


def test_a_configured_rate_holds_and_survives_later_commits(cluster: ObserveCluster) -> None:
    rate = rules.FlowRate(20, 5)
    assert set_rate(cluster, rate)
    assert not set_rate(cluster, rate)  # already in place: nothing done
    listed = cluster.lab.exec("n1", "nft", "-j", "list", "limit", "inet", "herald", rules.LIMIT)
    limit = json.loads(listed.stdout)["nftables"][1]["limit"]
    assert (limit["rate"], limit["per"], limit.get("burst", 5), limit["inv"]) == (
        20,
        "second",
        5,
        True,
    )
    # A commit of another plan leaves the limit and the verdict chains alone.
    cluster.apply([replace(WEB, ports=WEB.ports[:1])])
    cluster.apply([WEB])
    assert not set_rate(cluster, rate)
    events_before, lost_before = events_and_lost(cluster)
    started = time.monotonic()
    result = cluster.connect(150)  # some 1,500 packets
    elapsed = time.monotonic() - started
    assert result["errors"] == {}
    settle()
    events_after, lost_after = events_and_lost(cluster)
    logged, lost = events_after - events_before, lost_after - lost_before
    # At most the burst plus 20 a second (a second more for the batching): the rest lost.
    budget = rate.burst + rate.per_second * (elapsed + 1)
    print(f"rate 20/s: {logged} events logged, {lost} lost in {elapsed:.2f} s")
    assert 0 < logged <= budget, (logged, budget)
    assert lost >= 1000


def test_rate_zero_logs_nothing_and_a_rate_turns_them_on_again(cluster: ObserveCluster) -> None:
    assert set_rate(cluster, rules.FlowRate(0, 1))
    assert not set_rate(cluster, rules.FlowRate(0, 7))  # off is off, whatever the burst
    events_before, lost_before = events_and_lost(cluster)
    assert cluster.connect(20)["errors"] == {}
    settle()
    assert events_and_lost(cluster) == (events_before, lost_before)  # nothing logged, none lost
    assert set_rate(cluster, rules.FlowRate())
    assert cluster.connect(2)["errors"] == {}
    settle()
    stream = recorded_stream(cluster)
    assert len(stream.events) > events_before
    assert any(e.vip == VIP for e in stream.events[events_before:])


def test_the_agents_reader_is_off_at_rate_zero() -> None:
    reader = FlowReader("n1", rate=rules.FlowRate(0, 1))
    assert not reader.start()
    assert reader.error is not None and "--flow-rate 0" in reader.error
