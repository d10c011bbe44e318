"""The node's BFD process (`bfd.process`) and the agent's side of it (`agent.bfd`), for
real over loopback: a process on one port, a plain `Endpoint` standing for the router on
another. Each test ends the processes it started, by pid."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

from herald.agent.bfd import BfdProcess
from herald.bfd.endpoint import Endpoint
from herald.bfd.packet import State
from herald.bfd.process import running_pid
from herald.bfd.session import StateChange, Timers
from herald.lab.netns import alive

from .test_endpoint import free_udp_port

LOOPBACK = IPv4Address("127.0.0.1")
FAST = Timers.from_ms(50, 50, 3)  # detection 150 ms


async def until(check: Callable[[], bool], timeout: float, what: str = "") -> None:
    try:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what or check}") from None


@dataclass
class Bench:
    socket: Path
    ports: tuple[int, int]  # the process's, the router's
    router: Endpoint
    seen: list[StateChange] = field(default_factory=list)  # by the router

    def agent(self, **options: Any) -> BfdProcess:
        return BfdProcess(self.socket, ports=self.ports, **options)

    def router_state(self) -> State | None:
        return self.router.state(LOOPBACK)

    def downs(self) -> int:
        return sum(c.new is State.DOWN for c in self.seen)


@asynccontextmanager
async def bench(tmp_path: Path) -> AsyncIterator[Bench]:
    ports = free_udp_port(), free_udp_port()
    router = Endpoint(ports[1], peer_port=ports[0])
    router.start()
    built = Bench(tmp_path / "node.bfd", ports, router)
    router.add(LOOPBACK, FAST, lambda _, change: built.seen.append(change))
    try:
        yield built
    finally:
        router.close()
        pid = running_pid(built.socket)
        if pid is not None:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def record(into: list[StateChange]) -> Callable[[Any, StateChange], None]:
    return lambda _, change: into.append(change)


def test_a_restarted_agent_adopts_the_sessions_and_the_peer_sees_no_down(
    tmp_path: Path,
) -> None:
    async def body() -> None:
        async with bench(tmp_path) as b:
            first = b.agent()
            first.add(LOOPBACK, FAST, record([]))
            await first.commit()
            await until(lambda: first.state(LOOPBACK) is State.UP, 10, "the session Up")
            await until(lambda: b.router_state() is State.UP, 2, "Up at the router")
            session = b.router._peers[LOOPBACK].session
            assert session.remote_control_plane_independent, "the C bit reaches the peer"
            pid = first.pid
            assert pid is not None and not first.adopted
            await first.close()  # the agent ends: its socket closes, as with kill -9
            await asyncio.sleep(0.6)  # four detection times without an agent
            assert b.router_state() is State.UP and b.downs() == 0
            second = b.agent()
            second.start()
            await second.wait_connected(5)
            assert second.adopted and second.pid == pid
            changes: list[StateChange] = []
            second.add(LOOPBACK, FAST, record(changes))
            assert second.state(LOOPBACK) is State.UP, "known from hello, before any change"
            await second.commit()
            await asyncio.sleep(0.3)
            assert b.downs() == 0 and changes == []
            assert second.problems() == []
            await second.close()

    asyncio.run(body())


def test_a_killed_process_costs_bfd_only_and_is_started_again(tmp_path: Path) -> None:
    async def body() -> None:
        async with bench(tmp_path) as b:
            agent = b.agent(delay=lambda failures: 0.2)
            changes: list[StateChange] = []
            agent.add(LOOPBACK, FAST, record(changes))
            await agent.commit()
            await until(lambda: agent.state(LOOPBACK) is State.UP, 10, "the session Up")
            pid = agent.pid
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            await until(lambda: agent.problems() != [], 2, "the loss reported")
            assert "BFD process ended" in agent.problems()[0]
            assert agent.state(LOOPBACK) is State.DOWN
            # The speaker heard of no Up -> Down: nothing says the path failed.
            assert not any(c.old is State.UP and c.new is State.DOWN for c in changes)
            await until(lambda: b.downs() > 0, 2, "the router's detection")
            await until(lambda: agent.state(LOOPBACK) is State.UP, 10, "Up with a new process")
            assert agent.pid not in (None, pid)
            assert "BFD process ended and was started again" in agent.problems()[0]
            assert not alive(pid)
            await agent.close()

    asyncio.run(body())


def test_without_an_agent_the_process_ends_after_the_orphan_timeout(tmp_path: Path) -> None:
    async def body() -> None:
        async with bench(tmp_path) as b:
            agent = b.agent(orphan_timeout=0.5)
            agent.add(LOOPBACK, FAST, record([]))
            await agent.commit()
            await until(lambda: b.router_state() is State.UP, 10, "Up at the router")
            pid = agent.pid
            assert pid is not None
            await agent.close()
            await until(lambda: not alive(pid), 5, "the orphaned process to end")
            # It said AdminDown on its way out: an ending, not a failure.
            await until(lambda: b.downs() > 0, 2, "Down at the router")
            assert b.seen[-1].by_peer_admin
            assert not b.socket.exists()

    asyncio.run(body())


def test_no_sessions_wanted_ends_the_process(tmp_path: Path) -> None:
    async def body() -> None:
        async with bench(tmp_path) as b:
            agent = b.agent()
            agent.add(LOOPBACK, FAST, record([]))
            await agent.commit()
            await until(lambda: agent.state(LOOPBACK) is State.UP, 10, "the session Up")
            pid = agent.pid
            assert pid is not None
            agent.remove(LOOPBACK)
            await agent.commit()
            await until(lambda: not alive(pid), 5, "the process to end")
            assert agent.state(LOOPBACK) is None and agent.problems() == []

    asyncio.run(body())


def test_one_process_per_socket(tmp_path: Path) -> None:
    async def body() -> None:
        async with bench(tmp_path) as b:
            agent = b.agent()
            agent.add(LOOPBACK, FAST, record([]))
            await agent.commit()
            await agent.wait_connected(10)
            argv = [sys.executable, "-m", "herald.bfd.process", str(b.socket)]
            second = subprocess.run([*argv, *map(str, b.ports)], timeout=20, check=False)
            assert second.returncode == 0, "a second process leaves at once"
            assert running_pid(b.socket) == agent.pid
            await asyncio.sleep(0.2)
            assert agent.problems() == []
            await agent.close()

    asyncio.run(body())


def test_a_bad_command_costs_that_connection_only(tmp_path: Path) -> None:
    async def body() -> None:
        async with bench(tmp_path) as b:
            agent = b.agent()
            agent.add(LOOPBACK, FAST, record([]))
            await agent.commit()
            await until(lambda: b.router_state() is State.UP, 10, "Up at the router")
            reader, writer = await asyncio.open_unix_connection(str(b.socket))
            await reader.readline()  # hello
            writer.write(b'{"op": "dance"}\n')
            assert await reader.readline() == b"", "the process hangs up"
            writer.close()
            # The newer connection replaced the agent's: the agent connects again.
            await until(lambda: agent.problems() == [] and agent.pid is not None, 10)
            await asyncio.sleep(0.3)
            assert b.router_state() is State.UP and b.downs() == 0
            await agent.close()

    asyncio.run(body())


def start_resident(b: Bench) -> subprocess.Popen[bytes]:
    """A resident process as a container of its own would run it (not the agent's)."""
    argv = [sys.executable, "-m", "herald.bfd.process", "--resident", str(b.socket)]
    return subprocess.Popen([*argv, *map(str, b.ports)], stdin=subprocess.DEVNULL)


def test_an_external_process_is_only_connected_to_never_started(tmp_path: Path) -> None:
    async def body() -> None:
        async with bench(tmp_path) as b:
            agent = b.agent(spawn=False, delay=lambda failures: 0.1)
            agent.add(LOOPBACK, FAST, record([]))
            await agent.commit()
            await until(lambda: agent.problems() != [], 5, "the missing process said")
            assert "no BFD process listens" in agent.problems()[0]
            await asyncio.sleep(0.3)
            assert running_pid(b.socket) is None, "the agent started none"
            resident = start_resident(b)
            try:
                await until(lambda: agent.state(LOOPBACK) is State.UP, 10, "Up once it runs")
                assert agent.pid == resident.pid
                await agent.close()
            finally:
                resident.kill()
                resident.wait()

    asyncio.run(body())


def test_a_resident_process_ends_its_sessions_but_not_itself(tmp_path: Path) -> None:
    async def body() -> None:
        async with bench(tmp_path) as b:
            resident = start_resident(b)
            try:
                agent = b.agent(spawn=False, orphan_timeout=0.5)
                agent.add(LOOPBACK, FAST, record([]))
                await agent.commit()
                await until(lambda: b.router_state() is State.UP, 10, "Up at the router")
                # No sessions wanted: AdminDown to the router, the process stays.
                agent.remove(LOOPBACK)
                await agent.commit()
                await until(lambda: b.downs() > 0, 5, "AdminDown at the router")
                assert b.seen[-1].by_peer_admin
                await asyncio.sleep(0.3)
                assert resident.poll() is None and running_pid(b.socket) == resident.pid
                # An agent again; then orphaned: the sessions end, the process does not.
                again = b.agent(spawn=False, orphan_timeout=0.5)
                again.add(LOOPBACK, FAST, record([]))
                await again.commit()
                await until(lambda: b.router_state() is State.UP, 10, "Up again")
                downs = b.downs()
                await again.close()
                await until(lambda: b.downs() > downs, 5, "AdminDown after the orphan timeout")
                assert b.seen[-1].by_peer_admin
                assert resident.poll() is None and b.socket.exists()
                # SIGTERM ends it.
                resident.terminate()
                assert resident.wait(10) == 0
            finally:
                if resident.poll() is None:
                    resident.kill()
                    resident.wait()

    asyncio.run(body())
