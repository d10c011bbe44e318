"""What `convert` does beyond the documentation's examples: determinism, located errors for
malformed input, values herald refuses, references to objects not imported, the --from
choice, and the mapping details that are easy to get wrong."""

from __future__ import annotations

import ipaddress
import random
from pathlib import Path

import pytest

from herald.api.bgp import Advertisement
from herald.api.manifests import parse_manifests
from herald.importers import Result, convert
from herald.importers.attributes import AGGREGATION_SUPPORTED
from herald.importers.report import Outcome
from herald.importers.source import parse_text, read_inputs

CASES = Path(__file__).parent / "cases"
# Cases whose objects have different names, so that they can be imported together.
TOGETHER = (
    "cilium-lb-ipam",
    "cilium-bgp",
    "cilium-peering-policy",
    "cilium-l2",
    "seed-bgp-config",
    "metallb-bgp",
    "metallb-legacy-layer2",
)


def run(text: str, source: str = "auto", name: str = "in.yaml") -> Result:
    objects, read = parse_text(name, text)
    return convert(objects, source, read)  # type: ignore[arg-type]


def lines(result: Result, outcome: Outcome) -> list[str]:
    return [
        str(f) for f in sorted(result.findings, key=lambda f: f.sort_key()) if f.outcome is outcome
    ]


# -- determinism ----------------------------------------------------------------------------


def test_a_whole_directory_imports_the_same_whatever_the_order(tmp_path: Path) -> None:
    # Cases of both sources at once (their object names differ), in different orders.
    for case in TOGETHER:
        for path in (CASES / case).glob("*.yaml"):
            (tmp_path / f"{case}-{path.name}").write_text(path.read_text())
    paths = sorted(str(p) for p in tmp_path.iterdir())
    objects, read = read_inputs([str(tmp_path)])
    first = convert(objects, "auto", read)
    assert not first.failed, first.report()
    assert len(first.emitted) > 40
    for seed in range(5):
        shuffled = list(paths)
        random.Random(seed).shuffle(shuffled)
        objects, read = read_inputs(shuffled)
        random.Random(seed).shuffle(objects)
        again = convert(objects, "auto", read)
        assert again.files == first.files
        assert again.report() == first.report()
    parse_manifests(first.files)


# -- malformed input: located errors, nothing to write --------------------------------------


def test_text_that_is_not_yaml_is_a_located_error() -> None:
    result = run("apiVersion: cilium.io/v2\nkind: [unclosed\n")
    assert result.failed
    (error,) = lines(result, Outcome.ERROR)
    assert error.startswith("in.yaml:1: (yaml): error: not YAML: ")
    assert error.endswith("(line 3, column 1); fix the file, or leave it out of the import")


def test_a_known_kind_with_a_wrong_field_type_is_a_located_error() -> None:
    result = run(
        "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata: {name: c}\n"
        "spec:\n  bgpInstances:\n  - name: i\n    localASN: sixty-four\n  - name: j\n"
        "    localASN: 64512\n    peers: {}\n"
        "---\napiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\n"
        "spec: {addresses: 192.0.2.0/24, autoAssign: 'no'}\n"
    )
    assert result.failed
    assert lines(result, Outcome.ERROR) == [
        "in.yaml:1: spec.bgpInstances[0].localASN: error: expected an integer, got the string "
        "'sixty-four'",
        "in.yaml:1: spec.bgpInstances[1].peers: error: expected a list, got a mapping",
        "in.yaml:2: spec.addresses: error: expected a list of strings, got the string "
        "'192.0.2.0/24'",
        "in.yaml:2: spec.autoAssign: error: expected true or false, got the string 'no'",
    ]


