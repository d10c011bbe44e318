"""A cluster the web view reads without a lab: real agent status sockets (`serve_status`,
with real `FlowReader`s answering `observe`) and the real server on a free loopback port,
all on one event loop in a thread, so a blocking browser can drive the page meanwhile."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from herald.agent.status import (
    AgentStatus,
    BackendStatus,
    FrontendStatus,
    L2Owner,
    L2Status,
    SessionStatus,
    serve_status,
    socket_path,
)
from herald.lab import routers
from herald.observe.event import REPLY, REQUEST, FlowEvent
from herald.observe.reader import FlowReader
from herald.ui.gather import Sources
from herald.ui.server import View, serve

ROOT = Path(__file__).resolve().parents[3]
NODES = tuple(f"k8s-worker{i}" for i in range(1, 7))
ROUTER = "192.0.2.1"
VIP = "203.0.113.0"
SERVICE = "default/web1-lb"
PODS = tuple((f"default/web1-{i}", f"10.244.{i}.10", NODES[i - 1]) for i in range(1, 7))


def frontend(service: str = SERVICE, vip: str = VIP, pods: Any = PODS) -> FrontendStatus:
    return FrontendStatus(
        service=service,
        frontend=f"{vip}:80/TCP",
        mode="snat",
        traffic_policy="Cluster",
        backends=tuple(BackendStatus(address=a, port=8080, node=n, pod=p) for p, a, n in pods),
        packets=0,
        bytes=0,
    )


def agent_status(node: str, state: str = "Established", l2_owner: str | None = None) -> AgentStatus:
    return AgentStatus(
        node=node,
        applied_at=time.time(),
        services=(SERVICE,),
        peers=(
            SessionStatus(
                name="seed/router",
                local_as=64512,
                peer=ROUTER,
                peer_as=64512,
                state=state,
                uptime_seconds=42.0 if state == "Established" else None,
                advertised=1,
                received=0,
                bfd="Up" if state == "Established" else "Down",
                routes=(f"{VIP}/32",) if state == "Established" else (),
            ),
        ),
        l2=L2Status(
            members=NODES,
            live=NODES,
            owners=(
                L2Owner(
                    vip="192.0.2.240",
                    owner=l2_owner,
                    answering=l2_owner == node,
                    since=time.time() - 5,
                    candidates=NODES,
                ),
            ),
        )
        if l2_owner
        else None,
        frontends=(frontend(),),
    )


def flow(node: str, client: str, pod_index: int, verdict: str = "FORWARDED", reply: bool = False,
         when: float | None = None, port: int = 40000) -> FlowEvent:  # fmt: skip
    pod, address, pod_node = PODS[pod_index]
    return FlowEvent(
        time=time.time() if when is None else when,
        node=node,
        direction=REPLY if reply else REQUEST,
        protocol="TCP",
        client=client,
        client_port=port,
        vip=VIP,
        vip_port=80,
        verdict=verdict,
        reason="to-endpoint" if verdict == "FORWARDED" else "no-backend",
        service=SERVICE,
        backend=address,
        backend_port=8080,
        pod=pod,
        backend_node=pod_node,
        tcp_flags=("SYN",),
    )


class Cluster:
    """Six agents and the view. `statuses[node]` is what each agent answers (change it to
    change the cluster); `add_flow` records an event in a node's flow ring."""

    def __init__(self, directory: Path, manifests: Path | None = None,
                 status: Callable[[str], AgentStatus] = agent_status,
                 interval: float = 0.3) -> None:  # fmt: skip
        self.status_dir = directory / "agents"
        self.manifests = manifests
        self.statuses = {node: status(node) for node in NODES}
        self.readers = {node: FlowReader(node) for node in NODES}
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._servers: dict[str, asyncio.Server] = {}
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.view: View | None = None
        self.interval = interval
        self._runner: Any = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def run(self, coroutine: Any, timeout: float = 20) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout)

    def start(self) -> None:
        self._thread.start()
        self.run(self._start())

    async def _start(self) -> None:
        for node in NODES:
            await self.start_agent(node)
        self.view = View(Sources(self.status_dir, self.manifests), interval=self.interval)
        self._runner, self.port = await serve(self.view, "127.0.0.1", 0)

    async def start_agent(self, node: str) -> None:
        self._servers[node] = await serve_status(
            socket_path(self.status_dir, node),
            lambda _: self.statuses[node],
            self.readers[node].stream,
        )

    def kill_agent(self, node: str) -> None:
        """As a killed agent leaves it: its socket file there, nobody listening."""

        async def kill() -> None:
            server = self._servers.pop(node)
            path = socket_path(self.status_dir, node)
            server.close()
            await server.wait_closed()
            if not path.exists():
                path.touch()

        self.run(kill())

    def add_flow(self, event: FlowEvent) -> None:
        self.loop.call_soon_threadsafe(self.readers[event.node].ring.append, event)

    def stop(self) -> None:
        async def stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            for server in self._servers.values():
                server.close()

        try:
            self.run(stop())
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)


@contextmanager
def running(directory: Path, manifests: Path | None = None,
            status: Callable[[str], AgentStatus] = agent_status,
            interval: float = 0.3) -> Iterator[Cluster]:  # fmt: skip
    cluster = Cluster(directory, manifests, status, interval)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def wait_for(check: Callable[[], Any], timeout: float = 15, what: str = "") -> Any:
    return routers.wait_for(check, timeout, what or str(check), interval=0.1)
