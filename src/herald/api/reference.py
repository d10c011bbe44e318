"""The field reference of docs/configuration.md, generated from the same schema as the CRDs
so that the documented defaults and ranges are the ones the code enforces."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from herald.api.crd import structural_schema
from herald.api.kinds import HERALD_KINDS, NAMESPACED, kind_name

BEGIN = "<!-- BEGIN GENERATED REFERENCE: `herald crds` rewrites this section -->"
END = "<!-- END GENERATED REFERENCE -->"


def render_reference(examples: Path) -> str:
    parts = [BEGIN, ""]
    for model in HERALD_KINDS:
        kind = kind_name(model)
        schema = structural_schema(model)
        scope = "namespaced" if kind in NAMESPACED else "cluster-scoped"
        parts += [f"### {kind}", "", f"`herald.io/v1alpha1`, {scope}. {_text(schema)}", ""]
        parts += ["| field | type | default | allowed | description |", "|---|---|---|---|---|"]
        for path, node, required in _fields(schema.get("properties", {}).get("spec", {}), "spec"):
            parts.append(
                f"| `{path}` | {_type(node)} | {_default(node, required)} | {_allowed(node)} "
                f"| {_text(node)} |"
            )
        example = _example(examples, kind)
        if example:
            parts += ["", f"Example (from `{example[0]}`):", "", "```yaml", example[1], "```"]
        parts.append("")
    parts.append(END)
    return "\n".join(parts) + "\n"


def replace_generated(document: str, generated: str) -> str:
    if BEGIN not in document or END not in document:
        return document.rstrip("\n") + "\n\n" + generated
    head, _, rest = document.partition(BEGIN)
    _, _, tail = rest.partition(END + "\n")
    return head + generated + tail


def _fields(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any], bool]]:
    found: list[tuple[str, dict[str, Any], bool]] = []
    required = set(node.get("required", ()))
    for name, sub in node.get("properties", {}).items():
        sub_path = f"{path}.{name}"
        found.append((sub_path, sub, name in required))
        if sub.get("type") == "object" and "properties" in sub:
            found += _fields(sub, sub_path)
        items = sub.get("items", {})
        if sub.get("type") == "array" and items.get("type") == "object":
            found += _fields(items, sub_path + "[]")
    return found


def _type(node: dict[str, Any]) -> str:
    kind = str(node.get("type", "any"))
    if kind == "array":
        return f"list of {_type(node.get('items', {}))}"
    if kind == "object" and "additionalProperties" in node:
        return "map of string"
    return kind


def _default(node: dict[str, Any], required: bool) -> str:
    if required:
        return "required"
    if "default" not in node:
        return "none"
    default = node["default"]
    return "`" + json.dumps(default, separators=(",", ":")).replace("|", "\\|") + "`"


def _allowed(node: dict[str, Any]) -> str:
    notes = []
    if "enum" in node:
        notes.append(", ".join(f"`{value}`" for value in node["enum"]))
    if "minimum" in node or "maximum" in node:
        notes.append(f"{node.get('minimum', '')}..{node.get('maximum', '')}")
    if "minItems" in node:
        notes.append(f"at least {node['minItems']}")
    if "minLength" in node:
        notes.append(f"at least {node['minLength']} character(s)")
    return "; ".join(notes)


def _text(node: dict[str, Any]) -> str:
    return " ".join(str(node.get("description", "")).split()).replace("|", "\\|")


def _example(examples: Path, kind: str) -> tuple[str, str] | None:
    for path in sorted(examples.rglob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text()):
            if isinstance(document, dict) and document.get("kind") == kind:
                text = yaml.safe_dump(document, sort_keys=False, width=100).rstrip()
                return str(path.relative_to(examples.parent)), text
    return None