def test_objects_without_kind_or_name_are_errors() -> None:
    result = run(
        "apiVersion: v1\nmetadata: {name: x}\n---\n- a list\n---\n"
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nspec: {addresses: []}\n"
    )
    assert lines(result, Outcome.ERROR) == [
        "in.yaml:1: kind: error: missing; every object needs apiVersion and kind",
        "in.yaml:2: (document): error: expected an object with apiVersion and kind, got a list",
        "in.yaml:3: metadata: error: missing; every object needs metadata.name",
    ]


def test_two_sources_of_one_herald_name_are_an_error() -> None:
    result = run(
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: default}\n"
        "spec: {blocks: [{cidr: 192.0.2.0/24}]}\n---\n"
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n"
        "metadata: {name: default, namespace: metallb-system}\n"
        "spec: {addresses: [198.51.100.0/24]}\n"
    )
    assert result.failed
    assert lines(result, Outcome.ERROR) == [
        "in.yaml:2: metadata.name: error: becomes LoadBalancerIPPool default, and so does "
        "CiliumLoadBalancerIPPool default at in.yaml:1: herald's kinds are cluster-scoped, so "
        "the names must differ; rename one of them, or import them separately"
    ]


# -- what herald refuses is left out where safe, reported where written ---------------------


def test_a_value_herald_refuses_falls_back_to_its_default() -> None:
    result = run(
        "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {name: p}\n"
        "spec:\n  timers: {connectRetryTimeSeconds: 100000, holdTimeSeconds: 9, "
        "keepAliveTimeSeconds: 3}\n"
    )
    assert lines(result, Outcome.NOT_CONVERTED) == [
        "in.yaml:1: spec.timers.connectRetryTimeSeconds: not converted: herald refuses it "
        "(spec.timers.connectRetryTimeSeconds: got 100000: Input should be less than or equal "
        "to 65535); left out, so herald's default applies"
    ]
    (config,) = parse_manifests(result.files).bgp_peer_configs
    assert (
        config.spec.timers.connect_retry_time_seconds,
        config.spec.timers.hold_time_seconds,
    ) == (120, 9)


def test_a_peer_herald_cannot_run_is_left_out_of_its_instance() -> None:
    result = run(
        "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata: {name: c}\n"
        "spec:\n  bgpInstances:\n  - name: i\n    localASN: 64512\n    peers:\n"
        "    - {name: as-trans, peerAddress: 192.0.2.1, peerASN: 23456}\n"
        "    - {name: any-as, peerAddress: 192.0.2.2}\n"
        "    - {name: good, peerAddress: 192.0.2.3, peerASN: 64513}\n"
    )
    assert [f.path for f in result.findings if f.outcome is Outcome.NOT_CONVERTED] == [
        "spec.bgpInstances[0].peers[1].peerASN",
        "spec.bgpInstances[0].peers[0].peerASN",
    ]
    (config,) = parse_manifests(result.files).bgp_cluster_configs
    assert [p.name for p in config.spec.bgp_instances[0].peers] == ["good"]


def test_a_selector_herald_refuses_drops_the_object_rather_than_widen_it() -> None:
    result = run(
        "apiVersion: cilium.io/v2alpha1\nkind: CiliumLoadBalancerIPPool\nmetadata: {name: p}\n"
        "spec:\n  blocks: [{cidr: 192.0.2.0/24}]\n"
        "  serviceSelector: {matchExpressions: [{key: tier, operator: Near}]}\n"
    )
    assert result.emitted == ()
    (finding,) = [f for f in result.findings if f.outcome is Outcome.NOT_CONVERTED]
    assert finding.path == "spec.serviceSelector"
    assert finding.message.endswith("the object is not converted")


# -- references to objects that were not imported ------------------------------------------


def test_a_secret_that_was_not_imported_is_said_with_what_to_do() -> None:
    result = run(
        "apiVersion: cilium.io/v2\nkind: CiliumBGPPeerConfig\nmetadata: {name: p}\n"
        "spec: {authSecretRef: bgp-auth}\n"
    )
    assert result.partial and not result.failed
    assert lines(result, Outcome.NOT_CONVERTED) == [
        "in.yaml:1: spec.authSecretRef: not converted: Secret 'bgp-auth' (kube-system) is not "
        "among the imported objects, so its password cannot be copied: import it too (kubectl "
        "get secret bgp-auth -n kube-system -o yaml), or create Secret herald-system/bgp-auth "
        "with key password"
    ]


