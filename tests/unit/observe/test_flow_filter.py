from __future__ import annotations

from dataclasses import replace

import pytest

from herald.observe.filter import FlowFilter, parse_since

from .samples import ISSUE_EXAMPLE

EVENT = replace(
    ISSUE_EXAMPLE,
    time=100.0,
    node="n1",
    client_port=40000,
    vip="203.0.113.10",
    service="default/web",
    backend="198.18.2.2",
    pod="shop/p2",
    backend_node="n2",
)


@pytest.mark.parametrize(
    ("flow_filter", "expected"),
    [
        (FlowFilter(), True),
        (FlowFilter(namespaces=("default",)), True),
        (FlowFilter(namespaces=("shop",)), True),
        (FlowFilter(namespaces=("kube-system",)), False),
        (FlowFilter(services=("web",)), True),
        (FlowFilter(services=("default/web",)), True),
        (FlowFilter(services=("shop/web",)), False),
        (FlowFilter(services=("we",)), False),
        (FlowFilter(pods=("p2",)), True),
        (FlowFilter(pods=("shop/p2", "x")), True),
        (FlowFilter(pods=("p1",)), False),
        (FlowFilter(nodes=("n1",)), True),
        (FlowFilter(nodes=("n2",)), False),  # the node that logged, not the pod's
        (FlowFilter(ips=("198.51.100.10",)), True),
        (FlowFilter(ips=("203.0.113.10",)), True),
        (FlowFilter(ips=("198.18.2.2",)), True),
        (FlowFilter(ips=("198.18.2.3",)), False),
        (FlowFilter(ports=(8080,)), True),
        (FlowFilter(ports=(40000,)), True),
        (FlowFilter(ports=(443,)), False),
        (FlowFilter(verdicts=("forwarded",)), True),
        (FlowFilter(verdicts=("DROPPED",)), False),
        (FlowFilter(protocols=("tcp",)), True),
        (FlowFilter(protocols=("UDP",)), False),
        (FlowFilter(since=100.0), True),
        (FlowFilter(since=100.1), False),
        (FlowFilter(namespaces=("default",), verdicts=("DROPPED",)), False),
    ],
)
def test_every_criterion_must_hold(flow_filter: FlowFilter, expected: bool) -> None:
    assert flow_filter.matches(EVENT) is expected


def test_empty_service_and_pod_match_no_name() -> None:
    dropped = replace(EVENT, service="", pod="")
    assert not FlowFilter(services=("web",)).matches(dropped)
    assert not FlowFilter(pods=("p2",)).matches(dropped)
    assert not FlowFilter(namespaces=("default",)).matches(dropped)


def test_json_round_trip() -> None:
    flow_filter = FlowFilter(namespaces=("a",), ports=(80, 443), since=5.0)
    assert FlowFilter.from_json(flow_filter.to_json()) == flow_filter
    assert FlowFilter.from_json({"unknown": 1}) == FlowFilter()


def test_since_durations_and_times() -> None:
    assert parse_since("90s", now=1000.0) == 910.0
    assert parse_since("5m", now=1000.0) == 700.0
    assert parse_since("1h", now=7200.0) == 3600.0
    assert parse_since("250ms", now=1.0) == 0.75
    assert parse_since("1970-01-01T00:01:00Z", now=0.0) == 60.0
    with pytest.raises(ValueError, match="--since 'yesterday'"):
        parse_since("yesterday", now=0.0)
