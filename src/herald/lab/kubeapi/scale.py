"""The scale subresource (autoscaling/v1 Scale) of workloads, which `kubectl scale` uses."""

from __future__ import annotations

from typing import Any

from herald.lab.kubeapi.store import clone

Obj = dict[str, Any]

SCALABLE_KINDS = frozenset({"Deployment", "ReplicaSet", "StatefulSet"})


def to_scale(obj: Obj) -> Obj:
    meta = obj["metadata"]
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    labels = (spec.get("selector") or {}).get("matchLabels") or {}
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {
            k: meta[k]
            for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
            if k in meta
        },
        "spec": {"replicas": int(spec.get("replicas", 1))},
        "status": {
            "replicas": int(status.get("replicas", 0)),
            "selector": ",".join(f"{k}={v}" for k, v in sorted(labels.items())),
        },
    }


def with_replicas(obj: Obj, scale: Obj) -> Obj:
    """The object with the Scale's replicas, carrying its resourceVersion as precondition."""
    new = clone(obj)
    new.setdefault("spec", {})["replicas"] = int((scale.get("spec") or {}).get("replicas", 0))
    new["metadata"]["resourceVersion"] = (scale.get("metadata") or {}).get("resourceVersion", "")
    return new
