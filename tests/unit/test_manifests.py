"""Manifest loading and validation: valid examples load, invalid fixtures fail with every
problem located as file:document: field.path: message."""

from __future__ import annotations

from pathlib import Path

import pytest

from herald.api.manifests import load_directory, parse_manifests
from herald.api.problems import ManifestError

ROOT = Path(__file__).resolve().parents[2]
INVALID = sorted((Path(__file__).parent / "fixtures" / "invalid").glob("*.yaml"))


def test_examples_are_valid() -> None:
    state = load_directory(ROOT / "examples")
    counts = state.counts()
    assert counts["LoadBalancerIPPool"] >= 4
    assert counts["Service"] >= 4
    assert counts["Node"] == 6
    assert {svc.key for svc in state.services} >= {"default/web1-lb", "prod/dns-tcp"}


@pytest.mark.parametrize("fixture", INVALID, ids=lambda path: path.name)
def test_invalid_fixture_reports_every_problem(fixture: Path) -> None:
    text = fixture.read_text()
    name = str(fixture)
    expected = sorted(
        f"{name}:{line.removeprefix('# expect: ').format(file=name)}"
        for line in text.splitlines()
        if line.startswith("# expect: ")
    )
    assert expected, "a fixture must say what it expects"
    with pytest.raises(ManifestError) as caught:
        parse_manifests({name: text})
    assert sorted(str(problem) for problem in caught.value.problems) == expected


def test_nothing_partial_on_error() -> None:
    good = "apiVersion: herald.io/v1alpha1\nkind: BFDProfile\nmetadata: {name: a}\n"
    bad = "apiVersion: herald.io/v1alpha1\nkind: BFDProfile\nmetadata: {name: b}\nspec: {x: 1}\n"
    assert len(parse_manifests({"a.yaml": good}).bfd_profiles) == 1
    with pytest.raises(ManifestError) as caught:
        parse_manifests({"a.yaml": good, "b.yaml": bad})
    assert [str(p) for p in caught.value.problems] == [
        "b.yaml:1: spec.x: unknown field; allowed here: receiveInterval, transmitInterval, "
        "detectMultiplier, echoInterval, echoMode, passiveMode, minimumTtl"
    ]


def test_defaults_are_applied() -> None:
    text = """
apiVersion: herald.io/v1alpha1
kind: BGPPeerConfig
metadata: {name: p}
---
apiVersion: herald.io/v1alpha1
kind: BFDProfile
metadata: {name: b}
---
apiVersion: herald.io/v1alpha1
kind: LoadBalancerIPPool
metadata: {name: pool}
spec: {blocks: [{cidr: 203.0.113.0/24}]}
---
apiVersion: v1
kind: Service
metadata: {name: s}
"""
    state = parse_manifests({"d.yaml": text})
    peer = state.bgp_peer_configs[0].spec
    assert (peer.timers.hold_time_seconds, peer.timers.keep_alive_time_seconds) == (90, 30)
    assert peer.timers.connect_retry_time_seconds == 120
    assert peer.graceful_restart.restart_time_seconds == 120
    assert peer.transport.peer_port == 179
    assert [f.afi for f in peer.families] == ["ipv4", "ipv6"]
    bfd = state.bfd_profiles[0].spec
    assert (bfd.receive_interval, bfd.transmit_interval, bfd.detect_multiplier) == (300, 300, 3)
    assert state.pools[0].spec.allow_first_last_ips == "Yes"
    assert state.services[0].metadata.namespace == "default"


def test_unknown_core_kinds_are_counted_not_rejected() -> None:
    text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
    state = parse_manifests({"d.yaml": text})
    assert dict(state.ignored) == {"Deployment": 1}


def test_kind_list_is_expanded_with_item_paths() -> None:
    text = """
apiVersion: v1
kind: List
items:
  - apiVersion: herald.io/v1alpha1
    kind: BFDProfile
    metadata: {name: a}
  - apiVersion: herald.io/v1alpha1
    kind: BFDProfile
    metadata: {name: b}
    spec: {detectMultiplier: 1}
"""
    with pytest.raises(ManifestError) as caught:
        parse_manifests({"l.yaml": text})
    assert [str(p) for p in caught.value.problems] == [
        "l.yaml:1: items[1].spec.detectMultiplier: got 1: "
        "Input should be greater than or equal to 2"
    ]


def test_hold_time_zero_is_allowed() -> None:
    text = """
apiVersion: herald.io/v1alpha1
kind: BGPPeerConfig
metadata: {name: p}
spec: {timers: {holdTimeSeconds: 0, keepAliveTimeSeconds: 30}}
"""
    assert parse_manifests({"p.yaml": text}).bgp_peer_configs[0].spec.timers.hold_time_seconds == 0


def test_l2_seed_is_a_cluster_of_its_own() -> None:
    state = load_directory(ROOT / "examples" / "l2-seed")
    assert state.counts()["L2AnnouncementPolicy"] == 1
    assert state.bgp_cluster_configs == ()
    assert [svc.spec.load_balancer_class for svc in state.services] == ["herald.io/l2"]


def test_cached_loading_reparses_only_changed_files(tmp_path: Path) -> None:
    from herald.api.manifests import ParsedFile

    bfd = "apiVersion: herald.io/v1alpha1\nkind: BFDProfile\nmetadata: {name: %s}\n"
    (tmp_path / "a.yaml").write_text(bfd % "a")
    (tmp_path / "b.yaml").write_text(bfd % "b")
    cache: dict[Path, tuple[bytes, ParsedFile]] = {}
    first = load_directory(tmp_path, cache)
    kept = cache[tmp_path / "a.yaml"][1]
    (tmp_path / "b.yaml").write_text(bfd % "c")  # same size: only the text tells
    second = load_directory(tmp_path, cache)
    assert [p.metadata.name for p in first.bfd_profiles] == ["a", "b"]
    assert [p.metadata.name for p in second.bfd_profiles] == ["a", "c"]
    assert cache[tmp_path / "a.yaml"][1] is kept
    (tmp_path / "b.yaml").unlink()
    assert [p.metadata.name for p in load_directory(tmp_path, cache).bfd_profiles] == ["a"]
    assert list(cache) == [tmp_path / "a.yaml"]
