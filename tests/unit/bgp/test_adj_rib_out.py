"""The Adj-RIB-Out alone, in memory: desired routes in, UPDATEs out, decoded by a `RibPeer`.

No sockets and no waiting: each step is one `next_updates` / `mark_sent`, as the speaker's
sync task does it after every change."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_network

from herald.bgp.adj_rib_out import AdjRibOut
from herald.bgp.export import ExportContext, RouteAttributes
from herald.bgp.wire import IPV4_UNICAST, IPV6_UNICAST, Negotiated, Prefix

from .ribpeer import RibPeer, sync

BOTH = Negotiated(families=frozenset({IPV4_UNICAST, IPV6_UNICAST}))
V4_ONLY = Negotiated(families=frozenset({IPV4_UNICAST}))
EBGP = ExportContext(4200000000, False, IPv4Address("192.0.2.21"), IPv6Address("2001:db8::21"))

V4_A, V4_B = ip_network("203.0.113.10/32"), ip_network("203.0.113.11/32")
V6_A = ip_network("2001:db8:10::1/128")
ROUTES = {V4_A: RouteAttributes(med=5), V4_B: RouteAttributes(), V6_A: RouteAttributes(med=7)}


def up(rib: AdjRibOut, negotiated: Negotiated = BOTH) -> RibPeer:
    rib.session_up(negotiated, EBGP)
    return RibPeer(negotiated)


def test_a_new_session_gets_the_whole_table_then_end_of_rib_per_family() -> None:
    rib = AdjRibOut()
    rib.set_routes(ROUTES)
    assert rib.next_updates() is None  # no session: nothing to send, nothing lost
    peer = up(rib)
    outgoing = sync(rib, peer)
    assert outgoing is not None and outgoing.end_of_rib == {IPV4_UNICAST, IPV6_UNICAST}
    assert set(peer.routes) == {Prefix(n) for n in ROUTES}
    route = peer.routes[Prefix(V4_A)]
    assert route.med == 5 and route.next_hop == IPv4Address("192.0.2.21")
    assert route.as_path is not None and route.as_path.segments[0].asns == (4200000000,)
    v6 = peer.routes[Prefix(V6_A)].mp_reach
    assert v6 is not None and v6.next_hops == (IPv6Address("2001:db8::21"),)
    # End-of-RIB follows the routes of every family (RFC 4724 §4.1).
    assert peer.end_of_rib == [IPV4_UNICAST, IPV6_UNICAST]
    assert [u.end_of_rib_family for u in peer.updates[-2:]] == [IPV4_UNICAST, IPV6_UNICAST]
    assert rib.advertised_count == 3 and rib.advertised() == peer.routes
    assert rib.next_updates() is None and rib.synced


def test_changes_are_sent_as_a_difference() -> None:
    rib = AdjRibOut()
    rib.set_routes(ROUTES)
    peer = up(rib)
    sync(rib, peer)
    peer.clear()
    new = ip_network("198.51.100.1/32")
    rib.announce(V4_A, RouteAttributes(med=6))  # changed
    rib.announce(new, RouteAttributes())  # added
    rib.announce(V4_B, RouteAttributes())  # the same again: nothing to say
    assert not rib.synced
    sync(rib, peer)
    assert peer.announced() == {Prefix(V4_A), Prefix(new)} and not peer.withdrawn()
    assert peer.routes[Prefix(V4_A)].med == 6 and len(peer.routes) == 4
    assert peer.end_of_rib == []  # once per session, not per change
    assert rib.next_updates() is None


def test_withdrawals_in_both_families() -> None:
    rib = AdjRibOut()
    rib.set_routes(ROUTES)
    peer = up(rib)
    sync(rib, peer)
    peer.clear()
    rib.withdraw(V4_B)
    rib.withdraw(ip_network("192.0.2.99/32"))  # never announced: nothing to withdraw
    rib.set_routes({V4_A: ROUTES[V4_A]})  # and V6_A goes too, in MP_UNREACH
    sync(rib, peer)
    assert peer.withdrawn() == {Prefix(V4_B), Prefix(V6_A)} and not peer.announced()
    assert set(peer.routes) == {Prefix(V4_A)} and rib.advertised_count == 1
    assert any(u.attributes.mp_unreach for u in peer.updates)


def test_a_family_not_negotiated_is_not_sent_and_is_counted() -> None:
    rib = AdjRibOut()
    rib.set_routes(ROUTES)
    assert rib.unsent_count == 0 and rib.families == frozenset()  # no session: no reason yet
    peer = up(rib, V4_ONLY)
    sync(rib, peer)
    assert set(peer.routes) == {Prefix(V4_A), Prefix(V4_B)}
    assert peer.end_of_rib == [IPV4_UNICAST]
    assert rib.families == {IPV4_UNICAST}
    assert rib.unsent_count == 1 and rib.unsent_families == {IPV6_UNICAST}
    assert rib.synced  # what can be sent has been
    rib.announce(ip_network("2001:db8:10::2/128"), RouteAttributes())
    rib.withdraw(V6_A)
    rib.announce(ip_network("2001:db8:10::3/128"), RouteAttributes())
    assert rib.unsent_count == 2 and rib.next_updates() is None
    rib.session_down()
    assert rib.unsent_count == 0 and rib.unsent_families == frozenset()
    assert rib.families == frozenset()


def test_end_of_rib_once_per_session_and_the_whole_table_again_on_the_next() -> None:
    rib = AdjRibOut()
    rib.set_routes(ROUTES)
    peer = up(rib)
    sync(rib, peer)
    rib.session_down()
    assert rib.advertised_count == 0 and rib.next_updates() is None
    # Changed while down: the next session hears the table as it is then, and no
    # withdrawal for what it never heard.
    rib.withdraw(V4_B)
    later = up(rib)
    sync(rib, later)
    assert set(later.routes) == {Prefix(V4_A), Prefix(V6_A)} and not later.withdrawn()
    assert later.end_of_rib == [IPV4_UNICAST, IPV6_UNICAST]
    later.clear()
    rib.withdraw(V4_A)
    sync(rib, later)
    assert later.end_of_rib == []


def test_end_of_rib_goes_even_with_nothing_to_announce() -> None:
    rib = AdjRibOut()
    peer = up(rib)
    outgoing = sync(rib, peer)
    assert outgoing is not None and len(outgoing.updates) == 2
    assert peer.end_of_rib == [IPV4_UNICAST, IPV6_UNICAST] and not peer.routes


def test_a_batch_not_marked_sent_is_offered_again() -> None:
    rib = AdjRibOut()
    rib.set_routes(ROUTES)
    up(rib)
    first = rib.next_updates()
    second = rib.next_updates()
    assert first is not None and second is not None
    assert first.updates == second.updates and rib.advertised_count == 0


def test_a_batch_of_an_earlier_session_is_not_marked_sent() -> None:
    rib = AdjRibOut()
    rib.set_routes(ROUTES)
    up(rib)
    stale = rib.next_updates()
    assert stale is not None
    rib.session_down()
    peer = up(rib)
    rib.mark_sent(stale)  # too late: this session has heard nothing of it
    assert rib.advertised_count == 0
    sync(rib, peer)
    assert len(peer.routes) == 3 and peer.end_of_rib == [IPV4_UNICAST, IPV6_UNICAST]


def test_route_refresh_sends_one_family_again_without_end_of_rib() -> None:
    rib = AdjRibOut()
    rib.set_routes(ROUTES)
    peer = up(rib)
    sync(rib, peer)
    peer.clear()
    rib.refresh(IPV4_UNICAST)
    sync(rib, peer)
    assert peer.announced() == {Prefix(V4_A), Prefix(V4_B)} and peer.end_of_rib == []


def test_a_refresh_asked_while_a_batch_is_written_is_not_lost() -> None:
    rib = AdjRibOut()
    rib.set_routes(ROUTES)
    peer = up(rib)
    outgoing = rib.next_updates()
    assert outgoing is not None
    rib.refresh(IPV6_UNICAST)  # arrives before the batch is marked sent
    peer.receive(outgoing.encode())
    rib.mark_sent(outgoing)
    peer.clear()
    sync(rib, peer)
    assert peer.announced() == {Prefix(V6_A)} and peer.end_of_rib == []  # End-of-RIB once


def test_forget_sends_everything_again() -> None:
    """What the peer heard is unknown (a failed send): the whole table and End-of-RIB."""
    rib = AdjRibOut()
    rib.set_routes(ROUTES)
    peer = up(rib)
    sync(rib, peer)
    peer.clear()
    rib.forget()
    assert rib.advertised_count == 0
    sync(rib, peer)
    assert peer.announced() == {Prefix(n) for n in ROUTES}
    assert peer.end_of_rib == [IPV4_UNICAST, IPV6_UNICAST]


def test_large_tables_go_in_few_updates_of_the_negotiated_size() -> None:
    rib = AdjRibOut()
    rib.set_routes(
        {ip_network(f"198.51.{i // 256}.{i % 256}/32"): RouteAttributes() for i in range(5000)}
    )
    peer = up(rib)
    outgoing = sync(rib, peer)
    assert outgoing is not None and len(peer.routes) == 5000
    standard = len(outgoing.updates)
    assert standard <= 9  # ~800 /32s per 4096 octets, and two End-of-RIBs
    rib.session_down()
    extended = Negotiated(families=BOTH.families, extended_message=True)
    bigger = up(rib, extended)
    outgoing = sync(rib, bigger)
    assert outgoing is not None and len(bigger.routes) == 5000 and len(outgoing.updates) == 3
