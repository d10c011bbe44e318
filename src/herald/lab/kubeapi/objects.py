"""What the server does to an object on each write, besides storing it.

System metadata (uid, creationTimestamp, generation), the split between an object and its
status subresource, and the defaults of kinds without a module of their own.
"""

from __future__ import annotations

import secrets
import uuid
from datetime import datetime
from typing import Any

from herald.lab.kubeapi import errors
from herald.lab.kubeapi.resources import ResourceType
from herald.lab.kubeapi.store import clone

Obj = dict[str, Any]

# Kinds whose metadata.generation counts changes to their desired state.
_GENERATION_KINDS = frozenset(
    {
        "Deployment",
        "DaemonSet",
        "ReplicaSet",
        "StatefulSet",
        "PodDisruptionBudget",
        "CustomResourceDefinition",
        "Pod",
    }
)
# Fields the system sets that a client's write cannot change.
_SYSTEM_METADATA = ("uid", "creationTimestamp", "generation", "deletionTimestamp")


def timestamp(now: datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%SZ")


def _tracks_generation(rtype: ResourceType) -> bool:
    return rtype.custom or rtype.kind in _GENERATION_KINDS


def _desired_state(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def prepare_create(rtype: ResourceType, obj: Obj, namespace: str, now: datetime) -> Obj:
    """The object a create stores: type meta, namespace, name, uid, timestamps, defaults."""
    if not isinstance(obj, dict):
        raise errors.bad_request("the body must be a JSON object")
    new = clone(obj)
    new["apiVersion"] = rtype.group_version
    new["kind"] = rtype.kind
    meta = new.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise errors.bad_request("metadata must be an object")
    if not meta.get("name"):
        prefix = meta.get("generateName")
        if not prefix:
            raise errors.invalid(rtype.group, rtype.kind, "", "metadata.name: Required value")
        meta["name"] = prefix + secrets.token_hex(3)[:5]
    if rtype.namespaced:
        body_ns = meta.get("namespace")
        if body_ns and namespace and body_ns != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on "
                "the request"
            )
        meta["namespace"] = namespace or body_ns or "default"
    else:
        meta.pop("namespace", None)
    for field in (*_SYSTEM_METADATA, "resourceVersion", "managedFields"):
        meta.pop(field, None)
    meta["uid"] = str(uuid.uuid4())
    meta["creationTimestamp"] = timestamp(now)
    if _tracks_generation(rtype):
        meta["generation"] = 1
    if rtype.has_status and rtype.kind not in _STATUS_ON_CREATE:
        # A create through the main resource cannot set status, as with an update.
        new.pop("status", None)
    _default(rtype, new)
    return new


# Kinds whose status a create may carry (the kubelet and controllers create them so).
_STATUS_ON_CREATE = frozenset({"Node", "Pod", "Namespace"})


def prepare_update(rtype: ResourceType, old: Obj, new: Obj, subresource: str) -> Obj:
    """The object an update stores: status-only or spec-only, system metadata kept."""
    if not isinstance(new, dict):
        raise errors.bad_request("the body must be a JSON object")
    name = old["metadata"]["name"]
    new_meta = new.get("metadata") or {}
    if new_meta.get("name") not in (None, name):
        raise errors.bad_request(
            f"the name of the object ({new_meta.get('name')}) does not match the name on "
            f"the URL ({name})"
        )
    if subresource == "status":
        result = clone(old)
        if "status" in new:
            result["status"] = clone(new["status"])
        else:
            result.pop("status", None)
        result["metadata"]["resourceVersion"] = new_meta.get("resourceVersion", "")
        return result
    result = clone(new)
    result["apiVersion"] = rtype.group_version
    result["kind"] = rtype.kind
    meta = result.setdefault("metadata", {})
    meta["name"] = name
    if rtype.namespaced:
        meta["namespace"] = old["metadata"]["namespace"]
    else:
        meta.pop("namespace", None)
    meta.pop("managedFields", None)
    for field in _SYSTEM_METADATA:
        if field in old["metadata"]:
            meta[field] = old["metadata"][field]
        else:
            meta.pop(field, None)
    if rtype.has_status:
        if "status" in old:
            result["status"] = clone(old["status"])
        else:
            result.pop("status", None)
    if _tracks_generation(rtype) and _desired_state(result) != _desired_state(old):
        meta["generation"] = int(old["metadata"].get("generation", 1)) + 1
    _default(rtype, result)
    return result


def _default(rtype: ResourceType, obj: Obj) -> None:
    if rtype.group == "" and rtype.kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {}).setdefault("phase", "Active")
        labels = obj["metadata"].setdefault("labels", {})
        labels["kubernetes.io/metadata.name"] = obj["metadata"]["name"]
    elif rtype.group == "" and rtype.kind == "Secret":
        if not obj.get("type"):
            obj["type"] = "Opaque"
    elif rtype.kind == "CustomResourceDefinition":
        names = (obj.get("spec") or {}).get("names") or {}
        since = str(obj["metadata"].get("creationTimestamp", ""))
        obj["status"] = {
            "acceptedNames": clone(names),
            "conditions": [
                _condition("NamesAccepted", "NoConflicts", "no conflicts found", since),
                _condition(
                    "Established",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                    since,
                ),
            ],
            "storedVersions": [
                v["name"] for v in (obj.get("spec") or {}).get("versions", []) if v.get("storage")
            ],
        }


def _condition(kind: str, reason: str, message: str, since: str) -> dict[str, str]:
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastTransitionTime": since,
    }
