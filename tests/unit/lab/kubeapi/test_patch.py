"""The four patch formats, on the shapes kubectl and lightkube send."""

from __future__ import annotations

import pytest

from herald.lab.kubeapi import protobuf
from herald.lab.kubeapi.errors import ApiError
from herald.lab.kubeapi.patch import (
    apply_configuration,
    json_patch,
    merge_patch,
    strategic_merge_patch,
)

SVC = {
    "metadata": {"name": "web", "labels": {"a": "1", "b": "2"}},
    "spec": {
        "ports": [
            {"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30000},
            {"name": "https", "port": 443, "protocol": "TCP", "nodePort": 30001},
        ],
        "selector": {"app": "web"},
    },
}


def test_merge_patch_merges_objects_deletes_nulls_and_replaces_lists() -> None:
    patched = merge_patch(
        SVC, {"metadata": {"labels": {"a": None, "c": "3"}}, "spec": {"ports": []}}
    )
    assert patched["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert patched["spec"]["ports"] == []
    assert SVC["spec"]["ports"]  # the input is untouched


def test_json_patch_operations_and_a_failed_test() -> None:
    patched = json_patch(
        SVC,
        [
            {"op": "replace", "path": "/spec/ports/0/port", "value": 8080},
            {"op": "add", "path": "/metadata/labels/x~1y", "value": "z"},
            {"op": "remove", "path": "/spec/ports/1"},
            {"op": "test", "path": "/spec/selector/app", "value": "web"},
        ],
    )
    assert patched["spec"]["ports"] == [
        {"name": "http", "port": 8080, "protocol": "TCP", "nodePort": 30000}
    ]
    assert patched["metadata"]["labels"]["x/y"] == "z"
    with pytest.raises(ApiError) as err:
        json_patch(SVC, [{"op": "test", "path": "/spec/selector/app", "value": "db"}])
    assert err.value.code == 422


def test_strategic_merge_merges_service_ports_by_port_and_keeps_allocations() -> None:
    patched = strategic_merge_patch(
        "Service",
        SVC,
        {
            "$setElementOrder/ports": [{"port": 443}, {"port": 80}],
            "spec": {"ports": [{"port": 443, "targetPort": 8443}]},
        },
    )
    ports = patched["spec"]["ports"]
    assert [p["port"] for p in ports] == [80, 443]
    assert ports[1] == {
        "name": "https",
        "port": 443,
        "protocol": "TCP",
        "nodePort": 30001,
        "targetPort": 8443,
    }


def test_strategic_merge_directives_delete_replace_and_order() -> None:
    patched = strategic_merge_patch(
        "Service",
        SVC,
        {
            "spec": {
                "$setElementOrder/ports": [{"port": 443}],
                "ports": [{"$patch": "delete", "port": 80}],
                "selector": {"$patch": "replace", "tier": "front"},
            }
        },
    )
    assert [p["port"] for p in patched["spec"]["ports"]] == [443]
    assert patched["spec"]["selector"] == {"tier": "front"}


def test_strategic_merge_on_lists_without_a_key_replaces_them() -> None:
    node = {
        "spec": {"podCIDRs": ["198.18.1.0/24"]},
        "status": {
            "conditions": [{"type": "Ready", "status": "False"}, {"type": "X", "status": "True"}]
        },
    }
    patched = strategic_merge_patch(
        "Node",
        node,
        {
            "spec": {"podCIDRs": ["198.18.2.0/24"]},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]},
        },
    )
    assert patched["spec"]["podCIDRs"] == ["198.18.2.0/24"]
    # conditions merge on type: X stays.
    assert patched["status"]["conditions"] == [
        {"type": "Ready", "status": "True"},
        {"type": "X", "status": "True"},
    ]


def test_strategic_merge_of_containers_by_name_in_a_deployment() -> None:
    deploy = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {"name": "a", "image": "x:1", "env": [{"name": "K", "value": "1"}]}
                    ]
                }
            }
        }
    }
    patched = strategic_merge_patch(
        "Deployment",
        deploy,
        {
            "spec": {
                "template": {
                    "spec": {
                        "containers": [{"name": "a", "image": "x:2"}, {"name": "b", "image": "y"}]
                    }
                }
            }
        },
    )
    containers = patched["spec"]["template"]["spec"]["containers"]
    assert containers == [
        {"name": "a", "image": "x:2", "env": [{"name": "K", "value": "1"}]},
        {"name": "b", "image": "y"},
    ]


def test_apply_configuration_creates_merges_and_replaces_custom_lists() -> None:
    assert apply_configuration("Lease", None, {"spec": {"holderIdentity": "a"}}, custom=False) == {
        "spec": {"holderIdentity": "a"}
    }
    live = {"spec": {"blocks": [{"cidr": "a"}, {"cidr": "b"}], "disabled": False}}
    applied = apply_configuration(
        "LoadBalancerIPPool", live, {"spec": {"blocks": [{"cidr": "c"}]}}, custom=True
    )
    assert applied == {"spec": {"blocks": [{"cidr": "c"}], "disabled": False}}


def _pb(number: int, value: bytes) -> bytes:
    """One length-delimited protobuf field (lengths here stay under 128)."""
    return bytes([number << 3 | 2, len(value)]) + value


def test_protobuf_bodies_of_configmaps_and_refusal_of_other_kinds() -> None:
    meta = _pb(1, b"opts") + _pb(3, b"ns") + _pb(11, _pb(1, b"app") + _pb(2, b"herald"))
    raw = (
        _pb(1, meta)
        + _pb(2, _pb(1, b"a") + _pb(2, b"b"))
        + _pb(3, _pb(1, b"bin") + _pb(2, b"\x00\x01"))
    )
    body = protobuf.MAGIC + _pb(1, _pb(1, b"v1") + _pb(2, b"ConfigMap")) + _pb(2, raw)
    assert protobuf.decode(body, "application/vnd.kubernetes.protobuf") == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "opts", "namespace": "ns", "labels": {"app": "herald"}},
        "data": {"a": "b"},
        "binaryData": {"bin": "AAE="},
    }
    service = protobuf.MAGIC + _pb(1, _pb(1, b"v1") + _pb(2, b"Service")) + _pb(2, b"")
    with pytest.raises(ApiError) as err:
        protobuf.decode(service, "application/vnd.kubernetes.protobuf")
    assert (err.value.code, err.value.reason) == (415, "UnsupportedMediaType")
