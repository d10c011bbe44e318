"""The HTTP face of the test double: kube-apiserver's REST paths, verbs and watch streams.

    async with KubeApiServer(host="127.0.0.1", port=0) as server:
        server.write_kubeconfig(tmp / "kubeconfig")   # for kubectl and client libraries
        ...                                            # server.url, server.requests
        server.compact()                               # the next stale watch gets 410
        await server.restart(keep_state=True)          # open watches end, clients re-watch

Plain HTTP on loopback; any bearer token is accepted and nothing is authorized, so the
`requests` it records (verb, group, resource, subresource, namespace) are what RBAC would
have had to allow.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import yaml
from aiohttp import web

from herald.lab.kubeapi import (
    crd_schema,
    discovery,
    errors,
    objects,
    patch,
    protobuf,
    rbac,
    scale,
    services,
    table,
    validation,
)
from herald.lab.kubeapi.kubeconfig import write_kubeconfig
from herald.lab.kubeapi.resources import ResourceRegistry, ResourceType, types_from_crd
from herald.lab.kubeapi.selectors import SELECTABLE_FIELDS, field_matcher, label_matcher
from herald.lab.kubeapi.store import Obj, Store, WatchEvent, clone, parse_resource_version
from herald.lab.kubeapi.tls import Certificate, self_signed

log = logging.getLogger(__name__)

_CRD_GROUP_RESOURCE = ("apiextensions.k8s.io", "customresourcedefinitions")
_NAMESPACE_SUBRESOURCES = ("status", "finalize")
_TRUE = ("true", "1")
_INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class _JsonTypesLoader(yaml.SafeLoader):
    """YAML as Kubernetes reads it: timestamps stay strings (JSON has no date type)."""


_JsonTypesLoader.yaml_implicit_resolvers = {
    key: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class ApiRequest:
    """One resource request as RBAC sees it."""

    verb: str
    group: str
    resource: str
    subresource: str
    namespace: str
    name: str
    # The user the bearer token names (rbac.user_from_token).
    user: str = ""


@dataclass(frozen=True)
class _Target:
    rtype: ResourceType
    namespace: str
    name: str
    subresource: str


def _json(body: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=json.dumps(body, separators=(",", ":")).encode(),
        status=status,
        content_type="application/json",
    )


def _error(err: errors.ApiError) -> web.Response:
    return _json(err.status(), err.code)


def _wants_table(request: web.Request) -> bool:
    accept = request.headers.get("Accept", "")
    first = accept.split(",")[0]
    return "as=Table" in first


def _and_named(name: str, matches: Callable[[Obj], bool]) -> Callable[[Obj], bool]:
    return lambda obj: obj["metadata"]["name"] == name and matches(obj)


class KubeApiServer:
    """A Kubernetes API server test double over HTTP; see the module docstring."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        history_limit: int = 100_000,
        bookmark_interval: float = 60.0,
        service_cidr: str = services.DEFAULT_SERVICE_CIDR,
        namespace_cleanup: float = 0.2,
        authorize: bool = False,
        tls: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        self.host = host
        self.authorize = authorize
        self.certificate: Certificate | None = None
        if tls:
            self.certificate = self_signed(sorted({self._client_host(), "127.0.0.1", "localhost"}))
        self.namespace_cleanup = namespace_cleanup
        self.port = port
        self.bookmark_interval = bookmark_interval
        self.service_cidr = service_cidr
        self._history_limit = history_limit
        self._clock = clock or (lambda: datetime.now(UTC))
        self.store = Store(history_limit)
        self.registry = ResourceRegistry()
        self.allocations = services.Allocations(service_cidr)
        self.requests: list[ApiRequest] = []
        self._changed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._seed()

    # -- lifecycle ---------------------------------------------------------------------

    def _client_host(self) -> str:
        # A wildcard listen address is reached on loopback.
        return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)

    @property
    def url(self) -> str:
        """The address clients use (https:// when made with `tls=True`)."""
        host = self._client_host()
        scheme = "https" if self.certificate is not None else "http"
        return (
            f"{scheme}://[{host}]:{self.port}" if ":" in host else f"{scheme}://{host}:{self.port}"
        )

    async def start(self) -> None:
        self._stopping = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=1.0, access_log=None)
        await runner.setup()
        context = self.certificate.server_context() if self.certificate is not None else None
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True, ssl_context=context)
        await site.start()
        self._runner = runner
        if self.port == 0:
            self.port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Close the listener and every open watch stream (clients see the stream end)."""
        if self._runner is None:
            return
        self._stopping.set()
        self._notify()
        runner, self._runner = self._runner, None
        await runner.cleanup()

    async def restart(self, keep_state: bool = True) -> None:
        """Stop and start on the same port; without `keep_state`, as if etcd were wiped."""
        await self.stop()
        if not keep_state:
            self.store = Store(self._history_limit)
            self.registry = ResourceRegistry()
            self.allocations = services.Allocations(self.service_cidr)
            self._seed()
        await self.start()

    async def __aenter__(self) -> KubeApiServer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def write_kubeconfig(
        self,
        path: Path | str,
        namespace: str = "default",
        service_account: tuple[str, str] | None = None,
    ) -> Path:
        """A kubeconfig for the cluster admin, or for `service_account` (namespace, name),
        whose requests RBAC decides when the server was made with `authorize=True`."""
        token = rbac.ADMIN_TOKEN
        if service_account is not None:
            token = rbac.token_for_service_account(*service_account)
        ca = self.certificate.cert_pem if self.certificate is not None else None
        return write_kubeconfig(path, self.url, namespace, token, ca)

    def _policy(self) -> rbac.Policy:
        group = "rbac.authorization.k8s.io"
        return rbac.Policy.of(
            self.store.list(group, "clusterroles", copies=False),
            self.store.list(group, "clusterrolebindings", copies=False),
            self.store.list(group, "roles", copies=False),
            self.store.list(group, "rolebindings", copies=False),
        )

    def compact(self, revision: int | None = None) -> None:
        """Drop watch history up to `revision` (default: all): older watches get 410."""
        self.store.compact(revision)

    def clear_requests(self) -> None:
        self.requests.clear()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _seed(self) -> None:
        """What a fresh cluster has: its namespaces and the `kubernetes` Service."""
        ns_type = self.registry.lookup("", "v1", "namespaces")
        svc_type = self.registry.lookup("", "v1", "services")
        assert ns_type is not None and svc_type is not None
        now = self._clock()
        for name in _INITIAL_NAMESPACES:
            obj = objects.prepare_create(ns_type, {"metadata": {"name": name}}, "", now)
            self.store.create("", "namespaces", obj)
        kubernetes = {
            "metadata": {
                "name": "kubernetes",
                "labels": {"component": "apiserver", "provider": "kubernetes"},
            },
            "spec": {"ports": [{"name": "https", "port": 443, "targetPort": 6443}]},
        }
        svc = objects.prepare_create(svc_type, kubernetes, "default", now)
        services.default_service(svc, self.allocations)
        self.allocations.add(self.store.create("", "services", svc))

    # -- routing -----------------------------------------------------------------------

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        try:
            return await self._route(request)
        except errors.ApiError as err:
            return _error(err)
        except (ValueError, TypeError, KeyError) as exc:
            # A malformed request the code did not foresee: answer as kube-apiserver does
            # with a Status, and keep serving.
            log.exception("event=kubeapi_request_failed path=%s", request.path)
            return _error(errors.ApiError(500, "InternalError", f"Internal error occurred: {exc}"))

    async def _route(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if request.method == "GET" and parts == ["openapi", "v2"]:
            return self._openapi_v2()
        if request.method == "GET":
            doc = self._discovery(parts)
            if doc is not None:
                return _json(doc)
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 4:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise errors.ApiError(
                404, "NotFound", "the server could not find the requested resource"
            )
        target = self._target(group, version, rest)
        return await self._dispatch(request, target)

    @staticmethod
    def _openapi_v2() -> web.Response:
        """An empty OpenAPI v2 document (an empty protobuf message).

        kubectl downloads it to validate objects and to find patch strategies; finding no
        schema there, it validates nothing client-side and takes strategic-merge metadata
        from its built-in Go types (JSON merge patch for custom resources), as it does for
        any kind a real server publishes no schema for.
        """
        return web.Response(
            body=b"", content_type="application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
        )

    def _discovery(self, parts: list[str]) -> Obj | None:
        if parts == ["version"]:
            return discovery.SERVER_VERSION
        if parts in (["healthz"], ["readyz"], ["livez"]):
            return {"status": "ok"}
        if parts == ["api"]:
            return discovery.api_versions(self.url.split("://", 1)[1])
        if parts == ["api", "v1"]:
            return discovery.api_resource_list(self.registry, "", "v1")
        if parts == ["apis"]:
            return discovery.api_group_list(self.registry)
        if len(parts) == 2 and parts[0] == "apis":
            found = discovery.api_group(self.registry, parts[1])
            if found is None:
                raise errors.ApiError(
                    404, "NotFound", "the server could not find the requested resource"
                )
            return found
        if len(parts) == 3 and parts[0] == "apis":
            found = discovery.api_resource_list(self.registry, parts[1], parts[2])
            if found is None:
                raise errors.ApiError(
                    404, "NotFound", "the server could not find the requested resource"
                )
            return found
        return None

    def _target(self, group: str, version: str, rest: list[str]) -> _Target:
        namespace = ""
        if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NAMESPACE_SUBRESOURCES:
            namespace, rest = rest[1], rest[2:]
        if not rest or len(rest) > 3:
            raise errors.ApiError(
                404, "NotFound", "the server could not find the requested resource"
            )
        rtype = self.registry.lookup(group, version, rest[0])
        if rtype is None or (namespace and not rtype.namespaced):
            raise errors.ApiError(
                404, "NotFound", "the server could not find the requested resource"
            )
        name = rest[1] if len(rest) > 1 else ""
        subresource = rest[2] if len(rest) > 2 else ""
        allowed = {"status": rtype.has_status, "scale": rtype.kind in scale.SCALABLE_KINDS}
        if subresource and not allowed.get(subresource):
            raise errors.ApiError(
                404, "NotFound", "the server could not find the requested resource"
            )
        if name and rtype.namespaced and not namespace:
            raise errors.ApiError(
                404, "NotFound", "the server could not find the requested resource"
            )
        return _Target(rtype, namespace, name, subresource)

    async def _dispatch(self, request: web.Request, target: _Target) -> web.StreamResponse:
        method = request.method
        query = request.query
        if not target.name:
            verbs = {"GET": "list", "POST": "create", "DELETE": "deletecollection"}
            verb = verbs.get(method)
            if verb == "list" and query.get("watch", "").lower() in _TRUE:
                verb = "watch"
        else:
            verbs = {"GET": "get", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
            verb = verbs.get(method)
            if verb == "get" and query.get("watch", "").lower() in _TRUE:
                verb = "watch"
        if verb is None:
            raise errors.method_not_allowed(f"the server does not allow this method ({method})")
        rtype = target.rtype
        user = rbac.user_from_token(request.headers.get("Authorization", ""))
        asked = (verb, rtype.group, rtype.plural, target.subresource, target.namespace)
        self.requests.append(ApiRequest(*asked, target.name, user.name))
        if self.authorize and not self._policy().allows(user, *asked, target.name):
            raise errors.ApiError(
                403,
                "Forbidden",
                rbac.forbidden_message(user, *asked, target.name),
                {"name": target.name, "group": rtype.group, "kind": rtype.plural},
            )
        if target.subresource == "scale":
            return await self._scale(request, target, verb)
        if verb == "watch":
            return await self._watch(request, target)
        if verb == "list":
            return self._list(request, target)
        if verb == "get":
            obj = self._get(target)
            return self._respond(request, target.rtype, obj)
        if verb == "create":
            body = await self._body(request)
            return self._respond(request, rtype, self._create(target, body, query), 201)
        if verb == "update":
            body = await self._body(request)
            return self._respond(request, rtype, self._update(target, body, query))
        if verb == "patch":
            return self._respond(request, rtype, await self._patch(request, target))
        if verb == "delete":
            return _json(self._delete(target, await self._optional_body(request)))
        return _json(self._delete_collection(request, target))

    async def _scale(self, request: web.Request, target: _Target, verb: str) -> web.Response:
        rtype = target.rtype
        current = self._get(target)
        if verb == "get":
            return _json(scale.to_scale(current))
        if verb not in ("update", "patch"):
            raise errors.method_not_allowed(f"{verb} is not allowed on scale")
        body = await self._body(request)
        if verb == "patch":
            body = self._patched(request.content_type, rtype, scale.to_scale(current), body)
        if not isinstance(body, dict):
            raise errors.bad_request("the body must be a Scale object")
        new = objects.prepare_update(rtype, current, scale.with_replicas(current, body), "")
        return _json(scale.to_scale(self._store_update(rtype, current, new, request.query)))

    # -- reads -------------------------------------------------------------------------

    def _respond(
        self, request: web.Request, rtype: ResourceType, obj: Obj, status: int = 200
    ) -> web.Response:
        obj = self._versioned(rtype, obj)
        if _wants_table(request):
            include = request.query.get("includeObject", "Metadata")
            rv = str(obj["metadata"].get("resourceVersion", ""))
            return _json(table.to_table(rtype, [obj], self._clock(), rv, include), status)
        return _json(obj, status)

    @staticmethod
    def _versioned(rtype: ResourceType, obj: Obj) -> Obj:
        # Every served version of a custom resource has the same schema (conversion None).
        # A shallow copy: `obj` may be the stored object itself.
        return {**obj, "apiVersion": rtype.group_version, "kind": rtype.kind}

    def _get(self, target: _Target) -> Obj:
        rtype = target.rtype
        obj = self.store.get(rtype.group, rtype.plural, target.namespace, target.name)
        if obj is None:
            raise errors.not_found(rtype.group, rtype.plural, target.name)
        return obj

    def _matcher(self, request: web.Request, rtype: ResourceType) -> Callable[[Obj], bool]:
        labels = label_matcher(request.query.get("labelSelector", ""))
        selectable = rtype.extra.get("selectableFields")
        if selectable is None:
            selectable = SELECTABLE_FIELDS.get((rtype.group, rtype.kind), frozenset())
        fields = field_matcher(request.query.get("fieldSelector", ""), selectable)
        return lambda obj: labels(obj) and fields(obj)

    def _list(self, request: web.Request, target: _Target) -> web.Response:
        rtype = target.rtype
        rv_param = request.query.get("resourceVersion", "")
        if rv_param not in ("", "0"):
            parse_resource_version(rv_param)
        matches = self._matcher(request, target.rtype)
        namespace = target.namespace or None
        items = [
            self._versioned(rtype, o)
            for o in self.store.list(rtype.group, rtype.plural, namespace, copies=False)
            if matches(o)
        ]
        revision = str(self.store.revision)
        meta: Obj = {"resourceVersion": revision}
        items, cont, remaining = self._paginate(request, items, revision)
        if cont:
            meta["continue"] = cont
            meta["remainingItemCount"] = remaining
        if _wants_table(request):
            include = request.query.get("includeObject", "Metadata")
            result = table.to_table(rtype, items, self._clock(), revision, include)
            result["metadata"].update(meta)
            return _json(result)
        return _json(
            {
                "kind": rtype.list_kind,
                "apiVersion": rtype.group_version,
                "metadata": meta,
                "items": items,
            }
        )

    @staticmethod
    def _paginate(
        request: web.Request, items: list[Obj], revision: str
    ) -> tuple[list[Obj], str, int]:
        start = 0
        token = request.query.get("continue", "")
        if token:
            try:
                state = json.loads(base64.urlsafe_b64decode(token.encode()))
                start = int(state["start"])
            except (ValueError, KeyError, TypeError):
                raise errors.bad_request("invalid continue token") from None
        limit = int(request.query.get("limit", "0") or 0)
        if limit <= 0:
            return items[start:], "", 0
        page = items[start : start + limit]
        rest = len(items) - start - len(page)
        if rest <= 0:
            return page, "", 0
        state = {"rv": revision, "start": start + limit}
        cont = base64.urlsafe_b64encode(json.dumps(state).encode()).decode()
        return page, cont, rest

    # -- watch -------------------------------------------------------------------------

    async def _watch(self, request: web.Request, target: _Target) -> web.StreamResponse:
        rtype = target.rtype
        query = request.query
        matches = self._matcher(request, target.rtype)
        if target.name:
            # The older form of a one-object watch: a name in the path.
            matches = _and_named(target.name, matches)
        bookmarks = query.get("allowWatchBookmarks", "").lower() in _TRUE
        as_table = _wants_table(request)
        include = query.get("includeObject", "Metadata")
        timeout = float(query.get("timeoutSeconds", "0") or 0) or 1800.0
        rv_param = query.get("resourceVersion", "")
        send_initial = query.get("sendInitialEvents", "").lower() in _TRUE
        namespace = target.namespace or None

        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        headers = [True]

        async def send(kind: str, obj: Obj) -> None:
            if kind not in ("ERROR", "BOOKMARK"):
                obj = self._versioned(rtype, obj)
                if as_table:
                    rv = str(obj["metadata"].get("resourceVersion", ""))
                    obj = table.to_table(rtype, [obj], self._clock(), rv, include, headers[0])
                    headers[0] = False
            line = json.dumps({"type": kind, "object": obj}, separators=(",", ":")) + "\n"
            await response.write(line.encode())

        def bookmark(revision: int, initial_end: bool = False) -> Obj:
            meta: Obj = {"resourceVersion": str(revision)}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return {"kind": rtype.kind, "apiVersion": rtype.group_version, "metadata": meta}

        # A malformed resourceVersion is a plain 400; anything after it an ERROR event.
        start = None if rv_param in ("", "0") else parse_resource_version(rv_param)
        await response.prepare(request)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        stopping = self._stopping
        try:
            if start is None or send_initial:
                cursor = self.store.revision
                for obj in self.store.list(rtype.group, rtype.plural, namespace, copies=False):
                    if matches(obj):
                        await send("ADDED", obj)
                if send_initial and bookmarks:
                    await send("BOOKMARK", bookmark(cursor, initial_end=True))
            else:
                cursor = start
            last_bookmark = loop.time()
            while not stopping.is_set():
                changed = self._changed
                try:
                    events = self.store.events_after(rtype.group, rtype.plural, cursor, namespace)
                except errors.ApiError as err:
                    await send("ERROR", err.status())
                    break
                for event in events:
                    kind = self._filtered(event, matches)
                    if kind is not None:
                        obj = (
                            event.previous if kind == "DELETED" and event.previous else event.object
                        )
                        if kind == "DELETED":
                            obj = clone(obj)
                            obj["metadata"]["resourceVersion"] = str(event.revision)
                        await send(kind, obj)
                    cursor = event.revision
                now = loop.time()
                if now >= deadline:
                    break
                if bookmarks and now - last_bookmark >= self.bookmark_interval:
                    # A bookmark may move past other resources' changes, never past one of
                    # this watch's that is not sent yet (checked with no await between).
                    if not self.store.events_after(rtype.group, rtype.plural, cursor, namespace):
                        cursor = self.store.revision
                    await send("BOOKMARK", bookmark(cursor))
                    last_bookmark = now
                wait = deadline - now
                if bookmarks:
                    wait = min(wait, max(0.0, last_bookmark + self.bookmark_interval - now))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), timeout=max(wait, 0.001))
        except errors.ApiError as err:
            # History compacted between two looks: the same answer as at the top.
            with contextlib.suppress(ConnectionResetError):
                await send("ERROR", err.status())
        except ConnectionResetError:
            return response
        with contextlib.suppress(ConnectionResetError):
            await response.write_eof()
        return response

    @staticmethod
    def _filtered(event: WatchEvent, matches: Callable[[Obj], bool]) -> str | None:
        """The event a selector-filtered watch reports: an object leaving the selection
        is DELETED for it, one entering it ADDED, as kube-apiserver's watch cache does."""
        now = matches(event.object)
        if event.type != "MODIFIED":
            return event.type if now else None
        before = event.previous is not None and matches(event.previous)
        if now and before:
            return "MODIFIED"
        if now:
            return "ADDED"
        if before:
            return "DELETED"
        return None

    # -- writes ------------------------------------------------------------------------

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        ctype = request.content_type
        if "protobuf" in ctype or "cbor" in ctype:
            return protobuf.decode(raw, ctype)
        try:
            if ctype.endswith("yaml"):
                return yaml.load(raw, Loader=_JsonTypesLoader)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise errors.bad_request(f"the request body does not parse: {exc}") from None

    async def _optional_body(self, request: web.Request) -> Obj:
        if not request.can_read_body:
            return {}
        raw = await request.read()
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError:
            raise errors.bad_request("the DeleteOptions body does not parse") from None
        return body if isinstance(body, dict) else {}

    @staticmethod
    def _dry_run(query: Any) -> bool:
        return bool(query.get("dryRun"))

    def _check_namespace(self, rtype: ResourceType, namespace: str) -> None:
        if not rtype.namespaced:
            return
        found = self.store.get("", "namespaces", "", namespace)
        if found is None:
            raise errors.not_found("", "namespaces", namespace)
        if found["metadata"].get("deletionTimestamp"):
            raise errors.ApiError(
                403,
                "Forbidden",
                f"{rtype.plural} is forbidden: unable to create new content in namespace "
                f"{namespace} because it is being terminated",
            )

    def _create(self, target: _Target, body: Any, query: Any) -> Obj:
        rtype = target.rtype
        if not isinstance(body, dict):
            raise errors.bad_request("the body must be a JSON object")
        body_kind = body.get("kind")
        if body_kind and body_kind != rtype.kind:
            raise errors.bad_request(f"the kind {body_kind} does not match {rtype.kind}")
        obj = self._structural(
            rtype, objects.prepare_create(rtype, body, target.namespace, self._clock())
        )
        namespace = str(obj["metadata"].get("namespace", ""))
        self._check_namespace(rtype, namespace)
        self._validate(rtype, obj)
        if rtype.group == "" and rtype.kind == "Service":
            services.default_service(obj, self.allocations)
        if self._dry_run(query):
            if self.store.get(rtype.group, rtype.plural, namespace, obj["metadata"]["name"]):
                raise errors.already_exists(rtype.group, rtype.plural, obj["metadata"]["name"])
            return obj
        stored = self.store.create(rtype.group, rtype.plural, obj)
        self._after_write(rtype, stored)
        return stored

    def _validate(self, rtype: ResourceType, obj: Obj) -> None:
        validation.validate_metadata(rtype, obj)
        if (rtype.group, rtype.plural) == _CRD_GROUP_RESOURCE:
            spec = obj.get("spec") or {}
            names = spec.get("names") or {}
            expected = f"{names.get('plural')}.{spec.get('group')}"
            if obj["metadata"]["name"] != expected:
                raise errors.invalid(
                    rtype.group,
                    rtype.kind,
                    obj["metadata"]["name"],
                    f'metadata.name: Invalid value: must be spec.names.plural+"."+spec.group '
                    f"({expected})",
                )

    @staticmethod
    def _structural(rtype: ResourceType, obj: Obj) -> Obj:
        schema = rtype.extra.get("schema")
        return crd_schema.apply_schema(schema, obj) if isinstance(schema, dict) else obj

    def _store_update(self, rtype: ResourceType, old: Obj, new: Obj, query: Any) -> Obj:
        """Write `new` unless it equals `old`: a no-op keeps the resourceVersion."""
        if rtype.group == "" and rtype.kind == "Service":
            services.default_service(new, self.allocations, old)
        expected = str(new["metadata"].get("resourceVersion") or "")
        if expected and expected != old["metadata"]["resourceVersion"]:
            raise errors.conflict(rtype.group, rtype.plural, old["metadata"]["name"])
        new["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if new == old or self._dry_run(query):
            return new
        stored = self.store.update(rtype.group, rtype.plural, new)
        self._after_write(rtype, stored, old)
        return stored

    def _update(self, target: _Target, body: Any, query: Any) -> Obj:
        rtype = target.rtype
        old = self._get(target)
        if not isinstance(body, dict):
            raise errors.bad_request("the body must be a JSON object")
        new = objects.prepare_update(rtype, old, self._structural(rtype, body), target.subresource)
        self._validate(rtype, new)
        return self._store_update(rtype, old, new, query)

    async def _patch(self, request: web.Request, target: _Target) -> Obj:
        rtype = target.rtype
        ctype = request.content_type
        body = await self._body(request)
        current = self.store.get(rtype.group, rtype.plural, target.namespace, target.name)
        if ctype == "application/apply-patch+yaml":
            if not isinstance(body, dict):
                raise errors.bad_request("an apply configuration must be an object")
            if current is None:
                if target.subresource:
                    raise errors.not_found(rtype.group, rtype.plural, target.name)
                body.setdefault("metadata", {})["name"] = target.name
                return self._create(target, body, request.query)
            patched = patch.apply_configuration(rtype.kind, current, body, rtype.custom)
        else:
            if current is None:
                raise errors.not_found(rtype.group, rtype.plural, target.name)
            patched = self._patched(ctype, rtype, current, body)
        if not isinstance(patched, dict):
            raise errors.bad_request("the patch does not leave an object")
        new = objects.prepare_update(
            rtype, current, self._structural(rtype, patched), target.subresource
        )
        self._validate(rtype, new)
        return self._store_update(rtype, current, new, request.query)

    @staticmethod
    def _patched(ctype: str, rtype: ResourceType, current: Obj, body: Any) -> Any:
        if ctype == "application/merge-patch+json":
            return patch.merge_patch(current, body)
        if ctype == "application/json-patch+json":
            return patch.json_patch(current, body)
        if ctype == "application/strategic-merge-patch+json" and not rtype.custom:
            return patch.strategic_merge_patch(rtype.kind, current, body)
        raise errors.unsupported_media_type(ctype)

    def _delete(self, target: _Target, options: Obj) -> Obj:
        rtype = target.rtype
        pre = options.get("preconditions") or {}
        if rtype.group == "" and rtype.plural == "namespaces":
            return self._terminate_namespace(target)
        gone = self.store.delete(
            rtype.group,
            rtype.plural,
            target.namespace,
            target.name,
            str(pre.get("resourceVersion") or ""),
            str(pre.get("uid") or ""),
        )
        self._after_delete(rtype, gone)
        if rtype.custom:
            return self._versioned(rtype, gone)
        return errors.success_status(
            rtype.group, rtype.plural, target.name, gone["metadata"]["uid"]
        )

    def _delete_collection(self, request: web.Request, target: _Target) -> Obj:
        rtype = target.rtype
        matches = self._matcher(request, target.rtype)
        items = []
        for obj in self.store.list(rtype.group, rtype.plural, target.namespace or None):
            if matches(obj):
                meta = obj["metadata"]
                gone = self.store.delete(
                    rtype.group, rtype.plural, str(meta.get("namespace") or ""), meta["name"]
                )
                self._after_delete(rtype, gone)
                items.append(self._versioned(rtype, gone))
        return {
            "kind": rtype.list_kind,
            "apiVersion": rtype.group_version,
            "metadata": {"resourceVersion": str(self.store.revision)},
            "items": items,
        }

    def _terminate_namespace(self, target: _Target) -> Obj:
        """A deleted namespace is Terminating first; its objects and then itself go soon
        after, as the namespace controller removes them (here after `namespace_cleanup`s)."""
        current = self._get(target)
        if current["metadata"].get("deletionTimestamp"):
            return current
        current["metadata"]["deletionTimestamp"] = objects.timestamp(self._clock())
        current["metadata"]["deletionGracePeriodSeconds"] = 0
        current.setdefault("status", {})["phase"] = "Terminating"
        stored = self.store.update("", "namespaces", current)
        self._notify()
        asyncio.get_running_loop().call_later(
            self.namespace_cleanup, self._remove_namespace, target.name, current["metadata"]["uid"]
        )
        return stored

    def _remove_namespace(self, name: str, uid: str) -> None:
        current = self.store.get("", "namespaces", "", name)
        if current is None or current["metadata"].get("uid") != uid:
            return
        self._delete_namespaced_objects(name)
        gone = self.store.delete("", "namespaces", "", name)
        ns_type = self.registry.lookup("", "v1", "namespaces")
        assert ns_type is not None
        self._after_delete(ns_type, gone)

    def _delete_namespaced_objects(self, namespace: str) -> None:
        for rtype in self.registry.all():
            if not rtype.namespaced or not rtype.storage:
                continue
            for obj in self.store.list(rtype.group, rtype.plural, namespace):
                gone = self.store.delete(
                    rtype.group, rtype.plural, namespace, obj["metadata"]["name"]
                )
                self._after_delete(rtype, gone)

    def _after_write(self, rtype: ResourceType, obj: Obj, old: Obj | None = None) -> None:
        if (rtype.group, rtype.plural) == ("", "services"):
            if old is not None:
                self.allocations.remove(old)
            self.allocations.add(obj)
        if (rtype.group, rtype.plural) == _CRD_GROUP_RESOURCE:
            self.registry.set_crd(obj["metadata"]["name"], types_from_crd(obj))
        self._notify()

    def _after_delete(self, rtype: ResourceType, obj: Obj) -> None:
        if (rtype.group, rtype.plural) == ("", "services"):
            self.allocations.remove(obj)
        if (rtype.group, rtype.plural) == _CRD_GROUP_RESOURCE:
            # Deleting a CRD deletes its objects, then stops serving the kind.
            for ctype in types_from_crd(obj):
                if not ctype.storage:
                    continue
                for item in self.store.list(ctype.group, ctype.plural):
                    meta = item["metadata"]
                    self.store.delete(
                        ctype.group, ctype.plural, str(meta.get("namespace") or ""), meta["name"]
                    )
            self.registry.remove_crd(obj["metadata"]["name"])
        self._notify()
