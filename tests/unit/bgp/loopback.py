"""Speakers in one process over real TCP on 127.0.0.1 and 127.0.0.2, for the loopback tests."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from ipaddress import IPv4Address
from typing import Any

from herald.bgp.fsm import State
from herald.bgp.peer import IPAddress, PeerConfig
from herald.bgp.speaker import PeerEvent, Speaker

A, B = IPv4Address("127.0.0.1"), IPv4Address("127.0.0.2")
A_ID, B_ID = IPv4Address("192.0.2.21"), IPv4Address("192.0.2.1")
FAST = {"hold_time": 3, "connect_retry_time": 1.0}


def run(coro: Coroutine[Any, Any, None], timeout: float = 20.0) -> None:
    asyncio.run(asyncio.wait_for(coro, timeout))


async def until(check: Callable[[], bool], timeout: float = 8.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


def state(speaker: Speaker) -> State:
    return speaker.status()[0].state


async def pair(
    body: Callable[[Speaker, Speaker], Awaitable[None]],
    a_as: int = 64512,
    b_as: int = 64512,
    a_peer: dict[str, Any] | None = None,
    b_peer: dict[str, Any] | None = None,
    b_active: bool = False,
) -> None:
    """Speaker a (at 127.0.0.1) connects to b (at 127.0.0.2), which listens."""
    a = Speaker(a_as, A_ID, listen=(str(A), 0), rng=random.Random(1))
    b = Speaker(b_as, B_ID, listen=(str(B), 0), rng=random.Random(2))
    async with a, b:
        assert b.listen_port is not None and a.listen_port is not None
        await a.add_peer(
            PeerConfig(B, b_as, port=b.listen_port, local_address=A, **{**FAST, **(a_peer or {})})
        )
        await b.add_peer(
            PeerConfig(
                A, a_as, passive=not b_active, port=a.listen_port, local_address=B,
                **{**FAST, **(b_peer or {})},
            )
        )  # fmt: skip
        await body(a, b)


async def next_down(events: AsyncIterator[PeerEvent], peer: IPAddress | None = None) -> str:
    """The reason of the next time a session (of `peer`) goes Idle."""
    async for event in events:
        if event.state is State.IDLE and (peer is None or event.peer == peer):
            return event.reason or ""
    raise AssertionError("the event stream ended")
