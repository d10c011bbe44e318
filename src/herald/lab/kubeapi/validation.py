"""The metadata checks kube-apiserver makes on every write: names, labels, annotation size.

Spec fields are not validated; these checks catch what a client most easily gets wrong and
a real cluster refuses (an upper-case name, a label value with a space, a huge annotation).
"""

from __future__ import annotations

import re
from typing import Any

from herald.lab.kubeapi import errors
from herald.lab.kubeapi.resources import ResourceType

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
ANNOTATIONS_LIMIT = 256 * 1024

# Kinds whose names are DNS labels; RBAC names are path segments (`system:controller`).
_LABEL_NAMED = {"Namespace": _DNS1123_LABEL, "Service": _DNS1035_LABEL}
_PATH_SEGMENT_NAMED = frozenset({"ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"})


def _name_error(kind: str, name: str) -> str | None:
    if kind in _PATH_SEGMENT_NAMED:
        bad = name in (".", "..") or "/" in name or "%" in name
        return "may not contain '/' or '%'" if bad else None
    pattern = _LABEL_NAMED.get(kind, _DNS1123_SUBDOMAIN)
    limit = 63 if kind in _LABEL_NAMED else 253
    if len(name) > limit:
        return f"must be no more than {limit} characters"
    if not pattern.match(name):
        form = {_DNS1123_LABEL: "RFC 1123 label", _DNS1035_LABEL: "RFC 1035 label"}
        return (
            f"a lowercase {form.get(pattern, 'RFC 1123 subdomain')} must consist of lower "
            "case alphanumeric characters, '-' or '.', and must start and end with an "
            f"alphanumeric character (regex used for validation is '{pattern.pattern}')"
        )
    return None


def _label_error(key: str, value: Any) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)):
        return f"metadata.labels: Invalid value: {key!r}: prefix part must be a DNS subdomain"
    if len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return f"metadata.labels: Invalid value: {key!r}: name part must be a qualified name"
    if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
        return (
            f"metadata.labels: Invalid value: {value!r}: a valid label must be an empty "
            "string or consist of alphanumeric characters, '-', '_' or '.'"
        )
    return None


def validate_metadata(rtype: ResourceType, obj: dict[str, Any]) -> None:
    """422 Invalid, worded as kube-apiserver words it, for metadata it would refuse."""
    meta = obj.get("metadata") or {}
    name = str(meta.get("name", ""))
    problems = []
    if (error := _name_error(rtype.kind, name)) is not None:
        problems.append(f"metadata.name: Invalid value: {name!r}: {error}")
    for key, value in (meta.get("labels") or {}).items():
        if (error := _label_error(str(key), value)) is not None:
            problems.append(error)
    annotations = meta.get("annotations") or {}
    size = sum(len(str(k).encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_LIMIT:
        problems.append(
            f"metadata.annotations: Too long: must have at most {ANNOTATIONS_LIMIT} bytes"
        )
    if problems:
        message = problems[0] if len(problems) == 1 else "[" + ", ".join(problems) + "]"
        raise errors.invalid(rtype.group, rtype.kind, name, message)
