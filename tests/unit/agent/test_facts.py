"""The one endpoint rule, seen the same way by BGP, L2 and the datapath (they once disagreed:
with only terminating pods left the datapath forwarded while BGP withdrew)."""

from __future__ import annotations

import pytest

from herald.agent.plan import plan_node
from herald.api.core import EndpointSlice, Node
from herald.dataplane.endpoints import usable_backends
from herald.facts import backends, heartbeat_address, node_addresses, router_id

from .test_plan import SEED_STATUS, seed_files, state
from .test_plan_l2 import L2_STATUS, l2_files


def slices(service: str, *pods: tuple[str, str, str]) -> str:
    """An EndpointSlice whose pods are (address, node, conditions as YAML flow)."""
    lines = [
        "apiVersion: discovery.k8s.io/v1",
        "kind: EndpointSlice",
        f"metadata: {{name: {service}-1, labels: {{kubernetes.io/service-name: {service}}}}}",
        "addressType: IPv4",
        "ports: [{name: http, port: 8080}]",
        "endpoints:" + ("" if pods else " []"),
    ]
    for address, node, conditions in pods:
        lines.append(f"  - {{addresses: [{address}], nodeName: {node}, conditions: {conditions}}}")
    return "\n".join(lines) + "\n"


DRAINING = "{ready: false, serving: true, terminating: true}"
GONE = "{ready: false, serving: false, terminating: true}"
READY = "{ready: true}"


def views(pods: list[tuple[str, str, str]], node: str) -> tuple[bool, bool, bool]:
    """(BGP announces, the datapath has a backend, L2 may answer) on `node`."""
    files = seed_files()
    files["eps.yaml"] = slices("web1-lb", *pods)
    bgp = plan_node(state(files, SEED_STATUS), node)
    l2_input = l2_files()
    l2_input["eps.yaml"] = slices("web1-l2", *pods)
    l2 = plan_node(state(l2_input, L2_STATUS), node).l2
    assert l2 is not None
    announced = bool(bgp.peers[0].routes)
    forwarded = bool(usable_backends(bgp.services[0], node))
    answers = any(node in a.nodes for a in l2.announcements)
    return announced, forwarded, answers


@pytest.mark.parametrize(
    ("pods", "expected"),
    [
        ([("198.18.1.10", "k8s-worker1", READY)], True),
        # A rolling update that left only draining pods: served and announced.
        ([("198.18.1.10", "k8s-worker1", DRAINING)], True),
        ([("198.18.1.10", "k8s-worker1", GONE)], False),
        ([("198.18.1.10", "k8s-worker1", "{ready: false}")], False),
        ([], False),
    ],
)
def test_bgp_l2_and_the_datapath_agree(pods: list[tuple[str, str, str]], expected: bool) -> None:
    assert views(pods, "k8s-worker2") == (expected, expected, expected)


def test_a_node_with_no_address_has_no_router_id_or_heartbeat_address() -> None:
    node = Node.model_validate({"metadata": {"name": "n"}})
    assert router_id(node) is None and heartbeat_address(node) is None
    both = Node.model_validate(
        {
            "metadata": {"name": "n"},
            "status": {
                "addresses": [
                    {"type": "InternalIP", "address": "2001:db8::5"},
                    {"type": "Hostname", "address": "n"},
                    {"type": "InternalIP", "address": "192.0.2.5"},
                ]
            },
        }
    )
    assert router_id(both) == "192.0.2.5"
    assert str(heartbeat_address(both)) == "192.0.2.5"
    assert [(n, str(a)) for n, a in node_addresses([both])] == [
        ("n", "192.0.2.5"),
        ("n", "2001:db8::5"),
    ]


def test_a_backend_names_its_pod_from_the_target_ref() -> None:
    eps = EndpointSlice.model_validate(
        {
            "metadata": {
                "name": "web-1",
                "namespace": "shop",
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {"addresses": ["198.18.1.10"], "targetRef": {"kind": "Pod", "name": "web-0"}},
                {"addresses": ["198.18.1.11"], "targetRef": {"kind": "Node", "name": "w1"}},
                {"addresses": ["198.18.1.12"]},
            ],
        }
    )
    assert [b.pod for b in backends([eps])] == ["shop/web-0", "", ""]