def test_a_peer_config_that_was_not_imported_is_said_on_the_cluster_config() -> None:
    result = run(
        "apiVersion: cilium.io/v2\nkind: CiliumBGPClusterConfig\nmetadata: {name: c}\n"
        "spec:\n  bgpInstances:\n  - name: i\n    localASN: 64512\n    peers:\n"
        "    - {name: r, peerAddress: 192.0.2.1, peerASN: 64512, peerConfigRef: {name: tor}}\n"
    )
    assert lines(result, Outcome.NOT_CONVERTED) == [
        "in.yaml:1: (object): not converted: the BGPClusterConfig c it became is incomplete "
        "without more objects: spec.bgpInstances[0].peers[0].peerConfigRef.name: no "
        "BGPPeerConfig named 'tor'; there is no BGPPeerConfig at all"
    ]


# -- what is read, and from whom ------------------------------------------------------------


MIXED = (
    "apiVersion: cilium.io/v2\nkind: CiliumL2AnnouncementPolicy\nmetadata: {name: l2}\n"
    "spec: {loadBalancerIPs: true}\n---\n"
    "apiVersion: metallb.io/v1beta1\nkind: L2Advertisement\n"
    "metadata: {name: adv, namespace: metallb-system}\n---\n"
    "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n---\n"
    "apiVersion: cilium.io/v2\nkind: CiliumNetworkPolicy\nmetadata: {name: np}\n---\n"
    "apiVersion: herald.io/v1alpha1\nkind: BFDProfile\nmetadata: {name: fast}\n"
)


@pytest.mark.parametrize(
    ("source", "kinds"),
    [
        ("auto", ["L2AnnouncementPolicy adv", "L2AnnouncementPolicy l2"]),
        ("cilium", ["L2AnnouncementPolicy l2"]),
        ("metallb", ["L2AnnouncementPolicy adv"]),
    ],
)
def test_from_chooses_whose_objects_are_read(source: str, kinds: list[str]) -> None:
    result = run(MIXED, source)
    assert sorted(f"{e.kind} {e.name}" for e in result.emitted) == kinds
    ignored = {
        f.location.document: f.message for f in result.findings if f.outcome is Outcome.IGNORED
    }
    assert ignored[3] == "Deployment (apps/v1) is not Cilium or MetalLB configuration"
    assert ignored[5] == "already a herald object; use it as it is"
    if source != "metallb":
        assert ignored[4] == (
            "CiliumNetworkPolicy is not load-balancing configuration herald has an equivalent of"
        )
    if source == "cilium":
        assert ignored[2] == (
            "L2Advertisement is MetalLB configuration; --from cilium reads Cilium's only"
        )


def test_unknown_fields_are_reported_not_dropped() -> None:
    result = run(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\n"
        "spec:\n  addresses: [192.0.2.0/24]\n  futureKnob: 3\n  serviceAllocation:\n"
        "    namespaces: [a]\n    weight: 2\n"
    )
    assert [f.path for f in result.findings if f.outcome is Outcome.NOT_CONVERTED] == [
        "spec.futureKnob",
        "spec.serviceAllocation.weight",
    ]


def test_server_written_fields_and_status_are_passed_over_silently() -> None:
    result = run(
        "apiVersion: cilium.io/v2\nkind: CiliumLoadBalancerIPPool\nmetadata:\n  name: p\n"
        "  uid: x\n  resourceVersion: '1'\n  managedFields: [{manager: kubectl}]\n"
        "  annotations: {kubectl.kubernetes.io/last-applied-configuration: '{}'}\n"
        "spec: {blocks: [{cidr: 192.0.2.0/24}]}\nstatus: {conditions: []}\n"
    )
    assert [f.outcome for f in result.findings] == [Outcome.BECAME]


