"""What the neighbour table says about the other nodes (herald.netlink.neighbours)."""

from __future__ import annotations

from ipaddress import ip_address

from herald.dataplane.model import Peers
from herald.netlink.neighbours import Neighbour, peers_from, unresolved

REACHABLE, STALE, INCOMPLETE, FAILED, NONE = 0x02, 0x04, 0x01, 0x20, 0x00
N2, N2_6, N3 = ip_address("192.0.2.22"), ip_address("2001:db8:2::22"), ip_address("192.0.2.23")
NODES = [("n2", N2), ("n2", N2_6), ("n3", N3)]
MAC2, MAC3 = "02:00:00:00:00:22", "02:00:00:00:00:23"


def table(*entries: tuple[object, str | None, int]) -> list[Neighbour]:
    return [Neighbour(a, m, s) for a, m, s in entries]  # type: ignore[arg-type]


def test_macs_of_resolved_nodes_are_learnt_and_kept() -> None:
    first = peers_from(table((N2, MAC2, REACHABLE), (N3, None, INCOMPLETE)), NODES, Peers())
    assert first == Peers(macs=frozenset({MAC2}))
    # The entry aged out of the table: the MAC stays (a missing one could let a packet be
    # forwarded twice).
    second = peers_from(table((N3, MAC3.upper(), STALE)), NODES, first)
    assert second.macs == {MAC2, MAC3}


def test_a_failed_family_of_a_node_stays_unreachable_until_it_resolves() -> None:
    failed = peers_from(table((N2, None, FAILED), (N2_6, MAC2, STALE)), NODES, Peers())
    assert failed.unreachable == {("n2", 4)}, "IPv6 still resolves"
    # Being resolved again, or gone from the table, proves nothing.
    for entries in [table((N2, None, INCOMPLETE), (N2_6, MAC2, STALE)), table()]:
        assert peers_from(entries, NODES, failed).unreachable == {("n2", 4)}
    back = peers_from(table((N2, MAC2, REACHABLE), (N2_6, MAC2, STALE)), NODES, failed)
    assert back.unreachable == frozenset()


def test_an_unknown_node_is_not_unreachable() -> None:
    assert peers_from([], NODES, Peers()).unreachable == frozenset()


def test_a_node_that_left_the_cluster_is_forgotten() -> None:
    previous = Peers(unreachable=frozenset({("n9", 4)}))
    assert peers_from([], NODES, previous).unreachable == frozenset()


def test_missing_and_failed_entries_are_resolved_again() -> None:
    entries = table((N2, MAC2, REACHABLE), (N2_6, None, FAILED))
    assert unresolved(entries, NODES) == [N2_6, N3]
    assert unresolved(table((N3, None, NONE)), [("n3", N3)]) == [N3]


def test_the_own_mac_is_kept_in_lower_case() -> None:
    assert peers_from([], NODES, Peers(), "02:AA:00:00:00:21").own_mac == "02:aa:00:00:00:21"
