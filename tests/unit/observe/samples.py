"""One flow event to vary in tests: the example line of issue #12."""

from __future__ import annotations

from datetime import UTC, datetime

from herald.observe.event import FlowEvent

T = datetime(2026, 12, 2, 21, 6, 41, 382000, tzinfo=UTC).timestamp()
ISSUE_EXAMPLE = FlowEvent(
    time=T,
    node="k8s-worker1",
    direction="request",
    protocol="TCP",
    client="198.51.100.10",
    client_port=36946,
    vip="203.0.113.0",
    vip_port=80,
    verdict="FORWARDED",
    reason="to-node",
    service="default/web1-lb",
    backend="198.18.5.2",
    backend_port=8080,
    pod="default/web1-4",
    backend_node="k8s-worker5",
    tcp_flags=("SYN",),
)
