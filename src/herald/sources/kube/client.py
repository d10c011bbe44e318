"""The connection to the Kubernetes API: configuration, lists and watch streams (lightkube).

Configuration is found the way kubectl and client-go find it: `--kubeconfig`, else the
`KUBECONFIG` environment variable, else the in-cluster service account (a Pod's token, CA
and `KUBERNETES_SERVICE_HOST`), else `~/.kube/config`.

lightkube builds every request (URL, authentication, TLS) and owns the HTTP connection.
Objects are taken as plain JSON and validated by herald's own models. Watches go through
lightkube's request layer rather than `AsyncClient.watch` because that call has no
`allowWatchBookmarks` parameter and reconnects on its own; herald resumes from the
resourceVersion its cache holds (`cache.py`), which has to be the one source of truth.
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, cast

import httpx2
import msgspec
from lightkube import ApiError, AsyncClient
from lightkube.config.kubeconfig import DEFAULT_KUBECONFIG, SERVICE_ACCOUNT, KubeConfig
from lightkube.core import decoders

from herald.sources.kube.kinds import Kind

FIELD_MANAGER = "herald"
# Objects per list request: a list of 10,000 Services arrives in pages, not one response.
LIST_PAGE = 500
# Seconds one watch request lasts before the server ends it (and herald resumes it).
WATCH_SECONDS = 290
# Every request but a watch stream: connect, read and write each bounded.
REQUEST_TIMEOUT = 10.0

ALL_NAMESPACES = "*"
# What `watch_events` yields first, once the server has accepted the watch.
OPENED = "OPENED"


class Gone(Exception):
    """410: the resourceVersion a watch or list page asked for is no longer kept."""


def kube_config(
    kubeconfig: Path | None = None, service_account: Path = Path(SERVICE_ACCOUNT)
) -> KubeConfig:
    """The configuration every kubectl would use here (see the module's docstring)."""
    if kubeconfig is not None:
        return KubeConfig.from_file(kubeconfig)
    listed = [p for p in os.environ.get("KUBECONFIG", "").split(os.pathsep) if p]
    if listed:
        # kubectl merges a list; herald takes the first file that exists, as most tools do.
        existing = [p for p in listed if Path(p).exists()]
        return KubeConfig.from_file(existing[0] if existing else listed[0])
    if os.environ.get("KUBERNETES_SERVICE_HOST") and (service_account / "token").exists():
        return KubeConfig.from_service_account(service_account)
    return KubeConfig.from_file(Path(DEFAULT_KUBECONFIG).expanduser())


def connect(config: KubeConfig) -> AsyncClient:
    # httpx logs every request at INFO: a Lease renewal every 2 s would drown herald's log.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    return AsyncClient(
        config=config,
        timeout=httpx2.Timeout(REQUEST_TIMEOUT),
        field_manager=FIELD_MANAGER,
        trust_env=False,
    )


def trimmed(obj: dict[str, Any]) -> dict[str, Any]:
    """`obj` without its managedFields: server-side apply's bookkeeping, often larger than
    the object itself, is never read by herald and would double what 10,000 cached
    Services cost."""
    meta = obj.get("metadata")
    if isinstance(meta, dict):
        meta.pop("managedFields", None)
    return obj


def namespace_for(kind: Kind, own_namespace: str) -> str | None:
    """Where `kind` is read: herald's namespace, every namespace, or (cluster-scoped) none."""
    if not kind.namespaced:
        return None
    return own_namespace if kind.own_namespace_only else ALL_NAMESPACES


async def list_objects(
    client: AsyncClient, kind: Kind, own_namespace: str
) -> tuple[list[dict[str, Any]], str]:
    """Every object of the collection and the resourceVersion the list was taken at."""
    try:
        listing = client.list(
            kind.resource(), namespace=namespace_for(kind, own_namespace), chunk_size=LIST_PAGE
        )
        items = [trimmed(dict(obj)) async for obj in listing]
        return items, listing.resourceVersion
    except ApiError as err:
        if err.status.code == 410:
            raise Gone(str(err.status.message)) from err
        raise


async def watch_events(
    client: AsyncClient, kind: Kind, own_namespace: str, version: str
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The events after `version` until the server ends the stream (after WATCH_SECONDS):
    (type, object), BOOKMARKs included, after an (OPENED, {}) once the server accepted the
    watch. Raises Gone when `version` is too old."""
    generic = client._client
    request = generic.prepare_request(
        "list",
        res=kind.resource(),
        namespace=namespace_for(kind, own_namespace),
        watch=True,
        params={
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": WATCH_SECONDS,
        },
    )
    # No read timeout: a quiet collection sends nothing for minutes. The caller bounds the
    # stream's life (WATCH_SECONDS and a margin) against a server that vanished silently.
    request.timeout = httpx2.Timeout(REQUEST_TIMEOUT, read=None)
    adapter_request = generic.build_adapter_request(request)
    response = await generic.send(adapter_request, stream=True)  # type: ignore[no-untyped-call]
    try:
        if response.status_code >= 400:
            await response.aread()
            if response.status_code == 410:
                raise Gone(response.text[:200])
            generic.raise_for_status(response)  # type: ignore[no-untyped-call]
        yield OPENED, {}
        async for line in response.aiter_lines():
            if not line:
                continue
            event = decoders.decode_watch_event(line)
            if event.type == "ERROR":
                status = decoders.decode_status(event.object)
                if status.code == 410:
                    raise Gone(str(status.message))
                raise ApiError(status=status)
            yield event.type, trimmed(cast(dict[str, Any], msgspec.json.decode(event.object)))
    finally:
        await response.aclose()
