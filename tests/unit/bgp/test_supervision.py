"""No background work of the speaker dies silently: a failure injected into each long-lived
task or callback either ends that peer's session with Cease / Out of Resources (RFC 4486
subcode 8), after which the session comes back and the peer gets the whole table again, or
restarts the task with back-off. Two speakers over loopback TCP, as in the loopback tests."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable
from ipaddress import ip_network
from typing import Any

import pytest

from herald.bgp import adj_rib_out as adj_rib_out_module
from herald.bgp import session as session_module
from herald.bgp.export import RouteAttributes
from herald.bgp.fsm import State
from herald.bgp.session import Session
from herald.bgp.speaker import Speaker
from herald.bgp.supervise import Supervised

from .loopback import A, B, next_down, pair, run, state, until

ROUTES = {
    ip_network("203.0.113.10/32"): RouteAttributes(med=5),
    ip_network("203.0.113.11/32"): RouteAttributes(),
    ip_network("2001:db8:10::1/128"): RouteAttributes(),
}
OUT_OF_RESOURCES = "code 6 subcode 8"


def fails_once(
    real: Callable[..., Any], when: Callable[..., bool] = lambda *args: True
) -> Callable[..., Any]:
    """`real`, except that the first call for which `when(*args)` holds raises."""
    failed = False

    def wrapper(*args: Any) -> Any:
        nonlocal failed
        if not failed and when(*args):
            failed = True
            raise RuntimeError("injected failure")
        return real(*args)

    return wrapper


def logged(caplog: pytest.LogCaptureFixture, *parts: str) -> bool:
    return any(all(p in r.getMessage() for p in parts) for r in caplog.records)


def test_a_failing_sync_ceases_the_session_and_the_table_is_sent_again(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Only a has routes to announce; b's sync (an End-of-RIB alone) must not be the one.
    failing = fails_once(adj_rib_out_module.announcements, when=lambda routes, *_: bool(routes))
    monkeypatch.setattr(adj_rib_out_module, "announcements", failing)

    async def body(a: Speaker, b: Speaker) -> None:
        events = b.events()
        a.set_routes(B, ROUTES)
        assert OUT_OF_RESOURCES in await asyncio.wait_for(next_down(events), 8)
        await until(lambda: len(b.received_routes(A)) == 3)
        assert state(a) is State.ESTABLISHED and a.status()[0].advertised_prefixes == 3

    run(pair(body))
    assert logged(caplog, "event=task_failed", "task=sync peer=127.0.0.2", "injected failure")
    assert logged(caplog, "event=session_ceased", "subcode=8")


def test_a_failing_update_handler_ceases_the_session_it_came_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    async def body(a: Speaker, b: Speaker) -> None:
        monkeypatch.setattr(b, "_receive_update", fails_once(b._receive_update))
        events = a.events()
        a.set_routes(B, ROUTES)
        # b ends the session (before, its read task died and only b's hold timer noticed).
        assert OUT_OF_RESOURCES in await asyncio.wait_for(next_down(events), 8)
        await until(lambda: len(b.received_routes(A)) == 3)

    run(pair(body))
    assert logged(caplog, "event=task_failed", "task=handle_message peer=127.0.0.1")


def test_a_failing_timer_ceases_the_session_instead_of_stopping_the_keepalives(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(a: Speaker, b: Speaker) -> None:
        await until(lambda: state(a) is State.ESTABLISHED)
        conn = a._peers[B].session._established
        assert conn is not None
        conn.fsm.handle_timer = fails_once(conn.fsm.handle_timer)  # type: ignore[method-assign]
        events = b.events()
        a.set_routes(B, ROUTES)
        # Before, a's timer was never set again: no keepalives, b's hold timer (code 4).
        assert OUT_OF_RESOURCES in await asyncio.wait_for(next_down(events), 8)
        await until(lambda: len(b.received_routes(A)) == 3)

    run(pair(body))
    assert logged(caplog, "event=task_failed", "task=timer peer=127.0.0.2")


def test_a_failing_connect_task_goes_idle_and_retries_with_back_off(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(session_module, "apply_ttl", fails_once(session_module.apply_ttl))

    async def body(a: Speaker, b: Speaker) -> None:
        # Before, the attempt hung in Connect until the 30 s ConnectRetry timer.
        await until(lambda: state(a) is State.ESTABLISHED, timeout=6)

    run(pair(body, a_peer={"connect_retry_time": 30.0}))
    assert logged(caplog, "event=task_failed", "task=connect peer=127.0.0.2", "injected")


def test_a_failing_accept_closes_the_connection_so_the_peer_retries(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # Only b listens for its peer; the first connection it accepts fails to be taken over.
    monkeypatch.setattr(Session, "accept", fails_once(Session.accept))

    async def body(a: Speaker, b: Speaker) -> None:
        # Before, the connection stayed open unread and a waited 240 s for an OPEN; now a
        # sees it closed in OpenSent and tries again after its ConnectRetry time (RFC 4271).
        await until(lambda: state(a) is State.ESTABLISHED, timeout=8)

    run(pair(body, a_peer={"connect_retry_time": 2.0}))
    assert logged(caplog, "event=task_failed", "task=accept peer=127.0.0.1")


def test_a_failing_stale_timer_still_drops_the_stale_routes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def body(a: Speaker, b: Speaker) -> None:
        b_peer = b._peers[A]
        # The restart timer's call into the helper fails (End-of-RIB takes another path).
        b_peer.restart.handle_timer = fails_once(b_peer.restart.handle_timer)  # type: ignore[method-assign]
        a.set_routes(B, dict(list(ROUTES.items())[:2]))
        await until(lambda: len(b.received_routes(A)) == 2)
        # a goes away without a NOTIFICATION and does not come back.
        conn = a._peers[B].session._established
        assert conn is not None and conn.writer is not None
        conn.writer.transport.abort()
        await until(lambda: b.status()[0].stale_prefixes == 2)
        await a.remove_peer(B)
        await until(lambda: not b.received_routes(A), timeout=5)
        assert not b_peer.restart.stale and b_peer.stale_timer is None

    run(pair(body, a_peer={"graceful_restart_time": 1}))
    assert logged(caplog, "event=task_failed", "task=stale_routes peer=127.0.0.1")


def test_supervised_task_is_restarted_with_back_off_and_reports_each_failure(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    runs: list[float] = []
    failures: list[BaseException] = []

    async def work() -> None:
        runs.append(asyncio.get_running_loop().time())
        if len(runs) < 4:
            raise RuntimeError(f"failure {len(runs)}")
        await asyncio.sleep(3600)

    async def body() -> None:
        task = Supervised("work peer=x", work, failures.append, delay=lambda n: 0.05 * n)
        task.start()
        await until(lambda: len(runs) == 4, timeout=3)
        assert [str(e) for e in failures] == ["failure 1", "failure 2", "failure 3"]
        gaps = [later - earlier for earlier, later in itertools.pairwise(runs)]
        assert gaps[0] >= 0.05 and gaps[1] >= 0.1 and gaps[2] >= 0.15  # back-off grows
        await task.stop()
        assert not task.running

    run(body())
    assert logged(caplog, "event=task_failed task=work peer=x", "failure 3", "restart_in=0.15")
