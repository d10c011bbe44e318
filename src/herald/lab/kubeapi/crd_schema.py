"""What a CRD's structural schema does to custom resources on write: pruning and defaults.

kube-apiserver drops fields the schema does not declare (unless the schema says
`x-kubernetes-preserve-unknown-fields`) and fills in `default` values, so a client sees
the same object here as it would on a real cluster. Validation against the schema is not
done.
"""

from __future__ import annotations

from typing import Any

from herald.lab.kubeapi.store import clone

Schema = dict[str, Any]
_ROOT_FIELDS = ("apiVersion", "kind", "metadata")


def _prune(schema: Schema, value: Any) -> Any:
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields"):
            props = schema.get("properties") or {}
            return {k: _prune(props[k], v) if k in props else v for k, v in value.items()}
        props = schema.get("properties")
        if props is not None:
            return {k: _prune(props[k], v) for k, v in value.items() if k in props}
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            return {k: _prune(extra, v) for k, v in value.items()}
        if extra is True or schema.get("type") != "object":
            return value
        return {}
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_prune(schema["items"], v) for v in value]
    return value


def _default(schema: Schema, value: Any) -> Any:
    if isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key not in value and "default" in sub:
                value[key] = clone(sub["default"])
            if key in value:
                value[key] = _default(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in value:
                value[key] = _default(extra, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_default(schema["items"], v) for v in value]
    return value


def apply_schema(schema: Schema, obj: dict[str, Any]) -> dict[str, Any]:
    """The object as stored: unknown fields pruned, defaults set. `metadata` is kept whole."""
    kept = {k: obj[k] for k in _ROOT_FIELDS if k in obj}
    rest = {k: v for k, v in obj.items() if k not in _ROOT_FIELDS}
    result = _default(schema, _prune(schema, rest))
    assert isinstance(result, dict)
    result.update(kept)
    return result
