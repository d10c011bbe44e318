"""The page in a real browser (headless Chromium) against real agent status sockets: what
the lab test checks, without a lab. Screenshots go to $HERALD_UI_SHOTS when it is set."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By

from .browser import boxes, chromium, click_box, console_errors, edge_count, shoot, tab
from .harness import NODES, ROUTER, SERVICE, agent_status, flow, running, wait_for

CLIENT = "198.51.100.10"


def test_the_map_flows_and_a_session_going_down(tmp_path: Path) -> None:
    with running(tmp_path) as cluster, chromium() as driver:
        driver.get(cluster.url)
        wait_for(lambda: len(boxes(driver, "node")) == 6, what="six nodes")
        assert list(boxes(driver, "router")) == [ROUTER]
        nodes = boxes(driver, "node")
        assert sorted(nodes) == list(NODES)
        assert {n["state"] for n in nodes.values()} == {"established"}
        assert list(boxes(driver, "service")) == [SERVICE]
        assert sorted(boxes(driver, "pod")) == [f"default/web1-{i}" for i in range(1, 7)]
        assert console_errors(driver) == []

        # 20 requests from one client, entering by the nodes in turn, to every pod.
        for i in range(20):
            cluster.add_flow(flow(NODES[i % 6], CLIENT, i % 6, port=40000 + i))
        wait_for(lambda: edge_count(driver, "node", NODES[0], SERVICE) == 4, what="counts")
        assert edge_count(driver, "client", CLIENT, "*") == 20
        assert sum(edge_count(driver, "pod", SERVICE, p) for p in boxes(driver, "pod")) == 20
        path = driver.find_element(By.CSS_SELECTOR, "#map path.edge[data-kind='client']")
        assert "FORWARDED" in (path.get_attribute("class") or "")
        shoot(driver, "ui-map.png", tmp_path)

        # Click the Service: its backends and last flows.
        click_box(driver, "service", SERVICE)
        wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#detail table.flows tr")) > 20,
                 what="the Service's last flows")  # fmt: skip
        detail = driver.find_element(By.ID, "detail").text
        assert "10.244.3.10:8080" in detail and "default/web1-3" in detail

        # The flow table: all 20, newest first; a filter narrows it to one node's.
        tab(driver, "flows")
        rows = driver.find_elements(By.CSS_SELECTOR, "#flows tbody tr")
        assert len(rows) == 20 and ":40019" in rows[0].text
        shoot(driver, "ui-flows.png", tmp_path)
        driver.find_element(By.CSS_SELECTOR, '#flow-filter input[name="node"]').send_keys(NODES[1])
        driver.find_element(By.CSS_SELECTOR, "#flow-filter button[type=submit]").click()
        wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#flows tbody tr")) == 4,
                 what="the filtered table")  # fmt: skip
        cells = driver.find_elements(By.CSS_SELECTOR, "#flows tbody tr td:nth-child(2)")
        assert {c.text for c in cells} == {NODES[1]}

        # More requests: the counts grow.
        for i in range(6):
            cluster.add_flow(flow(NODES[0], CLIENT, 0, port=41000 + i))
        tab(driver, "map")
        wait_for(lambda: edge_count(driver, "node", NODES[0], SERVICE) == 10, what="growth")

        # Node 3's session goes down (the agent still answers), node 6's agent dies.
        cluster.statuses[NODES[2]] = agent_status(NODES[2], state="Active")
        cluster.kill_agent(NODES[5])
        wait_for(lambda: boxes(driver, "node")[NODES[2]]["state"] == "down",
                 what="node 3 red")  # fmt: skip
        wait_for(lambda: boxes(driver, "node")[NODES[5]]["state"] == "down",
                 what="node 6 red")  # fmt: skip
        assert boxes(driver, "node")[NODES[0]]["state"] == "established"
        tab(driver, "bgp")
        bgp = driver.find_element(By.ID, "bgp").text
        assert "Active" in bgp and "agent not answering" in bgp
        assert console_errors(driver) == []


def test_l2_owner_change_pools_and_pending(tmp_path: Path) -> None:
    def l2_status(node: str) -> Any:
        return agent_status(node, l2_owner=NODES[0]).model_copy(update={"peers": ()})

    with running(tmp_path, status=l2_status) as cluster, chromium() as driver:
        driver.get(cluster.url)
        wait_for(lambda: len(boxes(driver, "node")) == 6, what="six nodes")
        owner = boxes(driver, "node")[NODES[0]]
        assert "l2owner" in owner["class"]
        tab(driver, "l2")
        assert NODES[0] in driver.find_element(By.ID, "l2").text
        for node in NODES:
            cluster.statuses[node] = agent_status(node, l2_owner=NODES[1]).model_copy(
                update={"peers": ()}
            )
        wait_for(lambda: len(driver.find_elements(By.CSS_SELECTOR, "#l2-changes tbody tr")) == 1,
                 what="the owner change")  # fmt: skip
        change = driver.find_element(By.CSS_SELECTOR, "#l2-changes tbody tr").text
        assert "192.0.2.240" in change and f"{NODES[0]} {NODES[1]}" in change
        time.sleep(0.5)
        assert console_errors(driver) == []
