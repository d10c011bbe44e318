"""The four PATCH bodies kube-apiserver accepts, applied to plain JSON objects.

- JSON merge patch (RFC 7386, `application/merge-patch+json`);
- JSON patch (RFC 6902, `application/json-patch+json`);
- strategic merge patch (`application/strategic-merge-patch+json`, built-in kinds only):
  lists named in `MERGE_KEYS` merge element by element on their key, the directives
  `$patch`, `$setElementOrder/`, `$deleteFromPrimitiveList/` and `$retainKeys` are honoured;
- server-side apply (`application/apply-patch+yaml`), approximated as a strategic merge of
  the applied configuration (see `apply_configuration`).
"""

from __future__ import annotations

from typing import Any

from herald.lab.kubeapi import errors
from herald.lab.kubeapi.store import clone

Path = tuple[str, ...]

_POD_SPEC: dict[Path, str] = {
    ("containers",): "name",
    ("initContainers",): "name",
    ("ephemeralContainers",): "name",
    ("volumes",): "name",
    ("imagePullSecrets",): "name",
    ("hostAliases",): "ip",
    ("containers", "ports"): "containerPort",
    ("initContainers", "ports"): "containerPort",
    ("containers", "env"): "name",
    ("initContainers", "env"): "name",
    ("containers", "volumeMounts"): "mountPath",
    ("initContainers", "volumeMounts"): "mountPath",
    ("containers", "volumeDevices"): "devicePath",
    ("initContainers", "volumeDevices"): "devicePath",
}


def _under(prefix: Path, keys: dict[Path, str]) -> dict[Path, str]:
    return {prefix + path: key for path, key in keys.items()}


_CONDITIONS: dict[Path, str] = {("status", "conditions"): "type"}

