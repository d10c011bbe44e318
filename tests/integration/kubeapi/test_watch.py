"""List and watch over a plain async HTTP client (aiohttp): the protocol clients build on."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp

from herald.lab.kubeapi import KubeApiServer

SERVICES = "/api/v1/namespaces/default/services"
MERGE = {"Content-Type": "application/merge-patch+json"}
Event = dict[str, Any]


def service(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]},
    }


async def events(response: aiohttp.ClientResponse) -> AsyncIterator[Event]:
    async for line in response.content:
        if line.strip():
            yield json.loads(line)


async def next_event(stream: AsyncIterator[Event]) -> Event:
    return await asyncio.wait_for(anext(stream), timeout=10)


def run(
    scenario: Callable[[KubeApiServer, aiohttp.ClientSession], Awaitable[None]], **kw: Any
) -> None:
    async def main() -> None:
        async with KubeApiServer(**kw) as server, aiohttp.ClientSession(server.url) as http:
            await scenario(server, http)

    asyncio.run(main())


async def create(http: aiohttp.ClientSession, obj: dict[str, Any]) -> dict[str, Any]:
    async with http.post(SERVICES, json=obj) as response:
        assert response.status == 201, await response.text()
        return await response.json()  # type: ignore[no-any-return]


async def label(http: aiohttp.ClientSession, name: str, value: str) -> dict[str, Any]:
    body = json.dumps({"metadata": {"labels": {"v": value}}})
    async with http.patch(f"{SERVICES}/{name}", data=body, headers=MERGE) as response:
        assert response.status == 200, await response.text()
        return await response.json()  # type: ignore[no-any-return]


def test_watch_from_a_listed_version_sees_every_later_change() -> None:
    async def scenario(server: KubeApiServer, http: aiohttp.ClientSession) -> None:
        await create(http, service("a"))
        async with http.get(SERVICES) as response:
            listed = await response.json()
        assert listed["kind"] == "ServiceList"
        assert [i["metadata"]["name"] for i in listed["items"]] == ["a", "kubernetes"]
        rv = listed["metadata"]["resourceVersion"]
        params = {"watch": "1", "resourceVersion": rv}
        async with http.get(SERVICES, params=params, timeout=aiohttp.ClientTimeout(total=30)) as w:
            stream = events(w)
            created = await create(http, service("b"))
            modified = await label(http, "a", "1")
            async with http.delete(f"{SERVICES}/b") as response:
                assert response.status == 200
            seen = [await next_event(stream) for _ in range(3)]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in seen] == [
            ("ADDED", "b"),
            ("MODIFIED", "a"),
            ("DELETED", "b"),
        ]
        assert (
            seen[0]["object"]["metadata"]["resourceVersion"]
            == created["metadata"]["resourceVersion"]
        )
        assert (
            seen[1]["object"]["metadata"]["resourceVersion"]
            == modified["metadata"]["resourceVersion"]
        )
        versions = [int(e["object"]["metadata"]["resourceVersion"]) for e in seen]
        assert versions == sorted(versions) and int(rv) < versions[0]

    run(scenario)


def test_watch_without_a_version_starts_with_the_current_objects_and_bookmarks() -> None:
    async def scenario(server: KubeApiServer, http: aiohttp.ClientSession) -> None:
        await create(http, service("a"))
        params = {"watch": "true", "allowWatchBookmarks": "true", "labelSelector": "app=x"}
        await create(http, service("b", {"app": "x"}))
        async with http.get(SERVICES, params=params) as w:
            stream = events(w)
            first = await next_event(stream)
            assert (first["type"], first["object"]["metadata"]["name"]) == ("ADDED", "b")
            bookmark = await next_event(stream)
        assert bookmark["type"] == "BOOKMARK"
        assert bookmark["object"]["kind"] == "Service"
        assert int(bookmark["object"]["metadata"]["resourceVersion"]) >= int(
            first["object"]["metadata"]["resourceVersion"]
        )

    run(scenario, bookmark_interval=0.2)


def test_a_label_selector_watch_sees_objects_enter_and_leave_it() -> None:
    async def scenario(server: KubeApiServer, http: aiohttp.ClientSession) -> None:
        await create(http, service("a"))
        params = {
            "watch": "1",
            "resourceVersion": str(server.store.revision),
            "labelSelector": "v=1",
        }
        async with http.get(SERVICES, params=params) as w:
            stream = events(w)
            await label(http, "a", "1")
            await label(http, "a", "2")
            seen = [await next_event(stream) for _ in range(2)]
        assert [e["type"] for e in seen] == ["ADDED", "DELETED"]

    run(scenario)


def test_a_watch_from_a_compacted_version_gets_410_expired() -> None:
    async def scenario(server: KubeApiServer, http: aiohttp.ClientSession) -> None:
        old = (await create(http, service("a")))["metadata"]["resourceVersion"]
        await label(http, "a", "1")
        server.compact()
        params = {"watch": "1", "resourceVersion": old}
        async with http.get(SERVICES, params=params) as w:
            assert w.status == 200
            stream = events(w)
            error = await next_event(stream)
            # The server ends the stream after the error.
            rest = [e async for e in stream]
        assert error["type"] == "ERROR"
        assert (error["object"]["kind"], error["object"]["code"]) == ("Status", 410)
        assert error["object"]["reason"] == "Expired"
        assert rest == []
        # The cure, a fresh list, gives a version a watch can start from.
        async with http.get(SERVICES) as response:
            rv = (await response.json())["metadata"]["resourceVersion"]
        async with http.get(SERVICES, params={"watch": "1", "resourceVersion": rv}) as w:
            stream = events(w)
            await label(http, "a", "2")
            assert (await next_event(stream))["type"] == "MODIFIED"

    run(scenario)


def test_history_beyond_its_window_is_compacted() -> None:
    async def scenario(server: KubeApiServer, http: aiohttp.ClientSession) -> None:
        first = (await create(http, service("a")))["metadata"]["resourceVersion"]
        for i in range(5):
            await label(http, "a", str(i))
        params = {"watch": "1", "resourceVersion": first}
        async with http.get(SERVICES, params=params) as w:
            error = await next_event(events(w))
        assert error["object"]["code"] == 410

    run(scenario, history_limit=3)


def test_a_restart_mid_watch_ends_the_stream_and_a_rewatch_loses_nothing() -> None:
    async def scenario(server: KubeApiServer, http: aiohttp.ClientSession) -> None:
        await create(http, service("a"))
        params = {"watch": "1", "resourceVersion": str(server.store.revision)}
        async with http.get(SERVICES, params=params) as w:
            stream = events(w)
            last = (await label(http, "a", "1"))["metadata"]["resourceVersion"]
            assert (await next_event(stream))["object"]["metadata"]["resourceVersion"] == last
            await server.restart(keep_state=True)
            # The client sees its stream end...
            assert [e async for e in stream] == []
        # ...a change lands before it reconnects...
        async with aiohttp.ClientSession(server.url) as again:
            await label(again, "a", "2")
            # ...and a watch from its last resourceVersion delivers that change.
            params = {"watch": "1", "resourceVersion": last}
            async with again.get(SERVICES, params=params) as w:
                missed = await next_event(events(w))
        assert missed["type"] == "MODIFIED"
        assert missed["object"]["metadata"]["labels"] == {"v": "2"}

    run(scenario)


def test_a_restart_without_state_forgets_everything() -> None:
    async def scenario(server: KubeApiServer, http: aiohttp.ClientSession) -> None:
        await create(http, service("a"))
        await server.restart(keep_state=False)
        async with aiohttp.ClientSession(server.url) as again, again.get(f"{SERVICES}/a") as got:
            assert got.status == 404
            assert (await got.json())["reason"] == "NotFound"

    run(scenario)


def test_requests_are_recorded_as_rbac_sees_them() -> None:
    async def scenario(server: KubeApiServer, http: aiohttp.ClientSession) -> None:
        server.clear_requests()
        await create(http, service("a"))
        status = json.dumps({"status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}}})
        async with http.patch(f"{SERVICES}/a/status", data=status, headers=MERGE) as response:
            assert response.status == 200
        async with http.get("/api/v1/services", params={"watch": "1", "timeoutSeconds": "1"}) as w:
            await w.read()
        async with http.get("/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x") as r:
            assert r.status == 404
        seen = [(r.verb, r.group, r.resource, r.subresource, r.namespace) for r in server.requests]
        assert seen == [
            ("create", "", "services", "", "default"),
            ("patch", "", "services", "status", "default"),
            ("watch", "", "services", "", ""),
            ("get", "coordination.k8s.io", "leases", "", "kube-system"),
        ]

    run(scenario)


def test_send_initial_events_ends_them_with_a_marked_bookmark() -> None:
    async def scenario(server: KubeApiServer, http: aiohttp.ClientSession) -> None:
        await create(http, service("a"))
        params = {
            "watch": "1",
            "sendInitialEvents": "true",
            "allowWatchBookmarks": "true",
            "resourceVersionMatch": "NotOlderThan",
        }
        async with http.get(SERVICES, params=params) as w:
            stream = events(w)
            seen = [await next_event(stream) for _ in range(3)]
        assert [(e["type"], e["object"]["metadata"].get("name")) for e in seen] == [
            ("ADDED", "a"),
            ("ADDED", "kubernetes"),
            ("BOOKMARK", None),
        ]
        marker = seen[2]["object"]["metadata"]
        assert marker["annotations"] == {"k8s.io/initial-events-end": "true"}
        assert marker["resourceVersion"] == str(server.store.revision)

    run(scenario)


def test_pages_of_a_list_and_a_malformed_request() -> None:
    async def scenario(server: KubeApiServer, http: aiohttp.ClientSession) -> None:
        for name in ("a", "b", "c"):
            await create(http, service(name))
        names: list[str] = []
        params = {"limit": "2"}
        pages = 0
        while True:
            async with http.get(SERVICES, params=params) as response:
                page = await response.json()
            pages += 1
            names += [i["metadata"]["name"] for i in page["items"]]
            token = page["metadata"].get("continue")
            if not token:
                break
            assert page["metadata"]["remainingItemCount"] > 0
            params = {"limit": "2", "continue": token}
        assert (pages, names) == (2, ["a", "b", "c", "kubernetes"])
        async with http.get(SERVICES, params={"limit": "many"}) as response:
            assert response.status == 500
            assert (await response.json())["kind"] == "Status"
        async with http.get(SERVICES, params={"labelSelector": "a in b"}) as response:
            assert response.status == 400
        # The server still answers.
        async with http.get(f"{SERVICES}/a") as response:
            assert response.status == 200

    run(scenario)


def test_a_named_watch_sees_only_that_object() -> None:
    async def scenario(server: KubeApiServer, http: aiohttp.ClientSession) -> None:
        await create(http, service("a"))
        await create(http, service("b"))
        params = {"watch": "1", "resourceVersion": str(server.store.revision)}
        async with http.get(f"{SERVICES}/b", params=params) as w:
            stream = events(w)
            await label(http, "a", "1")
            await label(http, "b", "1")
            event = await next_event(stream)
        assert (event["type"], event["object"]["metadata"]["name"]) == ("MODIFIED", "b")

    run(scenario)


def test_bookmarks_never_skip_a_change_made_while_events_are_sent() -> None:
    """A slow reader makes the server wait while sending; changes made meanwhile must
    still come before any bookmark that claims to be past them."""

    async def scenario(server: KubeApiServer, http: aiohttp.ClientSession) -> None:
        big = "x" * 400_000  # dozens of these fill the socket buffers (lines < 512 KiB)
        await create(http, service("a"))
        params = {
            "watch": "1",
            "allowWatchBookmarks": "true",
            "resourceVersion": str(server.store.revision),
        }
        svc_type = server.registry.lookup("", "v1", "services")
        assert svc_type is not None

        def write(i: int) -> None:
            obj = server.store.get("", "services", "default", "a")
            assert obj is not None
            obj["metadata"]["annotations"] = {"big": big, "i": str(i)}
            server.store.update("", "services", obj)
            server._notify()

        async with http.get(SERVICES, params=params) as w:
            for i in range(60):
                write(i)
            await asyncio.sleep(0.2)  # the server is now blocked writing to a full socket
            for i in range(60, 80):
                write(i)
                await asyncio.sleep(0.01)
            seen: list[int] = []
            bookmarks: list[int] = []
            stream = events(w)

            async def collect() -> None:
                while len(seen) < 80:
                    event = await next_event(stream)
                    rv = int(event["object"]["metadata"]["resourceVersion"])
                    if event["type"] == "BOOKMARK":
                        bookmarks.append(rv)
                    else:
                        seen.append(int(event["object"]["metadata"]["annotations"]["i"]))
                        # No bookmark may have claimed a version this event comes after.
                        assert all(b < rv for b in bookmarks), (bookmarks, rv)

            # Bookmarks keep coming even when changes were lost: bound the wait.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(collect(), 20)
        assert seen == list(range(80))

    run(scenario, bookmark_interval=0.05)
