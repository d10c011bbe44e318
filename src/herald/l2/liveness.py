"""The heartbeat protocol on a UDP socket (the shell around `heartbeat.Heartbeat`), in a
thread of its own.

Heartbeats must keep their rhythm while the agent is busy: an agent that programs its
datapath for a burst of new Services can keep its event loop (and a C call can keep the
GIL) for longer than the detection time, and its peers would declare it dead. So the
socket is served by a dedicated thread that only reads, times and sends: it waits in
epoll (the GIL released) until a datagram arrives or the core's next deadline, reads
every datagram queued before running the timer, and sends what the core wants sent. The
core is shared with the caller's thread under one lock; events are handed to the caller's
event loop. The core's clock is `time.monotonic()`, the clock of asyncio's default loop;
timestamps in datagrams are wall-clock time through the offset measured at start.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import selectors
import socket
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from herald.dataplane.model import IPAddress
from herald.l2.heartbeat import (
    MAX_DATAGRAM,
    Address,
    Config,
    Event,
    Heartbeat,
    PeerChanged,
    Rejected,
)

log = logging.getLogger(__name__)

DEFAULT_PORT = 7946
# How long `close` waits for the thread: it wakes at once, so only a hung system waits.
_JOIN_TIMEOUT = 2.0
# Datagrams read per wake-up at most, so that a flood cannot keep the timer (and this
# node's own heartbeats) from running.
_READ_BUDGET = 256
# What a UDP socket reports for an ICMP error about an earlier datagram.
_ICMP_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
    }
)


def start_config(node: str, key: bytes, **settings: float | int | None) -> Config:
    """A Config for an agent starting now: its incarnation is the wall clock in ms, so it
    grows across restarts, and timestamps follow the wall clock."""
    return Config(
        node=node,
        key=key,
        incarnation=time.time_ns() // 1_000_000,
        wall_offset=time.time() - time.monotonic(),
        **settings,  # type: ignore[arg-type]
    )


@dataclass(frozen=True)
class View:
    """What the core knows at one moment, read in one piece."""

    live: frozenset[str]
    heard: frozenset[str]
    peer_count: int
    claims: dict[str, Collection[IPAddress]]
    settled: bool


class Liveness:
    """Sends and receives heartbeats; `on_event` sees every peer change and rejection, and
    `on_failure` the error that stopped the thread (peers will declare this node dead: the
    caller must stop answering for its VIPs), both on the event loop that opened it."""

    def __init__(
        self,
        heartbeat: Heartbeat,
        sock: socket.socket,
        on_event: Callable[[Event], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.heartbeat = heartbeat
        self.on_event = on_event
        self.on_failure = on_failure
        self._sock = sock
        self._lock = threading.Lock()
        self._loop = asyncio.get_running_loop()
        # Written to by the caller's thread to wake the heartbeat thread at once.
        self._wake_read, self._wake_write = os.pipe()
        # Never block the caller: a full pipe already wakes the thread.
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(
            target=self._serve, name=f"heartbeat-{heartbeat.config.node}", daemon=True
        )

    @classmethod
    async def open(
        cls,
        config: Config,
        peers: Mapping[str, Address],
        bind: Address,
        on_event: Callable[[Event], None] | None = None,
        on_failure: Callable[[BaseException], None] | None = None,
    ) -> Liveness:
        heartbeat = Heartbeat(config, started=time.monotonic())
        heartbeat.set_peers(peers)
        family = socket.AF_INET6 if ":" in bind[0] else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(bind)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        liveness = cls(heartbeat, sock, on_event, on_failure)
        liveness._thread.start()
        return liveness

    def view(self) -> View:
        with self._lock:
            beat = self.heartbeat
            return View(
                beat.live(),
                beat.heard(),
                len(beat.peers),
                beat.claims(),
                beat.settled(time.monotonic()),
            )

    def set_owned(self, vips: Iterable[IPAddress]) -> None:
        with self._lock:
            self.heartbeat.set_owned(vips, time.monotonic())
        self._wake()

    def set_peers(self, peers: Mapping[str, Address]) -> None:
        with self._lock:
            self.heartbeat.set_peers(peers)
        self._wake()

    def close(self, leave: bool = True) -> None:
        """Stops; with `leave`, peers are told first so they take over at once."""
        if self._stopping:
            return
        self._stopping = True
        self._wake()
        self._thread.join(_JOIN_TIMEOUT)
        if leave:
            with self._lock:
                self.heartbeat.leave(time.monotonic())
                outbox = self.heartbeat.datagrams_to_send()
            self._send(outbox)
        if self._thread.is_alive():
            # Still inside a call: its descriptors stay open rather than be reused under it.
            log.error("event=heartbeat_thread_stuck node=%s", self.heartbeat.config.node)
            return
        self._closed = True
        self._sock.close()
        os.close(self._wake_read)
        os.close(self._wake_write)

    # -- the heartbeat thread --------------------------------------------------------------

    def _serve(self) -> None:
        try:
            self._run()
        except Exception as error:
            log.exception("event=heartbeat_thread_failed node=%s", self.heartbeat.config.node)
            if self.on_failure is not None:
                with contextlib.suppress(RuntimeError):  # the caller's loop has closed
                    self._loop.call_soon_threadsafe(self.on_failure, error)

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._sock, selectors.EVENT_READ)
            selector.register(self._wake_read, selectors.EVENT_READ)
            self._beat(selector)

    def _beat(self, selector: selectors.BaseSelector) -> None:
        with self._lock:
            events = self.heartbeat.handle_timer(time.monotonic())
            outbox = self.heartbeat.datagrams_to_send()
        self._deliver(events, outbox)
        while not self._stopping:
            with self._lock:
                timeout = max(0.0, self.heartbeat.next_deadline() - time.monotonic())
            ready = selector.select(timeout)
            if self._stopping:
                return
            if any(key.fd == self._wake_read for key, _ in ready):
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_read, 4096)
            events, outbox = self._step()
            self._deliver(events, outbox)

    def _step(self) -> tuple[list[Event], list[tuple[bytes, Address]]]:
        """Every datagram queued, then the timer if it is due: a datagram that waited in
        the socket must count before the timer judges its sender."""
        events: list[Event] = []
        received = self._receive_all()
        with self._lock:
            for data, address in received:
                events += self.heartbeat.handle_datagram(data, address, time.monotonic())
            now = time.monotonic()
            if now >= self.heartbeat.next_deadline():
                events += self.heartbeat.handle_timer(now)
            return events, self.heartbeat.datagrams_to_send()

    def _receive_all(self) -> list[tuple[bytes, Address]]:
        received: list[tuple[bytes, Address]] = []
        for _ in range(_READ_BUDGET):
            try:
                data, addr = self._sock.recvfrom(MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno not in _ICMP_ERRNOS:
                    raise
                # An ICMP error for an earlier datagram (a peer's port closed, a peer
                # unreachable): the timeout decides about the peer; the socket is fine.
                log.debug("event=heartbeat_socket_error error=%r", str(exc))
                continue
            # IPv6 sockets add flow info and scope id: the peer is (host, port).
            received.append((data, (str(addr[0]), int(addr[1]))))
        return received

    def _deliver(self, events: list[Event], outbox: list[tuple[bytes, Address]]) -> None:
        self._send(outbox)
        for event in events:
            if isinstance(event, PeerChanged):
                log.info(
                    "event=peer_state node=%s before=%s after=%s",
                    event.node,
                    event.before,
                    event.after,
                )
            elif isinstance(event, Rejected):
                log.warning(
                    "event=heartbeat_rejected from=%s:%d reason=%r", *event.address, event.reason
                )
        if events and self.on_event is not None:
            callback = self.on_event
            try:
                for event in events:
                    self._loop.call_soon_threadsafe(callback, event)
            except RuntimeError:
                pass  # the caller's loop has closed: nobody is left to tell

    def _send(self, outbox: list[tuple[bytes, Address]]) -> None:
        for data, address in outbox:
            try:
                self._sock.sendto(data, address)
            except OSError as exc:
                # Unreachable peer, full buffer: the next interval sends again.
                log.debug("event=heartbeat_send_failed to=%s error=%r", address, str(exc))

    def _wake(self) -> None:
        if not self._closed:
            with contextlib.suppress(BlockingIOError):
                os.write(self._wake_write, b"\0")