# patchMergeKey of the list fields of the built-in kinds herald uses, from their Go types.
# Lists not named here are atomic: a patch replaces them whole.
MERGE_KEYS: dict[str, dict[Path, str]] = {
    "Service": {("spec", "ports"): "port", **_CONDITIONS},
    "Pod": {**_under(("spec",), _POD_SPEC), **_CONDITIONS},
    "Deployment": {**_under(("spec", "template", "spec"), _POD_SPEC), **_CONDITIONS},
    "DaemonSet": {**_under(("spec", "template", "spec"), _POD_SPEC), **_CONDITIONS},
    "ReplicaSet": {**_under(("spec", "template", "spec"), _POD_SPEC), **_CONDITIONS},
    "StatefulSet": {**_under(("spec", "template", "spec"), _POD_SPEC), **_CONDITIONS},
    "Node": {("spec", "taints"): "key", ("status", "addresses"): "type", **_CONDITIONS},
    "Namespace": dict(_CONDITIONS),
    "ServiceAccount": {("secrets",): "name"},
}
_COMMON: dict[Path, str] = {("metadata", "ownerReferences"): "uid"}
# Primitive lists with patchStrategy=merge: a patch adds to them instead of replacing.
_MERGED_PRIMITIVES: frozenset[Path] = frozenset({("metadata", "finalizers")})


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge key by key, null deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return clone(patch)
    result = clone(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise errors.bad_request(f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _parent(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts[:-1]:
        if isinstance(node, list):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise errors.ApiError(422, "Invalid", f"path /{'/'.join(parts)} does not exist")
    return node


def _get(doc: Any, parts: list[str]) -> Any:
    node = doc
    for part in parts:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise errors.ApiError(
                422, "Invalid", f"path /{'/'.join(parts)} does not exist"
            ) from None
    return node


def _remove(doc: Any, parts: list[str]) -> Any:
    parent = _parent(doc, parts)
    _get(doc, parts)
    if isinstance(parent, list):
        return parent.pop(int(parts[-1]))
    return parent.pop(parts[-1])


def _add(doc: Any, parts: list[str], value: Any) -> Any:
    if not parts:
        return value
    parent = _parent(doc, parts)
    last = parts[-1]
    if isinstance(parent, list):
        parent.insert(len(parent) if last == "-" else int(last), value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise errors.ApiError(422, "Invalid", f"cannot add at {'/'.join(parts)}")
    return doc


def json_patch(target: Any, operations: Any) -> Any:
    """RFC 6902 operations applied in order; a failed `test` or bad path is 422."""
    if not isinstance(operations, list):
        raise errors.bad_request("a JSON patch must be a list of operations")
    doc = clone(target)
    for op in operations:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise errors.bad_request(f"invalid JSON patch operation {op!r}")
        parts = _pointer(str(op["path"]))
        kind = op["op"]
        if kind == "add":
            doc = _add(doc, parts, clone(op.get("value")))
        elif kind == "remove":
            _remove(doc, parts)
        elif kind == "replace":
            _get(doc, parts)
            if parts:
                _remove(doc, parts)
            doc = _add(doc, parts, clone(op.get("value")))
        elif kind == "move":
            value = _remove(doc, _pointer(str(op["from"])))
            doc = _add(doc, parts, value)
        elif kind == "copy":
            value = clone(_get(doc, _pointer(str(op["from"]))))
            doc = _add(doc, parts, value)
        elif kind == "test":
            if _get(doc, parts) != op.get("value"):
                raise errors.ApiError(422, "Invalid", f"test failed at {op['path']}")
        else:
            raise errors.bad_request(f"unknown JSON patch operation {kind!r}")
    return doc


def _merge_key(kind: str, path: Path) -> str | None:
    return MERGE_KEYS.get(kind, {}).get(path) or _COMMON.get(path)


def strategic_merge_patch(kind: str, target: Any, patch: Any, path: Path = ()) -> Any:
    """A strategic merge patch for built-in `kind`, as `kubectl apply` and `kubectl edit` send."""
    if not isinstance(patch, dict):
        return clone(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: clone(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    result = clone(target) if isinstance(target, dict) else {}
    orders: dict[str, list[Any]] = {}
    retain: list[str] | None = None
    for key, value in patch.items():
        if key == "$patch":
            continue
        if key == "$retainKeys":
            retain = list(value or [])
        elif key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = list(value or [])
        elif key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            doomed = value or []
            if isinstance(result.get(field), list):
                result[field] = [v for v in result[field] if v not in doomed]
        elif value is None:
            result.pop(key, None)
        else:
            merged = _merge_field(kind, result.get(key), value, (*path, key))
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(result[field], order, _merge_key(kind, (*path, field)))
    if retain is not None:
        result = {k: v for k, v in result.items() if k in retain}
    return result


def _merge_field(kind: str, current: Any, value: Any, path: Path) -> Any:
    if isinstance(value, list):
        key = _merge_key(kind, path)
        if key is not None and isinstance(current, list):
            return _merge_list(kind, current, value, key, path)
        if path in _MERGED_PRIMITIVES and isinstance(current, list):
            return current + [v for v in value if v not in current]
        return [strategic_merge_patch(kind, None, v, path) for v in value]
    if isinstance(value, dict):
        return strategic_merge_patch(kind, current, value, path)
    return clone(value)


def _merge_list(kind: str, current: list[Any], patch: list[Any], key: str, path: Path) -> list[Any]:
    result = clone(current)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            result.append(clone(item))
            continue
        index = next(
            (
                i
                for i, old in enumerate(result)
                if isinstance(old, dict) and old.get(key) == item[key]
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if index is not None:
                result.pop(index)
            continue
        if item.get("$patch") == "replace":
            replaced = {k: clone(v) for k, v in item.items() if k != "$patch"}
            if index is None:
                result.append(replaced)
            else:
                result[index] = replaced
            continue
        if index is None:
            result.append(strategic_merge_patch(kind, None, item, path))
        else:
            result[index] = strategic_merge_patch(kind, result[index], item, path)
    return result


def _reorder(items: list[Any], order: list[Any], key: str | None) -> list[Any]:
    def ident(item: Any) -> Any:
        return item.get(key) if key is not None and isinstance(item, dict) else item

    wanted = [ident(o) for o in order]
    ranked = [i for i in items if ident(i) in wanted]
    ranked.sort(key=lambda i: wanted.index(ident(i)))
    return ranked + [i for i in items if ident(i) not in wanted]


def apply_configuration(kind: str, live: Any, applied: dict[str, Any], custom: bool) -> Any:
    """Server-side apply without field ownership: the applied fields merged onto the object.

    Lists merge on their keys for built-in kinds and are replaced whole for custom
    resources, as their schemas default to atomic lists. Fields an earlier apply set and
    this one omits stay (real server-side apply removes them); conflicts are not detected.
    """
    if live is None:
        return clone(applied)
    if custom:
        return merge_patch(live, applied)
    return strategic_merge_patch(kind, live, applied)
