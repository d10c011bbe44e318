"""The graceful-restart helper (RFC 4724 §4.2) on a fake clock: a restarting peer's routes
go stale, End-of-RIB or the restart time removes what was not sent again. The last test
puts the helper behind a `RibPeer` that hears a restarted speaker's Adj-RIB-Out."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network

import pytest

from herald.bgp.adj_rib_out import AdjRibOut
from herald.bgp.export import ExportContext, RouteAttributes
from herald.bgp.fsm import SessionDown
from herald.bgp.graceful_restart import GracefulRestartHelper, keeps_routes
from herald.bgp.wire import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    GracefulRestart,
    GracefulRestartFamily,
    Negotiated,
    Notification,
    Prefix,
)

from .ribpeer import RibPeer, sync

V4 = [Prefix(ip_network(f"203.0.113.{i}/32")) for i in range(3)]
V6 = [Prefix(ip_network(f"2001:db8:10::{i}/128")) for i in range(1, 3)]
ROUTES = V4 + V6
BOTH_PRESERVED = GracefulRestart(
    120,
    families=(GracefulRestartFamily(IPV4_UNICAST, True), GracefulRestartFamily(IPV6_UNICAST, True)),
)
CUT = SessionDown("TCP connection failed")  # no NOTIFICATION either way


def stale_helper(now: float = 10.0) -> GracefulRestartHelper:
    helper = GracefulRestartHelper()
    assert helper.session_down(ROUTES, CUT, BOTH_PRESERVED, now)
    return helper


def test_a_restarting_peers_routes_go_stale_for_its_restart_time() -> None:
    helper = GracefulRestartHelper()
    assert helper.next_deadline() is None and not helper.stale
    assert helper.session_down(ROUTES, CUT, BOTH_PRESERVED, now=10.0)
    assert helper.stale == set(ROUTES)
    assert helper.next_deadline() == 130.0


@pytest.mark.parametrize(
    ("down", "kept"),
    [
        (CUT, True),
        (SessionDown("hold timer expired", sent=Notification(4, 0)), True),
        (SessionDown("peer said goodbye", received=Notification(6, 2)), False),
        (SessionDown("we stopped", sent=Notification(6, 2)), False),
        (SessionDown("bad update", sent=Notification(3, 11)), False),
    ],
)
def test_only_a_session_that_failed_keeps_the_routes(down: SessionDown, kept: bool) -> None:
    """A NOTIFICATION is a deliberate end (except our own hold-timer expiry, which is the
    peer having gone silent): its routes go at once."""
    assert keeps_routes(down) is kept
    helper = GracefulRestartHelper()
    assert helper.session_down(ROUTES, down, BOTH_PRESERVED, 0.0) is kept
    assert (helper.stale == set(ROUTES)) is kept
    assert (helper.next_deadline() is not None) is kept


def test_a_peer_without_the_capability_keeps_nothing() -> None:
    helper = stale_helper()
    assert not helper.session_down(ROUTES, CUT, None, 20.0)
    assert not helper.stale and helper.next_deadline() is None


def test_end_of_rib_removes_the_stale_routes_of_its_family_only() -> None:
    helper = stale_helper()
    assert helper.session_up(BOTH_PRESERVED) == []
    helper.refreshed([V4[0]])  # sent again after the restart
    assert sorted(helper.end_of_rib(IPV4_UNICAST)) == V4[1:]
    assert helper.stale == set(V6)
    assert helper.next_deadline() == 130.0  # IPv6 still waits for its End-of-RIB
    assert sorted(helper.end_of_rib(IPV6_UNICAST)) == V6
    assert not helper.stale and helper.next_deadline() is None
    assert helper.end_of_rib(IPV4_UNICAST) == []


def test_the_restart_time_removes_what_is_left() -> None:
    helper = stale_helper(now=10.0)
    assert helper.handle_timer(129.9) == []
    assert helper.stale == set(ROUTES)
    assert set(helper.handle_timer(130.0)) == set(ROUTES)
    assert not helper.stale and helper.next_deadline() is None
    assert helper.handle_timer(500.0) == []


def test_a_new_session_before_the_deadline_keeps_them_stale_until_end_of_rib() -> None:
    helper = stale_helper(now=10.0)
    assert helper.session_up(BOTH_PRESERVED) == []
    assert helper.stale == set(ROUTES) and helper.next_deadline() == 130.0
    assert helper.handle_timer(60.0) == []
    helper.refreshed(V4)
    assert sorted(helper.end_of_rib(IPV4_UNICAST)) == []
    # IPv6's End-of-RIB never comes: the restart time still ends its stale routes.
    assert sorted(helper.handle_timer(130.0)) == V6


def test_a_new_session_without_forwarding_preserved_drops_that_family_at_once() -> None:
    helper = stale_helper()
    v4_only = GracefulRestart(120, families=(GracefulRestartFamily(IPV4_UNICAST, True),))
    assert sorted(helper.session_up(v4_only)) == V6
    assert helper.stale == set(V4)
    assert sorted(helper.session_up(None)) == V4  # no capability now: nothing preserved


def test_going_down_again_while_stale_restarts_the_clock_for_everything() -> None:
    helper = stale_helper(now=10.0)
    helper.session_up(BOTH_PRESERVED)
    fresh = Prefix(ip_network("198.51.100.1/32"))
    helper.refreshed([fresh])
    assert helper.session_down([*ROUTES, fresh], CUT, BOTH_PRESERVED, now=50.0)
    assert helper.stale == {*ROUTES, fresh} and helper.next_deadline() == 170.0
    assert helper.handle_timer(130.0) == []


def test_clear_hands_back_every_stale_route() -> None:
    helper = stale_helper()
    assert set(helper.clear()) == set(ROUTES)
    assert not helper.stale and helper.next_deadline() is None


def test_a_restarted_speakers_table_and_end_of_rib_refresh_the_helpers_routes() -> None:
    """Speaker a (an `AdjRibOut`) restarts; its peer b (a `RibPeer` with the helper) keeps
    a's routes stale, hears the table again, and End-of-RIB removes what a no longer has."""
    negotiated = Negotiated(families=frozenset({IPV4_UNICAST, IPV6_UNICAST}))
    context = ExportContext(64512, True, IPv4Address("192.0.2.21"), IPv6Address("2001:db8::21"))
    rib = AdjRibOut()
    rib.set_routes({p.network: RouteAttributes() for p in ROUTES})
    rib.session_up(negotiated, context)
    b = RibPeer(negotiated)
    sync(rib, b)
    assert set(b.routes) == set(ROUTES)

    now = 100.0
    rib.session_down()  # a dies without a NOTIFICATION
    assert b.helper.session_down(list(b.routes), CUT, BOTH_PRESERVED, now)
    restarted = AdjRibOut()  # a new process: it now has one IPv4 route fewer
    restarted.set_routes({p.network: RouteAttributes() for p in ROUTES if p != V4[2]})
    now += 5.0
    restarted.session_up(negotiated, context)
    assert b.helper.session_up(BOTH_PRESERVED) == []
    assert b.helper.handle_timer(now) == []
    sync(restarted, b)
    assert set(b.routes) == set(ROUTES) - {V4[2]}
    assert not b.helper.stale and b.helper.next_deadline() is None
