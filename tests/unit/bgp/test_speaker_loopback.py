"""Two speakers in one process, over real TCP on 127.0.0.1 and 127.0.0.2: sessions,
routes both ways of the diff, collisions, limits and graceful restart."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from ipaddress import IPv6Address, ip_network

import pytest

from herald.bgp.export import RouteAttributes
from herald.bgp.fsm import State
from herald.bgp.peer import PeerConfig
from herald.bgp.session import retry_delay
from herald.bgp.speaker import Speaker
from herald.bgp.wire import IPV4_UNICAST, LargeCommunity, Prefix

from .loopback import A, B, next_down, pair, run, state, until

ROUTES = {
    ip_network("203.0.113.10/32"): RouteAttributes(
        communities=(64512 << 16 | 100,),
        large_communities=(LargeCommunity(4200000000, 1, 2),),
        med=50,
        local_pref=200,
    ),
    ip_network("203.0.113.11/32"): RouteAttributes(),
    ip_network("2001:db8:10::1/128"): RouteAttributes(med=7),
}


def test_ibgp_routes_arrive_with_attributes_and_are_withdrawn() -> None:
    async def body(a: Speaker, b: Speaker) -> None:
        a.set_routes(B, ROUTES)
        await until(lambda: len(b.received_routes(A)) == 3)
        got = b.received_routes(A)
        first = got[Prefix(ip_network("203.0.113.10/32"))]
        assert first.next_hop == A  # next-hop self: the session's local address
        assert first.local_pref == 200 and first.med == 50
        assert first.communities == (64512 << 16 | 100,)
        assert first.large_communities == (LargeCommunity(4200000000, 1, 2),)
        assert first.as_path is not None and first.as_path.path_length == 0
        assert got[Prefix(ip_network("203.0.113.11/32"))].local_pref == 100
        v6 = got[Prefix(ip_network("2001:db8:10::1/128"))]
        assert v6.mp_reach is not None
        assert v6.mp_reach.next_hops == (IPv6Address("::ffff:127.0.0.1"),)
        a.withdraw(B, ip_network("203.0.113.11/32"))
        a.withdraw(B, ip_network("2001:db8:10::1/128"))
        await until(lambda: len(b.received_routes(A)) == 1)
        status = a.status()[0]
        assert status.state is State.ESTABLISHED and status.advertised_prefixes == 1
        assert status.messages_out >= 4 and status.messages_in >= 2

    run(pair(body))


def test_ebgp_four_octet_as_path_and_no_local_pref() -> None:
    async def body(a: Speaker, b: Speaker) -> None:
        a.set_routes(B, ROUTES)
        await until(lambda: len(b.received_routes(A)) == 3)
        route = b.received_routes(A)[Prefix(ip_network("203.0.113.10/32"))]
        assert route.as_path is not None
        assert route.as_path.segments[0].asns == (4200000000,)
        assert route.local_pref is None and route.med == 50

    run(pair(body, a_as=4200000000, b_as=64512))


def test_many_prefixes_are_packed_into_few_updates() -> None:
    routes = {
        ip_network(f"198.51.{i // 256}.{i % 256}/32"): RouteAttributes(med=i % 2)
        for i in range(5000)
    }

    async def body(a: Speaker, b: Speaker) -> None:
        a.set_routes(B, routes)
        await until(lambda: len(b.received_routes(A)) == 5000)
        # 2 attribute sets; at most ~800 /32s fit a 4096-octet UPDATE: 7 UPDATEs, plus the
        # OPEN, KEEPALIVEs and two End-of-RIBs. Extended messages would need fewer.
        assert b.status()[0].messages_in < 20
        a.set_routes(B, {})
        await until(lambda: not b.received_routes(A))

    run(pair(body))


def test_collision_leaves_one_session() -> None:
    async def body(a: Speaker, b: Speaker) -> None:
        await until(lambda: state(a) is State.ESTABLISHED and state(b) is State.ESTABLISHED)
        a.set_routes(B, {ip_network("203.0.113.10/32"): RouteAttributes()})
        await until(lambda: len(b.received_routes(A)) == 1)
        await asyncio.sleep(0.5)
        assert state(a) is State.ESTABLISHED and state(b) is State.ESTABLISHED

    run(pair(body, b_active=True))


def test_hold_time_zero_keeps_the_session_without_keepalives() -> None:
    async def body(a: Speaker, b: Speaker) -> None:
        await until(lambda: state(a) is State.ESTABLISHED)
        before = b.status()[0].messages_in
        await asyncio.sleep(1.5)
        assert state(a) is State.ESTABLISHED
        assert b.status()[0].messages_in == before  # no KEEPALIVEs with hold 0

    run(pair(body, a_peer={"hold_time": 0}, b_peer={"hold_time": 0}))


def test_max_prefix_limit_ceases_the_session() -> None:
    routes = {ip_network(f"203.0.113.{i}/32"): RouteAttributes() for i in range(10)}

    async def body(a: Speaker, b: Speaker) -> None:
        events = a.events()
        a.set_routes(B, routes)

        async def down() -> str | None:
            async for event in events:
                if event.state is State.IDLE:
                    return event.reason
            return None

        reason = await asyncio.wait_for(down(), 8)
        assert reason is not None and "code 6 subcode 1" in reason
        assert not b.received_routes(A)

    run(pair(body, b_peer={"max_prefixes": 5}))


def test_a_session_cut_again_soon_after_coming_up_backs_off_further() -> None:
    """b keeps cutting a (over its prefix limit): a's retries wait 1, 2, 4 s (up to its
    connect-retry time) instead of 1 s each time, because a session must stay up for a
    connect-retry time before the back-off starts afresh."""
    routes = {ip_network(f"203.0.113.{i}/32"): RouteAttributes() for i in range(10)}

    async def body(a: Speaker, b: Speaker) -> None:
        events = a.events()
        a.set_routes(B, routes)
        loop = asyncio.get_running_loop()
        downs = []
        for _ in range(3):
            assert "code 6 subcode 1" in await asyncio.wait_for(next_down(events), 8)
            downs.append(loop.time())
        first, second = downs[1] - downs[0], downs[2] - downs[1]
        assert 0.75 <= first < 1.5  # 1 s less up to a quarter of jitter, plus the reconnect
        assert second >= 1.5  # 2 s less jitter: it was 1 s again before

    run(pair(body, a_peer={"connect_retry_time": 4.0}, b_peer={"max_prefixes": 5}))


def test_md5_matching_passwords_establish_and_a_wrong_one_does_not() -> None:
    async def good(a: Speaker, b: Speaker) -> None:
        await until(lambda: state(a) is State.ESTABLISHED)

    run(pair(good, a_peer={"password": "s3cret"}, b_peer={"password": "s3cret"}))

    async def bad(a: Speaker, b: Speaker) -> None:
        await asyncio.sleep(2.5)
        assert state(a) is not State.ESTABLISHED and state(b) is not State.ESTABLISHED

    run(pair(bad, a_peer={"password": "s3cret"}, b_peer={"password": "other"}))


def test_graceful_restart_helper_keeps_stale_routes_until_end_of_rib() -> None:
    async def body(a: Speaker, b: Speaker) -> None:
        a.set_routes(B, dict(list(ROUTES.items())[:2]))
        await until(lambda: len(b.received_routes(A)) == 2)
        # a dies without a NOTIFICATION: cut its TCP connection under it.
        conn = a._peers[B].session._established
        assert conn is not None and conn.writer is not None
        conn.writer.transport.abort()
        await until(lambda: b.status()[0].stale_prefixes == 2)
        assert len(b.received_routes(A)) == 2
        # After the restart a sends only one of them; End-of-RIB drops the other.
        a.set_routes(B, dict(list(ROUTES.items())[:1]))
        await until(lambda: state(a) is State.ESTABLISHED and b.status()[0].stale_prefixes == 0)
        await until(lambda: len(b.received_routes(A)) == 1)

    run(pair(body, b_peer={"graceful_restart_time": 30}))


def test_retry_delay_doubles_up_to_the_connect_retry_time() -> None:
    delays = [retry_delay(n, 10.0, 0.0) for n in range(1, 7)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert retry_delay(3, 10.0, 0.99) == pytest.approx(4.0 * (1 - 0.2475))
    assert retry_delay(100, 2.0, 0.5) <= 2.0


def test_peer_config_rejects_bad_values() -> None:
    with pytest.raises(ValueError, match="hold time"):
        PeerConfig(A, 64512, hold_time=2)
    with pytest.raises(ValueError, match="exclude"):
        replace(PeerConfig(A, 64512), ebgp_multihop=2, ttl_security_hops=1)


def test_gtsm_accepts_ttl_255_and_drops_a_peer_that_does_not_send_it() -> None:
    async def good(a: Speaker, b: Speaker) -> None:
        await until(lambda: state(a) is State.ESTABLISHED)

    gtsm = {"ttl_security_hops": 1}
    run(pair(good, a_as=64513, a_peer=gtsm, b_peer=gtsm))

    async def bad(a: Speaker, b: Speaker) -> None:
        await asyncio.sleep(2.5)
        assert state(b) is not State.ESTABLISHED

    # a sends with an ordinary multihop TTL of 64; b wants 255.
    run(pair(bad, a_as=64513, a_peer={"ebgp_multihop": 64}, b_peer=gtsm))


def test_route_refresh_is_answered_with_the_adj_rib_out() -> None:
    async def body(a: Speaker, b: Speaker) -> None:
        a.set_routes(B, ROUTES)
        await until(lambda: len(b.received_routes(A)) == 3)
        before = b.status()[0].messages_in
        assert b.request_refresh(A, IPV4_UNICAST)
        # The two IPv4 routes (one UPDATE per attribute set) come again; IPv6 does not.
        await until(lambda: b.status()[0].messages_in >= before + 2)
        await asyncio.sleep(0.2)
        assert b.status()[0].messages_in == before + 2
        assert len(b.received_routes(A)) == 3

    run(pair(body))


def test_status_names_the_negotiated_families_and_counts_routes_not_sent() -> None:
    """b offers IPv4 only: a's IPv6 route cannot go, and a's status says so (the agent turns
    it into a problem) instead of the route silently never arriving."""

    async def body(a: Speaker, b: Speaker) -> None:
        a.set_routes(B, ROUTES)
        await until(lambda: len(b.received_routes(A)) == 2)
        status = a.status()[0]
        assert status.families == ("ipv4-unicast",) and status.advertised_prefixes == 2
        assert status.unsent_prefixes == 1 and status.unsent_families == ("ipv6-unicast",)
        assert b.status()[0].families == ("ipv4-unicast",) and b.status()[0].unsent_prefixes == 0
        await b.remove_peer(A)
        await until(lambda: state(a) is not State.ESTABLISHED)
        status = a.status()[0]
        assert status.families == () and status.unsent_prefixes == 0
        assert status.unsent_families == ()

    run(pair(body, b_peer={"families": frozenset({IPV4_UNICAST})}))
