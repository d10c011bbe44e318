"""The heartbeat socket, served by a process of its own (`python -m
herald.l2.heartbeat_process FD`; started by `liveness.Liveness`).

Heartbeats must keep their rhythm while the agent is busy. A thread in the agent is not
enough: it needs the agent's GIL for every datagram, and when the agent's own threads
(rendering a burst of new Services) wait for a CPU while holding it, each hand-over waits
for the scheduler; in the lab (6 agents on 2 CPUs) a heartbeat thread went silent for over
a second that way and its node was declared dead. This process shares nothing with the
agent but a socket pair: it waits in epoll for a heartbeat, a command or the core's next
deadline, reads every queued datagram before running the timer, sends, and reports peer
events with the new view to the agent.

Commands from the agent: ("owned", VIPs), ("peers", {node: address}), ("quiet", bool) (a
flapping node: say it leaves, then stay silent while still listening), ("tick", VIPs) once
an interval from its event loop, ("close", leave). The agent's end closing (the agent died,
even by SIGKILL) counts as ("close", True): peers are told at once that this node is
leaving, and take over its VIPs without waiting.

An agent whose event loop hangs (stopped, deadlocked) cannot answer ARP or NDP any more,
but its heartbeats, running here, would keep its VIPs with it. So when no command has come
for `agent_timeout` seconds this process tells the peers it is leaving and falls silent
(they take the VIPs over); the next command from the agent resumes the heartbeats.
"""

from __future__ import annotations

import errno
import logging
import os
import pickle
import selectors
import signal
import socket
import struct
import sys
import time
from multiprocessing.connection import Connection
from typing import Any

from herald.l2.heartbeat import MAX_DATAGRAM, Address, Config, Event, Heartbeat, Rejected
from herald.l2.swim import MAX_DATAGRAM as SWIM_MAX_DATAGRAM
from herald.l2.swim import Config as SwimConfig
from herald.l2.swim import Swim

log = logging.getLogger(__name__)

# Either membership protocol: the all-to-all heartbeat, or SWIM (`swim.py`); the config the
# agent sends says which.
Core = Heartbeat | Swim
# Read buffer: a datagram of either protocol fits, so an oversized one is seen (and rejected)
# whole instead of truncated.
RECEIVE_SIZE = max(MAX_DATAGRAM, SWIM_MAX_DATAGRAM) + 1

# A sender's rejected datagrams are logged once in this many seconds; the hosts remembered
# for it are at most MAX_REJECTING_HOSTS.
REJECT_LOG_SECONDS = 60.0
MAX_REJECTING_HOSTS = 1024
# Datagrams read per wake-up at most, so that a flood cannot keep the timer (and this
# node's own heartbeats) from running.
READ_BUDGET = 256
# What a UDP socket reports for an ICMP error about an earlier datagram: the timeout decides
# about the peer, the socket is fine.
ICMP_ERRNOS = frozenset(
    {
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EHOSTDOWN,
        errno.ENETDOWN,
    }
)


def core_for(config: Config | SwimConfig, started: float) -> Core:
    if isinstance(config, SwimConfig):
        return Swim(config, started=started)
    return Heartbeat(config, started=started)


def view_of(beat: Core) -> dict[str, Any]:
    """What the agent reads of the core (plain data: it crosses the socket pair)."""
    return {
        "live": beat.live(),
        "heard": beat.heard(),
        "peer_count": len(beat.peers),
        "claims": {node: frozenset(vips) for node, vips in beat.claims().items()},
        "left": beat.left(),
    }


def bind_socket(bind: Address) -> socket.socket:
    family = socket.AF_INET6 if ":" in bind[0] else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.bind(bind)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def frame(message: object) -> bytes:
    """`message` as `multiprocessing.connection.Connection.recv` reads it."""
    payload = pickle.dumps(message)
    return struct.pack("!i", len(payload)) + payload


class RejectionLog:
    """When to log a rejected datagram: at most once a REJECT_LOG_SECONDS per sending host,
    saying how many went unlogged since. A node of the other membership mode, or a flood,
    would otherwise log every datagram it sends."""

    def __init__(self) -> None:
        # Per host: when a rejection was last logged, and how many were not since.
        self._hosts: dict[str, tuple[float, int]] = {}

    def due(self, host: str, now: float) -> int | None:
        """The number unlogged since the last, if this one is to be logged; else None."""
        last, unlogged = self._hosts.get(host, (-REJECT_LOG_SECONDS, 0))
        if now - last < REJECT_LOG_SECONDS:
            self._hosts[host] = (last, unlogged + 1)
            return None
        if len(self._hosts) >= MAX_REJECTING_HOSTS:
            self._hosts.clear()  # a flood from many addresses: bounded memory
        self._hosts[host] = (now, 0)
        return unlogged


