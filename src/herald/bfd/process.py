"""A node's BFD sessions in a process of their own (`python -m herald.bfd.process SOCKET`),
so that they outlive the agent: started by the agent (`agent.bfd.BfdProcess`), adopted by
the next agent after a restart, a crash or a kill -9 of the agent included.

BFD says whether the node forwards; the node's forwarding is the kernel's (nftables), which
an agent restart does not touch. Sessions in the agent's process would go Down with every
agent restart, and the router would take the node out of its ECMP route although it still
forwards. Here they carry the C bit (Control Plane Independent, RFC 5880 §4.1): a peer that
negotiated graceful restart handles the agent's restart with it (RFC 4724) and takes BFD
going Down for what it is, a failure of the path (RFC 5882 §4.3.2).

The agent connects to SOCKET (0600, in the agent's state directory) and speaks
`bfd.control`. One agent at a time: a new connection replaces the previous one (the newer
agent is the live one). Without an agent the sessions keep running for the orphan timeout
the agent gave (by default the graceful restart time), then the process ends: a node whose
agent never came back must not stay in the routers' ECMP for ever.

SOCKET.lock, held (flock) for the life of the process and holding its pid, makes sure there
is one process per socket: a second one started by a racing agent exits at once, and the
agents connect to the first.

`--resident` is for a process started by something else than the agent, which restarts it
when it ends (a container of its own in the agent's Pod, deploy/agent.yaml: a container
restart ends every process in it, so the agent's container cannot hold one that outlives
it): told to stop, or orphaned, it ends its sessions (AdminDown) but keeps running for the
next agent; only SIGTERM ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import signal
import sys
from pathlib import Path

from herald.addresses import IPAddress
from herald.bfd.control import (
    DEFAULT_ORPHAN_TIMEOUT,
    MAX_LINE,
    Changed,
    ControlError,
    Hello,
    Sessions,
    Stop,
    decode_command,
    encode,
)
from herald.bfd.endpoint import BFD_PORT, Endpoint
from herald.bfd.session import StateChange

log = logging.getLogger(__name__)

# An agent that reads none of its reports while this much waits is cut off (it will
# reconnect and read the states in `hello`), rather than this process buffering for ever.
MAX_UNREAD = 4 * MAX_LINE


def lock_path(socket: Path) -> Path:
    return socket.with_name(socket.name + ".lock")


def running_pid(socket: Path) -> int | None:
    """The pid of the process serving `socket`, if one holds its lock."""
    try:
        fd = os.open(lock_path(socket), os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None  # nobody holds it: no process
    finally:
        os.close(fd)


class Server:
    """The sessions and the agent's connection; `done` is set when the process should end."""

    def __init__(
        self,
        endpoint: Endpoint,
        orphan_timeout: float = DEFAULT_ORPHAN_TIMEOUT,
        resident: bool = False,
    ) -> None:
        self.endpoint = endpoint
        self.orphan_timeout = orphan_timeout
        self.resident = resident
        self.done = asyncio.Event()
        self._agent: asyncio.StreamWriter | None = None
        self._orphan: asyncio.TimerHandle | None = None
        self._loop = asyncio.get_running_loop()

    def orphaned(self) -> None:
        """No agent: the sessions end after the orphan timeout unless one connects."""
        if self._orphan is not None:
            self._orphan.cancel()
        self._orphan = self._loop.call_later(self.orphan_timeout, self._orphan_timeout)

    def _orphan_timeout(self) -> None:
        log.warning(
            "event=bfd_orphaned seconds=%.0f sessions=%d action=%s",
            self.orphan_timeout,
            len(self.endpoint.sessions()),
            "end_sessions" if self.resident else "exit",
        )
        self._end()

    def _end(self) -> None:
        """No agent wants sessions: a resident process ends them and waits for the next
        agent, another process ends."""
        if not self.resident:
            self.done.set()
            return
        for peer in list(self.endpoint.sessions()):
            self.endpoint.remove(peer)  # AdminDown: an ending, not a failure

    async def serve_agent(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        previous, self._agent = self._agent, writer
        if previous is not None:
            log.warning("event=bfd_agent_replaced")
            previous.close()
        if self._orphan is not None:
            self._orphan.cancel()
            self._orphan = None
        states = {peer: state for peer, (_, state) in self.endpoint.sessions().items()}
        writer.write(encode(Hello(os.getpid(), states)))
        log.info("event=bfd_agent_connected sessions=%d", len(states))
        try:
            while not self.done.is_set():
                try:
                    line = await reader.readline()
                except (ValueError, ConnectionError) as err:  # over the limit, reset
                    log.warning("event=bfd_agent_dropped error=%r", str(err))
                    break
                if not line:
                    break
                try:
                    self.apply(decode_command(line))
                except ControlError as err:
                    log.warning("event=bfd_command_refused error=%r", str(err))
                    break
        finally:
            writer.close()
            if self._agent is writer:
                self._agent = None
                if not self.done.is_set():
                    log.info("event=bfd_agent_gone orphan_timeout=%.0f", self.orphan_timeout)
                    self.orphaned()

    def apply(self, command: Sessions | Stop) -> None:
        if isinstance(command, Stop):
            log.info("event=bfd_stop_requested")
            self._end()
            return
        self.orphan_timeout = command.orphan_timeout
        for peer in set(self.endpoint.sessions()) - set(command.timers):
            self.endpoint.remove(peer)
        for peer, timers in command.timers.items():
            # The same timers keep the running session (no flap for the peer).
            self.endpoint.add(peer, timers, self.report)

    def report(self, peer: IPAddress, change: StateChange) -> None:
        agent = self._agent
        if agent is None:
            return  # the next agent reads the states in `hello`
        if agent.transport.get_write_buffer_size() > MAX_UNREAD:
            log.warning("event=bfd_agent_not_reading action=disconnect")
            agent.close()
            return
        agent.write(encode(Changed(peer, change)))


async def serve(
    socket: Path, port: int = BFD_PORT, peer_port: int = BFD_PORT, resident: bool = False
) -> int:
    endpoint = Endpoint(port, peer_port, control_plane_independent=True)
    try:
        endpoint.start()
    except OSError as err:
        log.error("event=bfd_start_failed port=%d error=%r", port, str(err))
        return 1
    server = Server(endpoint, resident=resident)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, server.done.set)
    socket.unlink(missing_ok=True)  # a dead process's: the lock says none is alive
    listening = await asyncio.start_unix_server(server.serve_agent, str(socket), limit=MAX_LINE)
    os.chmod(socket, 0o600)
    server.orphaned()  # until the agent that started this process connects
    log.info("event=bfd_process_started socket=%s pid=%d", socket, os.getpid())
    try:
        await server.done.wait()
    finally:
        listening.close()
        socket.unlink(missing_ok=True)
        endpoint.close()  # AdminDown to every peer: an ending, not a failure
        log.info("event=bfd_process_ended")
    return 0


