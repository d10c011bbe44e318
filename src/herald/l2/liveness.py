"""The heartbeat protocol on a UDP socket (the asyncio shell around `heartbeat.Heartbeat`).

One socket, one timer: every datagram goes to `handle_datagram`, the single timer is set to
`next_deadline()`, and what the core wants sent is sent after each call. The core's clock is
the event loop's (monotonic); timestamps in datagrams are wall-clock time through the
offset measured at start.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, cast

from herald.dataplane.model import IPAddress
from herald.l2.heartbeat import Address, Config, Event, Heartbeat, PeerChanged, Rejected

log = logging.getLogger(__name__)

DEFAULT_PORT = 7946


def start_config(node: str, key: bytes, **settings: float | int | None) -> Config:
    """A Config for an agent starting now: its incarnation is the wall clock in ms, so it
    grows across restarts, and timestamps follow the wall clock."""
    loop = asyncio.get_running_loop()
    return Config(
        node=node,
        key=key,
        incarnation=time.time_ns() // 1_000_000,
        wall_offset=time.time() - loop.time(),
        **settings,  # type: ignore[arg-type]
    )


class Liveness(asyncio.DatagramProtocol):
    """Sends and receives heartbeats; `on_event` sees every peer change and rejection."""

    def __init__(
        self, heartbeat: Heartbeat, on_event: Callable[[Event], None] | None = None
    ) -> None:
        self.heartbeat = heartbeat
        self.on_event = on_event
        self._transport: asyncio.DatagramTransport | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    @classmethod
    async def open(
        cls,
        config: Config,
        peers: Mapping[str, Address],
        bind: Address,
        on_event: Callable[[Event], None] | None = None,
    ) -> Liveness:
        loop = asyncio.get_running_loop()
        heartbeat = Heartbeat(config, started=loop.time())
        heartbeat.set_peers(peers)
        _, protocol = await loop.create_datagram_endpoint(
            lambda: cls(heartbeat, on_event), local_addr=bind
        )
        return protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A datagram endpoint's transport, though not always a DatagramTransport subclass.
        self._transport = cast(asyncio.DatagramTransport, transport)
        self._run(self.heartbeat.handle_timer(self._loop.time()))

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        # IPv6 sockets add flow info and scope id: the peer is (host, port).
        address = (str(addr[0]), int(addr[1]))
        self._run(self.heartbeat.handle_datagram(data, address, self._loop.time()))

    def error_received(self, exc: Exception) -> None:
        # An ICMP error for an earlier datagram (a peer's port closed): the timeout decides.
        log.debug("event=heartbeat_socket_error error=%r", str(exc))

    def set_owned(self, vips: Iterable[IPAddress]) -> None:
        self.heartbeat.set_owned(vips, self._loop.time())
        self._run([])

    def set_peers(self, peers: Mapping[str, Address]) -> None:
        self.heartbeat.set_peers(peers)
        self._run([])

    def close(self, leave: bool = True) -> None:
        """Stops; with `leave`, peers are told first so they take over at once."""
        if leave and self._transport is not None:
            self.heartbeat.leave(self._loop.time())
            self._flush()
        if self._timer is not None:
            self._timer.cancel()
        if self._transport is not None:
            self._transport.close()
            self._transport = None

    def _on_timer(self) -> None:
        self._timer = None
        self._run(self.heartbeat.handle_timer(self._loop.time()))

    def _run(self, events: list[Event]) -> None:
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
            if self.on_event is not None:
                self.on_event(event)
        self._flush()
        if self._transport is None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_at(self.heartbeat.next_deadline(), self._on_timer)

    def _flush(self) -> None:
        if self._transport is None:
            return
        for data, address in self.heartbeat.datagrams_to_send():
            self._transport.sendto(data, address)
