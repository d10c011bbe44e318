"""Controller start-up at 10,000 LoadBalancer Services + 10,000 EndpointSlices: the
Kubernetes source (list, allocate, write 10,000 statuses through the status subresource)
side by side with the files source (parse the manifests, allocate, write state.json).

The API server is the test double (`python -m herald.lab.kubeapi`) in a process of its own
on loopback, filled before the controller starts; the controller is the real `herald
controller` process in both modes. Start-up is timed from the controller's start to its
`event=status_written ... satisfied=N` line (logged once the writes are done); then the
result is checked where a user would look (every Service's status has its address). On a
shared 2-CPU machine, API server and controller compete for the CPUs as on a small node.

    .venv/bin/python bench/kube/startup.py --json bench/results/kube.json
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx2
import yaml
from lightkube import AsyncClient
from lightkube.config.kubeconfig import KubeConfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from herald.sources.kube.kinds import ENDPOINT_SLICE, POOL, SERVICE
from stamp import publish, stamp

ROOT = Path(__file__).resolve().parents[2]
HERALD = Path(sys.executable).with_name("herald")
POOL_CIDR = "198.18.0.0/16"  # RFC 2544 benchmarking range: room for 65,536 Services
IN_FLIGHT = 32
DONE = re.compile(r"event=status_written services=(\d+) satisfied=(\d+) pools=\d+ ms=([\d.]+)")


def pool() -> dict[str, Any]:
    return {
        "apiVersion": "herald.io/v1alpha1",
        "kind": "LoadBalancerIPPool",
        "metadata": {"name": "bench"},
        "spec": {"blocks": [{"cidr": POOL_CIDR}]},
    }


def service(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": f"svc-{i:05}", "namespace": "default"},
        "spec": {
            "type": "LoadBalancer",
            # Only 2,768 node ports exist: thousands of LoadBalancer Services need this, on a
            # real cluster as on the double.
            "allocateLoadBalancerNodePorts": False,
            "selector": {"app": f"app-{i:05}"},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
        },
    }


def endpoint_slice(i: int) -> dict[str, Any]:
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": f"svc-{i:05}-abcde",
            "namespace": "default",
            "labels": {"kubernetes.io/service-name": f"svc-{i:05}"},
        },
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
        "endpoints": [
            {
                "addresses": [f"10.{(i >> 8) & 255}.{i & 255}.{k + 1}"],
                "nodeName": f"node-{k}",
                "conditions": {"ready": True, "serving": True, "terminating": False},
            }
            for k in range(3)
        ],
    }


# -- the controller, timed -----------------------------------------------------------------


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def run_controller(argv: list[str], count: int, timeout: float) -> dict[str, float]:
    """Starts the controller; the seconds until it logged all `count` Services satisfied
    and written, the last reconcile's own milliseconds, and its peak RSS."""
    start = time.monotonic()
    process = subprocess.Popen(
        [str(HERALD), "controller", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(x) for x in process.stderr or ()])
    reader.daemon = True
    reader.start()
    tail: collections.deque[str] = collections.deque(maxlen=20)
    try:
        deadline = start + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = lines.get(timeout=min(left, 1.0))
            except queue.Empty:
                if process.poll() is not None:
                    said = "".join(tail)
                    raise SystemExit(f"controller exited ({process.returncode}):\n{said}") from None
                continue
            tail.append(line)
            match = DONE.search(line)
            if match and int(match.group(2)) >= count:
                took = time.monotonic() - start
                return {
                    "seconds": round(took, 2),
                    "reconcile_and_write_ms": float(match.group(3)),
                    "peak_rss_mib": round(peak_rss_mib(process.pid), 1),
                }
        said = "".join(tail)
        raise SystemExit(f"controller did not write {count} statuses in {timeout:.0f} s:\n{said}")
    finally:
        process.terminate()
        process.wait(timeout=10)


# -- Kubernetes source ---------------------------------------------------------------------