def main(argv: list[str]) -> int:
    """argv: [--detach | --resident] SOCKET [PORT [PEER_PORT]] (ports other than 3784 are
    for tests)."""
    # The agent decides when this process ends (or its orphan timeout): a Ctrl-C meant for
    # the agent must not end the sessions.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(
        level=logging.INFO, format="ts=%(asctime)s level=%(levelname)s bfd=1 %(message)s"
    )
    resident = bool(argv) and argv[0] == "--resident"
    if resident:
        argv = argv[1:]
    elif argv and argv[0] == "--detach":
        # Forks once more and leaves the starter's session: the process is nobody's child
        # but init's, and outlives the agent that started it (and that agent's group).
        argv = argv[1:]
        if os.fork() > 0:
            return 0
        os.setsid()
    os.umask(0o077)  # the socket and the lock are the agent's (root's) alone, from the start
    socket = Path(argv[0])
    port, peer_port = ([int(a) for a in argv[1:3]] + [BFD_PORT, BFD_PORT])[:2]
    socket.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path(socket), os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        log.info("event=bfd_process_running socket=%s action=exit", socket)
        # A resident process is restarted when it ends: not at once, while another holds
        # the socket (an agent started one before this container came up).
        return 1 if resident else 0
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(serve(socket, port, peer_port, resident))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
