"""The agent's side of the heartbeats: a process of its own serves the socket
(`heartbeat_process`), and this proxy gives the agent its view and its commands.

Why a process: see `heartbeat_process`. The proxy keeps the last view the process
reported (it reports one with every peer event), answers `settled` from the clock itself
(CLOCK_MONOTONIC is one clock for both processes) and this node's own claim from the last
`set_owned`, so nothing the agent reads waits for the other process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from multiprocessing.connection import Connection
from typing import Any

from herald.dataplane.model import IPAddress
from herald.l2.heartbeat import Address, Config, Event, PeerChanged, View
from herald.l2.swim import Config as SwimConfig

log = logging.getLogger(__name__)

DEFAULT_PORT = 7946
# How long the process may take to start and bind, and to stop after `close`.
_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 2.0
# How long the agent's event loop may stay silent (hung, stopped) before its heartbeat
# process gives its VIPs up: far above any stall seen under load (a few seconds at most on
# the overloaded lab machine would still be a failover the user did not ask for).
DEFAULT_AGENT_TIMEOUT = 5.0


MEMBERSHIPS = ("heartbeat", "swim")


def start_config(
    node: str, key: bytes, membership: str = "heartbeat", **settings: float | int | None
) -> Config | SwimConfig:
    """A Config for an agent starting now: its incarnation is the wall clock in ms, so it
    grows across restarts, and timestamps follow the wall clock. `membership` picks the
    protocol: "heartbeat" (every node to every other) or "swim" (`swim.py`)."""
    if membership not in MEMBERSHIPS:
        raise ValueError(f"L2 membership {membership!r}: one of {', '.join(MEMBERSHIPS)}")
    kind = SwimConfig if membership == "swim" else Config
    return kind(
        node=node,
        key=key,
        incarnation=time.time_ns() // 1_000_000,
        wall_offset=time.time() - time.monotonic(),
        **settings,  # type: ignore[arg-type]
    )


class Liveness:
    """Heartbeats for one node; `on_event` sees every peer change and rejection, and
    `on_failure` the end of the heartbeat process (peers will declare this node dead: the
    caller must stop answering for its VIPs), both on the event loop that opened it."""

    def __init__(
        self,
        config: Config | SwimConfig,
        started: float,
        process: subprocess.Popen[bytes],
        conn: Connection,
        on_event: Callable[[Event], None] | None,
        on_failure: Callable[[BaseException], None] | None,
    ) -> None:
        self.config = config
        self.started = started
        self.on_event = on_event
        self.on_failure = on_failure
        self._process = process
        self._conn: Connection | None = conn
        self._reported: dict[str, Any] = {}
        self._owned: frozenset[IPAddress] = frozenset()
        self._loop = asyncio.get_running_loop()
        self._ticker: asyncio.TimerHandle | None = None

    @classmethod
    async def open(
        cls,
        config: Config | SwimConfig,
        peers: Mapping[str, Address],
        bind: Address,
        on_event: Callable[[Event], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
        agent_timeout: float = DEFAULT_AGENT_TIMEOUT,
    ) -> Liveness:
        mine, theirs = socket.socketpair()
        process = subprocess.Popen(
            [sys.executable, "-m", "herald.l2.heartbeat_process", str(theirs.fileno())],
            pass_fds=[theirs.fileno()],
        )
        theirs.close()
        conn = Connection(mine.detach())
        started = time.monotonic()
        conn.send((config, dict(peers), bind, started, agent_timeout))
        try:
            kind, detail, view = await asyncio.to_thread(_first_message, conn)
        except (OSError, EOFError, TimeoutError) as err:
            _stop(process, conn)
            raise OSError(f"heartbeat process did not start: {err}") from err
        if kind != "ready":
            _stop(process, conn)
            raise OSError(detail)
        liveness = cls(config, started, process, conn, on_event, on_failure)
        liveness._reported = view
        liveness._loop.add_reader(conn.fileno(), liveness._on_readable)
        liveness._tick()
        return liveness

    def view(self) -> View:
        reported = self._reported
        claims = dict(reported.get("claims", {}))
        claims[self.config.node] = self._owned
        return View(
            reported.get("live", frozenset({self.config.node})),
            reported.get("heard", frozenset()),
            reported.get("peer_count", 0),
            claims,
            time.monotonic() >= self.started + self.config.detection_time,
            reported.get("left", frozenset()),
        )

    def set_owned(self, vips: Iterable[IPAddress]) -> None:
        owned = frozenset(vips)
        if owned != self._owned:
            self._owned = owned
            self._command("owned", owned)

    def set_peers(self, peers: Mapping[str, Address]) -> None:
        self._command("peers", dict(peers))

    def set_quiet(self, quiet: bool) -> None:
        """Quiet: peers are told this node leaves, then hear nothing (it still hears them)
        until it is set back; for a node whose link flaps (`ownership`)."""
        self._command("quiet", quiet)

    def close(self, leave: bool = True) -> None:
        """Stops; with `leave`, peers are told first so they take over at once."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        if self._ticker is not None:
            self._ticker.cancel()
        self._loop.remove_reader(conn.fileno())
        with contextlib.suppress(OSError):  # the process is gone already
            conn.send(("close", leave))
        _stop(self._process, conn)

    def _tick(self) -> None:
        """Tells the heartbeat process, once an interval, that this loop still runs."""
        self._command("tick", self._owned)
        if self._conn is not None:
            self._ticker = self._loop.call_later(self.config.interval, self._tick)

    def _command(self, kind: str, value: object) -> None:
        if self._conn is None:
            return
        try:
            self._conn.send((kind, value))
        except OSError as err:
            self._failed(err)

    def _on_readable(self) -> None:
        conn = self._conn
        try:
            while conn is not None and conn.poll():
                _, events, view = conn.recv()
                self._reported = view
                for event in events:
                    if isinstance(event, PeerChanged):
                        log.info(
                            "event=peer_state node=%s before=%s after=%s",
                            event.node,
                            event.before,
                            event.after,
                        )
                    if self.on_event is not None:
                        self.on_event(event)
                conn = self._conn
        except (EOFError, OSError) as err:
            self._failed(err)

    def _failed(self, error: BaseException) -> None:
        if self._conn is None:
            return  # closed already (and reported once)
        log.error("event=heartbeat_process_ended node=%s error=%r", self.config.node, str(error))
        self.close(leave=False)
        if self.on_failure is not None:
            self.on_failure(error)


def _first_message(conn: Connection) -> tuple[str, Any, Any]:
    if not conn.poll(_START_TIMEOUT):
        raise TimeoutError(f"no answer within {_START_TIMEOUT} s")
    kind, detail, view = conn.recv()
    return str(kind), detail, view


def _stop(process: subprocess.Popen[bytes], conn: Connection) -> None:
    try:
        process.wait(_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    conn.close()
