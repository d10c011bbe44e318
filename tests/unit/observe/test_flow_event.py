from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address

from herald.dataplane.model import (
    Backend,
    DataplaneService,
    ForwardingMode,
    Protocol,
    ServicePort,
)
from herald.observe import nflog
from herald.observe.event import Directory, FlowEvent, to_event

from .goldens import ctnetlink, packets

WEB = DataplaneService(
    key="default/web",
    vips=(ip_address("203.0.113.10"),),
    ports=(ServicePort("http", Protocol.TCP, 80, 8080),),
    backends=(
        Backend(ip_address("198.18.1.2"), "n1", pod="default/p1"),
        Backend(ip_address("198.18.2.2"), "n2", pod="default/p2"),
    ),
)
EMPTY = replace(WEB, key="default/empty", vips=(ip_address("203.0.113.11"),), backends=())
DIRECTORY = Directory.of([WEB, EMPTY])
ENTRY = nflog.decode_conntrack(ctnetlink("by-original"))  # client port 46652 -> p2


def second_flow() -> list[nflog.LoggedPacket]:
    return [
        replace(p, original=ENTRY[0], reply=ENTRY[1])
        for p in packets()
        if 46652 in (p.source_port, p.destination_port)
    ]


def test_request_and_reply_name_client_vip_pod_and_its_node() -> None:
    syn, synack = second_flow()[:2]
    request = to_event(syn, "n1", DIRECTORY, now=0.0)
    assert request == FlowEvent(
        time=syn.timestamp or 0.0,
        node="n1",
        direction="request",
        protocol="TCP",
        client="198.51.100.10",
        client_port=46652,
        vip="203.0.113.10",
        vip_port=80,
        verdict="FORWARDED",
        reason="to-node",
        service="default/web",
        backend="198.18.2.2",
        backend_port=8080,
        pod="default/p2",
        backend_node="n2",
        tcp_flags=("SYN",),
    )
    reply = to_event(synack, "n1", DIRECTORY, now=0.0)
    assert (reply.direction, reply.client, reply.vip, reply.pod, reply.tcp_flags) == (
        "reply", "198.51.100.10", "203.0.113.10", "default/p2", ("SYN", "ACK"),
    )  # fmt: skip


def test_a_pod_on_the_logging_node_is_to_endpoint_and_dsr_says_so() -> None:
    syn = second_flow()[0]
    assert to_event(syn, "n2", DIRECTORY, now=0.0).reason == "to-endpoint"
    dsr = Directory.of([replace(WEB, forwarding_mode=ForwardingMode.DSR)])
    assert to_event(syn, "n1", dsr, now=0.0).reason == "dsr"


def test_backend_unknown_to_the_plan_is_said() -> None:
    event = to_event(second_flow()[0], "n1", Directory(), now=0.0)
    assert (event.reason, event.backend, event.pod, event.service) == (
        "to-unknown-backend", "198.18.2.2", "", "",
    )  # fmt: skip


def test_untranslated_entry_gives_no_backend() -> None:
    syn = packets()[0]  # no conntrack entry attached
    event = to_event(syn, "n1", DIRECTORY, now=0.0)
    assert (event.client_port, event.vip, event.backend) == (46648, "203.0.113.10", "")


def test_dropped_packets_name_service_and_reason() -> None:
    events = [to_event(p, "n1", DIRECTORY, now=0.0) for p in packets()[20:23]]
    assert [(e.verdict, e.reason, e.service, e.vip_port) for e in events] == [
        ("DROPPED", "no-usable-backend", "default/empty", 80),
        ("DROPPED", "no-service-port", "", 81),
        ("DROPPED", "source-range-denied", "", 80),
    ]
    assert {e.backend for e in events} == {""}


def test_missing_kernel_timestamp_takes_the_agent_clock() -> None:
    packet = replace(packets()[0], timestamp=None)
    assert to_event(packet, "n1", DIRECTORY, now=1234.5).time == 1234.5


def test_foreign_prefix_is_unknown_not_dropped_silently() -> None:
    event = to_event(replace(packets()[0], prefix="iptables"), "n1", DIRECTORY, now=0.0)
    assert (event.verdict, event.reason) == ("UNKNOWN", "iptables")


def test_json_round_trip() -> None:
    event = to_event(second_flow()[0], "n1", DIRECTORY, now=0.0)
    assert FlowEvent.from_json(event.to_json()) == event
    assert FlowEvent.from_json({**event.to_json(), "future_field": 1}) == event