def test_community_values_with_colons_are_text_as_kubernetes_reads_them() -> None:
    # YAML 1.1 would read 1234:1 as the base-60 number 74041.
    result = run(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\n"
        "spec: {addresses: [192.0.2.0/24]}\n---\n"
        "apiVersion: metallb.io/v1beta1\nkind: BGPAdvertisement\nmetadata: {name: a}\n"
        "spec: {communities: [1234:1, large:1:2:3, gold]}\n---\n"
        "apiVersion: metallb.io/v1beta1\nkind: Community\nmetadata: {name: c}\n"
        "spec: {communities: [{name: gold, value: 64512:7}]}\n"
    )
    (advertisement,) = parse_manifests(result.files).bgp_advertisements
    communities = advertisement.spec.advertisements[0].attributes.communities  # type: ignore[union-attr]
    assert communities is not None
    assert (communities.standard, communities.large) == (("1234:1", "64512:7"), ("1:2:3",))


def test_a_left_over_configmap_beside_metallb_resources_is_ignored() -> None:
    result = run(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\n"
        "data:\n  config: |\n    address-pools:\n    - {name: old, protocol: layer2, "
        "addresses: [192.0.2.0/24]}\n---\n"
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\n"
        "metadata: {name: new, namespace: metallb-system}\nspec: {addresses: [198.51.100.0/24]}\n"
    )
    assert [e.name for e in result.emitted] == ["new"]
    (ignored,) = [f for f in result.findings if f.outcome is Outcome.IGNORED]
    assert ignored.location.document == 1
    assert "left over" in ignored.message


def test_avoid_buggy_ips_leaves_out_exactly_the_dot_0_and_dot_255_addresses() -> None:
    blocks = ["10.1.0.0/22", "10.2.0.250-10.2.1.3", "10.3.0.255/32", "2001:db8::/126"]
    result = run(
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: p}\n"
        f"spec: {{addresses: [{', '.join(blocks)}], avoidBuggyIPs: true}}\n"
    )
    (pool,) = parse_manifests(result.files).pools
    written = {
        address
        for block in pool.spec.blocks
        for address in range(block.bounds()[1], block.bounds()[2] + 1)
        if block.bounds()[0] == 4
    }
    expected = set()
    for text in blocks[:3]:
        first, _, last = text.partition("-")
        if last:
            span = range(int(ipaddress.ip_address(first)), int(ipaddress.ip_address(last)) + 1)
        else:
            network = ipaddress.ip_network(first)
            span = range(int(network.network_address), int(network.broadcast_address) + 1)
        expected |= {a for a in span if a & 0xFF not in (0, 255)}
    assert written == expected
    assert any(block.cidr == "2001:db8::/126" for block in pool.spec.blocks)


def test_aggregation_follows_the_model() -> None:
    """The import writes aggregation exactly when herald's advertisements have it."""
    assert ("aggregation_length" in Advertisement.model_fields) == AGGREGATION_SUPPORTED


def test_a_legacy_configmap_that_is_not_yaml_is_a_located_error() -> None:
    result = run(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: metallb-system}\n"
        "data:\n  config: |\n    peers: [\n"
    )
    (error,) = lines(result, Outcome.ERROR)
    assert error.startswith("in.yaml:1: data.config: error: not YAML: ")
    assert error.endswith("(line 2 of the embedded text)")


def test_other_configmaps_are_ignored_even_when_named_config() -> None:
    result = run(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: config, namespace: shop}\n"
        "data:\n  config: '[section'\n---\n"
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: settings}\ndata: {config: 'a: 1'}\n"
    )
    assert [f.outcome for f in result.findings] == [Outcome.IGNORED, Outcome.IGNORED]
