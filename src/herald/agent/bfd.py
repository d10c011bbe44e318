"""The agent's side of the node's BFD process (`bfd.process`): it finds the process that
an earlier agent started (a restart, a crash, a kill -9) and adopts its sessions, or starts
one; tells it the sessions the plan wants; hands its state changes to the BGP speakers.

It is what the speakers use for BFD (`add`, `remove`, `state`, as `bfd.endpoint.Endpoint`
in a speaker's own process): one for every speaker of the agent. What speakers add and
remove is sent as a whole on `commit`, once the agent has applied a plan's peers, so that a
peer removed and added again within one plan (new settings) is one change for the process,
and an adopting agent never sends "no sessions" before its first plan.

The connection is a supervised task (`bgp.supervise.Supervised`): when the process ends
(killed, crashed) the agent reports it in its problems and starts one again, after 1 s
doubling to 30 s while it keeps ending. Losing the process costs BFD only: the speakers
are not told that any session went Down (nothing says the path failed), and BGP goes on.
The peers see BFD Down, since the packets stop, and decide for themselves (RFC 5882).

The agent's own end (`close`) leaves the process running: the next agent adopts it.

With `spawn=False` the agent never starts one: the process is started by someone else
(`--resident`, in a container of its own, deploy/agent.yaml) and the agent only connects,
retrying with the same back-off, and says so in its problems while it cannot.
"""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from herald.addresses import IPAddress
from herald.bfd.control import (
    DEFAULT_ORPHAN_TIMEOUT,
    MAX_LINE,
    Changed,
    Hello,
    Sessions,
    Stop,
    decode_report,
    encode,
)
from herald.bfd.endpoint import BFD_PORT
from herald.bfd.packet import State
from herald.bfd.process import running_pid
from herald.bfd.session import StateChange, Timers
from herald.bgp.supervise import Supervised, default_delay

log = logging.getLogger(__name__)

# How long a started process may take to listen on its socket.
START_TIMEOUT = 10.0
# A process that ended stays in the agent's problems this long after its replacement
# connected: its sessions are back within seconds, and the end would otherwise go unseen.
RECOVERY_SHOWN = 60.0

OnChange = Callable[[IPAddress, StateChange], None]


def socket_of(state_dir: Path, node: str) -> Path:
    """Where `node`'s BFD process listens: beside the agent's status socket, under a
    name `herald status` does not take for an agent's."""
    return state_dir / f"{node}.bfd"


