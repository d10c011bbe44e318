"""The test double on its own thread and event loop, for synchronous callers.

Tests that drive the real `kubectl` (a blocking subprocess) run the server here:

    with BackgroundKubeApiServer() as bg:
        bg.server.write_kubeconfig(path)
        subprocess.run(["kubectl", "--kubeconfig", str(path), "get", "svc"])
        bg.call(bg.server.restart)          # coroutines run on the server's loop
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from types import TracebackType
from typing import Any, TypeVar

from herald.lab.kubeapi.server import KubeApiServer

T = TypeVar("T")


class BackgroundKubeApiServer:
    """Runs a `KubeApiServer(**kwargs)` on a daemon thread until the context exits."""

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: KubeApiServer | None = None

    @property
    def server(self) -> KubeApiServer:
        assert self._server is not None, "not started"
        return self._server

    def call(
        self,
        func: Callable[..., Coroutine[Any, Any, T]],
        *args: Any,
        timeout: float = 30.0,
        **kwargs: Any,
    ) -> T:
        """Run `func(*args, **kwargs)` on the server's loop and wait for its result."""
        future: Future[T] = asyncio.run_coroutine_threadsafe(func(*args, **kwargs), self._loop)
        return future.result(timeout)

    def run(self, func: Callable[[], T], timeout: float = 30.0) -> T:
        """Run a plain function on the server's loop (to touch the store safely)."""

        async def wrapper() -> T:
            return func()

        return self.call(wrapper, timeout=timeout)

    def __enter__(self) -> BackgroundKubeApiServer:
        self._thread.start()

        async def start() -> KubeApiServer:
            server = KubeApiServer(**self._kwargs)
            await server.start()
            return server

        self._server = self.call(start)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if self._server is not None:
                self.call(self._server.stop)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
            self._loop.close()
