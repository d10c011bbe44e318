"""A running test-double API server with herald's CRDs, driven by the real kubectl."""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
from lightkube import AsyncClient

from herald.lab.kubeapi.server import KubeApiServer
from herald.sources.kube import connect, kube_config

REPO = Path(__file__).resolve().parents[3]
CRDS = REPO / "deploy" / "crds"
SEED = REPO / "examples" / "seed"


class Cuttable(httpx2.AsyncBaseTransport):
    """A connection to the API server that the test can cut, recording what was tried."""

    def __init__(self) -> None:
        self.inner = httpx2.AsyncHTTPTransport()
        self.cut = False
        self.tried: list[tuple[float, str, str]] = []

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        self.tried.append((time.monotonic(), request.method, request.url.path))
        if self.cut:
            raise httpx2.ConnectError("cut by the test", request=request)
        return await self.inner.handle_async_request(request)


@dataclass
class Cluster:
    server: KubeApiServer
    kubeconfig: Path

    def client(self, transport: httpx2.AsyncBaseTransport | None = None) -> AsyncClient:
        if transport is None:
            return connect(kube_config(self.kubeconfig))
        return AsyncClient(
            config=kube_config(self.kubeconfig), transport=transport, field_manager="herald"
        )

    async def kubectl(self, *args: str, stdin: str | None = None) -> str:
        command = ["kubectl", "--kubeconfig", str(self.kubeconfig), *args]
        done = await asyncio.to_thread(
            subprocess.run, command, input=stdin, capture_output=True, text=True, timeout=60
        )
        if done.returncode != 0:
            raise AssertionError(f"{' '.join(args)}: {done.stderr}")
        return done.stdout

    async def apply(self, *paths: Path) -> None:
        for path in paths:
            await self.kubectl("apply", "--validate=false", "-f", str(path))

    async def apply_text(self, text: str) -> None:
        await self.kubectl("apply", "--validate=false", "-f", "-", stdin=text)

    async def get(self, *args: str) -> dict[str, Any]:
        return json.loads(await self.kubectl("get", *args, "-o", "json"))  # type: ignore[no-any-return]

    def writes(self, resource: str, subresource: str = "") -> list[str]:
        """Names of the objects written (patch/update) so far, in order."""
        return [
            r.name
            for r in self.server.requests
            if r.resource == resource
            and r.subresource == subresource
            and r.verb in ("patch", "update")
        ]


@asynccontextmanager
async def cluster(tmp_path: Path, *manifests: Path, crds: bool = True) -> AsyncIterator[Cluster]:
    async with KubeApiServer("127.0.0.1", 0, bookmark_interval=1.0) as server:
        kube = Cluster(server, server.write_kubeconfig(tmp_path / "kubeconfig"))
        await kube.apply_text(
            '{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "herald-system"}}'
        )
        await kube.apply(*((CRDS,) if crds else ()), *manifests)
        yield kube


async def eventually(check: Callable[[], Any], what: str, timeout: float = 30.0) -> Any:
    """Polls `check` (sync or async) until it returns something truthy."""
    deadline = asyncio.get_running_loop().time() + timeout
    last: Any = None
    while asyncio.get_running_loop().time() < deadline:
        last = check()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what} (last: {last!r})")


def ingress_ips(service: dict[str, Any]) -> list[str]:
    ingress = ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return [entry.get("ip") for entry in ingress]


def service_json(name: str, namespace: str = "default", **annotations: str) -> str:
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
        }
    )
