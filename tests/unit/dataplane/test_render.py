from __future__ import annotations

import os
import shutil
import subprocess
from ipaddress import ip_address
from pathlib import Path

import pytest
from scenarios import HTTP, NODE, SCENARIOS, THREE, web

from herald.dataplane.model import Backend, ForwardingMode, NodeContext
from herald.dataplane.render import RenderError, render, render_service, without_conflicts

GOLDEN = Path(__file__).parent / "golden"
UPDATE = os.environ.get("HERALD_UPDATE_GOLDEN") == "1"
CAN_CHECK = shutil.which("nft") is not None and os.geteuid() == 0


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_render_matches_golden_file(name: str) -> None:
    text = render(SCENARIOS[name], NODE).text()
    path = GOLDEN / f"{name}.nft"
    if UPDATE:
        path.write_text(text)
    assert text == path.read_text(), f"{path} differs; HERALD_UPDATE_GOLDEN=1 rewrites it"


@pytest.mark.skipif(not CAN_CHECK, reason="nft -c needs the nft command and root")
@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_nft_accepts_rendered_ruleset(name: str) -> None:
    # nft -c checks against the kernel without committing; the netdev table's device must
    # exist, so the DSR scenario is checked with the loopback device.
    node = NodeContext(NODE.node_name, NODE.hash_seed, NODE.node_addresses, "lo")
    text = render(SCENARIOS[name], node).text()
    result = subprocess.run(
        ["nft", "-c", "-f", "-"], input=text, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr


def test_render_does_not_depend_on_service_order() -> None:
    services = SCENARIOS["shared_vip"]
    assert render(services, NODE) == render(services[::-1], NODE)


def test_every_node_gets_the_same_backend_map() -> None:
    other = NodeContext("n2", NODE.hash_seed, NODE.node_addresses, "eth0")
    assert render_service(web(), NODE).slots == render_service(web(), other).slots


def test_only_ready_backends_when_some_are_ready() -> None:
    backends = (*THREE[:2], Backend(ip_address("198.18.2.9"), "n2", ready=False))
    text = render([web(backends=backends)], NODE).text()
    assert "198.18.2.9" not in text
    assert "198.18.1.3" in text


def test_snat_labels_for_masquerade_but_local_policy_does_not() -> None:
    assert "ct label set 127" in render(SCENARIOS["snat"], NODE).text()
    assert "ct label set 127" not in render(SCENARIOS["local_policy"], NODE).text()


def test_dsr_needs_the_uplink_interface() -> None:
    node = NodeContext("n1", 1, NODE.node_addresses, None)
    with pytest.raises(RenderError, match="default/web"):
        render([web(forwarding_mode=ForwardingMode.DSR)], node)


def test_dsr_needs_the_address_of_a_backend_node() -> None:
    node = NodeContext("n1", 1, NODE.node_addresses[:1], "eth0")
    with pytest.raises(RenderError, match="node 'n2'"):
        render([web(forwarding_mode=ForwardingMode.DSR)], node)


def test_service_port_validation() -> None:
    with pytest.raises(ValueError, match="target_port"):
        type(HTTP)("x", HTTP.protocol, 80, 0)


def test_a_vip_port_claimed_twice_keeps_the_incumbent() -> None:
    first = render_service(web(), NODE)
    second = render_service(web(key="default/aaa"), NODE)
    kept, refused = without_conflicts([first, second], incumbents={"default/web"})
    assert [r.key for r in kept] == ["default/web"]
    assert refused == {
        "default/aaa": "203.0.113.10 . tcp . 80 already belongs to service default/web"
    }
    kept, refused = without_conflicts([first, second])
    assert [r.key for r in kept] == ["default/aaa"]


def test_a_shared_vip_on_other_ports_is_no_conflict() -> None:
    rules = [render_service(s, NODE) for s in SCENARIOS["shared_vip"]]
    assert without_conflicts(rules)[1] == {}