class Server:
    def __init__(
        self, conn: Connection, sock: socket.socket, beat: Core, agent_timeout: float
    ) -> None:
        self.conn = conn
        self.sock = sock
        self.beat = beat
        self.agent_timeout = agent_timeout
        self.agent_heard = time.monotonic()
        self.abandoned = False
        # Reports go out without ever blocking: an agent too busy to read them (a burst of
        # datapath work) must not stop the heartbeats. While earlier bytes wait, new events
        # are gathered and sent as one report with the latest view.
        self.reports = socket.socket(fileno=os.dup(conn.fileno()))
        self.unsent = bytearray()
        self.rejections = RejectionLog()
        self.gathered: list[Event] = []
        self.selector = selectors.DefaultSelector()

    def serve(self) -> None:
        selector = self.selector
        selector.register(self.sock, selectors.EVENT_READ)
        selector.register(self.conn.fileno(), selectors.EVENT_READ)
        try:
            self.finish(self.beat.handle_timer(time.monotonic()))
            while True:
                for key, mask in selector.select(self.timeout()):
                    if key.fileobj is self.reports and mask & selectors.EVENT_WRITE:
                        self.report()
                leave = self.commands()
                if leave is not None:
                    if leave:
                        self.beat.leave(time.monotonic())
                        self.send()
                    return
                events: list[Event] = []
                for data, address in self.receive():
                    events += self.beat.handle_datagram(data, address, time.monotonic())
                now = time.monotonic()
                if not self.abandoned and now >= self.agent_heard + self.agent_timeout:
                    log.warning(
                        "event=agent_unresponsive node=%s seconds=%.1f action=leave",
                        self.beat.config.node,
                        now - self.agent_heard,
                    )
                    self.abandoned = True
                    self.beat.leave(now)
                # A datagram that waited in the socket counts before the timer judges.
                if not self.abandoned and now >= self.beat.next_deadline():
                    events += self.beat.handle_timer(now)
                self.finish(events)
        finally:
            selector.close()
            self.reports.close()

    def timeout(self) -> float | None:
        """How long to wait for input; None (until input comes) while silent."""
        if self.abandoned:
            return None
        deadline = min(self.beat.next_deadline(), self.agent_heard + self.agent_timeout)
        return max(0.0, deadline - time.monotonic())

    def commands(self) -> bool | None:
        """Apply the agent's commands; whether to leave (True/False) when told to stop."""
        while self.conn.poll():
            try:
                kind, value = self.conn.recv()
            except (EOFError, OSError):
                return True  # the agent is gone: tell the peers
            self.agent_heard = time.monotonic()
            if self.abandoned:
                log.warning("event=agent_responsive node=%s action=rejoin", self.beat.config.node)
                self.abandoned = False
            if kind in ("owned", "tick"):
                # A tick carries the owned VIPs too: after a silence they are sent again.
                self.beat.set_owned(value, time.monotonic())
            elif kind == "peers":
                self.beat.set_peers(value)
            elif kind == "quiet":
                self.beat.set_quiet(bool(value), time.monotonic())
            elif kind == "close":
                return bool(value)
        return None

    def receive(self) -> list[tuple[bytes, Address]]:
        received: list[tuple[bytes, Address]] = []
        for _ in range(READ_BUDGET):
            try:
                data, addr = self.sock.recvfrom(RECEIVE_SIZE)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                if exc.errno not in ICMP_ERRNOS:
                    raise
                log.debug("event=heartbeat_socket_error error=%r", str(exc))
                continue
            # IPv6 sockets add flow info and scope id: the peer is (host, port).
            received.append((data, (str(addr[0]), int(addr[1]))))
        return received

    def finish(self, events: list[Event]) -> None:
        self.send()
        now = time.monotonic()
        for event in events:
            if isinstance(event, Rejected):
                self.log_rejected(event, now)
        if events:
            self.gathered += events
            self.report()

    def log_rejected(self, event: Rejected, now: float) -> None:
        unlogged = self.rejections.due(event.address[0], now)
        if unlogged is not None:
            log.warning(
                "event=heartbeat_rejected from=%s:%d reason=%r unlogged_since_last=%d",
                *event.address,
                event.reason,
                unlogged,
            )

    def report(self) -> None:
        if not self.unsent and self.gathered:
            self.unsent += frame(("update", self.gathered, view_of(self.beat)))
            self.gathered = []
        if self.unsent:
            try:
                sent = self.reports.send(self.unsent, socket.MSG_DONTWAIT)
                del self.unsent[:sent]
            except BlockingIOError:
                pass
        wants = selectors.EVENT_WRITE if self.unsent or self.gathered else 0
        registered = self.selector.get_map().get(self.reports)
        if wants and registered is None:
            self.selector.register(self.reports, wants)
        elif not wants and registered is not None:
            self.selector.unregister(self.reports)

    def send(self) -> None:
        for data, address in self.beat.datagrams_to_send():
            try:
                self.sock.sendto(data, address)
            except OSError as exc:
                # Unreachable peer, full buffer: the next interval sends again.
                log.debug("event=heartbeat_send_failed to=%s error=%r", address, str(exc))


def main(fd: int) -> None:
    # The agent decides when this process stops (or dies, which closes the socket pair);
    # a Ctrl-C meant for the agent must not end the heartbeats first.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="ts=%(asctime)s level=%(levelname)s %(message)s")
    conn = Connection(fd)
    config, peers, bind, started, agent_timeout = conn.recv()
    try:
        sock = bind_socket(bind)
    except OSError as err:
        conn.send(("error", f"heartbeat socket {bind[0]}:{bind[1]}: {err}"))
        return
    beat = core_for(config, started)
    beat.set_peers(peers)
    conn.send(("ready", None, view_of(beat)))
    server = Server(conn, sock, beat, agent_timeout)
    try:
        server.serve()
    except (BrokenPipeError, ConnectionResetError, EOFError):
        # The agent is gone (its end closed while this process wrote): tell the peers.
        beat.leave(time.monotonic())
        server.send()
    finally:
        sock.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
