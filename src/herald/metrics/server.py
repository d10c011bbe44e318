"""The /metrics endpoint: a small HTTP/1.1 server on the process's own event loop.

The agent's loop runs BGP and BFD timers, so a scrape must cost it little and a flood of
scrapes no more than one: every request in flight waits for the same exposition, and an
exposition younger than `min_interval` is served again rather than recomputed. A client
that sends nothing, sends too much, or does not read is dropped after a timeout, and at most
`MAX_CLIENTS` are served at once (the others are closed at once): neither costs the loop more
than a socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable

from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

log = logging.getLogger(__name__)

MAX_CLIENTS = 16
HEAD_LIMIT = 8192  # bytes of request line and headers
READ_TIMEOUT = 2.0
WRITE_TIMEOUT = 5.0
# Seconds an exposition is served again before it is recomputed: a flood of scrapes costs
# at most one reading per interval (~0.2-0.3 s of CPU at 1,000 Services of 10 backends).
MIN_INTERVAL = 5.0

Produce = Callable[[], Awaitable[bytes]]


def parse_address(text: str) -> tuple[str, int]:
    """`HOST:PORT`, `[IPv6]:PORT` or `:PORT` (every address) -> (host, port); port 0
    picks a free one."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError(f"{text!r}: expected HOST:PORT, [IPv6]:PORT or :PORT (port 0-65535)")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError as err:
            raise ValueError(f"{text!r}: not an IPv6 address in brackets: {err}") from err
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 address in brackets, [{host}]:{port_text}")
    return host or "::", int(port_text)


class Exposition:
    """One exposition shared by every request that comes while it is made, and reused for
    `min_interval` seconds after."""

    def __init__(
        self,
        produce: Produce,
        min_interval: float = MIN_INTERVAL,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._produce = produce
        self._min_interval = min_interval
        self._clock = clock
        self._task: asyncio.Future[bytes] | None = None
        self._body: bytes | None = None
        self._at = 0.0
        self.produced = 0  # expositions made (what a flood would multiply)

    async def get(self) -> bytes:
        if self._task is None:
            if self._body is not None and self._clock() - self._at < self._min_interval:
                return self._body
            self._task = asyncio.ensure_future(self._refresh())
            self._task.add_done_callback(self._finished)
        # A client that hangs up cancels its wait, never the exposition the others await.
        return await asyncio.shield(self._task)

    async def _refresh(self) -> bytes:
        body = await self._produce()
        self._body, self._at = body, self._clock()
        self.produced += 1
        return body

    def _finished(self, task: asyncio.Future[bytes]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.error("event=metrics_failed error=%r", task.exception())


class MetricsServer:
    def __init__(self, exposition: Exposition) -> None:
        self.exposition = exposition
        self.clients = 0
        self.refused = 0
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        self._server = await asyncio.start_server(
            self._handle, host, port, limit=HEAD_LIMIT, reuse_address=True
        )
        log.info("event=metrics_listening address=%s", self.address)

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None, "start() first"
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.clients >= MAX_CLIENTS:
            self.refused += 1
            writer.close()
            return
        self.clients += 1
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT)
            status, body, content_type = await self._answer(head)
            writer.write(_response(status, body, content_type))
            await asyncio.wait_for(writer.drain(), WRITE_TIMEOUT)
        except (
            TimeoutError,
            ConnectionError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
        ):
            pass  # the client's loss: nothing to answer, or nobody to answer to
        finally:
            self.clients -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(writer.wait_closed(), WRITE_TIMEOUT)

    async def _answer(self, head: bytes) -> tuple[str, bytes, str]:
        text = "text/plain; charset=utf-8"
        parts = head.split(b"\r\n", 1)[0].split()
        if len(parts) != 3 or not parts[2].startswith(b"HTTP/"):
            return "400 Bad Request", b"bad request line\n", text
        method, target = parts[0], parts[1].split(b"?", 1)[0]
        if method != b"GET":
            return "405 Method Not Allowed", b"only GET\n", text
        if target != b"/metrics":
            return "404 Not Found", b"metrics are at /metrics\n", text
        try:
            return "200 OK", await self.exposition.get(), CONTENT_TYPE_PLAIN_0_0_4
        except Exception as err:  # a failed reading costs this scrape, not the process
            return "500 Internal Server Error", f"metrics failed: {err!r}\n".encode(), text


def _response(status: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


async def serve_metrics(
    address: str, produce: Produce, min_interval: float = MIN_INTERVAL
) -> MetricsServer:
    """Serve `produce`'s exposition at http://ADDRESS/metrics."""
    server = MetricsServer(Exposition(produce, min_interval))
    await server.start(*parse_address(address))
    return server


async def serve_metrics_if_asked(address: str | None, produce: Produce) -> MetricsServer | None:
    """The endpoint when an address is given. One that cannot be bound (in use, not this
    machine's) costs the metrics only: it is logged, and the process runs on without."""
    if address is None:
        return None
    try:
        return await serve_metrics(address, produce)
    except OSError as err:
        log.error(
            "event=metrics_unavailable address=%s error=%r fix='free the port or choose "
            "another --metrics-address'",
            address,
            str(err),
        )
        return None
