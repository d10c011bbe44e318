"""The transactions apply.py builds, checked without a kernel through a fake nft."""

from __future__ import annotations

import collections
import json
import subprocess
from collections.abc import Sequence
from ipaddress import ip_address

import pytest
from scenarios import NODE, SCENARIOS, THREE, web

from herald.dataplane.apply import (
    ApplyError,
    Counter,
    Datapath,
    Nft,
    add_elements,
    element_changes,
    remove_elements,
    resync_scripts,
)
from herald.dataplane.model import Backend, ForwardingMode, SessionAffinity
from herald.dataplane.render import ServiceRules, render, render_service, slot_backends


class FakeNft:
    """Records scripts; refuses any script that mentions `refuse`."""

    def __init__(self, refuse: str | None = None, listing: object = None) -> None:
        self.scripts: list[str] = []
        self.refuse = refuse
        self.listing = listing or {"nftables": []}

    def __call__(self, argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        if "list" in argv:
            return subprocess.CompletedProcess(argv, 0, json.dumps(self.listing), "")
        self.scripts.append(stdin)
        failed = self.refuse is not None and self.refuse in stdin
        return subprocess.CompletedProcess(argv, int(failed), "", "Error: refused" * failed)


def datapath(fake: FakeNft) -> Datapath:
    return Datapath(NODE, Nft(netns="hd-x", runner=fake))


def test_nft_runs_inside_the_namespace() -> None:
    assert Nft("hd-x").argv("-f", "-") == ["ip", "netns", "exec", "hd-x", "nft", "-f", "-"]
    assert Nft().argv("-f", "-") == ["nft", "-f", "-"]


def test_first_sync_replaces_both_tables_whole() -> None:
    fake = FakeNft()
    datapath(fake).sync(SCENARIOS["snat"])
    (script,) = fake.scripts
    assert script.startswith("table inet herald {}\ndelete table inet herald\n")
    assert "delete table netdev herald" in script


def change(old: ServiceRules | None, new: ServiceRules | None, users: object = ()) -> str:
    deletions, additions = element_changes([(old, new)], collections.Counter(users))  # type: ignore[arg-type]
    return remove_elements(deletions) + add_elements(additions)


def test_new_service_adds_only_elements() -> None:
    script = change(None, render_service(web(), NODE))
    assert "add element inet herald services-v4 { 203.0.113.10 . tcp . 80 }" in script
    assert (
        "add element inet herald dnat-v4 { 203.0.113.10 . tcp . 80 : goto dnat-v4-509-flow-"
        in script
    )
    for index, backend in enumerate(("198.18.1.2", "198.18.1.3", "198.18.2.2")):
        assert (
            f"add element inet herald members-v4-{index} {{ 203.0.113.10 . tcp . 80 : {backend} }}"
            in script
        ), "one member element per backend, in `usable` order"
    assert " . 508 : " not in script, "the table is shared, not the service's"
    assert "delete" not in script
    assert all(line.startswith("add element") for line in script.splitlines())


def test_a_client_ip_service_adds_a_table_of_its_own() -> None:
    script = change(None, render_service(web(session_affinity=SessionAffinity.CLIENT_IP), NODE))
    assert "203.0.113.10 . tcp . 80 . 508 : " in script, "every Maglev slot"
    assert "members-v4" not in script


def test_removed_service_deletes_its_elements_and_keeps_shared_vips() -> None:
    web_rules = render_service(web(), NODE)
    mail_rules = render_service(SCENARIOS["shared_vip"][1], NODE)
    script = change(web_rules, None, [*web_rules.elements, *mail_rules.elements])
    lines = script.splitlines()
    assert "delete element inet herald services-v4 { 203.0.113.10 . tcp . 80 }" in lines
    assert not any("vips-v4" in line for line in lines), "mail still uses the VIP"
    assert all(line.startswith("delete element") for line in lines)
    assert "delete element inet herald members-v4-2 { 203.0.113.10 . tcp . 80 }" in lines


def test_services_with_as_many_backends_share_one_table() -> None:
    rules = [
        render_service(web(key=f"default/s{i}", vips=(ip_address(f"203.0.113.{i}"),)), NODE)
        for i in range(3)
    ]
    assert rules[0].chains == rules[1].chains == rules[2].chains
    other = render_service(web(backends=THREE[:2]), NODE)
    assert {c.name for c in other.chains}.isdisjoint(
        {c.name for c in rules[0].chains if "maglev" in c.name or "dnat" in c.name}
    )
    ruleset = render(
        [web(key=f"default/s{i}", vips=(ip_address(f"203.0.113.{i}"),)) for i in range(100)], NODE
    )
    assert sum(o.name.startswith("maglev-") for o in ruleset.base) == 1
    slots = sum(line.count(" : goto member-") for o in ruleset.base for line in o.body)
    assert slots == 509, "one table of 509 slots for 100 services"


def test_a_shared_table_change_rewrites_the_members_and_the_entry_only() -> None:
    four = (*THREE, Backend(ip_address("198.18.2.3"), "n2"))
    old = render_service(web(backends=four), NODE)
    new = render_service(web(backends=THREE), NODE)  # the same table size, 509
    deletions, additions = element_changes([(old, new)], collections.Counter(old.elements))
    assert {e.container for e in deletions} == {"dnat-v4", "members-v4-3"}
    assert [(e.container, e.value) for e in additions] == [
        ("dnat-v4", "goto dnat-v4-509-flow-n3-masquerade")
    ]
    assert slot_backends(new, "203.0.113.10 . tcp . 80").count("198.18.2.3") == 0


def test_changed_backends_rewrite_only_the_moved_slots() -> None:
    four = (*THREE, Backend(ip_address("198.18.2.3"), "n2"))
    affinity = SessionAffinity.CLIENT_IP  # a table of its own, keyed by the addresses
    old = render_service(web(backends=four, session_affinity=affinity), NODE)
    new = render_service(web(backends=THREE, session_affinity=affinity), NODE)  # 509 slots
    deletions, additions = element_changes([(old, new)], collections.Counter(old.elements))
    assert {e.container for e in (*deletions, *additions)} == {"backends-v4"}
    assert {e.key for e in deletions} == {e.key for e in additions}
    assert "198.18.2.3" not in {e.value for e in additions}
    assert len(additions) < 509 * (1 / 4 + 0.08), "only the slots that changed owner"


def test_changed_table_size_replaces_the_slots_and_the_dnat_chain() -> None:
    affinity = SessionAffinity.CLIENT_IP
    old = render_service(web(session_affinity=affinity), NODE)
    new = render_service(web(maglev_size=1021, session_affinity=affinity), NODE)
    deletions, additions = element_changes([(old, new)], collections.Counter(old.elements))
    assert sum(e.container == "backends-v4" for e in deletions) == 509
    assert sum(e.container == "backends-v4" for e in additions) == 1021
    assert [e.value for e in additions if e.container == "dnat-v4"] == [
        "goto dnat-v4-1021-client-masquerade"
    ]
    shared = render_service(web(maglev_size=1021), NODE)
    deletions, additions = element_changes([(render_service(web(), NODE), shared)], {})
    assert [e.value for e in additions if e.container == "dnat-v4"] == [
        "goto dnat-v4-1021-flow-n3-masquerade"
    ]
    assert not any(e.container.startswith("members-") for e in (*deletions, *additions))


def test_one_transaction_for_all_changed_services() -> None:
    fake = FakeNft()
    dp = datapath(fake)
    dp.sync([web()])
    others = [web(key=f"default/o{i}", vips=(ip_address(f"203.0.113.{20 + i}"),)) for i in range(3)]
    dp.sync([web(), *others])
    assert len(fake.scripts) == 2
    assert all(f"203.0.113.{20 + i} . tcp . 80" in fake.scripts[1] for i in range(3))


def test_a_key_moving_between_services_in_one_sync_is_deleted_before_it_is_added() -> None:
    fake = FakeNft()
    dp = datapath(fake)
    dp.sync([web(key="default/zzz")])
    dp.sync([web(key="default/aaa", backends=THREE[:1])])
    (script,) = [s for s in fake.scripts[1:] if " element " in s]
    lines = script.splitlines()
    verbs = [line.split()[0] for line in lines]
    assert verbs == sorted(verbs, key=lambda verb: verb != "delete"), "deletions first"
    assert "delete" in verbs


def test_named_objects_do_not_grow_with_services() -> None:
    services = [web(key=f"default/s{i}", vips=(ip_address(f"203.0.113.{i}"),)) for i in range(20)]
    assert render(services[:1], NODE).base == render(services, NODE).base


def test_refused_service_is_named_and_others_still_apply() -> None:
    fake = FakeNft(refuse="203.0.113.11")
    dp = datapath(fake)
    dp.sync([web()])
    bad = web(key="default/bad", vips=(ip_address("203.0.113.11"),))
    good = web(key="default/good", vips=(ip_address("203.0.113.12"),))
    with pytest.raises(ApplyError) as caught:
        dp.sync([web(), bad, good])
    assert caught.value.services == ("default/bad",)
    assert sorted(dp.services) == ["default/good", "default/web"]


def test_refused_resync_is_checked_service_by_service() -> None:
    fake = FakeNft(refuse="203.0.113.11")
    bad = web(key="default/bad", vips=(ip_address("203.0.113.11"),))
    with pytest.raises(ApplyError, match="default/bad"):
        datapath(fake).resync([web(), bad])


def test_unchanged_services_cost_no_transaction() -> None:
    fake = FakeNft()
    dp = datapath(fake)
    dp.sync(SCENARIOS["shared_vip"])
    dp.sync(SCENARIOS["shared_vip"])
    assert len(fake.scripts) == 1


def counted(key: list[object], packets: int, size: int) -> dict[str, object]:
    return {"elem": {"val": {"concat": key}, "counter": {"packets": packets, "bytes": size}}}


def set_listing(*elements: dict[str, object]) -> dict[str, object]:
    return {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"set": {"name": "services-v4", "elem": list(elements)}},
        ]
    }