class BfdProcess:
    def __init__(
        self,
        socket: Path,
        orphan_timeout: float = DEFAULT_ORPHAN_TIMEOUT,
        ports: tuple[int, int] = (BFD_PORT, BFD_PORT),
        delay: Callable[[int], float] = default_delay,
        spawn: bool = True,
    ) -> None:
        self.socket = socket
        self.spawn = spawn
        self.orphan_timeout = orphan_timeout
        self.ports = ports
        self.pid: int | None = None  # of the process, once connected
        self.adopted = False  # the process was running before this agent connected
        self._wanted: dict[IPAddress, tuple[Timers, OnChange]] = {}
        self._committed = False
        self._states: dict[IPAddress, State] = {}
        self._writer: asyncio.StreamWriter | None = None
        self._connected = asyncio.Event()
        self._failure: str | None = None
        self._recovered: asyncio.TimerHandle | None = None
        self._task = Supervised(f"bfd_process socket={socket}", self._run, self._failed, delay)

    # -- what the agent asks ---------------------------------------------------------------

    def start(self) -> None:
        """Adopts the running process at once, if there is one (no process is started for
        an agent without BFD peers; `commit` starts one when the plan has some)."""
        if running_pid(self.socket) is not None:
            self._task.start()

    async def commit(self) -> None:
        """Sends the sessions the speakers want now; starts the process if none runs, and
        ends it when none is wanted any more."""
        self._committed = True
        if self._wanted:
            self._task.start()
            self._send(self._sessions())
        elif self._task.running:
            self._send(Stop())
            await self._task.stop()
            self._disconnected()

    async def wait_connected(self, timeout: float) -> None:
        await asyncio.wait_for(self._connected.wait(), timeout)

    async def close(self) -> None:
        """This agent ends; the process and its sessions stay for the next one."""
        await self._task.stop()
        self._disconnected()
        self._recover()

    def problems(self) -> list[str]:
        return [self._failure] if self._failure else []

    # -- what a speaker asks (as of an Endpoint) -------------------------------------------

    def add(self, address: IPAddress, timers: Timers, on_change: OnChange) -> None:
        self._wanted[address] = (timers, on_change)

    def remove(self, address: IPAddress) -> None:
        self._wanted.pop(address, None)

    def state(self, address: IPAddress) -> State | None:
        if address not in self._wanted:
            return None
        return self._states.get(address, State.DOWN)

    # -- the connection --------------------------------------------------------------------

    def _sessions(self) -> Sessions:
        timers = {peer: timers for peer, (timers, _) in self._wanted.items()}
        return Sessions(timers, self.orphan_timeout)

    def _send(self, message: Sessions | Stop) -> None:
        if self._writer is not None:
            self._writer.write(encode(message))

    async def _run(self) -> None:
        reader, writer = await self._connect()
        try:
            first = decode_report(await reader.readline())
            if not isinstance(first, Hello):
                raise ConnectionError(f"the BFD process said {first!r} before hello")
            if self._failure is not None:
                self._recovering(first.pid, replaced=first.pid != self.pid)
            self.pid = first.pid
            self._states = dict(first.states)  # adopted sessions, before any is added
            self._writer = writer
            self._connected.set()
            log.info(
                "event=bfd_process_connected pid=%d adopted=%s sessions=%s",
                first.pid,
                self.adopted,
                ",".join(f"{p}:{s.name.lower()}" for p, s in first.states.items()) or "none",
            )
            if self._committed:
                self._send(self._sessions())
            while True:
                line = await reader.readline()
                if not line:
                    raise ConnectionError("the BFD process closed its socket")
                report = decode_report(line)
                if isinstance(report, Changed):
                    self._changed(report.peer, report.change)
        finally:
            self._disconnected()
            writer.close()

    def _changed(self, peer: IPAddress, change: StateChange) -> None:
        self._states[peer] = change.new
        wanted = self._wanted.get(peer)
        if wanted is None:
            return  # not this agent's (yet): adopted, and the first commit decides
        log.info(
            "event=bfd_state peer=%s before=%s after=%s diag=%s",
            peer, change.old.name, change.new.name, change.diag.name,
        )  # fmt: skip
        try:
            wanted[1](peer, change)
        except Exception:
            log.exception("event=bfd_callback_failed peer=%s", peer)

    def _disconnected(self) -> None:
        self._writer = None
        self._connected.clear()
        self._states.clear()

    async def _connect(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """The running process's socket, or a process started and its socket."""
        try:
            connection = await asyncio.open_unix_connection(str(self.socket), limit=MAX_LINE)
            self.adopted = True
            return connection
        except (FileNotFoundError, ConnectionRefusedError) as err:
            if not self.spawn:
                raise OSError(f"no BFD process listens on {self.socket}") from err
        self.adopted = False
        self.socket.parent.mkdir(parents=True, exist_ok=True)
        # The process detaches (forks again, a session of its own): it is no child of this
        # agent, so it outlives it, and the agent never has to reap it.
        starter = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "herald.bfd.process", "--detach", str(self.socket),
            *map(str, self.ports), stdin=subprocess.DEVNULL,
        )  # fmt: skip
        if await starter.wait() != 0:
            raise OSError(f"the BFD process did not start (exit status {starter.returncode})")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT
        while True:
            try:
                return await asyncio.open_unix_connection(str(self.socket), limit=MAX_LINE)
            except (FileNotFoundError, ConnectionRefusedError) as err:
                if loop.time() > deadline:
                    raise OSError(f"the BFD process does not listen on {self.socket}") from err
                await asyncio.sleep(0.02)

    def _recovering(self, pid: int, replaced: bool) -> None:
        """Connected again after a failure. The same process (the connection alone was
        lost) is no news; a new one is said for a while."""
        if not replaced:
            self._recover()
            return
        self._failure = (
            f"bfd: the BFD process ended and was started again at "
            f"{time.strftime('%H:%M:%S', time.gmtime())} UTC (pid {pid}); the routers saw "
            "BFD Down meanwhile"
        )
        if self._recovered is not None:
            self._recovered.cancel()
        self._recovered = asyncio.get_running_loop().call_later(RECOVERY_SHOWN, self._recover)

    def _recover(self) -> None:
        if self._recovered is not None:
            self._recovered.cancel()
        self._recovered = None
        self._failure = None

    def _failed(self, error: Exception) -> None:
        self._disconnected()
        if self._recovered is not None:
            self._recovered.cancel()
            self._recovered = None
        self._failure = (
            f"bfd: the BFD process ended or cannot be reached ({error}); BFD sessions are "
            f"down (BGP is not), starting it again (failure {self._task.failures} in a row)"
        )
