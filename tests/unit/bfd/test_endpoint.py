"""Two BFD endpoints in one process over loopback UDP (each listening on a free port of its
own and sending to the other's): sessions come Up, and a session whose handling raises is
started afresh with back-off instead of dying or taking its caller down."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from ipaddress import IPv4Address
from typing import Any

import pytest

from herald.bfd import endpoint as endpoint_module
from herald.bfd.endpoint import Endpoint
from herald.bfd.packet import State
from herald.bfd.session import StateChange, Timers

LOOPBACK = IPv4Address("127.0.0.1")  # each endpoint's peer: the other one, on this address
FAST = Timers.from_ms(50, 50, 3)


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def two_endpoints() -> AsyncIterator[tuple[Endpoint, Endpoint]]:
    a_port, b_port = free_udp_port(), free_udp_port()
    a, b = Endpoint(a_port, peer_port=b_port), Endpoint(b_port, peer_port=a_port)
    a.start()
    b.start()
    try:
        yield a, b
    finally:
        a.close()
        b.close()


async def until(check: Callable[[], bool], timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while not check():
            await asyncio.sleep(0.02)


def record(into: list[StateChange]) -> Callable[[Any, StateChange], None]:
    return lambda address, change: into.append(change)


def fails_once(real: Callable[..., Any]) -> Callable[..., Any]:
    failed = False

    def wrapper(*args: Any) -> Any:
        nonlocal failed
        if not failed:
            failed = True
            raise RuntimeError("injected failure")
        return real(*args)

    return wrapper


def logged(caplog: pytest.LogCaptureFixture, *parts: str) -> bool:
    return any(all(p in r.getMessage() for p in parts) for r in caplog.records)


def test_two_endpoints_come_up() -> None:
    async def body() -> None:
        async with two_endpoints() as (a, b):
            a.add(LOOPBACK, FAST, record([]))
            b.add(LOOPBACK, FAST, record([]))
            await until(lambda: a.state(LOOPBACK) is b.state(LOOPBACK) is State.UP, 3)

    asyncio.run(body())


def test_a_session_failing_as_it_is_added_restarts_and_add_returns(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The first packet a's new session would send raises; b waits (passive) for a to speak,
    # so nothing but the restart can bring the session up. Before, add() itself raised.
    monkeypatch.setattr(endpoint_module.Session, "due", fails_once(endpoint_module.Session.due))

    async def body() -> None:
        async with two_endpoints() as (a, b):
            b.add(LOOPBACK, Timers.from_ms(50, 50, 3, passive=True), record([]))
            a.add(LOOPBACK, FAST, record([]))
            await until(lambda: a.state(LOOPBACK) is b.state(LOOPBACK) is State.UP, 4)

    asyncio.run(body())
    assert logged(caplog, "event=task_failed task=bfd peer=127.0.0.1", "restart_in=1.0s")


def test_a_session_failing_while_up_is_restarted_and_comes_up_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body() -> None:
        async with two_endpoints() as (a, b):
            b_changes: list[StateChange] = []
            a.add(LOOPBACK, FAST, record([]))
            b.add(LOOPBACK, FAST, record(b_changes))
            await until(lambda: a.state(LOOPBACK) is b.state(LOOPBACK) is State.UP, 3)
            session = a._peers[LOOPBACK].session
            session.receive = fails_once(session.receive)  # type: ignore[method-assign]
            # a drops its session: b detects the silence, then both come up again.
            await until(lambda: b.state(LOOPBACK) is State.DOWN, 2)
            await until(lambda: a.state(LOOPBACK) is b.state(LOOPBACK) is State.UP, 4)
            assert a._peers[LOOPBACK].session is not session
            assert (State.UP, State.DOWN) in [(c.old, c.new) for c in b_changes]

    asyncio.run(body())
    assert logged(caplog, "event=task_failed task=bfd peer=127.0.0.1", "injected failure")