def test_counters_are_summed_per_service() -> None:
    fake = FakeNft(listing=set_listing(counted(["203.0.113.10", "tcp", 80], 7, 420)))
    dp = datapath(fake)
    dp.sync([web(), web(key="default/idle", vips=(ip_address("203.0.113.99"),))])
    counters = dp.counters()
    assert counters["default/web"] == Counter(7, 420)
    assert counters["default/idle"] == Counter(0, 0)


def test_resync_keeps_counter_values() -> None:
    fake = FakeNft(listing=set_listing(counted(["203.0.113.10", "tcp", 80], 7, 9)))
    datapath(fake).resync([web()])
    assert "203.0.113.10 . tcp . 80 counter packets 7 bytes 9" in fake.scripts[0]


def test_a_large_resync_fills_slots_in_chunks_and_opens_services_last() -> None:
    services = [
        web(
            key=f"default/s{i}",
            vips=(ip_address(f"203.0.113.{i}"),),
            session_affinity=SessionAffinity.CLIENT_IP,  # tables of their own
        )
        for i in range(4)
    ]
    scripts = resync_scripts(render(services, NODE), {}, chunk=600)
    assert len(scripts) == 1 + 4 * 509 // 600 + 1 + 1
    first, *slots, last = scripts
    assert first.startswith("table inet herald {}\ndelete table inet herald\n")
    assert "goto dnat-" not in first, "no service is entered before its slots exist"
    assert "203.0.113.3 . tcp . 80" in first.split("set unserved-v4")[1].split("}")[0]
    assert all(s.count(" : ") <= 600 and "delete" not in s for s in slots)
    assert last.startswith("delete element inet herald unserved-v4 {")
    assert "add element inet herald dnat-v4 {" in last


