"""BFD in a process of its own (C bit set) against FRR's bfdd and BIRD's bfd protocol, with
graceful restart on both sides and BFD at 300 ms x 3:

- kill -9 of the process that owns BGP (`herald bgp speak --bfd-socket`), then a new one:
  the router's BFD session never leaves Up, graceful restart keeps the route, and the new
  speaker adopts the sessions of the BFD process;
- kill -9 of the BFD process alone, or the node's link cut: the router sees BFD Down within
  the detection time (the figures are printed; only Down itself is asserted), and the
  speaker starts a new BFD process, which comes Up again.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from bgp_lab import AS, ROUTER_V4, BgpLab, bgp_lab, neighbors_for, node_v4

from herald.bfd.process import running_pid
from herald.lab.routers import Bird, Frr, RouterSpec, kernel_next_hops, wait_for

pytestmark = pytest.mark.netns

VIP = "203.0.113.10/32"
NODE = node_v4(0)
DETECTION = 0.9  # 300 ms x 3


@dataclass
class Watch:
    """The router's BFD state and FIB next hops for the VIP, sampled in a thread."""

    read: Callable[[], tuple[str | None, set[str]]]
    samples: list[tuple[float, str | None, set[str]]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self._stop.is_set():
            state, hops = self.read()
            self.samples.append((time.monotonic(), state, hops))

    @contextlib.contextmanager
    def watching(self) -> Iterator[Watch]:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            thread.join(timeout=10)

    def states(self) -> set[str | None]:
        return {state for _, state, _ in self.samples}

    def first_down_after(self, since: float) -> float | None:
        return next((t - since for t, s, _ in self.samples if t >= since and s != "up"), None)


def speaker_args(socket: Path) -> list[str]:
    return [
        "--local-as", str(AS), "--router-id", NODE, "--peer", f"{ROUTER_V4}:{AS}",
        "--hold-time", "9", "--connect-retry", "1", "--graceful-restart", "120",
        "--bfd-interval", "300", "--bfd-multiplier", "3", "--bfd-socket", str(socket),
        "--announce", VIP, "--status-interval", "0.5",
    ]  # fmt: skip


def router_of(b: BgpLab, kind: str) -> Frr | Bird:
    spec = RouterSpec(
        AS,
        ROUTER_V4,
        neighbors_for(1, AS, bfd_interval=300),
        hold_time=9,
        graceful_restart=True,
        restart_time=120,
    )
    router = b.router(kind, spec)
    assert isinstance(router, Frr | Bird)
    return router


def bfd_state(router: Frr | Bird) -> str | None:
    return router.bfd_peers().get(NODE)


def kill_bfd_process(socket: Path) -> int:
    pid = running_pid(socket)
    assert pid is not None, "a BFD process serves the socket"
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.parametrize("kind", ["frr", "bird"])
def test_bfd_outlives_the_agent_and_reports_real_failures(tmp_path: Path, kind: str) -> None:
    socket = tmp_path / "n0.bfd"
    with bgp_lab(tmp_path) as b:
        router = router_of(b, kind)
        herald = b.herald(0, *speaker_args(socket))
        try:
            wait_for(lambda: kernel_next_hops(b.lab, "r1", VIP) == {NODE}, 30, "the VIP's route")
            wait_for(lambda: bfd_state(router) == "up", 30, f"BFD up at {kind}")
            wait_for(lambda: "bfd=up" in herald.output(), 10, "herald's BFD up")
            bfd_pid = running_pid(socket)

            # 1. The agent side (BGP) is killed and started again: BFD stays Up at the
            # router all along, and graceful restart keeps the route.
            watch = Watch(lambda: (bfd_state(router), kernel_next_hops(b.lab, "r1", VIP)))
            with watch.watching():
                time.sleep(0.5)
                herald.kill()
                time.sleep(3)  # > 3 detection times
                restarted = b.herald(0, *speaker_args(socket), "--restarting", name="-2")
                wait_for(
                    lambda: "event=bfd_process_connected" in restarted.output(), 10, "adoption"
                )
                wait_for(lambda: "bfd=up" in restarted.output(), 10, "the new speaker's BFD")
                wait_for(lambda: router.established() == 1, 20, "BGP established again")
                time.sleep(1)
            assert "adopted=True" in restarted.output()
            assert running_pid(socket) == bfd_pid, "the same BFD process"
            assert watch.states() == {"up"}, f"BFD at {kind} left Up: {watch.states()}"
            assert all(hops == {NODE} for _, _, hops in watch.samples), "the route was kept"
            print(f"\n{kind}: agent kill -9 + restart: BFD Up in all {len(watch.samples)} "
                  "samples, next hop kept in all")  # fmt: skip

            # 2. The BFD process alone is killed: Down at the router within the detection
            # time; herald ends no BGP session for it, and starts a new BFD process.
            watch = Watch(lambda: (bfd_state(router), kernel_next_hops(b.lab, "r1", VIP)))
            with watch.watching():
                killed_at = time.monotonic()
                old = kill_bfd_process(socket)
                wait_for(lambda: watch.first_down_after(killed_at) is not None, 10, "BFD Down")
                wait_for(lambda: running_pid(socket) not in (None, old), 20, "a new BFD process")
                wait_for(lambda: bfd_state(router) == "up", 30, "BFD up again")
                wait_for(lambda: kernel_next_hops(b.lab, "r1", VIP) == {NODE}, 30, "the route")
            detected = watch.first_down_after(killed_at)
            assert detected is not None
            assert "BFD down" not in restarted.output(), "herald ended BGP for its own BFD"
            missing = [t for t, _, hops in watch.samples if t >= killed_at and not hops]
            outage = f"{missing[-1] - missing[0]:.2f} s" if missing else "never"
            print(f"{kind}: BFD process kill -9: Down at the router after {detected:.2f} s "
                  f"(detection time {DETECTION} s, sampled); next "
                  f"hop missing for {outage}")  # fmt: skip

            # 3. The node's link is cut: Down at the router within the detection time, and
            # the route goes with it (long before the 9 s hold time); herald ends its BGP
            # session when its BFD process reports Down.
            watch = Watch(lambda: (bfd_state(router), kernel_next_hops(b.lab, "r1", VIP)))
            with watch.watching():
                cut_at = time.monotonic()
                b.lab.exec("n0", "ip", "link", "set", "eth0", "down")
                wait_for(lambda: watch.first_down_after(cut_at) is not None, 10, "BFD Down")
                wait_for(lambda: not kernel_next_hops(b.lab, "r1", VIP), 10, "the route gone")
                # herald's side hears Down from its BFD process and ends BGP at once too.
                wait_for(lambda: "BFD down" in restarted.output(), 5, "herald's BFD Down")
            detected = watch.first_down_after(cut_at)
            gone = next(t - cut_at for t, _, hops in watch.samples if t >= cut_at and not hops)
            assert detected is not None
            print(f"{kind}: link cut: BFD Down at the router after {detected:.2f} s, next hop "
                  f"gone after {gone:.2f} s")  # fmt: skip
            b.lab.exec("n0", "ip", "link", "set", "eth0", "up")
            wait_for(lambda: bfd_state(router) == "up", 30, "BFD up after the link healed")
            wait_for(lambda: kernel_next_hops(b.lab, "r1", VIP) == {NODE}, 30, "the route back")
        finally:
            with contextlib.suppress(AssertionError, ProcessLookupError):
                kill_bfd_process(socket)
