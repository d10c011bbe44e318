"""Heartbeats between agents in namespaces over real UDP: how fast a crash is seen, that a
graceful stop is seen at once, and that a restarted agent is accepted again."""

from __future__ import annotations

import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from l2_segment import build_segment

from herald.l2.key import create_key_file
from herald.lab.netns import Lab, children, crash

pytestmark = pytest.mark.netns

RUNNER = str(Path(__file__).with_name("l2_heartbeat_runner.py"))
# Shorter than the default (5 s) so that the hung-agent test is quick.
AGENT_TIMEOUT = 1.0
NODES = {"n1": "192.0.2.21", "n2": "192.0.2.22"}


class Agents:
    def __init__(
        self,
        lab: Lab,
        scratch: Path,
        nodes: Mapping[str, str] = NODES,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.lab, self.scratch = lab, scratch
        self.nodes, self.env = nodes, env
        self.key = scratch / "key"
        create_key_file(self.key)
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, node: str) -> None:
        peers = [f"{n}={a}" for n, a in self.nodes.items() if n != node]
        argv = [
            sys.executable,
            RUNNER,
            str(AGENT_TIMEOUT),
            node,
            self.nodes[node],
            str(self.key),
            str(self.events(node)),
            *peers,
        ]
        self.processes[node] = self.lab.spawn(node, argv, env=self.env)

    def events(self, node: str) -> Path:
        return self.scratch / f"{node}.events"

    def wait_state(
        self, observer: str, peer: str, state: str, after: float, limit: float = 5.0
    ) -> float:
        """The monotonic time at which `observer` saw `peer` enter `state`, after `after`."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            path = self.events(observer)
            for line in path.read_text().splitlines() if path.exists() else []:
                at, who, what = line.split()
                if who == peer and what == state and float(at) >= after:
                    return float(at)
            time.sleep(0.01)
        raise AssertionError(f"{observer} did not see {peer} {state}")


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    with Lab(prefix="hd-hb") as lab:
        build_segment(lab, {node: address.rsplit(".", 1)[1] for node, address in NODES.items()})
        built = Agents(lab, tmp_path)
        for node in NODES:
            built.start(node)
        yield built


def test_a_crashed_agent_is_declared_dead_within_the_default_detection_time(agents: Agents) -> None:
    detections = []
    for _ in range(3):
        start = time.monotonic()
        agents.wait_state("n1", "n2", "alive", after=start - 10)
        agents.wait_state("n2", "n1", "alive", after=start - 10)
        time.sleep(0.3)
        crashed = time.monotonic()
        crash(agents.processes["n2"].pid)  # the heartbeat process too: no goodbye
        agents.lab.stop(agents.processes["n2"])
        dead = agents.wait_state("n1", "n2", "dead", after=crashed)
        detections.append(dead - crashed)
        agents.start("n2")  # a new incarnation: accepted again
        agents.wait_state("n1", "n2", "alive", after=dead)
    print(f"crash detection with 100 ms x 5: {', '.join(f'{d * 1000:.0f} ms' for d in detections)}")
    # 400-500 ms after the crash, plus scheduling on a busy 2-core machine.
    assert all(0.35 <= d <= 0.7 for d in detections), detections
    assert statistics.mean(detections) <= 0.6


def test_a_stopping_agent_is_declared_dead_at_once(agents: Agents) -> None:
    start = time.monotonic()
    agents.wait_state("n1", "n2", "alive", after=start - 10)
    stopped = time.monotonic()
    os.kill(agents.processes["n2"].pid, signal.SIGTERM)
    dead = agents.wait_state("n1", "n2", "dead", after=stopped)
    assert dead - stopped < 0.2


def test_an_agent_killed_alone_says_goodbye_through_its_heartbeat_process(
    agents: Agents,
) -> None:
    start = time.monotonic()
    agents.wait_state("n1", "n2", "alive", after=start - 10)
    (heartbeats,) = children(agents.processes["n2"].pid)
    killed = time.monotonic()
    os.kill(agents.processes["n2"].pid, signal.SIGKILL)
    dead = agents.wait_state("n1", "n2", "dead", after=killed)
    # The heartbeat process sees its agent's end of the socket pair close, sends LEAVING
    # and exits: peers take over at once instead of after the detection time.
    assert dead - killed < 0.2
    deadline = time.monotonic() + 2
    while os.path.exists(f"/proc/{heartbeats}") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{heartbeats}"), "the heartbeat process outlived its agent"
    agents.lab.stop(agents.processes["n2"])
    agents.start("n2")
    agents.wait_state("n1", "n2", "alive", after=dead)


def test_a_hung_agent_gives_its_vips_up_and_rejoins_when_it_runs_again(agents: Agents) -> None:
    # A stopped agent answers no ARP; its heartbeat process, still running, must not keep
    # its VIPs: after the agent timeout it says it leaves and falls silent.
    start = time.monotonic()
    agents.wait_state("n1", "n2", "alive", after=start - 10)
    pid = agents.processes["n2"].pid
    os.kill(pid, signal.SIGSTOP)
    stopped = time.monotonic()
    try:
        dead = agents.wait_state("n1", "n2", "dead", after=stopped)
        assert AGENT_TIMEOUT - 0.15 <= dead - stopped <= AGENT_TIMEOUT + 0.7
        time.sleep(0.5)
        seen = [line.split() for line in agents.events("n1").read_text().splitlines()]
        again = [at for at, who, what in seen if who == "n2" and float(at) > dead]
        assert again == [], "a silent heartbeat process stays silent"
    finally:
        os.kill(pid, signal.SIGCONT)
    agents.wait_state("n1", "n2", "alive", after=dead)
