"""Selectors, Service defaults, CRD schemas and the Table form: the server's pure parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from herald.lab.kubeapi.crd_schema import apply_schema
from herald.lab.kubeapi.errors import ApiError
from herald.lab.kubeapi.objects import prepare_create, prepare_update
from herald.lab.kubeapi.resources import ResourceRegistry, types_from_crd
from herald.lab.kubeapi.selectors import SELECTABLE_FIELDS, field_matcher, label_matcher
from herald.lab.kubeapi.services import Allocations, default_service
from herald.lab.kubeapi.table import human_duration, json_path, to_table
from herald.lab.kubeapi.validation import validate_metadata

NOW = datetime(2026, 1, 1, tzinfo=UTC)
REGISTRY = ResourceRegistry()


def labelled(**labels: str) -> dict[str, object]:
    return {"metadata": {"name": "x", "namespace": "ns", "labels": labels}}


@pytest.mark.parametrize(
    ("selector", "matches"),
    [
        ("", True),
        ("app=web", True),
        ("app==web,tier=front", True),
        ("app!=web", False),
        ("app in (db, web)", True),
        ("app notin (web)", False),
        ("tier", True),
        ("!tier", False),
        ("!missing", True),
        ("missing notin (a)", True),
    ],
)
def test_label_selectors(selector: str, matches: bool) -> None:
    assert label_matcher(selector)(labelled(app="web", tier="front")) is matches


def test_field_selectors_and_bad_selectors() -> None:
    obj = labelled()
    assert field_matcher("metadata.name=x,metadata.namespace=ns")(obj)
    assert not field_matcher("metadata.name!=x")(obj)
    with pytest.raises(ApiError) as err:
        label_matcher("app in web")
    assert err.value.code == 400


def test_service_defaults_and_allocations() -> None:
    svc_type = REGISTRY.lookup("", "v1", "services")
    assert svc_type is not None
    allocations = Allocations("10.96.0.0/12")
    first = prepare_create(
        svc_type,
        {
            "metadata": {"name": "a"},
            "spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]},
        },
        "default",
        NOW,
    )
    default_service(first, allocations)
    allocations.add(first)
    spec = first["spec"]
    assert spec["clusterIP"] == "10.96.0.1" and spec["clusterIPs"] == ["10.96.0.1"]
    assert spec["ports"] == [
        {"port": 80, "protocol": "TCP", "targetPort": 80, "nodePort": 30000},
        {"port": 443, "protocol": "TCP", "targetPort": 443, "nodePort": 30001},
    ]
    assert (spec["sessionAffinity"], spec["ipFamilies"], spec["externalTrafficPolicy"]) == (
        "None",
        ["IPv4"],
        "Cluster",
    )
    assert first["status"] == {"loadBalancer": {}}
    second = prepare_create(
        svc_type, {"metadata": {"name": "b"}, "spec": {"ports": [{"port": 80}]}}, "default", NOW
    )
    default_service(second, allocations)
    allocations.add(second)
    assert second["spec"]["clusterIP"] == "10.96.0.2"
    assert "nodePort" not in second["spec"]["ports"][0]
    # An update that omits the allocations keeps them.
    again = {"metadata": {"name": "a"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}
    updated = prepare_update(svc_type, first, again, "")
    default_service(updated, allocations, first)
    assert updated["spec"]["clusterIP"] == "10.96.0.1"
    assert updated["spec"]["ports"][0]["nodePort"] == 30000
    # A change of type drops what belonged to the old one.
    to_cluster_ip = {"metadata": {"name": "a"}, "spec": {**updated["spec"], "type": "ClusterIP"}}
    changed = prepare_update(svc_type, updated, to_cluster_ip, "")
    default_service(changed, allocations, updated)
    assert changed["spec"]["clusterIP"] == "10.96.0.1"
    assert "nodePort" not in changed["spec"]["ports"][0]
    for gone in ("allocateLoadBalancerNodePorts", "externalTrafficPolicy"):
        assert gone not in changed["spec"]


def test_allocations_wrap_around_and_reuse_what_was_freed() -> None:
    allocations = Allocations("10.0.0.0/30")  # two usable addresses
    held = {"spec": {"clusterIP": allocations.cluster_ip()}}
    allocations.add(held)
    other = {"spec": {"clusterIP": allocations.cluster_ip()}}
    allocations.add(other)
    assert [held["spec"]["clusterIP"], other["spec"]["clusterIP"]] == ["10.0.0.1", "10.0.0.2"]
    with pytest.raises(ApiError):
        allocations.cluster_ip()
    allocations.remove(held)
    assert allocations.cluster_ip() == "10.0.0.1"


def test_generation_counts_spec_changes_only() -> None:
    deploy = REGISTRY.lookup("apps", "v1", "deployments")
    assert deploy is not None
    obj = prepare_create(
        deploy,
        {"metadata": {"name": "d"}, "spec": {"replicas": 1}, "status": {"x": 1}},
        "default",
        NOW,
    )
    assert obj["metadata"]["generation"] == 1 and "status" not in obj
    relabelled = prepare_update(
        deploy, obj, {**obj, "metadata": {**obj["metadata"], "labels": {"a": "b"}}}, ""
    )
    assert relabelled["metadata"]["generation"] == 1
    scaled = prepare_update(deploy, obj, {**obj, "spec": {"replicas": 2}}, "")
    assert scaled["metadata"]["generation"] == 2
    status = prepare_update(
        deploy, scaled, {**scaled, "spec": {"replicas": 9}, "status": {"ready": 2}}, "status"
    )
    assert status["spec"] == {"replicas": 2} and status["status"] == {"ready": 2}
    assert status["metadata"]["generation"] == 2


CRD = {
    "metadata": {"name": "pools.example.org"},
    "spec": {
        "group": "example.org",
        "scope": "Cluster",
        "names": {"plural": "pools", "kind": "Pool", "shortNames": ["pl"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "additionalPrinterColumns": [
                    {
                        "name": "Ready",
                        "type": "string",
                        "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
                    },
                    {"name": "Size", "type": "integer", "jsonPath": ".spec.size"},
                ],
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "size": {"type": "integer", "default": 3},
                                    "items": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "port": {"type": "integer", "default": 179}
                                            },
                                        },
                                    },
                                    "free": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                },
                            },
                            "status": {
                                "type": "object",
                                "properties": {
                                    "conditions": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "properties": {
                                                "type": {"type": "string"},
                                                "status": {"type": "string"},
                                            },
                                        },
                                    }
                                },
                            },
                        },
                    }
                },
            }
        ],
    },
}


def test_a_crd_serves_its_kind_with_schema_pruning_and_defaults() -> None:
    (rtype,) = types_from_crd(CRD)
    assert (rtype.group, rtype.version, rtype.plural, rtype.namespaced, rtype.has_status) == (
        "example.org",
        "v1",
        "pools",
        False,
        True,
    )
    registry = ResourceRegistry()
    registry.set_crd("pools.example.org", [rtype])
    assert ("example.org", ["v1"]) in registry.group_versions()
    stored = apply_schema(
        rtype.extra["schema"],
        {
            "apiVersion": "example.org/v1",
            "kind": "Pool",
            "metadata": {"name": "p", "anything": 1},
            "spec": {"unknown": 1, "items": [{}, {"port": 1}], "free": {"a": {"b": 1}}},
        },
    )
    assert stored["spec"] == {
        "size": 3,
        "items": [{"port": 179}, {"port": 1}],
        "free": {"a": {"b": 1}},
    }
    assert stored["metadata"] == {"name": "p", "anything": 1}


def test_tables_for_services_and_custom_resources() -> None:
    svc_type = REGISTRY.lookup("", "v1", "services")
    assert svc_type is not None
    created = (NOW - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    svc = {
        "metadata": {"name": "web", "namespace": "default", "creationTimestamp": created},
        "spec": {
            "type": "LoadBalancer",
            "clusterIP": "10.96.0.2",
            "ports": [{"port": 80, "nodePort": 30000, "protocol": "TCP"}],
        },
        "status": {"loadBalancer": {}},
    }
    table = to_table(svc_type, [svc], NOW, "7")
    assert [c["name"] for c in table["columnDefinitions"]][:6] == [
        "Name",
        "Type",
        "Cluster-IP",
        "External-IP",
        "Port(s)",
        "Age",
    ]
    assert table["rows"][0]["cells"][:6] == [
        "web",
        "LoadBalancer",
        "10.96.0.2",
        "<pending>",
        "80:30000/TCP",
        "5m",
    ]
    assert table["rows"][0]["object"]["kind"] == "PartialObjectMetadata"
    svc["status"] = {"loadBalancer": {"ingress": [{"ip": "203.0.113.0"}, {"ip": "2001:db8::1"}]}}
    assert (
        to_table(svc_type, [svc], NOW, "8", headers=False)["rows"][0]["cells"][3]
        == "203.0.113.0,2001:db8::1"
    )
    (pool_type,) = types_from_crd(CRD)
    pool = {
        "metadata": {"name": "p"},
        "spec": {"size": 4},
        "status": {
            "conditions": [
                {"type": "Other", "status": "False"},
                {"type": "Ready", "status": "True"},
            ]
        },
    }
    pool_table = to_table(pool_type, [pool], NOW, "9", include_object="Object")
    assert [c["name"] for c in pool_table["columnDefinitions"]] == ["Name", "Ready", "Size"]
    assert pool_table["rows"][0]["cells"] == ["p", "True", 4]
    assert pool_table["rows"][0]["object"] == pool


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (119, "119s"),
        (150, "2m30s"),
        (600, "10m"),
        (3 * 3600 + 60, "3h1m"),
        (30 * 3600, "30h"),
        (3 * 86400, "3d"),
        (400 * 86400, "400d"),
    ],
)
def test_human_durations_as_kubectl_prints_them(seconds: int, text: str) -> None:
    assert human_duration(seconds) == text


def test_json_path_indexes_and_filters() -> None:
    obj = {"a": [{"k": "x", "v": 1}, {"k": "y", "v": 2}]}
    assert json_path(obj, ".a[1].v") == 2
    assert json_path(obj, '.a[?(@.k=="y")].v') == 2
    assert json_path(obj, ".b.c") is None


@pytest.mark.parametrize(
    ("kind_plural", "name", "labels", "ok"),
    [
        (("", "v1", "services"), "web1-lb", {"app": "web1"}, True),
        (("", "v1", "services"), "Web1", {}, False),
        (("", "v1", "services"), "1web", {}, False),
        (("", "v1", "events"), "web1-lb.17a8b2c3d4", {}, True),
        (("rbac.authorization.k8s.io", "v1", "clusterroles"), "system:herald", {}, True),
        (("", "v1", "configmaps"), "ok", {"herald.io/role": "agent"}, True),
        (("", "v1", "configmaps"), "ok", {"bad key": "x"}, False),
        (("", "v1", "configmaps"), "ok", {"k": "no spaces"}, False),
    ],
)
def test_metadata_validation(
    kind_plural: tuple[str, str, str], name: str, labels: dict[str, str], ok: bool
) -> None:
    rtype = REGISTRY.lookup(*kind_plural)
    assert rtype is not None
    obj = {"metadata": {"name": name, "labels": labels}}
    if ok:
        validate_metadata(rtype, obj)
    else:
        with pytest.raises(ApiError) as err:
            validate_metadata(rtype, obj)
        assert (err.value.code, err.value.reason) == (422, "Invalid")
        assert err.value.message.startswith(f'{rtype.kind} "{name}" is invalid: ')


def test_annotations_are_limited_to_256_kib() -> None:
    rtype = REGISTRY.lookup("", "v1", "configmaps")
    assert rtype is not None
    validate_metadata(rtype, {"metadata": {"name": "a", "annotations": {"k": "x" * 1000}}})
    with pytest.raises(ApiError) as err:
        validate_metadata(rtype, {"metadata": {"name": "a", "annotations": {"k": "x" * 262144}}})
    assert "metadata.annotations: Too long" in err.value.message


def test_field_selectors_are_limited_to_what_each_kind_supports() -> None:
    events = SELECTABLE_FIELDS[("", "Event")]
    assert field_matcher("involvedObject.name=web1-lb,reason=AllocationFailed", events)(
        {"metadata": {}, "involvedObject": {"name": "web1-lb"}, "reason": "AllocationFailed"}
    )
    assert field_matcher("metadata.name=x", frozenset())(labelled())
    with pytest.raises(ApiError) as err:
        field_matcher("spec.selector=x", SELECTABLE_FIELDS[("", "Service")])
    assert (err.value.code, err.value.message) == (400, "field label not supported: spec.selector")
