from __future__ import annotations

import json
from datetime import UTC

from herald.observe.event import FlowEvent
from herald.observe.format import json_line, line

from .samples import ISSUE_EXAMPLE

EVENT = ISSUE_EXAMPLE


def test_the_issue_example_line() -> None:
    assert line(EVENT, UTC) == (
        "Dec  2 21:06:41.382 k8s-worker1: 198.51.100.10:36946 -> default/web1-4:8080 "
        "(on k8s-worker5) via 203.0.113.0:80 FORWARDED to-node (TCP Flags: SYN)"
    )


def test_reply_points_back_and_lists_every_flag() -> None:
    reply = FlowEvent(**{**EVENT.__dict__, "direction": "reply", "tcp_flags": ("SYN", "ACK")})
    assert "198.51.100.10:36946 <- default/web1-4:8080 (on k8s-worker5) via" in line(reply, UTC)
    assert line(reply, UTC).endswith("(TCP Flags: SYN, ACK)")


def test_dropped_names_the_service_and_why() -> None:
    dropped = FlowEvent(
        **{
            **EVENT.__dict__,
            "verdict": "DROPPED",
            "reason": "no-usable-backend",
            "backend": "",
            "backend_port": None,
            "pod": "",
            "backend_node": "",
        }
    )
    assert line(dropped, UTC) == (
        "Dec  2 21:06:41.382 k8s-worker1: 198.51.100.10:36946 -> 203.0.113.0:80 "
        "(default/web1-lb) DROPPED no-usable-backend (TCP Flags: SYN)"
    )


def test_ipv6_udp_and_unknown_pod() -> None:
    event = FlowEvent(
        **{
            **EVENT.__dict__,
            "protocol": "UDP",
            "client": "2001:db8:100::10",
            "vip": "2001:db8:113::1",
            "backend": "2001:db8:18:5::2",
            "pod": "",
            "tcp_flags": (),
        }
    )
    text = line(event, UTC)
    assert "[2001:db8:100::10]:36946 -> [2001:db8:18:5::2]:8080 (on k8s-worker5)" in text
    assert "via [2001:db8:113::1]:80" in text and text.endswith("(UDP)")


def test_json_is_one_object_per_line() -> None:
    text = json_line(EVENT)
    assert "\n" not in text
    assert json.loads(text) == {**EVENT.__dict__, "tcp_flags": ["SYN"]}
