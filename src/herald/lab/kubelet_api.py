"""The lab kubelet's store on the Kubernetes API (`herald lab up --source kube`).

What a cluster's kubelets and EndpointSlice controller write, the lab's kubelet writes
through the API: the Nodes when it starts (their addresses through the status subresource,
as a kubelet registers) and one EndpointSlice per Service and IP family, labelled as the
lab's, created, replaced or deleted as pods come and go. It reads the Deployments and
Services that `kubectl apply` put there. It talks to whatever API server the kubeconfig
names; the lab runs the test double of `herald.lab.kubeapi`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import httpx2
import yaml
from lightkube import ApiError, AsyncClient, Client
from lightkube.config.kubeconfig import KubeConfig
from lightkube.types import OnErrorAction, OnErrorResult, PatchType
from pydantic import ValidationError

from herald.api.core import Service
from herald.lab.kubelet import StoreError
from herald.lab.topology import Topology, node_manifests
from herald.sources.kube.client import trimmed
from herald.sources.kube.kinds import ENDPOINT_SLICE, NODE, SERVICE, generic_resource

log = logging.getLogger(__name__)

FIELD_MANAGER = "herald-lab-kubelet"
# The label Kubernetes' own EndpointSlice controller sets to tell its slices from others'.
MANAGED_BY = "endpointslice.kubernetes.io/managed-by"
LAB_MANAGER = "kubelet.lab.herald.io"
DEPLOYMENT = generic_resource("apps", "v1", "Deployment", "deployments", True)
NODE_STATUS = NODE.status_resource()
SLICE = ENDPOINT_SLICE.resource()
ALL = "*"
# What `kubectl get nodes` shows as STATUS Ready (the lab's nodes are up while the lab is).
READY = {"type": "Ready", "status": "True", "reason": "KubeletReady"}
REQUEST_TIMEOUT = 10.0

SliceKey = tuple[str, str]


def labelled(document: dict[str, Any]) -> dict[str, Any]:
    """Pure: `document` (an EndpointSlice) with the lab's managed-by label."""
    meta = dict(document["metadata"])
    meta["labels"] = {**meta.get("labels", {}), MANAGED_BY: LAB_MANAGER}
    return {**document, "metadata": meta}


def slice_key(document: dict[str, Any]) -> SliceKey:
    meta = document["metadata"]
    return str(meta["namespace"]), str(meta["name"])


class ApiStore:
    """The kubelet's `Store` on the API (see lab/kubelet.py)."""

    def __init__(self, client: Client) -> None:
        self.client = client
        # What this kubelet last wrote, by (namespace, name); None until it has looked
        # which lab slices the API holds (those of an earlier kubelet).
        self._written: dict[SliceKey, dict[str, Any] | None] | None = None

    @classmethod
    def connect(cls, kubeconfig: Path) -> ApiStore:
        logging.getLogger("httpx2").setLevel(logging.WARNING)
        client = Client(
            config=KubeConfig.from_file(kubeconfig),
            timeout=httpx2.Timeout(REQUEST_TIMEOUT),
            field_manager=FIELD_MANAGER,
            trust_env=False,
        )
        return cls(client)

    def register_nodes(self, topology: Topology) -> None:
        """Creates the lab's Nodes (kept if there) and writes their addresses as status."""
        for document in yaml.safe_load_all(node_manifests(topology)):
            node = NODE.resource()(document)
            try:
                self.client.create(node)
            except ApiError as err:
                if err.status.code != 409:
                    raise
            self.client.patch(
                NODE_STATUS,
                document["metadata"]["name"],
                {"status": {**document["status"], "conditions": [READY]}},
                patch_type=PatchType.MERGE,
            )
            log.info("event=node_registered node=%s", document["metadata"]["name"])

    def deployments(self) -> list[tuple[str, dict[str, Any]]]:
        return [
            ("the API", trimmed(dict(obj))) for obj in self.client.list(DEPLOYMENT, namespace=ALL)
        ]

    def services(self) -> tuple[Service, ...]:
        try:
            listed = [dict(obj) for obj in self.client.list(SERVICE.resource(), namespace=ALL)]
        except (ApiError, httpx2.HTTPError) as err:
            raise StoreError(f"cannot list Services: {err}") from err
        services = []
        for obj in listed:
            try:
                services.append(Service.model_validate(obj))
            except ValidationError:
                continue  # herald's agents report such a Service; its slices are not needed
        return tuple(services)

    def write_slices(self, slices: list[dict[str, Any]]) -> bool:
        if self._written is None:
            self._written = {
                slice_key(dict(obj)): None
                for obj in self.client.list(SLICE, namespace=ALL, labels={MANAGED_BY: LAB_MANAGER})
            }
        wanted = {slice_key(d): labelled(d) for d in slices}
        changed = False
        for key, document in wanted.items():
            if key in self._written and self._written[key] == document:
                continue
            self._put(document, exists=key in self._written)
            self._written[key] = document
            changed = True
        for key in sorted(self._written.keys() - wanted.keys()):
            namespace, name = key
            try:
                self.client.delete(SLICE, name, namespace=namespace)
            except ApiError as err:
                if err.status.code != 404:
                    raise
            del self._written[key]
            changed = True
        return changed

    def _put(self, document: dict[str, Any], exists: bool) -> None:
        """Creates the slice, or replaces it whole when it is there (a PUT without a
        resourceVersion: this kubelet is its only writer)."""
        obj = SLICE(document)
        namespace, name = slice_key(document)
        try:
            if exists:
                self.client.replace(obj, name, namespace=namespace)
            else:
                self.client.create(obj, namespace=namespace)
        except ApiError as err:
            if err.status.code not in (404, 409):
                raise
            # The API knew better (a slice deleted or made by someone meanwhile).
            if err.status.code == 409:
                self.client.replace(obj, name, namespace=namespace)
            else:
                self.client.create(obj, namespace=namespace)


def _retry(err: Exception, count: int) -> OnErrorResult:
    log.warning("event=watch_failed attempt=%d error=%r", count, str(err))
    return OnErrorResult(OnErrorAction.RETRY, sleep=min(5.0, 0.5 * (count + 1)))


async def api_changes(kubeconfig: Path) -> AsyncGenerator[object, None]:
    """Yields once at once, then after each change (coalesced) of the Deployments and
    Services: what the kubelet reconciles from. The watches resume on their own."""
    client = AsyncClient(
        config=KubeConfig.from_file(kubeconfig),
        timeout=httpx2.Timeout(REQUEST_TIMEOUT, read=None),
        trust_env=False,
    )
    changes: asyncio.Queue[None] = asyncio.Queue()

    async def follow(resource: Any) -> None:
        async for _ in client.watch(resource, namespace=ALL, on_error=_retry):
            changes.put_nowait(None)

    tasks = [asyncio.ensure_future(follow(r)) for r in (DEPLOYMENT, SERVICE.resource())]
    try:
        yield None
        while True:
            await changes.get()
            while not changes.empty():
                changes.get_nowait()
            yield None
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await client.close()
