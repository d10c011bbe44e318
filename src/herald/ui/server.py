"""The web view's server (aiohttp): the page, its model, the flows, and one server-sent
event stream that carries all three as they change.

Read-only by construction: every route is registered for GET (and HEAD) only, and a
middleware answers any other method with 405 before routing, so no path, known or not,
accepts a write. The page and its script come from this package (no CDN), and the
Content-Security-Policy forbids anything else.

Routes:
  /                 the page          /static/...   its script and style
  /api/model        the cluster model (gather.cluster_model)
  /api/flows        the last flow events; `herald observe`'s filters as query parameters
  /api/stream       server-sent events: `model` (every refresh), `edges` (every second),
                    `flows` (batches of new events matching the stream's filters)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web

from herald.cli.observe import read_stream
from herald.observe.event import FlowEvent
from herald.observe.filter import FlowFilter
from herald.observe.reader import ObserveRequest
from herald.ui.flows import FlowStats, filter_from_query
from herald.ui.gather import Json, OwnerHistory, Read, Sources, cluster_model, read_sources

log = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
READ_METHODS = frozenset({"GET", "HEAD"})
HISTORY = 200  # events an agent is asked for when the view connects to it
FLUSH_INTERVAL = 0.25  # how often new flows are sent to the page
EDGES_INTERVAL = 1.0
QUEUE_SIZE = 256  # messages a slow page may fall behind before it loses some
FLOWS_LIMIT = 2000
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)


class Subscriber:
    """One open event stream: its filter and what is queued for it."""

    def __init__(self, flow_filter: FlowFilter) -> None:
        self.filter = flow_filter
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue(QUEUE_SIZE)
        self.dropped = 0

    def put(self, kind: str, data: Any) -> None:
        try:
            self.queue.put_nowait((kind, data))
        except asyncio.QueueFull:
            self.dropped += 1  # told to the page with the next message that fits


class View:
    """The state behind the page: the last model, the flow counts, the open streams."""

    def __init__(
        self,
        sources: Sources,
        interval: float = 2.0,
        read: Callable[[Sources], Read] = read_sources,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.sources = sources
        self.interval = interval
        self.stats = FlowStats(keep=FLOWS_LIMIT)
        self.history = OwnerHistory()
        self.model: Json = {}
        self.subscribers: set[Subscriber] = set()
        self._read = read
        self._clock = clock
        self._pending: list[FlowEvent] = []
        self._followed: dict[Path, asyncio.Task[None]] = {}
        self._seen: dict[str, float] = {}  # newest event time per node (reconnects replay)
        self._tasks: list[asyncio.Task[None]] = []
        self._refreshed = asyncio.Event()

    # -- the loops ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.refresh()
        for loop in (self._refresh_loop, self._follow_loop, self._flush_loop):
            self._tasks.append(asyncio.create_task(loop()))

    async def stop(self) -> None:
        tasks = [*self._tasks, *self._followed.values()]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)

    async def refresh(self) -> None:
        read = await asyncio.to_thread(self._read, self.sources)
        now = self._clock()
        self.model = cluster_model(read, self.stats.snapshot(now), self.history, now)
        self._publish("model", self.model)

    async def _refresh_loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.refresh()
            except Exception:
                # One bad read costs that refresh; the page keeps the last model.
                log.exception("event=ui_refresh_failed")

    async def _follow_loop(self) -> None:
        """A follower per agent socket; one that ends (the agent died) is started again
        when its socket answers again."""
        while True:
            for path in sorted(self.sources.status_dir.glob("*.sock")):
                task = self._followed.get(path)
                if task is None or task.done():
                    self._followed[path] = asyncio.create_task(self._follow(path))
            await asyncio.sleep(self.interval)

    async def _follow(self, path: Path) -> None:
        # A reconnection replays the agent's last events: those already taken are skipped.
        horizon = self._seen.get(path.stem, float("-inf"))

        def take(event: FlowEvent) -> None:
            if event.time > horizon:
                self.take(event)

        await read_stream(path, ObserveRequest(last=HISTORY, follow=True), on_event=take)

    def take(self, event: FlowEvent) -> None:
        self._seen[event.node] = max(event.time, self._seen.get(event.node, event.time))
        self.stats.add(event)
        self._pending.append(event)

    async def _flush_loop(self) -> None:
        next_edges = 0.0
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            self.flush()
            now = self._clock()
            if now >= next_edges:
                next_edges = now + EDGES_INTERVAL
                self._publish("edges", self.stats.snapshot(now))

    def flush(self) -> None:
        pending, self._pending = self._pending, []
        if not pending:
            return
        for sub in self.subscribers:
            matching = [e.to_json() for e in pending if sub.filter.matches(e)]
            if matching:
                sub.put("flows", matching)

    def _publish(self, kind: str, data: Any) -> None:
        for sub in self.subscribers:
            sub.put(kind, data)

    # -- the routes --------------------------------------------------------------------

    async def index(self, _: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / "index.html")

    async def model_json(self, _: web.Request) -> web.Response:
        return web.json_response(self.model)

    async def flows_json(self, request: web.Request) -> web.Response:
        flow_filter, last = _flow_query(request)
        events = self.stats.last(flow_filter, last)
        return web.json_response({"flows": [e.to_json() for e in events]})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        flow_filter, last = _flow_query(request)
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        sub = Subscriber(flow_filter)
        sub.put("model", self.model)
        sub.put("edges", self.stats.snapshot(self._clock()))
        sub.put("flows", [e.to_json() for e in self.stats.last(flow_filter, last)])
        self.subscribers.add(sub)
        try:
            while True:
                try:
                    kind, data = await asyncio.wait_for(sub.queue.get(), 15)
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")
                    continue
                if sub.dropped:
                    await response.write(_event("lost", {"messages": sub.dropped}))
                    sub.dropped = 0
                await response.write(_event(kind, data))
        except ConnectionError:
            pass  # the page went away
        finally:
            self.subscribers.discard(sub)
        return response


def _event(kind: str, data: Any) -> bytes:
    return f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _flow_query(request: web.Request) -> tuple[FlowFilter, int]:
    try:
        flow_filter = filter_from_query(request.query, request.query.getall)
        last = int(request.query.get("last", "200"))
    except ValueError as err:
        raise web.HTTPBadRequest(text=str(err)) from None
    return flow_filter, max(0, min(last, FLOWS_LIMIT))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def read_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.method not in READ_METHODS:
        raise web.HTTPMethodNotAllowed(request.method, sorted(READ_METHODS))
    response = await handler(request)
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response


LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})


def loopback_host_only(loopback: bool) -> Callable[..., Awaitable[web.StreamResponse]]:
    """Served on loopback, a request must name a loopback host: a web page elsewhere that
    rebinds its own name to 127.0.0.1 (DNS rebinding) would otherwise read the cluster's
    model through the visitor's browser."""

    @web.middleware
    async def check(request: web.Request, handler: Handler) -> web.StreamResponse:
        if loopback and (request.url.host or "").strip("[]") not in LOOPBACK_NAMES:
            raise web.HTTPMisdirectedRequest(text="this server answers loopback names only")
        return await handler(request)

    return check


def make_app(view: View, loopback: bool = True) -> web.Application:
    app = web.Application(middlewares=[read_only, loopback_host_only(loopback)])
    app.router.add_get("/", view.index)
    app.router.add_get("/api/model", view.model_json)
    app.router.add_get("/api/flows", view.flows_json)
    app.router.add_get("/api/stream", view.stream)
    app.router.add_static("/static/", STATIC)

    async def lifecycle(_: web.Application) -> Any:
        await view.start()
        yield
        await view.stop()

    app.cleanup_ctx.append(lifecycle)
    return app


ROUTES = ("/", "/api/model", "/api/flows", "/api/stream", "/static/app.js")


def parse_listen(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[V6]:PORT` or `PORT` (loopback)."""
    host, _, port = text.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"{text!r}: expected HOST:PORT")
    ipaddress.ip_address(host)  # an address, not a name: what is bound is what is said
    return host, int(port)


def is_loopback(host: str) -> bool:
    return ipaddress.ip_address(host).is_loopback


async def serve(view: View, host: str, port: int) -> tuple[web.AppRunner, int]:
    """Start serving; the port actually bound (for port 0)."""
    runner = web.AppRunner(make_app(view, is_loopback(host)), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    return runner, int(runner.addresses[0][1])
