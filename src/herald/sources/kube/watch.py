"""List, then watch, one collection for as long as herald runs, into its KindCache.

The loop: list (the cache is replaced, deletions missed meanwhile included), then watch from
the list's resourceVersion with bookmarks, resuming from the last resourceVersion seen each
time a stream ends. A change made while no stream is open is delivered by the next one,
which starts from where the last left off. 410 Gone (the server no longer keeps that
history, as after its restart or a compaction) lists again at once (with back-off only when
410s follow each other with no event between them); any other failure (the
server unreachable, 5xx, a kind whose CRD is not installed yet) waits with exponential
back-off and jitter (`bgp.session.retry_delay`: 1 s doubling to 30 s, less up to a quarter)
and resumes from the same resourceVersion. Nothing here ends on an error: a watch that
stopped would freeze its kind silently.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable

import httpx2
from lightkube import ApiError, AsyncClient

from herald.bgp.session import retry_delay
from herald.sources.kube.cache import KindCache
from herald.sources.kube.client import OPENED, WATCH_SECONDS, Gone, list_objects, watch_events
from herald.sources.kube.kinds import Kind

log = logging.getLogger(__name__)

RETRY_MAX_SECONDS = 30.0
# A stream the server should have ended by now is ended here: a server that vanished
# without closing the connection must not freeze the kind.
STREAM_MARGIN_SECONDS = 30.0

# What a failed list or watch can raise besides Gone: the server's refusals and transport
# faults. Anything else is a bug and is raised.
FAILURES = (ApiError, httpx2.HTTPError, OSError, TimeoutError, ValueError)


class KindWatch:
    """Keeps `cache` equal to the server's collection; calls `changed()` after every change."""

    def __init__(
        self,
        client: AsyncClient,
        kind: Kind,
        namespace: str,
        cache: KindCache,
        changed: Callable[[], None],
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self.client = client
        self.kind = kind
        self.namespace = namespace
        self.cache = cache
        self.changed = changed
        self.jitter = jitter
        # Set once the first list is in the cache: a snapshot before that would lack it.
        self.synced = asyncio.Event()
        self.failures = 0
        self.relists = 0
        # 410s in a row with no event between them: a server that keeps expiring what it
        # just listed is not listed again in a tight loop.
        self.expiries = 0
        self.last_error: str | None = None

    @property
    def problem(self) -> str | None:
        """Why this kind may be stale, while its list or watch fails."""
        if not self.failures:
            return None
        return (
            f"Kubernetes API: {self.kind.name} not watched (failing: {self.last_error}); "
            "serving the last state read"
        )

    async def run(self) -> None:
        while True:
            try:
                if self.cache.resource_version is None:
                    await self._list()
                await self._watch_once()
            except Gone as gone:
                log.info("event=watch_expired kind=%s relist=true detail=%r", self.kind.name, gone)
                self.cache.forget_version()
                self.expiries += 1
                if self.expiries > 1:
                    await asyncio.sleep(
                        retry_delay(self.expiries - 1, RETRY_MAX_SECONDS, self.jitter())
                    )
            except FAILURES as err:
                self.failures += 1
                self.last_error = str(err) or type(err).__name__
                if self.failures == 1:
                    self.changed()  # the snapshot says it may be stale from now on
                delay = retry_delay(self.failures, RETRY_MAX_SECONDS, self.jitter())
                log.warning(
                    "event=watch_failed kind=%s failures=%d retry_in_s=%.2f error=%r",
                    self.kind.name,
                    self.failures,
                    delay,
                    self.last_error,
                )
                await asyncio.sleep(delay)

    def _working(self) -> None:
        """The server answered: a later failure counts from one again."""
        if self.failures:
            self.failures, self.last_error = 0, None
            log.info("event=watch_recovered kind=%s", self.kind.name)
            self.changed()

    async def _list(self) -> None:
        items, version = await list_objects(self.client, self.kind, self.namespace)
        self.relists += 1
        self._working()
        changed = self.cache.replace(items, version)
        log.info(
            "event=listed kind=%s objects=%d resource_version=%s",
            self.kind.name,
            len(items),
            version,
        )
        self.synced.set()
        if changed:
            self.changed()

    async def _watch_once(self) -> None:
        version = self.cache.resource_version
        assert version is not None
        async with asyncio.timeout(WATCH_SECONDS + STREAM_MARGIN_SECONDS):
            async for event_type, obj in watch_events(
                self.client, self.kind, self.namespace, version
            ):
                if event_type == OPENED:
                    self._working()
                    continue
                self.expiries = 0
                if self.cache.apply(event_type, obj):
                    self.changed()
        self.expiries = 0