async def fill_api(kubeconfig: Path, count: int) -> float:
    client = AsyncClient(
        config=KubeConfig.from_file(kubeconfig), timeout=httpx2.Timeout(60), trust_env=False
    )
    start = time.monotonic()
    try:
        await client.create(POOL.resource()(pool()))
        gate = asyncio.Semaphore(IN_FLIGHT)

        async def create(resource: Any, body: dict[str, Any]) -> None:
            async with gate:
                await client.create(resource(body), namespace="default")

        for make, resource in (
            (service, SERVICE.resource()),
            (endpoint_slice, ENDPOINT_SLICE.resource()),
        ):
            await asyncio.gather(*(create(resource, make(i)) for i in range(count)))
    finally:
        await client.close()
    return time.monotonic() - start


async def count_with_address(kubeconfig: Path) -> int:
    client = AsyncClient(
        config=KubeConfig.from_file(kubeconfig), timeout=httpx2.Timeout(60), trust_env=False
    )
    try:
        found = 0
        async for obj in client.list(SERVICE.resource(), namespace="default", chunk_size=500):
            ingress = ((obj.get("status") or {}).get("loadBalancer") or {}).get("ingress")
            found += bool(ingress)
        return found
    finally:
        await client.close()


def kube_round(work: Path, count: int, timeout: float) -> dict[str, Any]:
    kubeconfig = work / "kubeconfig"
    server = subprocess.Popen(
        [sys.executable, "-m", "herald.lab.kubeapi", "--listen", "127.0.0.1:0",
         "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not kubeconfig.exists():
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the API test double did not start")
            time.sleep(0.1)
        subprocess.run(
            ["kubectl", "--kubeconfig", str(kubeconfig), "apply", "-f", str(ROOT / "deploy")
             + "/namespace.yaml", "-f", str(ROOT / "deploy" / "crds")],
            check=True, capture_output=True,
        )  # fmt: skip
        filled = asyncio.run(fill_api(kubeconfig, count))
        result = run_controller(
            ["--source", "kube", "--kubeconfig", str(kubeconfig), "--identity", "bench"],
            count,
            timeout,
        )
        result["services_with_address"] = asyncio.run(count_with_address(kubeconfig))
        result["fill_seconds"] = round(filled, 1)
        return result
    finally:
        server.terminate()
        server.wait(timeout=10)


# -- files source --------------------------------------------------------------------------


def files_round(work: Path, count: int, timeout: float) -> dict[str, Any]:
    manifests = work / "manifests"
    manifests.mkdir()
    (manifests / "pool.yaml").write_text(yaml.safe_dump(pool()))
    per_file = 1000
    # Flow style: in block style 10,000 Services and slices are 8.2 MiB, over the files
    # source's 8 MiB limit for a whole directory (SizeLimits); this way they are 7.7 MiB.
    for first in range(0, count, per_file):
        ids = range(first, min(count, first + per_file))
        for name, make in (("services", service), ("slices", endpoint_slice)):
            (manifests / f"{name}-{first:05}.yaml").write_text(
                "---\n".join(
                    yaml.safe_dump(make(i), default_flow_style=True, width=1 << 20) for i in ids
                )
            )
    result = run_controller(["--manifests", str(manifests)], count, timeout)
    state = json.loads((manifests / ".herald" / "state.json").read_text())
    result["services_with_address"] = sum(
        1 for s in state.get("services", {}).values() if s.get("loadBalancer", {}).get("ingress")
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=600.0)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--modes", default="files,kube", help="which sources, in this order")
    args = parser.parse_args()
    results: dict[str, Any] = {
        **stamp("kube/startup"),
        "services": args.services,
        "endpoint_slices": args.services,
        "kube": [],
        "files": [],
    }
    for _ in range(args.rounds):
        for mode in args.modes.split(","):
            round_ = {"files": files_round, "kube": kube_round}[mode]
            work = Path(tempfile.mkdtemp(prefix="herald-bench-kube-"))
            try:
                outcome = round_(work, args.services, args.timeout)
            finally:
                shutil.rmtree(work, ignore_errors=True)
            print(mode, outcome, file=sys.stderr, flush=True)
            results[mode].append(outcome)
    publish(results, args.json)


if __name__ == "__main__":
    main()
