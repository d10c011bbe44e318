"""The asyncio driver of one BGP peer: TCP, one timer, back-off, collisions; the FSM decides.

A `Session` owns up to two connections to its peer (ours and the peer's, while a collision
is being resolved), each with its own pure `Fsm` and `Framer`. The session carries out the
FSM's actions (send, connect, close), feeds it what the sockets say, and holds a single
asyncio timer set to the earliest deadline of its FSMs or of its reconnect back-off.

What the session learns (established, UPDATE/ROUTE-REFRESH received, down) goes to a
`SessionHandler`, the speaker; what the speaker sends (packed UPDATEs) goes out through
`send_frames`.

Nothing fails silently here. An unexpected exception in a connection's work (its read task,
its timer, the handler it calls) ends that connection with Cease / Out of Resources
(RFC 4486 subcode 8) and the usual reconnect follows; one in a connect attempt or in taking
over an accepted connection counts as a failed TCP connection. Each is logged as
`event=task_failed task=... peer=...`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import socket
from collections.abc import Coroutine
from dataclasses import dataclass, field
from ipaddress import IPv6Address, ip_address
from typing import Protocol

from herald.addresses import IPAddress
from herald.bgp.fsm import (
    Action,
    CloseConnection,
    Connect,
    Deliver,
    Event,
    Fsm,
    Initiator,
    Send,
    SessionConfig,
    SessionDown,
    SessionEstablished,
    State,
    collision_survivor,
)
from herald.bgp.peer import PeerConfig
from herald.bgp.sockopts import apply_md5, apply_ttl
from herald.bgp.wire import (
    CodecError,
    ErrorCode,
    Framer,
    GracefulRestart,
    Negotiated,
    Notification,
    Open,
    decode_message,
)
from herald.bgp.wire.errors import CeaseSubcode
from herald.bgp.wire.header import HEADER_SIZE, MessageType

log = logging.getLogger(__name__)

READ_SIZE = 1 << 16
FIRST_RETRY = 1.0
"""Seconds before the first reconnect; doubled per failure up to the connect-retry time."""


def retry_delay(failures: int, cap: float, jitter: float) -> float:
    """Exponential back-off bounded by `cap`; `jitter` in [0, 1) shaves up to a quarter off
    so that speakers that failed together do not retry together."""
    exponent = min(max(failures - 1, 0), 30)
    return float(min(cap, FIRST_RETRY * 2.0**exponent) * (1 - 0.25 * jitter))


def is_update(frame: bytes) -> bool:
    """An encoded message is an UPDATE (its type is the header's last octet)."""
    return len(frame) >= HEADER_SIZE and frame[HEADER_SIZE - 1] == MessageType.UPDATE


def normalise_address(address: IPAddress) -> IPAddress:
    """An IPv4 peer seen on a dual-stack socket appears IPv4-mapped; use the IPv4 form."""
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


class SessionHandler(Protocol):
    """What the speaker hears from a session."""

    def session_established(self, session: Session, established: SessionEstablished) -> None: ...

    def session_message(self, session: Session, deliver: Deliver) -> None: ...

    def session_down(self, session: Session, down: SessionDown, was_established: bool) -> None: ...


@dataclass(eq=False)
class _Connection:
    """One TCP connection (or attempt) and the FSM that runs over it."""

    fsm: Fsm
    initiator: Initiator
    framer: Framer = field(default_factory=Framer)
    reader: asyncio.StreamReader | None = None
    writer: asyncio.StreamWriter | None = None
    tasks: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def local_address(self) -> IPAddress | None:
        if self.writer is None:
            return None
        sockname = self.writer.get_extra_info("sockname")
        return normalise_address(ip_address(sockname[0])) if sockname else None

    def close(self) -> None:
        current = asyncio.current_task()
        for task in self.tasks:
            if task is not current:
                task.cancel()
        self.tasks.clear()
        if self.writer is not None:
            self.writer.close()  # flushes what is buffered (a NOTIFICATION) first
            self.writer = None
        self.reader = None


class Session:
    """One peer: connects (unless passive), accepts what the listener hands over, and
    keeps at most one established connection."""

    def __init__(
        self,
        peer: PeerConfig,
        fsm_config: SessionConfig,
        handler: SessionHandler,
        rng: random.Random | None = None,
    ) -> None:
        self.peer = peer
        self.fsm_config = fsm_config
        self.handler = handler
        self.messages_in = 0
        self.messages_out = 0
        # UPDATE messages alone (MetalLB's metallb_bgp_updates_total).
        self.updates_in = 0
        self.updates_out = 0
        self.last_down: SessionDown | None = None
        self.last_peer_open: Open | None = None  # survives the FSM's reset, for GR helpers
        self._rng = rng or random.Random()
        self._connections: list[_Connection] = []
        self._established: _Connection | None = None
        self._failures = 0
        self._established_at: float | None = None
        self._restart_at: float | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._running = False

    # --- what the speaker sees -----------------------------------------------------------

    @property
    def key(self) -> IPAddress:
        return self.peer.address

    @property
    def state(self) -> State:
        if self._established is not None:
            return State.ESTABLISHED
        states = [c.fsm.state for c in self._connections]
        order = list(State)
        return max(states, key=order.index, default=State.IDLE)

    @property
    def negotiated(self) -> Negotiated | None:
        return self._established.fsm.negotiated if self._established else None

    @property
    def peer_open(self) -> Open | None:
        return self._established.fsm.peer_open if self._established else None

    @property
    def local_address(self) -> IPAddress | None:
        return self._established.local_address if self._established else None

    def send_frames(self, frames: list[bytes]) -> bool:
        """Write encoded messages on the established connection; False if there is none."""
        conn = self._established
        if conn is None or conn.writer is None:
            return False
        conn.writer.writelines(frames)
        self.messages_out += len(frames)
        self.updates_out += sum(1 for frame in frames if is_update(frame))
        return True

    async def drain(self) -> None:
        conn = self._established
        if conn is not None and conn.writer is not None:
            with contextlib.suppress(ConnectionError):
                await conn.writer.drain()

    # --- life cycle ----------------------------------------------------------------------

    def start(self) -> None:
        self._running = True
        self._open_connection()

    async def stop(self) -> None:
        """ManualStop on every connection: Cease/administrative shutdown to the peer."""
        self._running = False
        self._restart_at = None
        loop = asyncio.get_running_loop()
        for conn in list(self._connections):
            self._carry_out(conn, conn.fsm.handle_event(Event.MANUAL_STOP, loop.time()))
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await asyncio.sleep(0)  # let the transports flush the NOTIFICATION

    def cease(self, subcode: int, reason: str) -> None:
        """Close the established session with a Cease (RFC 4486), then reconnect with back-off."""
        if self._established is not None:
            self._cease(self._established, subcode, reason)

    def _cease(self, conn: _Connection, subcode: int, reason: str) -> None:
        """RFC 4271's AutomaticStop of one connection, with the Cease subcode that says why."""
        if conn not in self._connections:
            return  # already gone
        log.warning("event=session_ceased peer=%s subcode=%d reason=%r", self.key, subcode, reason)
        error = CodecError(ErrorCode.CEASE, subcode, reason=reason)
        now = asyncio.get_running_loop().time()
        self._carry_out(conn, conn.fsm.handle_event(Event.MANUAL_STOP, now, error=error))

    def _failed(self, conn: _Connection, task: str, error: Exception) -> None:
        """An unexpected exception in `conn`'s work: its state is unknown, so it ends."""
        log.error(
            "event=task_failed task=%s peer=%s error=%r action=cease",
            task, self.key, error, exc_info=error,
        )  # fmt: skip
        self._cease(conn, CeaseSubcode.OUT_OF_RESOURCES, f"internal error in {task}: {error!r}")

    def accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """A connection from the peer, handed over by the listener (which closes it if this
        raises)."""
        if not self._running:
            writer.close()
            return
        self._set_ttl(writer.get_extra_info("socket"))
        now = asyncio.get_running_loop().time()
        # A connection only waiting (passive, or between attempts) takes the peer's. One of
        # ours with a connect in flight stays: both go on and the OPENs decide (RFC 4271 §6.8).
        waiting = next(
            (
                c
                for c in self._connections
                if c.fsm.state in (State.CONNECT, State.ACTIVE) and not c.tasks
            ),
            None,
        )
        if waiting is None:
            if len(self._connections) >= 2:
                log.info("event=connection_refused peer=%s reason=two_connections_open", self.key)
                writer.close()
                return
            waiting = _Connection(Fsm(self.fsm_config), Initiator.REMOTE)
            self._connections.append(waiting)
            self._restart_at = None
            self._carry_out(waiting, waiting.fsm.handle_event(Event.AUTOMATIC_START_PASSIVE, now))
        waiting.initiator = Initiator.REMOTE
        log.info("event=connection_accepted peer=%s", self.key)
        self._attach(waiting, reader, writer)
        self._carry_out(waiting, waiting.fsm.handle_event(Event.TCP_CONNECTION_CONFIRMED, now))

    # --- connections ---------------------------------------------------------------------

    def _open_connection(self) -> None:
        if not self._running:
            return
        try:
            self._start_connection()
        except Exception as error:
            log.error(
                "event=task_failed task=start peer=%s error=%r action=retry",
                self.key, error, exc_info=error,
            )  # fmt: skip
            self._schedule_restart()
            self._reschedule()

    def _start_connection(self) -> None:
        conn = _Connection(Fsm(self.fsm_config), Initiator.LOCAL)
        self._connections.append(conn)
        start = Event.AUTOMATIC_START_PASSIVE if self.peer.passive else Event.AUTOMATIC_START
        self._carry_out(conn, conn.fsm.handle_event(start, asyncio.get_running_loop().time()))

    def _spawn(self, conn: _Connection, coro: Coroutine[object, object, None], name: str) -> None:
        task = asyncio.get_running_loop().create_task(coro, name=f"{name} peer={self.key}")
        conn.tasks.add(task)
        task.add_done_callback(conn.tasks.discard)
        task.add_done_callback(log_task_failure)

    def _set_ttl(self, sock: socket.socket | None) -> None:
        if sock is None:
            return
        ttl = self.peer.ebgp_multihop
        if ttl is None and not self.fsm_config.ibgp:
            ttl = 1  # eBGP peers are directly connected unless told otherwise (as FRR)
        try:
            apply_ttl(sock, ttl, self.peer.ttl_security_hops)
        except OSError as e:
            log.warning("event=ttl_option_failed peer=%s error=%r", self.key, e)

    async def _connect(self, conn: _Connection) -> None:
        peer = self.peer
        family = socket.AF_INET6 if isinstance(peer.address, IPv6Address) else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            if peer.password:
                apply_md5(sock, peer.address, peer.password)
            self._set_ttl(sock)
            if peer.local_address is not None:
                sock.bind((str(peer.local_address), 0))
            loop = asyncio.get_running_loop()
            await loop.sock_connect(sock, (str(peer.address), peer.port))
            reader, writer = await asyncio.open_connection(sock=sock, limit=READ_SIZE)
        except OSError as e:
            sock.close()
            log.info("event=connect_failed peer=%s port=%d error=%r", self.key, peer.port, e)
            now = asyncio.get_running_loop().time()
            self._carry_out(conn, conn.fsm.handle_event(Event.TCP_CONNECTION_FAILS, now))
            return
        except Exception as e:  # a bug, not the network: the attempt failed all the same
            sock.close()
            log.error(
                "event=task_failed task=connect peer=%s error=%r action=retry",
                self.key, e, exc_info=e,
            )  # fmt: skip
            now = asyncio.get_running_loop().time()
            self._carry_out(conn, conn.fsm.handle_event(Event.TCP_CONNECTION_FAILS, now))
            return
        except asyncio.CancelledError:
            sock.close()
            if self._running:
                # The FSM gave up waiting (ConnectRetry): the peer never answered the SYN.
                log.warning(
                    "event=connect_timeout peer=%s port=%d after=%.1fs hint=%r",
                    self.key,
                    peer.port,
                    self.peer.connect_retry_time,
                    "no answer: check the address, port, filters and the TCP-MD5 password "
                    "(a key mismatch drops SYNs silently)",
                )
            raise
        log.info("event=connected peer=%s local=%s", self.key, writer.get_extra_info("sockname")[0])
        self._attach(conn, reader, writer)
        now = asyncio.get_running_loop().time()
        self._carry_out(conn, conn.fsm.handle_event(Event.TCP_CR_ACKED, now))

    def _attach(
        self, conn: _Connection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        conn.reader, conn.writer = reader, writer
        self._spawn(conn, self._read(conn), "read")

    async def _read(self, conn: _Connection) -> None:
        reader = conn.reader
        assert reader is not None
        loop = asyncio.get_running_loop()
        try:
            while conn.reader is reader:
                data = await reader.read(READ_SIZE)
                if not data:
                    break
                conn.framer.feed(data)
                for frame in conn.framer.frames():
                    self._receive(conn, frame)
                    if conn.reader is not reader:
                        return
        except CodecError as e:
            self._carry_out(conn, conn.fsm.handle_codec_error(e, loop.time()))
            return
        except OSError as e:
            log.info("event=connection_error peer=%s error=%r", self.key, e)
        except Exception as e:
            self._failed(conn, "read", e)
            return
        if conn.reader is reader:
            self._carry_out(conn, conn.fsm.handle_event(Event.TCP_CONNECTION_FAILS, loop.time()))

    def _receive(self, conn: _Connection, frame: bytes) -> None:
        now = asyncio.get_running_loop().time()
        self.messages_in += 1
        self.updates_in += is_update(frame)
        try:
            decoded = decode_message(frame, conn.fsm.negotiated)
        except CodecError as e:
            self._carry_out(conn, conn.fsm.handle_codec_error(e, now))
            return
        if isinstance(decoded.message, Open) and self._loses_collision(conn, decoded.message):
            self._carry_out(conn, conn.fsm.handle_event(Event.OPEN_COLLISION_DUMP, now))
            return
        self._carry_out(conn, conn.fsm.handle_message(decoded, now))
        conn.framer.max_message_size = conn.fsm.negotiated.max_message_size

    def _loses_collision(self, conn: _Connection, peer_open: Open) -> bool:
        """RFC 4271 §6.8, decided when an OPEN arrives while another connection exists.

        Against an established session the new connection loses, except when the peer does
        graceful restart: then the new connection is the restarted peer (RFC 4724 §4.2) and
        the old one is closed as failed, so its routes are kept as stale.
        """
        now = asyncio.get_running_loop().time()
        for other in list(self._connections):
            if other is conn or other.fsm.state not in (
                State.OPEN_SENT,
                State.OPEN_CONFIRM,
                State.ESTABLISHED,
            ):
                continue
            if other.fsm.state is State.ESTABLISHED:
                old_open = other.fsm.peer_open
                restarts = old_open is not None and any(
                    isinstance(c, GracefulRestart) for c in old_open.capabilities
                )
                if not restarts:
                    log.info("event=collision peer=%s kept=established", self.key)
                    return True
                log.info("event=peer_restarted peer=%s", self.key)
                self._carry_out(other, other.fsm.handle_event(Event.TCP_CONNECTION_FAILS, now))
                continue
            survivor = collision_survivor(self.fsm_config.bgp_identifier, peer_open.bgp_identifier)
            log.info("event=collision peer=%s kept=%s", self.key, survivor.value)
            if conn.initiator is not survivor:
                return True
            self._carry_out(other, other.fsm.handle_event(Event.OPEN_COLLISION_DUMP, now))
        return False

    # --- carrying out the FSM's actions ---------------------------------------------------

    def _carry_out(self, conn: _Connection, actions: list[Action]) -> None:
        # A failure is acted on after the whole batch, so the FSM's actions are never
        # half carried out; the Cease that follows is a batch of its own.
        failure: tuple[str, Exception] | None = None
        for action in actions:
            try:
                self._carry_out_one(conn, action)
            except Exception as error:
                failure = failure or (_TASK_OF_ACTION.get(type(action), "session"), error)
        if failure is not None:
            self._failed(conn, *failure)
        self._reschedule()

    def _carry_out_one(self, conn: _Connection, action: Action) -> None:
        if isinstance(action, Send):
            if conn.writer is not None:
                frame = action.message.encode(conn.fsm.negotiated)
                conn.writer.write(frame)
                self.messages_out += 1
                self.updates_out += is_update(frame)
        elif isinstance(action, Connect):
            # A passive peer is only ever accepted; the FSM's retry just keeps it waiting.
            if not self.peer.passive:
                self._spawn(conn, self._connect(conn), "connect")
        elif isinstance(action, CloseConnection):
            conn.close()
        elif isinstance(action, SessionEstablished):
            self._established = conn
            self._established_at = asyncio.get_running_loop().time()
            self.last_peer_open = action.peer_open
            self.handler.session_established(self, action)
        elif isinstance(action, Deliver):
            self.handler.session_message(self, action)
        elif isinstance(action, SessionDown):
            self._connection_down(conn, action)

    def _connection_down(self, conn: _Connection, down: SessionDown) -> None:
        with contextlib.suppress(ValueError):
            self._connections.remove(conn)
        was_established = conn is self._established
        if was_established:
            self._established = None
        self.last_down = down
        log.info(
            "event=session_down peer=%s established=%s reason=%r sent=%s received=%s",
            self.key,
            was_established,
            down.reason,
            _notification_text(down.sent),
            _notification_text(down.received),
        )
        now = asyncio.get_running_loop().time()
        if was_established and self._established_at is not None:
            # Only a session that stayed up for a whole connect-retry time starts the
            # back-off afresh: one that keeps failing soon after coming up (a peer over its
            # prefix limit, a persistent error) is retried ever more slowly, up to the cap.
            if now - self._established_at >= self.peer.connect_retry_time:
                self._failures = 0
            self._established_at = None
        try:
            self.handler.session_down(self, down, was_established)
        except Exception as error:  # the connection is gone already; the reconnect must come
            log.error(
                "event=task_failed task=handle_down peer=%s error=%r",
                self.key, error, exc_info=error,
            )  # fmt: skip
        if self._running and not self._connections:
            self._schedule_restart()

    def _schedule_restart(self) -> None:
        self._failures += 1
        delay = retry_delay(self._failures, self.peer.connect_retry_time, self._rng.random())
        if self.peer.passive:
            delay = 0.0  # waiting for the peer costs nothing; no loop can form
        self._restart_at = asyncio.get_running_loop().time() + delay

    # --- the one timer -------------------------------------------------------------------

    def _reschedule(self) -> None:
        deadlines = [d for c in self._connections if (d := c.fsm.next_deadline()) is not None]
        if self._restart_at is not None:
            deadlines.append(self._restart_at)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if deadlines and self._running:
            self._timer = asyncio.get_running_loop().call_at(min(deadlines), self._on_timer)

    def _on_timer(self) -> None:
        # A callback, not a task: an exception here would only reach asyncio's handler and
        # leave the session without a timer (no keepalives, no reconnect), so none escapes.
        self._timer = None
        now = asyncio.get_running_loop().time()
        for conn in list(self._connections):
            try:
                actions = conn.fsm.handle_timer(now)
            except Exception as error:
                self._failed(conn, "timer", error)
                continue
            self._carry_out(conn, actions)
        if self._restart_at is not None and self._restart_at <= now:
            self._restart_at = None
            self._open_connection()
        self._reschedule()


_TASK_OF_ACTION: dict[type, str] = {
    Send: "send",
    Connect: "connect",
    CloseConnection: "close",
    SessionEstablished: "handle_established",
    Deliver: "handle_message",
    SessionDown: "handle_down",
}
"""What to call a failure while carrying out each action, in `event=task_failed task=...`."""


def _notification_text(notification: Notification | None) -> str:
    return "-" if notification is None else f"{notification.code}/{notification.subcode}"


def log_task_failure(task: asyncio.Task[None]) -> None:
    """A done-callback: no background task may die silently."""
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("event=task_failed task=%s error=%r", task.get_name(), error, exc_info=error)
