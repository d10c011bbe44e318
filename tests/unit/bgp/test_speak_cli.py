"""`herald bgp speak`: peers and routes files, its defaults, its background tasks."""

from __future__ import annotations

import asyncio
from ipaddress import IPv4Address, IPv6Address, ip_network
from typing import Any

import click
import pytest

from herald.bgp.export import RouteAttributes
from herald.bgp.fsm import State
from herald.bgp.limits import DEFAULT_MAX_PREFIXES
from herald.bgp.speaker import PeerEvent, PeerStatus, Speaker
from herald.bgp.wire import LargeCommunity
from herald.cli import bgp as cli_bgp
from herald.cli.bgp import _peer_config, background_tasks, parse_peer, parse_routes, speak


def test_peer_forms() -> None:
    assert parse_peer("192.0.2.1:64512") == (IPv4Address("192.0.2.1"), 64512, False)
    assert parse_peer("192.0.2.1:4200000000:passive") == (
        IPv4Address("192.0.2.1"), 4200000000, True,
    )  # fmt: skip
    assert parse_peer("[2001:db8::1]:64512") == (IPv6Address("2001:db8::1"), 64512, False)
    assert parse_peer("2001:db8::1:64512:passive") == (IPv6Address("2001:db8::1"), 64512, True)
    with pytest.raises(click.BadParameter, match="ADDRESS:AS"):
        parse_peer("192.0.2.1")


def test_routes_file_fields_override_command_line_defaults() -> None:
    defaults = RouteAttributes(med=5)
    routes = parse_routes(
        {
            "routes": [
                "203.0.113.10/32",
                {
                    "prefix": "2001:db8::10/128",
                    "communities": ["64512:100"],
                    "largeCommunities": ["4200000000:1:2"],
                    "localPref": 300,
                },
            ]
        },
        defaults,
    )
    assert routes[ip_network("203.0.113.10/32")] == defaults
    v6 = routes[ip_network("2001:db8::10/128")]
    assert v6.med == 5 and v6.local_pref == 300
    assert v6.communities == (64512 << 16 | 100,)
    assert v6.large_communities == (LargeCommunity(4200000000, 1, 2),)
    with pytest.raises(click.BadParameter, match=r"routes\[0\]"):
        parse_routes([{"prefix": "not-a-prefix"}], defaults)


def _options(*args: str) -> dict[str, Any]:
    required = ["--local-as", "64512", "--router-id", "192.0.2.21", "--peer", "192.0.2.1:64512"]
    return speak.make_context("speak", [*required, *args]).params


def test_received_prefixes_are_limited_by_default_as_in_the_agent() -> None:
    # Before, no --max-prefixes meant no limit: a router leaking its table filled memory.
    assert _peer_config("192.0.2.1:64512", _options()).max_prefixes == DEFAULT_MAX_PREFIXES
    assert _peer_config("192.0.2.1:64512", _options("--max-prefixes", "50")).max_prefixes == 50
    assert _peer_config("192.0.2.1:64512", _options("--max-prefixes", "0")).max_prefixes is None


def test_the_commands_background_tasks_are_restarted_when_they_fail(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The event printer and the status report: a failure is logged and the task runs
    again (before, the task died unnoticed and printing stopped for good)."""
    printed: list[str] = []
    failed = {"echo": False, "status": False}

    def echo(message: str, **_: object) -> None:
        if not failed["echo"]:
            failed["echo"] = True
            raise RuntimeError("injected failure in echo")
        printed.append(message)

    monkeypatch.setattr(cli_bgp.click, "echo", echo)

    async def body() -> None:
        speaker = Speaker(64512, IPv4Address("192.0.2.21"), listen=None)
        real_status = speaker.status

        def status() -> list[PeerStatus]:
            if not failed["status"]:
                failed["status"] = True
                raise RuntimeError("injected failure in status")
            return real_status()

        speaker.status = status  # type: ignore[method-assign]
        tasks = background_tasks(speaker, status_interval=0.01, delay=lambda failures: 0.01)
        for task in tasks:
            task.start()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 5
        while not any("state=Established" in line for line in printed):
            assert loop.time() < deadline, "the event printer did not come back"
            speaker._publish(PeerEvent(IPv4Address("192.0.2.1"), State.ESTABLISHED))
            await asyncio.sleep(0.01)
        for task in tasks:
            assert task.running and task.failures == 1
            await task.stop()

    asyncio.run(asyncio.wait_for(body(), 10))
    messages = [r.getMessage() for r in caplog.records]
    assert any("task=print_events" in m and "injected failure in echo" in m for m in messages)
    assert any("task=status_report" in m and "injected failure in status" in m for m in messages)
