from __future__ import annotations

from dataclasses import replace
from ipaddress import ip_address

import pytest
from scenarios import THREE, web

from herald.dataplane.endpoints import usable_backends
from herald.dataplane.model import Backend, TrafficPolicy


def addresses(backends: tuple[Backend, ...]) -> list[str]:
    return [str(b.address) for b in backends]


def test_ready_backends_only_when_any_is_ready() -> None:
    backends = (*THREE[:2], replace(THREE[2], ready=False, terminating=True))
    assert addresses(usable_backends(web(backends=backends), "n1")) == [
        "198.18.1.2",
        "198.18.1.3",
    ]


def test_serving_terminating_backends_when_none_is_ready() -> None:
    backends = (
        replace(THREE[0], ready=False, terminating=True),
        replace(THREE[1], ready=False, serving=False, terminating=True),
        replace(THREE[2], ready=False, terminating=False),
    )
    assert addresses(usable_backends(web(backends=backends), "n1")) == ["198.18.1.2"]


def test_local_policy_considers_only_this_node() -> None:
    service = web(external_traffic_policy=TrafficPolicy.LOCAL)
    assert addresses(usable_backends(service, "n2")) == ["198.18.2.2"]
    assert usable_backends(service, "n3") == ()


def test_an_endpoint_listed_twice_counts_once() -> None:
    backends = (*THREE, Backend(ip_address("198.18.1.2"), "n1"))
    assert len(usable_backends(web(backends=backends), "n1")) == 3


def test_order_is_the_same_whatever_the_input_order() -> None:
    forward = usable_backends(web(backends=THREE), "n1")
    assert usable_backends(web(backends=THREE[::-1]), "n1") == forward


def test_a_vip_listed_twice_is_refused() -> None:
    with pytest.raises(ValueError, match="twice"):
        web(vips=(ip_address("203.0.113.10"), ip_address("203.0.113.10")))
