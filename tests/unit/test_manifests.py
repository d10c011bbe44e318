"""Manifest loading and validation: valid examples load, invalid fixtures fail with every
problem located as file:document: field.path: message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from herald.api.manifests import load_directory, parse_manifests
from herald.api.problems import ManifestError
from herald.cli.main import cli

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


# -- what the directory may reach and how much of it is read ----------------------------------

BFD = "apiVersion: herald.io/v1alpha1\nkind: BFDProfile\nmetadata: {name: %s}\n"


@pytest.fixture
def opened(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path opened (resolved), however it is opened: clear it before the call to
    check, as a test's own set-up writes files too."""
    import builtins
    import io
    import os

    paths: list[str] = []

    def spy(real: Any) -> Any:
        def open_and_record(file: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(file, str | bytes | os.PathLike):
                paths.append(os.path.realpath(file))
            return real(file, *args, **kwargs)

        return open_and_record

    monkeypatch.setattr(os, "open", spy(os.open))
    monkeypatch.setattr(io, "open", spy(io.open))
    monkeypatch.setattr(builtins, "open", spy(builtins.open))
    return paths


def test_a_link_to_a_file_outside_is_refused_and_never_opened(
    tmp_path: Path, opened: list[str]
) -> None:
    manifests, outside = tmp_path / "manifests", tmp_path / "elsewhere"
    manifests.mkdir()
    outside.mkdir()
    (outside / "shadow.yaml").write_text(BFD % "secret")
    (manifests / "ok.yaml").write_text(BFD % "ok")
    (manifests / "shadow.yaml").symlink_to(outside / "shadow.yaml")
    opened.clear()
    with pytest.raises(ManifestError) as caught:
        load_directory(manifests)
    assert [str(p) for p in caught.value.problems] == [
        f"{manifests}/shadow.yaml:0: (file): symlink to {outside}/shadow.yaml leads outside "
        f"the manifests directory {manifests}; not read. Copy what it points to into the "
        "directory, or link to a file inside it"
    ]
    assert str(outside / "shadow.yaml") not in opened
    assert str(manifests / "ok.yaml") in opened


def test_a_link_to_a_directory_outside_is_refused(tmp_path: Path, opened: list[str]) -> None:
    manifests, outside = tmp_path / "manifests", tmp_path / "elsewhere"
    manifests.mkdir()
    outside.mkdir()
    (outside / "a.yaml").write_text(BFD % "a")
    (manifests / "team").symlink_to(outside, target_is_directory=True)
    opened.clear()
    with pytest.raises(ManifestError) as caught:
        load_directory(manifests)
    assert [p.location.file for p in caught.value.problems] == [f"{manifests}/team"]
    assert "leads outside the manifests directory" in caught.value.problems[0].message
    assert str(outside / "a.yaml") not in opened


def test_links_that_stay_inside_are_read_once(tmp_path: Path) -> None:
    # The layout of a Kubernetes ConfigMap volume: visible links into a hidden directory.
    (tmp_path / "..2024_01_01").mkdir()
    (tmp_path / "..2024_01_01" / "bfd.yaml").write_text(BFD % "a")
    (tmp_path / "..data").symlink_to("..2024_01_01", target_is_directory=True)
    (tmp_path / "bfd.yaml").symlink_to("..data/bfd.yaml")
    # A visible directory linked twice, and a loop: each file is read once, the walk ends.
    (tmp_path / "team").mkdir()
    (tmp_path / "team" / "b.yaml").write_text(BFD % "b")
    (tmp_path / "alias").symlink_to("team", target_is_directory=True)
    (tmp_path / "team" / "loop").symlink_to("..", target_is_directory=True)
    # A visible link to a hidden directory is read through the link.
    (tmp_path / ".v2").mkdir()
    (tmp_path / ".v2" / "c.yaml").write_text(BFD % "c")
    (tmp_path / "current").symlink_to(tmp_path / ".v2", target_is_directory=True)
    state = load_directory(tmp_path)
    assert sorted(p.metadata.name for p in state.bfd_profiles) == ["a", "b", "c"]
    assert state.locations[("BFDProfile", "", "c")].file == f"{tmp_path}/current/c.yaml"


def test_a_file_over_the_size_limit_is_a_problem_and_not_read(
    tmp_path: Path, opened: list[str]
) -> None:
    from herald.api.manifests import SizeLimits

    (tmp_path / "small.yaml").write_text(BFD % "small")
    (tmp_path / "big.yaml").write_text(BFD % "big" + "# padding\n" * 200)
    size = (tmp_path / "big.yaml").stat().st_size
    opened.clear()
    with pytest.raises(ManifestError) as caught:
        load_directory(tmp_path, limits=SizeLimits(file_bytes=1000, total_bytes=10_000))
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path}/big.yaml:0: (file): holds {size} bytes, over the limit of 1000 bytes "
        "for one manifest file; not read. Split it into smaller files"
    ]
    assert str(tmp_path / "big.yaml") not in opened
    # Within the limit the same file is fine.
    state = load_directory(tmp_path, limits=SizeLimits(file_bytes=size, total_bytes=10_000))
    assert len(state.bfd_profiles) == 2


