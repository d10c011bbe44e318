"""The view's model and flow counts (pure): what the page draws from what the agents say."""

from __future__ import annotations

import pytest

from herald.agent.status import AgentStatus
from herald.ui.flows import ANY, OTHER_CLIENTS, FlowStats, filter_from_query
from herald.ui.gather import OwnerHistory, Read, cluster_model

from .harness import NODES, ROUTER, SERVICE, VIP, agent_status, flow


def test_the_model_names_routers_announcers_and_an_agent_that_did_not_answer() -> None:
    agents = [agent_status(n) for n in NODES[:4]]
    agents.append(agent_status(NODES[4], state="Active"))
    agents.append(AgentStatus(node=NODES[5], error="no answer from x.sock: refused"))
    model = cluster_model(Read(tuple(agents)), {"edges": []}, now=10.0)
    assert model["routers"] == [{"address": ROUTER, "asn": 64512, "name": "seed/router"}]
    (service,) = model["services"]
    assert service["key"] == SERVICE and service["vips"] == [VIP]
    # Only established sessions that carry the VIP announce it.
    assert service["announcedBy"] == list(NODES[:4])
    assert len(service["frontends"][0]["backends"]) == 6
    by_name = {n["name"]: n for n in model["nodes"]}
    assert by_name[NODES[5]]["error"] and by_name[NODES[4]]["sessions"][0]["established"] is False
    assert model["pools"] == [] and model["pending"] == []


def test_the_l2_owner_is_the_answering_node_and_changes_are_kept() -> None:
    history = OwnerHistory()
    first = [agent_status(n, l2_owner=NODES[0]) for n in NODES]
    model = cluster_model(Read(tuple(first)), {}, history, now=1.0)
    (vip,) = model["l2"]["vips"]
    assert vip["owner"] == NODES[0] and vip["answering"] == NODES[0]
    assert model["l2"]["changes"] == []
    second = [agent_status(n, l2_owner=NODES[2]) for n in NODES]
    model = cluster_model(Read(tuple(second)), {}, history, now=2.0)
    assert model["l2"]["changes"] == [
        {"vip": "192.0.2.240", "old": NODES[0], "new": NODES[2], "time": 2.0}
    ]
    assert [n["name"] for n in model["nodes"] if n["l2Owned"]] == [NODES[2]]


def test_edges_count_requests_and_rates_cover_the_window() -> None:
    stats = FlowStats(window=10)
    for i in range(6):
        stats.add(flow(NODES[0], "198.51.100.10", i, when=100.0 + i))
    stats.add(flow(NODES[0], "198.51.100.10", 0, reply=True, when=106.0))  # not a request
    stats.add(flow(NODES[1], "198.51.100.11", 0, verdict="DROPPED", when=107.0))
    edges = {(e["kind"], e["from"], e["to"], e["verdict"]): e for e in stats.snapshot(108)["edges"]}
    assert edges[("client", "198.51.100.10", ANY, "FORWARDED")]["count"] == 6
    assert edges[("node", NODES[0], SERVICE, "FORWARDED")]["rate"] == pytest.approx(0.6)
    assert edges[("router", ANY, NODES[1], "DROPPED")]["count"] == 1
    # Ten seconds later the counts stay, the rates are gone.
    later = {(e["kind"], e["from"], e["verdict"]): e for e in stats.snapshot(120)["edges"]}
    assert later[("client", "198.51.100.10", "FORWARDED")] == {
        "kind": "client", "from": "198.51.100.10", "to": ANY, "verdict": "FORWARDED",
        "count": 6, "rate": 0.0,
    }  # fmt: skip
    assert stats.total == 8 and len(stats.last(filter_from_query({"verdict": "dropped"}), 5)) == 1


def test_a_scan_from_many_clients_is_one_other_clients_box() -> None:
    stats = FlowStats()
    for i in range(40):
        stats.add(flow(NODES[0], f"198.51.100.{i}", 0, when=1.0))
    clients = {e["from"] for e in stats.snapshot(2.0)["edges"] if e["kind"] == "client"}
    assert len(clients) == 13 and OTHER_CLIENTS in clients


def test_query_filters_are_observes() -> None:
    found = filter_from_query({"service": "web1-lb", "port": "80,443", "protocol": "tcp"})
    assert found.services == ("web1-lb",) and found.ports == (80, 443)
    assert found.protocols == ("TCP",)
    with pytest.raises(ValueError):
        filter_from_query({"port": "99999"})
