"""SWIM membership (`--l2-membership swim`) between agents' liveness processes in
namespaces over real UDP: a crash is seen by every peer, a graceful stop at once, and a
restarted agent (a new incarnation) is accepted again. Namespaces are `sw-<pid>-*`, removed
with their processes (by pid) even on failure."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from l2_segment import build_segment
from test_l2_liveness import Agents

from herald.l2.swim import Config
from herald.lab.netns import Lab, crash

pytestmark = pytest.mark.netns

NODES = {"n1": "192.0.2.21", "n2": "192.0.2.22", "n3": "192.0.2.23"}


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    with Lab(prefix="sw-") as lab:
        build_segment(lab, {node: address.rsplit(".", 1)[1] for node, address in NODES.items()})
        built = Agents(lab, tmp_path, NODES, {**os.environ, "HERALD_L2_MEMBERSHIP": "swim"})
        for node in NODES:
            built.start(node)
        yield built


def test_swim_agents_see_a_crash_a_stop_and_a_restart(agents: Agents) -> None:
    start = time.monotonic()
    for observer in NODES:
        for peer in set(NODES) - {observer}:
            agents.wait_state(observer, peer, "alive", after=start - 10)
    time.sleep(0.5)
    crashed = time.monotonic()
    crash(agents.processes["n2"].pid)  # its liveness process too: no goodbye
    agents.lab.stop(agents.processes["n2"])
    detections = [agents.wait_state(o, "n2", "dead", after=crashed) - crashed for o in ("n1", "n3")]
    print(f"SWIM crash detection over UDP: {', '.join(f'{d * 1000:.0f} ms' for d in detections)}")
    # Not before a probe could fail; the upper bound is generous (2 CPUs shared).
    assert all(Config("x", b"k" * 16, 1).interval <= d <= 3.0 for d in detections), detections

    agents.start("n2")  # a new incarnation: accepted again by both
    for observer in ("n1", "n3"):
        agents.wait_state(observer, "n2", "alive", after=crashed)

    stopped = time.monotonic()
    os.kill(agents.processes["n3"].pid, signal.SIGTERM)
    for observer in ("n1", "n2"):
        dead = agents.wait_state(observer, "n3", "dead", after=stopped)
        # LEAVING is sent to every member directly: seen at once, not after a detection.
        assert dead - stopped < 0.5