def test_files_over_the_directory_limit_are_not_read_at_all(
    tmp_path: Path, opened: list[str]
) -> None:
    from herald.api.manifests import SizeLimits

    for name in "abc":
        (tmp_path / f"{name}.yaml").write_text(BFD % name)
    size = (tmp_path / "a.yaml").stat().st_size
    limits = SizeLimits(file_bytes=size, total_bytes=3 * size - 1)
    opened.clear()
    with pytest.raises(ManifestError) as caught:
        load_directory(tmp_path, limits=limits)
    assert [str(p) for p in caught.value.problems] == [
        f"{tmp_path}:0: (directory): its manifest files hold {3 * size} bytes together, over "
        f"the limit of {3 * size - 1} bytes; nothing was read. Remove files herald does not "
        "need (objects of kinds it ignores count too) or move them out of the directory"
    ]
    assert not [path for path in opened if path.endswith(".yaml")]


def test_size_limit_defaults() -> None:
    from herald.api.manifests import SizeLimits

    # docs/configuration.md gives these numbers and why; change both together.
    assert SizeLimits() == SizeLimits(file_bytes=4 * 2**20, total_bytes=8 * 2**20)


def test_herald_validate_refuses_peer_asn_zero_with_its_location(tmp_path: Path) -> None:
    """What the speaker would refuse later (and crash an agent with), validate refuses now."""
    (tmp_path / "bgp.yaml").write_text(
        "apiVersion: herald.io/v1alpha1\nkind: BGPClusterConfig\nmetadata: {name: c}\n"
        "spec:\n  bgpInstances:\n    - name: a\n      localASN: 64512\n      peers:\n"
        "        - {name: r1, peerAddress: 192.0.2.1, peerASN: 0}\n"
    )
    result = CliRunner().invoke(cli, ["validate", str(tmp_path)])
    assert result.exit_code == 1
    assert result.stderr.splitlines()[0] == (
        f"{tmp_path}/bgp.yaml:1: spec.bgpInstances[0].peers[0].peerASN: 0 (accept any AS, as "
        "Cilium reads it) is not supported: herald checks the peer's OPEN against its AS; "
        "write the peer's AS number, 1..4294967295 except 23456"
    )


def test_foreign_annotations_that_lose_to_heralds_leave_the_manifests_valid() -> None:
    text = """
apiVersion: v1
kind: Service
metadata:
  name: s
  annotations:
    herald.io/sharing-key: a
    lbipam.cilium.io/sharing-key: b
    metallb.io/allow-shared-ip: c
spec: {type: LoadBalancer}
"""
    state = parse_manifests({"s.yaml": text})
    assert state.services[0].metadata.annotations["metallb.io/allow-shared-ip"] == "c"


def test_foreign_annotations_on_services_herald_does_not_serve_are_not_checked() -> None:
    text = """
apiVersion: v1
kind: Service
metadata:
  name: s
  annotations: {metallb.io/loadBalancerIPs: "not-an-ip"}
spec: {type: LoadBalancer, loadBalancerClass: metallb.io/metallb}
"""
    assert len(parse_manifests({"s.yaml": text}).services) == 1
    served = text.replace(
        "loadBalancerClass: metallb.io/metallb", "loadBalancerClass: herald.io/bgp"
    )
    with pytest.raises(ManifestError) as caught:
        parse_manifests({"s.yaml": served})
    assert [p.path for p in caught.value.problems] == [
        "metadata.annotations[metallb.io/loadBalancerIPs]"
    ]
