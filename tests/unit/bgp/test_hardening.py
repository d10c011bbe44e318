"""What an adversarial peer found (none were crashes), against a real Speaker over loopback
TCP with a hand-driven peer: the first-AS check, ROUTE-REFRESH for what was never
negotiated, and the default limit on received prefixes."""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from ipaddress import ip_network
from typing import Any

import pytest

from herald.bgp.export import RouteAttributes
from herald.bgp.limits import DEFAULT_MAX_PREFIXES
from herald.bgp.packing import announcements
from herald.bgp.peer import PeerConfig
from herald.bgp.speaker import Speaker, refresh_ignored
from herald.bgp.wire import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AsPath,
    Message,
    Negotiated,
    Notification,
    Origin,
    PathAttributes,
    Prefix,
    RouteRefresh,
    Update,
)

from .loopback import A_ID, B_ID, A, B, run, until
from .rawpeer import RawPeer

LOCAL_AS, PEER_AS = 64512, 64513  # eBGP unless a test says otherwise
ROUTES = {
    ip_network("203.0.113.10/32"): RouteAttributes(),
    ip_network("2001:db8:10::1/128"): RouteAttributes(),
}


async def with_raw_peer(body: Callable[[Speaker, RawPeer], Awaitable[None]], **peer: Any) -> None:
    """A Speaker at A with a passive peer B, and the hand-driven peer at B connected to it."""
    speaker = Speaker(LOCAL_AS, A_ID, listen=(str(A), 0), rng=random.Random(1))
    async with speaker:
        assert speaker.listen_port is not None
        config = {"hold_time": 30, "connect_retry_time": 1.0, **peer}
        await speaker.add_peer(
            PeerConfig(B, config.pop("peer_as", PEER_AS), passive=True, **config)
        )
        speaker.set_routes(B, ROUTES)
        raw = await RawPeer.establish(B, A, speaker.listen_port, PEER_AS, B_ID)
        try:
            await body(speaker, raw)
        finally:
            raw.close()


def route_update(first_as: int, prefix: str = "198.51.100.0/24") -> Update:
    return Update(
        attributes=PathAttributes(
            origin=Origin.IGP, as_path=AsPath.sequence(first_as, 65010), next_hop=B_ID
        ),
        nlri=(Prefix(ip_network(prefix)),),
    )


def is_notification(message: Message) -> bool:
    return isinstance(message, Notification)


def is_update(message: Message) -> bool:
    return isinstance(message, Update) and message.end_of_rib_family is None


def test_an_ebgp_update_with_another_first_as_ends_the_session_with_3_11(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    async def body(speaker: Speaker, raw: RawPeer) -> None:
        raw.send(route_update(65001))  # a path that does not start with the peer's AS 64513
        notification = await raw.next(is_notification)
        assert notification == Notification(3, 11)  # UPDATE Message Error / Malformed AS_PATH
        assert not speaker.received_routes(B)

    run(with_raw_peer(body))
    assert any(
        "event=session_down" in r.getMessage() and "enforce-first-as" in r.getMessage()
        for r in caplog.records
    )


def test_first_as_check_off_accepts_the_route() -> None:
    async def body(speaker: Speaker, raw: RawPeer) -> None:
        raw.send(route_update(65001))
        await until(lambda: len(speaker.received_routes(B)) == 1)

    run(with_raw_peer(body, enforce_first_as=False))


def test_a_route_starting_with_the_peer_as_is_accepted_by_default() -> None:
    async def body(speaker: Speaker, raw: RawPeer) -> None:
        raw.send(route_update(PEER_AS))
        await until(lambda: len(speaker.received_routes(B)) == 1)

    run(with_raw_peer(body))


def test_route_refresh_is_ignored_for_a_family_not_negotiated_and_for_markers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)

    async def body(speaker: Speaker, raw: RawPeer) -> None:
        # The raw peer negotiated IPv4 only, so the first sync sent IPv4 alone.
        await raw.next(lambda m: isinstance(m, Update) and m.end_of_rib_family == IPV4_UNICAST)
        before = len(raw.received)
        raw.send(RouteRefresh(IPV6_UNICAST))  # RFC 2918 §4: never negotiated: ignore
        raw.send(RouteRefresh(IPV4_UNICAST, subtype=1))  # RFC 7313 BoRR: not a request
        raw.send(RouteRefresh(IPV4_UNICAST, subtype=9))  # RFC 7313: unknown: ignore
        with pytest.raises(TimeoutError):
            await raw.next(is_update, timeout=0.5)
        assert len(raw.received) == before
        raw.send(RouteRefresh(IPV4_UNICAST))  # a real request is answered
        update = await raw.next(is_update)
        assert isinstance(update, Update)
        assert [str(p.network) for p in update.nlri] == ["203.0.113.10/32"]

    run(with_raw_peer(body))
    ignored = [r.getMessage() for r in caplog.records if "route_refresh_ignored" in r.getMessage()]
    assert len(ignored) == 3
    assert "family=ipv6-unicast subtype=0 reason=family_not_negotiated" in ignored[0]
    assert "reason=not_a_request" in ignored[1] and "reason=not_a_request" in ignored[2]


def test_refresh_ignored_decides_from_the_negotiated_families() -> None:
    v4_only = Negotiated(families=frozenset({IPV4_UNICAST}))
    assert refresh_ignored(RouteRefresh(IPV4_UNICAST), v4_only) is None
    assert refresh_ignored(RouteRefresh(IPV6_UNICAST), v4_only) == "family_not_negotiated"
    assert refresh_ignored(RouteRefresh(IPV4_UNICAST, 2), v4_only) == "not_a_request"
    assert refresh_ignored(RouteRefresh(IPV4_UNICAST), None) == "not_established"


def test_peers_have_a_prefix_limit_by_default_and_a_peer_over_it_is_cut() -> None:
    assert PeerConfig(A, 64512).max_prefixes == DEFAULT_MAX_PREFIXES == 10_000

    async def body(speaker: Speaker, raw: RawPeer) -> None:
        attributes = PathAttributes(
            origin=Origin.IGP, as_path=AsPath.sequence(PEER_AS), next_hop=B_ID
        )
        routes = {
            Prefix(ip_network(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}/32")): attributes
            for i in range(DEFAULT_MAX_PREFIXES)
        }
        for update in announcements(routes, IPV4_UNICAST, raw.negotiated):
            raw.send(update)
        await until(lambda: len(speaker.received_routes(B)) == DEFAULT_MAX_PREFIXES)
        assert speaker.status()[0].state.value == "Established"  # the limit itself is fine
        raw.send(route_update(PEER_AS, "10.255.0.0/32"))
        assert await raw.next(is_notification) == Notification(6, 1)  # RFC 4486 §4
        await until(lambda: not speaker.received_routes(B))

    run(with_raw_peer(body), timeout=30)


def test_no_limit_when_told_so() -> None:
    assert PeerConfig(A, 64512, max_prefixes=None).max_prefixes is None
