"""The status socket: what the agent serves is what the CLI reads, one typed model."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from herald.agent.status import (
    AgentStatus,
    L2Owner,
    L2Status,
    SessionStatus,
    query,
    query_all,
    serve_status,
    socket_path,
)

STATUS = AgentStatus(
    node="w1",
    applied_at=1.5,
    apply_ms=2.0,
    services=("default/web",),
    peers=(
        SessionStatus(
            name="i/router",
            local_as=64512,
            peer="192.0.2.1",
            peer_as=64512,
            state="Established",
            routes=("203.0.113.0/32",),
        ),
    ),
    l2=L2Status(members=("w1",), live=("w1",), owners=(L2Owner(vip="192.0.2.200", owner="w1"),)),
    problems=("plan: Service default/x: no endpoint defines target port 'http'",),
)


def test_what_the_agent_serves_the_cli_reads_back(tmp_path: Path) -> None:
    path = socket_path(tmp_path, "w1")

    async def main() -> AgentStatus:
        server = await serve_status(path, lambda _: STATUS)
        try:
            return await asyncio.to_thread(query, path)
        finally:
            server.close()

    assert asyncio.run(main()) == STATUS
    # The wire keeps the names `herald status -o json` always had.
    wire = STATUS.to_json()
    assert wire["appliedAt"] == 1.5 and "error" not in wire
    assert wire["peers"][0]["localAS"] == 64512  # type: ignore[index]


def test_an_agent_that_does_not_answer_is_listed_with_why(tmp_path: Path) -> None:
    (tmp_path / "w2.sock").touch()  # a stale socket file: nobody listens
    (agent,) = query_all(tmp_path)
    assert agent.node == "w2" and agent.error is not None and "no answer" in agent.error


def test_a_slow_frontends_answer_is_built_off_the_loop(tmp_path: Path) -> None:
    # The agent's frontends read the nft counters, seconds with a large Maglev table: the
    # loop (BGP timers, other status requests) must go on meanwhile.
    path = socket_path(tmp_path, "w1")
    release = threading.Event()

    def blocking_read() -> AgentStatus:
        assert release.wait(10), "never released"
        return STATUS

    async def frontends() -> AgentStatus:
        return await asyncio.to_thread(blocking_read)

    def on_loop(_: bool) -> AgentStatus:
        raise AssertionError("the frontends answer was built on the loop")

    async def main() -> None:
        server = await serve_status(
            path, lambda wanted: STATUS if not wanted else on_loop(wanted), None, frontends
        )
        try:
            slow = asyncio.ensure_future(asyncio.to_thread(query, path, 10.0, True))
            await asyncio.sleep(0.2)
            # Meanwhile the plain status is answered at once.
            assert await asyncio.to_thread(query, path, 1.0) == STATUS
            release.set()
            assert await slow == STATUS
        finally:
            release.set()
            server.close()

    asyncio.run(main())
