"""Leader election on a Lease with two controllers against the test-double API server."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from herald.controller.leader import LeaseTimings
from herald.controller.run import run_controller
from herald.sources.kube import CONTROLLER_KINDS, KubeSource, LeadershipLost

from .apiserver import (
    SEED,
    Cluster,
    Cuttable,
    cluster,
    eventually,
    ingress_ips,
    service_json,
)

FAST = LeaseTimings(lease_duration=3, renew_deadline=2.0, retry_period=0.5)


async def addresses(kube: Cluster) -> dict[str, list[str]]:
    listed = await kube.get("svc")
    return {s["metadata"]["name"]: ingress_ips(s) for s in listed["items"]}


async def lease_holder(kube: Cluster) -> str:
    lease = await kube.get("lease", "-n", "herald-system", "herald-controller")
    return str(lease["spec"].get("holderIdentity") or "")


def test_a_leader_cut_off_stops_writing_before_the_standby_takes_over(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube:
            for name in ("web2-lb", "web3-lb"):
                await kube.apply_text(service_json(name))
            link = Cuttable()
            a = KubeSource(kube.client(link), kinds=CONTROLLER_KINDS, timings=FAST)
            b = KubeSource(kube.client(), kinds=CONTROLLER_KINDS, timings=FAST)
            ended: dict[str, float] = {}
            task_a = asyncio.create_task(run_controller(a, "a"))
            task_a.add_done_callback(lambda _: ended.setdefault("a", time.monotonic()))
            await eventually(
                lambda: len(kube.writes("services", "status")) == 3, "a allocates all three"
            )
            before = await addresses(kube)
            task_b = asyncio.create_task(run_controller(b, "b"))
            await asyncio.sleep(2 * FAST.retry_period)
            assert await lease_holder(kube) == "a"
            assert b.lock is None  # b waits as a standby

            link.cut = True
            b_leads = asyncio.create_task(_became_leader(b))
            await asyncio.wait_for(asyncio.shield(b_leads), 30)
            took_over = b_leads.result()
            assert task_a.done()
            assert isinstance(task_a.exception(), LeadershipLost)
            # a stopped before b started: never two writers.
            assert ended["a"] < took_over
            # a tried nothing at all after it stopped.
            assert [t for t in link.tried if t[0] > ended["a"]] == []
            assert await lease_holder(kube) == "b"

            # b writes nothing for Services whose status it agrees with, and addresses stay.
            await kube.apply_text(service_json("web4-lb"))
            await eventually(
                lambda: "web4-lb" in kube.writes("services", "status"), "b allocates web4-lb"
            )
            after = await addresses(kube)
            assert {k: after[k] for k in before} == before
            assert after["web4-lb"] == ["203.0.113.3"]
            task_b.cancel()
            await asyncio.gather(task_b, return_exceptions=True)

    asyncio.run(scenario())


async def _became_leader(source: KubeSource) -> float:
    while source.lock is None or not source.lock.became_leader.is_set():
        await asyncio.sleep(0.01)
    return time.monotonic()


def _controller(kube: Cluster, identity: str, log: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            str(Path(sys.executable).with_name("herald")), "controller", "--source", "kube",
            "--kubeconfig", str(kube.kubeconfig), "--identity", identity,
            "--lease-duration", "3", "--renew-deadline", "2", "--retry-period", "0.5",
        ],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )  # fmt: skip


def test_killing_the_leader_process_hands_over_without_moving_addresses(tmp_path: Path) -> None:
    async def scenario() -> None:
        async with cluster(tmp_path, SEED) as kube:
            processes: list[subprocess.Popen[bytes]] = []
            try:
                processes.append(_controller(kube, "first", tmp_path / "first.log"))
                await eventually(
                    lambda: kube.writes("services", "status") == ["web1-lb"], "first allocates"
                )
                processes.append(_controller(kube, "second", tmp_path / "second.log"))
                await eventually(
                    lambda: (
                        "event=standby identity=second" in (tmp_path / "second.log").read_text()
                    ),
                    "second waits",
                )
                before = await addresses(kube)
                os.kill(processes[0].pid, signal.SIGKILL)
                processes[0].wait()
                killed = time.monotonic()
                await eventually(
                    lambda: "event=leader identity=second" in (tmp_path / "second.log").read_text(),
                    "second takes over",
                    timeout=30,
                )
                print(f"takeover after {time.monotonic() - killed:.1f} s (lease 3 s)")
                assert await lease_holder(kube) == "second"
                await kube.apply_text(service_json("later"))
                await eventually(lambda: "later" in kube.writes("services", "status"), "later")
                after = await addresses(kube)
                assert after["web1-lb"] == before["web1-lb"] == ["203.0.113.0"]
                assert after["later"] == ["203.0.113.1"]
                # second wrote web1-lb's status not once: it agreed with what it found.
                assert kube.writes("services", "status") == ["web1-lb", "later"]
                # A Pod stopping (SIGTERM) hands the Lease back instead of letting it expire.
                processes[1].terminate()
                assert processes[1].wait(timeout=10) == 0
                assert await lease_holder(kube) == ""
            finally:
                for process in processes:
                    if process.poll() is None:
                        process.terminate()
                        process.wait(timeout=10)

    asyncio.run(scenario())