def test_sync_keeps_a_vip_another_service_still_uses() -> None:
    fake = FakeNft()
    dp = datapath(fake)
    web_service, mail = SCENARIOS["shared_vip"]
    dp.sync([web_service, mail])
    dp.sync([mail])
    assert "vips-v4" not in fake.scripts[-1]
    dp.sync([])
    assert "delete element inet herald vips-v4 { 203.0.113.10 }" in fake.scripts[-1]


def test_resync_applies_the_others_and_names_a_conflicting_service() -> None:
    fake = FakeNft()
    dp = datapath(fake)
    with pytest.raises(ApplyError) as caught:
        dp.resync([web(), web(key="default/zzz")])
    assert caught.value.services == ("default/zzz",)
    assert "svc/default/zzz" not in fake.scripts[0]
    assert list(dp.services) == ["default/web"]


def test_a_service_refused_for_a_clash_is_applied_once_the_holder_goes() -> None:
    fake = FakeNft()
    dp = datapath(fake)
    dsr = web(forwarding_mode=ForwardingMode.DSR)  # claims its key in both tables
    dp.sync([dsr])
    with pytest.raises(ApplyError, match="default/zzz"):
        dp.sync([dsr, web(key="default/zzz")])
    dp.sync([web(key="default/zzz")])
    assert list(dp.services) == ["default/zzz"]
    assert dp.conflicts == {}


def test_a_changed_service_does_not_take_a_key_from_an_unchanged_one() -> None:
    dp = datapath(FakeNft())
    other = web(key="default/zzz", vips=(ip_address("203.0.113.11"),))
    dp.sync([web(key="default/aaa", vips=(ip_address("203.0.113.12"),)), other])
    with pytest.raises(ApplyError, match="default/aaa"):
        dp.sync([web(key="default/aaa", vips=(ip_address("203.0.113.11"),)), other])
    assert list(dp.services) == ["default/zzz"]


def test_a_dsr_service_is_counted_once() -> None:
    fake = FakeNft(listing=set_listing(counted(["203.0.113.10", "tcp", 80], 7, 420)))
    dp = datapath(fake)
    dp.sync([web(forwarding_mode=ForwardingMode.DSR)])
    assert dp.counters() == {"default/web": Counter(7, 420)}


def test_a_shared_table_comes_with_its_first_service_and_goes_with_its_last() -> None:
    fake = FakeNft()
    dp = datapath(fake)
    dp.sync([web()])
    dp.sync([web(backends=THREE[:2])])  # two backends: a table of 251 slots
    create, change, remove = fake.scripts[1:]
    assert "map maglev-v4-251-n2 {" in create and "chain dnat-v4-251-flow-n2-masquerade" in create
    assert "goto dnat-v4-251-flow-n2-masquerade" in change
    for gone in (
        "chain inet herald dnat-v4-509-flow-n3-masquerade",
        "map inet herald maglev-v4-509-n3",
        "chain inet herald member-v4-2",
        "map inet herald members-v4-2",
    ):
        assert f"delete {gone}\n" in remove
    # Referrers go first: the chain that uses the table, the table, the member chains.
    order = [remove.index(f"delete {gone}") for gone in ("chain inet herald dnat-v4-509",
             "map inet herald maglev-v4", "chain inet herald member-v4-2",
             "map inet herald members-v4-2")]  # fmt: skip
    assert order == sorted(order)
    assert "member-v4-1" not in remove, "index 1 still has a service"
