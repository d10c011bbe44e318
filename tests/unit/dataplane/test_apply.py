"""The transactions apply.py builds, checked without a kernel through a fake nft."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from ipaddress import ip_address

import pytest
from scenarios import NODE, SCENARIOS, THREE, web

from herald.dataplane.apply import ApplyError, Counter, Datapath, Nft, service_change
from herald.dataplane.model import Backend
from herald.dataplane.render import render_service


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


def test_new_service_adds_its_objects_and_elements() -> None:
    script = service_change(None, render_service(web(), NODE), set())
    assert "chain svc/default/web/nat {" in script
    assert "add element inet herald services-v4 { 203.0.113.10 . tcp . 80 : jump" in script
    assert "delete" not in script


def test_removed_service_deletes_referrers_first_and_keeps_shared_vips() -> None:
    web_rules = render_service(web(), NODE)
    mail_rules = render_service(SCENARIOS["shared_vip"][1], NODE)
    script = service_change(web_rules, None, set(mail_rules.elements))
    lines = script.splitlines()
    assert "delete element inet herald services-v4 { 203.0.113.10 . tcp . 80 }" in lines
    assert not any("vips-v4" in line for line in lines), "mail still uses the VIP"
    assert lines.index("delete chain inet herald svc/default/web/nat") < lines.index(
        "delete map inet herald svc/default/web/backends-v4"
    )
    assert "delete counter inet herald svc/default/web" in lines


def test_changed_backends_flush_and_refill_without_touching_the_counter() -> None:
    old = render_service(web(), NODE)
    moved = Backend(ip_address("198.18.2.9"), "n2")
    new = render_service(web(backends=(*THREE[:2], moved)), NODE)
    script = service_change(old, new, set())
    assert "flush map inet herald svc/default/web/backends-v4" in script
    assert "counter svc/default/web" not in script
    assert "element inet herald services" not in script, "dispatch is unchanged"


def test_changed_table_size_recreates_the_map() -> None:
    old = render_service(web(), NODE)
    new = render_service(web(maglev_size=1021), NODE)
    script = service_change(old, new, set())
    assert "delete map inet herald svc/default/web/backends-v4" in script
    assert "flush chain inet herald svc/default/web/nat" in script


def test_refused_service_is_named_and_others_still_apply() -> None:
    fake = FakeNft(refuse="svc/default/bad")
    dp = datapath(fake)
    dp.sync([web()])
    bad = web(key="default/bad", vips=(ip_address("203.0.113.11"),))
    good = web(key="default/good", vips=(ip_address("203.0.113.12"),))
    with pytest.raises(ApplyError) as caught:
        dp.sync([web(), bad, good])
    assert caught.value.services == ("default/bad",)
    assert sorted(dp.services) == ["default/good", "default/web"]


def test_refused_resync_is_checked_service_by_service() -> None:
    fake = FakeNft(refuse="svc/default/bad")
    bad = web(key="default/bad", vips=(ip_address("203.0.113.11"),))
    with pytest.raises(ApplyError, match="default/bad"):
        datapath(fake).resync([web(), bad])


def test_unchanged_services_cost_no_transaction() -> None:
    fake = FakeNft()
    dp = datapath(fake)
    dp.sync(SCENARIOS["shared_vip"])
    dp.sync(SCENARIOS["shared_vip"])
    assert len(fake.scripts) == 1


def test_counters_are_read_per_service() -> None:
    listing = {
        "nftables": [
            {"metainfo": {"version": "1.0.6"}},
            {"counter": {"name": "svc/default/web", "packets": 7, "bytes": 420}},
            {"counter": {"name": "not-herald", "packets": 1, "bytes": 1}},
        ]
    }
    assert datapath(FakeNft(listing=listing)).counters() == {"default/web": Counter(7, 420)}


def test_resync_keeps_counter_values() -> None:
    listing = {"nftables": [{"counter": {"name": "svc/default/web", "packets": 7, "bytes": 9}}]}
    fake = FakeNft(listing=listing)
    datapath(fake).resync([web()])
    assert "packets 7 bytes 9" in fake.scripts[0]


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
