"""Long-lived tasks that never die silently: a failure is logged, reported to the owner,
and the task is started again after a back-off.

The owner's `on_failure` decides what the failure costs (the speaker ends that peer's
session with Cease / Out of Resources, so the peer forgets what it half heard and gets the
whole table again); the supervisor only guarantees that the work resumes, and that a task
failing on every start is retried ever more slowly, never in a tight loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

FIRST_DELAY = 1.0
MAX_DELAY = 30.0


def default_delay(failures: int) -> float:
    """1 s, doubled per failure in a row, at most 30 s, less up to a quarter of jitter."""
    exponent = min(max(failures - 1, 0), 30)
    return min(MAX_DELAY, FIRST_DELAY * 2.0**exponent) * (1 - 0.25 * random.random())


class Supervised:
    """Runs `work()` until stopped. `name` goes into the logs (`task=NAME`): include the
    object it serves, e.g. "sync peer=192.0.2.1".

    A run that fails calls `on_failure(error)` and starts again after `delay(failures)`,
    where `failures` counts the failures in a row: a run that lasted `stable_after` seconds
    or more before failing starts the count afresh. A run that returns is started again at
    once, logged: long-lived work has no reason to end.
    """

    def __init__(
        self,
        name: str,
        work: Callable[[], Coroutine[Any, Any, None]],
        on_failure: Callable[[Exception], None],
        delay: Callable[[int], float] = default_delay,
        stable_after: float = MAX_DELAY,
    ) -> None:
        self.name = name
        self.failures = 0
        self._work = work
        self._on_failure = on_failure
        self._delay = delay
        self._stable_after = stable_after
        self._task: asyncio.Task[None] | None = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        if not self.running:
            self._task = asyncio.get_running_loop().create_task(self._supervise(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _supervise(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self._work()
            except Exception as error:  # every failure, whatever it is: that is the point
                if loop.time() - started >= self._stable_after:
                    self.failures = 0  # it ran well for a while: not a failure in a row
                self.failures += 1
                wait = self._delay(self.failures)
                log.error(
                    "event=task_failed task=%s error=%r failures=%d restart_in=%.2fs",
                    self.name, error, self.failures, wait, exc_info=error,
                )  # fmt: skip
                try:
                    self._on_failure(error)
                except Exception:
                    log.exception("event=task_failure_handling_failed task=%s", self.name)
                await asyncio.sleep(wait)
            else:
                log.warning("event=task_ended task=%s action=restart", self.name)
                await asyncio.sleep(0)  # never a busy loop, even for work that returns at once
