"""The /metrics endpoint over loopback, scraped with a real HTTP client (urllib) and
parsed with prometheus_client's own parser; and what misbehaving clients cost it."""

from __future__ import annotations

import asyncio
import socket
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from prometheus_client.parser import text_string_to_metric_families

from herald.agent.status import AgentStatus, SessionStatus
from herald.metrics import server as server_module
from herald.metrics.agent import AgentMetrics
from herald.metrics.server import Exposition, MetricsServer, parse_address, serve_metrics

STATUS = AgentStatus(
    node="w1",
    peers=(
        SessionStatus(
            name="default/tor",
            local_as=64512,
            peer="192.0.2.1",
            peer_as=64512,
            state="Established",
            uptime_seconds=5.0,
            advertised=6,
        ),
    ),
)


def _get(url: str, method: str = "GET") -> tuple[int, str, str]:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


async def _serving(
    produce: Callable[[], Awaitable[bytes]],
    check: Callable[[str], Awaitable[None]],
    min_interval: float = 0.0,
) -> None:
    metrics = await serve_metrics("127.0.0.1:0", produce, min_interval)
    host, port = metrics.address
    try:
        await check(f"http://{host}:{port}")
    finally:
        metrics.close()


def test_an_agents_metrics_scraped_over_http_parse() -> None:
    async def read() -> AgentStatus:
        return STATUS

    exported = AgentMetrics("w1", read)
    exported.datapath_applied(0.01, False)

    async def check(base: str) -> None:
        code, content_type, text = await asyncio.to_thread(_get, base + "/metrics")
        assert code == 200 and content_type.startswith("text/plain; version=0.0.4")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        (up,) = families["herald_bgp_session_up"].samples
        assert up.value == 1 and up.labels["peer"] == "192.0.2.1"
        (announced,) = families["herald_bgp_announced_prefixes"].samples
        assert announced.value == 6
        assert families["herald_datapath_apply_duration_seconds"].type == "histogram"

    asyncio.run(_serving(exported.exposition, check))


def test_other_paths_and_methods_are_refused() -> None:
    async def produce() -> bytes:
        return b"x 1\n"

    async def check(base: str) -> None:
        assert (await asyncio.to_thread(_get, base + "/"))[0] == 404
        assert (await asyncio.to_thread(_get, base + "/metrics", "POST"))[0] == 405
        assert (await asyncio.to_thread(_get, base + "/metrics?name[]=x"))[0] == 200

    asyncio.run(_serving(produce, check))


def test_a_failed_reading_costs_one_scrape() -> None:
    calls = 0

    async def produce() -> bytes:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("status unreadable")
        return b"x 1\n"

    async def check(base: str) -> None:
        code, _, text = await asyncio.to_thread(_get, base + "/metrics")
        assert code == 500 and "status unreadable" in text
        assert (await asyncio.to_thread(_get, base + "/metrics"))[:1] == (200,)

    asyncio.run(_serving(produce, check))


def test_a_scrape_flood_makes_one_exposition_and_the_loop_keeps_running() -> None:
    made = 0

    async def produce() -> bytes:
        nonlocal made
        made += 1
        await asyncio.sleep(0.05)  # a reading that takes a while: everyone waits for it
        return b"x 1\n"

    async def check(base: str) -> None:
        ticks = 0

        async def ticker() -> None:  # stands for the BGP and BFD timers
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0.001)

        running = asyncio.create_task(ticker())
        loop = asyncio.get_running_loop()
        with ThreadPoolExecutor(64) as clients:
            answers = await asyncio.gather(
                *(
                    loop.run_in_executor(clients, _scrape_or_refused, base + "/metrics")
                    for _ in range(64)
                )
            )
        running.cancel()
        served = [a for a in answers if a == 200]
        assert served and all(a in (200, "refused") for a in answers)
        # 64 scrapes within the reuse interval: one exposition, not 64.
        assert made == 1
        assert ticks > 10  # the loop ran its other work meanwhile

    asyncio.run(_serving(produce, check, min_interval=600))


def _scrape_or_refused(url: str) -> int | str:
    try:
        return _get(url)[0]
    except (ConnectionError, urllib.error.URLError):
        return "refused"  # over MAX_CLIENTS: closed at once


def test_a_silent_client_is_dropped_and_others_are_served(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_module, "READ_TIMEOUT", 0.2)

    async def produce() -> bytes:
        return b"x 1\n"

    async def check(base: str) -> None:
        host, port = base.removeprefix("http://").rsplit(":", 1)
        silent = socket.create_connection((host, int(port)))
        silent.settimeout(5)
        try:
            assert (await asyncio.to_thread(_get, base + "/metrics"))[0] == 200
            # The server hangs up on the one that never sent a request.
            assert await asyncio.to_thread(silent.recv, 1) == b""
        finally:
            silent.close()

    asyncio.run(_serving(produce, check))


def test_an_oversized_request_is_dropped() -> None:
    async def produce() -> bytes:
        return b"x 1\n"

    async def check(base: str) -> None:
        host, port = base.removeprefix("http://").rsplit(":", 1)

        def send_huge() -> bytes:
            with socket.create_connection((host, int(port))) as conn:
                conn.settimeout(5)
                conn.sendall(b"GET /metrics HTTP/1.1\r\nX: " + b"a" * 20000 + b"\r\n\r\n")
                return conn.recv(100)

        assert await asyncio.to_thread(send_huge) == b""
        assert (await asyncio.to_thread(_get, base + "/metrics"))[0] == 200

    asyncio.run(_serving(produce, check))


def test_an_exposition_is_reused_for_its_interval_then_made_again() -> None:
    now = [0.0]
    made = 0

    async def produce() -> bytes:
        nonlocal made
        made += 1
        return f"x {made}\n".encode()

    async def main() -> list[bytes]:
        exposition = Exposition(produce, min_interval=1.0, clock=lambda: now[0])
        first = await exposition.get()
        now[0] = 0.5
        again = await exposition.get()
        now[0] = 1.5
        fresh = await exposition.get()
        return [first, again, fresh]

    assert asyncio.run(main()) == [b"x 1\n", b"x 1\n", b"x 2\n"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:9090", ("127.0.0.1", 9090)),
        ("[::1]:9090", ("::1", 9090)),
        (":9090", ("::", 9090)),
        ("node1.example:9090", ("node1.example", 9090)),
    ],
)
def test_metrics_addresses(text: str, expected: tuple[str, int]) -> None:
    assert parse_address(text) == expected


@pytest.mark.parametrize("text", ["9090", "127.0.0.1", "::1:9090", "[zz]:1", "h:x", "h:70000"])
def test_bad_metrics_addresses_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match=r"HOST:PORT|bracket|IPv6"):
        parse_address(text)


def test_the_server_type_is_what_serve_metrics_returns() -> None:
    async def produce() -> bytes:
        return b""

    async def main() -> None:
        server = await serve_metrics("127.0.0.1:0", produce)
        assert isinstance(server, MetricsServer)
        server.close()

    asyncio.run(main())
