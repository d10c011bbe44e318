"""Label and field selectors as list and watch take them (`?labelSelector=`, `?fieldSelector=`)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from herald.lab.kubeapi import errors

Matcher = Callable[[dict[str, Any]], bool]

_SET_TERM = re.compile(r"^\s*(!?)([A-Za-z0-9._/-]+)\s+(in|notin)\s+\(([^)]*)\)\s*$")
_EQ_TERM = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")
_EXISTS_TERM = re.compile(r"^\s*(!?)([A-Za-z0-9._/-]+)\s*$")


def _split_terms(selector: str) -> list[str]:
    """Split on commas outside parentheses: `a in (x,y),b` is two terms."""
    terms, depth, current = [], 0, ""
    for char in selector:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            terms.append(current)
            current = ""
        else:
            current += char
    if current.strip():
        terms.append(current)
    return terms


def _in_set(key: str, values: set[str], inside: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (labels.get(key) in values) == inside


def _equals(key: str, value: str, equal: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (labels.get(key) == value) == equal


def _exists(key: str, present: bool) -> Callable[[dict[str, str]], bool]:
    return lambda labels: (key in labels) == present


def label_matcher(selector: str) -> Matcher:
    """A predicate over objects for a label selector; 400 for one that does not parse."""
    checks: list[Callable[[dict[str, str]], bool]] = []
    for term in _split_terms(selector):
        if m := _SET_TERM.match(term):
            if m.group(1):
                raise errors.bad_request(f"unable to parse requirement: {term!r}")
            values = {v.strip() for v in m.group(4).split(",") if v.strip()}
            checks.append(_in_set(m.group(2), values, m.group(3) == "in"))
        elif m := _EQ_TERM.match(term):
            checks.append(_equals(m.group(1), m.group(3), m.group(2) != "!="))
        elif m := _EXISTS_TERM.match(term):
            checks.append(_exists(m.group(2), not m.group(1)))
        else:
            raise errors.bad_request(f"unable to parse requirement: {term!r}")

    def matches(obj: dict[str, Any]) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(check(labels) for check in checks)

    return matches


def field_value(obj: dict[str, Any], path: str) -> str:
    """The string form of a dotted field path, "" when absent (as field selectors compare)."""
    value: Any = obj
    for part in path.split("."):
        if not isinstance(value, dict):
            return ""
        value = value.get(part)
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_EVENT_FIELDS = frozenset(
    {
        *(
            f"{prefix}.{field}"
            for prefix in ("involvedObject", "regarding")
            for field in (
                "kind",
                "namespace",
                "name",
                "uid",
                "apiVersion",
                "resourceVersion",
                "fieldPath",
            )
        ),
        "reason",
        "reportingComponent",
        "reportingController",
        "source",
        "type",
    }
)
# The fields each kind lets clients select on besides metadata.name and metadata.namespace
# (kube-apiserver's per-kind field label conversions); others are refused, so code that
# selects on a field a real server rejects fails here too.
SELECTABLE_FIELDS: dict[tuple[str, str], frozenset[str]] = {
    ("", "Pod"): frozenset(
        {
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.podIPs",
            "status.nominatedNodeName",
        }
    ),
    ("", "Node"): frozenset({"spec.unschedulable"}),
    ("", "Namespace"): frozenset({"status.phase"}),
    ("", "Secret"): frozenset({"type"}),
    ("", "Service"): frozenset({"spec.clusterIP", "spec.type"}),
    ("", "Event"): _EVENT_FIELDS,
    ("events.k8s.io", "Event"): _EVENT_FIELDS,
    ("apps", "ReplicaSet"): frozenset({"status.replicas"}),
}
_ALWAYS = frozenset({"metadata.name", "metadata.namespace"})


def field_matcher(selector: str, selectable: frozenset[str] | None = None) -> Matcher:
    """A predicate for a field selector: `path=value`, `path==value`, `path!=value` terms;
    with `selectable`, a path outside it and metadata.name/namespace is 400 BadRequest."""
    checks: list[tuple[str, bool, str]] = []
    for term in _split_terms(selector):
        m = _EQ_TERM.match(term)
        if not m:
            raise errors.bad_request(f"invalid field selector: {term!r}")
        if selectable is not None and m.group(1) not in _ALWAYS | selectable:
            raise errors.bad_request(f"field label not supported: {m.group(1)}")
        checks.append((m.group(1), m.group(2) != "!=", m.group(3)))

    def matches(obj: dict[str, Any]) -> bool:
        return all((field_value(obj, path) == value) == equal for path, equal, value in checks)

    return matches
