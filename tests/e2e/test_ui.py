"""The web view in the lab, in headless Chromium: `herald demo` starts it and prints its
URL; the page shows the router, six nodes with established sessions, web1-lb and its six
pods; 20 curls from client1 appear in the flow table and grow the map's counts; a killed
agent turns its node red. Screenshots go to $HERALD_UI_SHOTS (default /tmp/herald-ui-shots).
"""

from __future__ import annotations

import os
import re
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium.webdriver.common.by import By
from teardown import torn_down

from herald.lab import cluster
from herald.lab.demo import external_ip, run_demo
from herald.lab.demo_l2 import SERVICE as L2_SERVICE
from herald.lab.demo_l2 import run_l2_demo
from herald.lab.failover import kill_agent, owner_of
from herald.ui.launch import stop_ui

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))
from ui.browser import boxes, chromium, console_errors, edge_count, shoot, tab
from ui.harness import wait_for

pytestmark = pytest.mark.netns
ROOT = Path(__file__).resolve().parents[2]
SEED = ROOT / "examples" / "seed"
VIP = "203.0.113.0"
SERVICE = "default/web1-lb"
CLIENT = "198.51.100.10"
PORTS = range(42100, 42120)  # client1's source ports, one per curl: found in the table
SHOTS = Path(os.environ.get("HERALD_UI_SHOTS", "/tmp/herald-ui-shots"))
HOLD = 9  # the seed's hold time; BFD (0.9 s) is faster


@pytest.fixture
def lab_cleanup() -> Iterator[None]:
    with torn_down():
        try:
            yield
        finally:
            stop_ui()


def demo_url(printed: list[str]) -> str:
    found = re.search(r"open (http://127\.0\.0\.1:\d+/)", "\n".join(printed))
    assert found, printed[-3:]
    return found.group(1)


def test_the_page_follows_the_lab(lab_cleanup: None) -> None:
    printed: list[str] = []
    run_demo(SEED, "frr", printed.append)
    url = demo_url(printed)
    nodes = sorted(cluster.read_state()["agents"])
    with chromium() as driver:
        driver.get(url)
        wait_for(lambda: len(boxes(driver, "node")) == 6, 20, "six nodes")
        assert sorted(boxes(driver, "node")) == nodes
        wait_for(
            lambda: {b["state"] for b in boxes(driver, "node").values()} == {"established"},
            20, "six established sessions",
        )  # fmt: skip
        assert list(boxes(driver, "router")) == ["192.0.2.1"]
        assert list(boxes(driver, "service")) == [SERVICE]
        pods = wait_for(lambda: len(p := boxes(driver, "pod")) == 6 and p, 20, "six pods")
        assert all(p.startswith("default/web1-") for p in pods)
        assert console_errors(driver) == []

        before = edge_count(driver, "client", CLIENT, "*")
        script = " ; ".join(
            f"curl -s -m 2 --local-port {port} -o /dev/null http://{VIP}/" for port in PORTS
        )
        cluster.run_in("client1", "sh", "-c", script)
        # Every curl in the table (its SYN at least), and the client's edge grew by as much.
        tab(driver, "flows")

        def ports_shown() -> set[int]:
            text = driver.find_element(By.ID, "flows").text
            return {int(p) for p in re.findall(rf"{re.escape(CLIENT)}:(\d+)", text)}

        wait_for(lambda: set(PORTS) <= ports_shown(), 20, "the 20 curls in the flow table")
        shoot(driver, "ui-flows.png", SHOTS)
        tab(driver, "map")
        wait_for(lambda: edge_count(driver, "client", CLIENT, "*") >= before + 20, 10, "growth")
        shoot(driver, "ui-map.png", SHOTS)
        assert console_errors(driver) == []

        # An agent killed: its node turns red within the hold time.
        node = nodes[-1]
        os.kill(int(cluster.read_state()["agents"][node]), signal.SIGKILL)
        wait_for(lambda: boxes(driver, "node")[node]["state"] == "down", HOLD + 3, f"{node} red")
        shoot(driver, "ui-agent-killed.png", SHOTS)
        others = {n: b["state"] for n, b in boxes(driver, "node").items() if n != node}
        assert set(others.values()) == {"established"}, others


def test_an_l2_owner_change_is_shown(lab_cleanup: None) -> None:
    printed: list[str] = []
    run_l2_demo(ROOT / "examples" / "l2-seed", printed.append)
    url = demo_url(printed)
    vip = external_ip(L2_SERVICE)
    assert vip
    with chromium() as driver:
        driver.get(url)
        tab(driver, "l2")
        owner = owner_of(vip)

        def row_texts(selector: str) -> list[str]:
            # Read in one script: the live page replaces its rows between two WebDriver
            # calls (a row found, then gone: stale element).
            script = "return [...document.querySelectorAll(arguments[0])].map(r => r.innerText)"
            return [" ".join(str(text).split()) for text in driver.execute_script(script, selector)]

        def owner_shown() -> str | None:
            for text in row_texts("#l2 tbody tr"):
                cells = text.split()
                if cells and cells[0] == vip:
                    return cells[1]
            return None

        wait_for(lambda: owner_shown() == owner, 20, f"{owner} as {vip}'s owner")
        kill_agent(owner)
        new = owner_of(vip, other_than=owner)
        wait_for(lambda: owner_shown() == new, 20, f"{new} as the new owner")
        changes = wait_for(
            lambda: row_texts("#l2-changes tbody tr"),
            10, "the change",
        )  # fmt: skip
        assert any(vip in c and f"{owner} {new}" in c for c in changes), changes
        shoot(driver, "ui-l2.png", SHOTS)
        tab(driver, "map")
        wait_for(lambda: boxes(driver, "node")[owner]["state"] == "down", 10, f"{owner} red")
        assert "l2owner" in boxes(driver, "node")[new]["class"]
        assert console_errors(driver) == []
