"""Loading manifests: YAML documents in, one validated ClusterState out, or every problem.

`parse_manifests` is pure (file names and texts in); `load_directory` is the thin shell that
reads a directory. Nothing partial is ever returned: one problem anywhere raises
ManifestError listing all of them.
"""

from __future__ import annotations

import hashlib
import types
import typing
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from herald.api.kinds import HERALD_GROUP_VERSION, KIND_BY_NAME, KINDS, NAMESPACED, PEER_EQUIVALENTS
from herald.api.problems import Location, ManifestError, Problem
from herald.api.references import check_references
from herald.api.snapshot import ClusterState, ObjectRef

MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

# libyaml's parser when PyYAML was built with it: many times faster than the pure-Python one,
# which matters because every watcher re-reads the directory on each change.
YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_FIELD_OF_KIND = {
    "Service": "services",
    "EndpointSlice": "endpoint_slices",
    "Node": "nodes",
    "Secret": "secrets",
    "LoadBalancerIPPool": "pools",
    "BGPClusterConfig": "bgp_cluster_configs",
    "BGPPeerConfig": "bgp_peer_configs",
    "BGPAdvertisement": "bgp_advertisements",
    "L2AnnouncementPolicy": "l2_policies",
    "BFDProfile": "bfd_profiles",
}


@dataclass(frozen=True)
class ParsedFile:
    """One file's objects (with their document location and list prefix), its problems,
    and the kinds it holds that herald does not read."""

    objects: tuple[tuple[BaseModel, Location, str], ...]
    problems: tuple[Problem, ...]
    ignored: tuple[str, ...]


def load_directory(
    directory: str | Path, cache: dict[Path, tuple[bytes, ParsedFile]] | None = None
) -> ClusterState:
    """Read every manifest file below `directory` (recursively, hidden entries skipped).

    With `cache` (path -> (digest of the text, ParsedFile)), a file whose text is unchanged
    is not parsed again: a watcher re-reading a large directory on every change then pays
    for reading it, and for parsing the changed file only. (A digest, not the mtime: two
    writes within one timestamp tick would look alike.)"""
    root = Path(directory)
    if not root.is_dir():
        raise ManifestError([Problem(Location(str(root), 0), "(directory)", "not a directory")])
    parsed: dict[str, ParsedFile] = {}
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if any(part.startswith(".") for part in relative.parts):
            continue
        if not (path.suffix in MANIFEST_SUFFIXES and path.is_file()):
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        digest = hashlib.blake2b(text.encode(), digest_size=16).digest()
        cached = cache.get(path) if cache is not None else None
        if cached is None or cached[0] != digest:
            cached = (digest, parse_file(str(path), text))
            if cache is not None:
                cache[path] = cached
        parsed[str(path)] = cached[1]
    if cache is not None:
        for gone in [p for p in cache if str(p) not in parsed]:
            del cache[gone]
    return combine(parsed)


def parse_manifests(files: Mapping[str, str]) -> ClusterState:
    """Validate the documents of `files` (name -> text) into one snapshot."""
    return combine({name: parse_file(name, files[name]) for name in files})


def parse_file(file_name: str, text: str) -> ParsedFile:
    """Validate one file's documents on their own (no cross-object checks)."""
    problems: list[Problem] = []
    objects: list[tuple[BaseModel, Location, str]] = []
    ignored: dict[str, int] = {}
    for location, document in _documents(file_name, text, problems):
        for prefix, raw in _expand_lists(document):
            obj = _validate(raw, location, prefix, problems, ignored)
            if obj is not None:
                objects.append((obj, location, prefix))
    return ParsedFile(
        tuple(objects),
        tuple(problems),
        tuple(kind for kind, count in ignored.items() for _ in range(count)),
    )


def combine(files: Mapping[str, ParsedFile]) -> ClusterState:
    """Files into one snapshot: unique names, references between objects, every problem."""
    problems: list[Problem] = []
    objects: dict[str, list[Any]] = {field: [] for field in _FIELD_OF_KIND.values()}
    locations: dict[ObjectRef, Location] = {}
    ignored: dict[str, int] = {}
    for file_name in sorted(files):
        parsed = files[file_name]
        problems.extend(parsed.problems)
        for kind in parsed.ignored:
            ignored[kind] = ignored.get(kind, 0) + 1
        for obj, location, prefix in parsed.objects:
            ref = _ref_of(obj)
            if ref in locations:
                problems.append(
                    Problem(
                        location,
                        prefix + "metadata.name",
                        f"{ref[0]} {_ref_text(ref)} is already defined at {locations[ref]}",
                    )
                )
                continue
            locations[ref] = location
            objects[_FIELD_OF_KIND[ref[0]]].append(obj)
    state = ClusterState(
        **{field: tuple(values) for field, values in objects.items()},
        locations=MappingProxyType(locations),
        ignored=MappingProxyType(ignored),
    )
    problems.extend(check_references(state))
    if problems:
        raise ManifestError(problems)
    return state


def _documents(
    file_name: str, text: str, problems: list[Problem]
) -> Iterator[tuple[Location, Any]]:
    index = 0
    try:
        for index, document in enumerate(yaml.load_all(text, Loader=YAML_LOADER), start=1):
            if document is not None:
                yield Location(file_name, index), document
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        reason = getattr(err, "problem", None) or str(err)
        problems.append(Problem(Location(file_name, index + 1), "(yaml)", f"{reason}{where}"))


def _expand_lists(document: Any) -> Iterator[tuple[str, Any]]:
    """A `kind: List` (what `kubectl get -o yaml` prints) stands for its items."""
    if isinstance(document, dict) and document.get("kind") == "List":
        for index, item in enumerate(document.get("items") or []):
            yield f"items[{index}].", item
    else:
        yield "", document


def _validate(
    raw: Any, location: Location, prefix: str, problems: list[Problem], ignored: dict[str, int]
) -> BaseModel | None:
    def problem(path: str, message: str) -> None:
        problems.append(Problem(location, prefix + path, message))

    if not isinstance(raw, dict):
        problem("(document)", f"expected a mapping with apiVersion and kind, got {_type(raw)}")
        return None
    api_version, kind = raw.get("apiVersion"), raw.get("kind")
    if not isinstance(kind, str) or not kind:
        problem("kind", "missing; every object needs apiVersion and kind")
        return None
    if not isinstance(api_version, str) or not api_version:
        problem("apiVersion", f"missing; {kind} needs an apiVersion")
        return None
    model = KINDS.get((api_version, kind))
    if model is None:
        if kind in KIND_BY_NAME and (
            api_version.startswith("herald.io/") or kind not in PEER_EQUIVALENTS
        ):
            expected = KIND_BY_NAME[kind].model_fields["api_version"].default
            problem("apiVersion", f"{api_version!r} is not served for {kind}; use {expected!r}")
        elif kind in PEER_EQUIVALENTS:
            problem(
                "kind",
                f"{kind} ({api_version}) is not read by herald; write {PEER_EQUIVALENTS[kind]} "
                f"in {HERALD_GROUP_VERSION} instead (see docs/configuration.md)",
            )
        elif api_version.startswith("herald.io/"):
            herald_kinds = sorted(k for (v, k) in KINDS if v == HERALD_GROUP_VERSION)
            problem("kind", f"{kind!r} is not a herald kind; allowed: {', '.join(herald_kinds)}")
        else:
            ignored[kind] = ignored.get(kind, 0) + 1
        return None
    try:
        obj = model.model_validate(raw)
    except ValidationError as err:
        errors = err.errors()
        for error in errors:
            if error["type"] == "too_short" and _has_deeper_error(error, errors):
                continue  # the tuple's items failed; their own errors say why
            path, message = describe_error(model, error)
            problem(path, message)
        return None
    if kind in NAMESPACED and obj.metadata.namespace is None:  # type: ignore[attr-defined]
        meta = obj.metadata.model_copy(update={"namespace": "default"})  # type: ignore[attr-defined]
        obj = obj.model_copy(update={"metadata": meta})
    return obj


def describe_error(model: type[BaseModel], error: Any) -> tuple[str, str]:
    """A pydantic error as (field.path, message saying what is wrong and what is allowed)."""
    loc = [part for part in error["loc"] if not _is_union_tag(part)]
    path = _path_text(loc) or "(document)"
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        return path, "unknown field; allowed here: " + ", ".join(allowed)
    if kind == "missing":
        return path, "required field is missing"
    message = message.removeprefix("Value error, ")
    if path == "metadata" and message.startswith("annotation "):
        # Annotation checks run on the whole metadata; point at the annotation itself.
        annotation, _, message = message.removeprefix("annotation ").partition(": ")
        return f"metadata.annotations[{annotation}]", message
    value = error.get("input")
    if kind != "value_error" and isinstance(value, str | int | float | bool):
        return path, f"got {value!r}: {message}"
    return path, message


def _has_deeper_error(error: Any, errors: list[Any]) -> bool:
    loc = tuple(error["loc"])
    return any(tuple(other["loc"])[: len(loc)] == loc and other is not error for other in errors)


def _is_union_tag(part: Any) -> bool:
    # pydantic names the union member it tried (`int`, `function-after[...]`) in the location.
    return isinstance(part, str) and (
        part in ("int", "str", "float", "bool", "none") or "[" in part
    )


def _path_text(loc: list[Any]) -> str:
    text = ""
    for part in loc:
        if isinstance(part, int) or "." in str(part) or "/" in str(part):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def _fields_at(model: type[BaseModel], loc: list[Any]) -> list[str]:
    """The field names allowed at `loc` inside `model`, following nested models."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        fields = current.model_fields if _is_model(current) else {}
        for name, info in fields.items():
            if part in (name, info.alias):
                current = _model_in(info.annotation)
                break
        else:
            return []
    if not _is_model(current):
        return []
    return [info.alias or name for name, info in current.model_fields.items()]


def _is_model(candidate: Any) -> bool:
    return isinstance(candidate, type) and issubclass(candidate, BaseModel)


def _model_in(annotation: Any) -> Any:
    """The model type inside an annotation such as `X | None` or `tuple[X, ...]`."""
    if _is_model(annotation):
        return annotation
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType, tuple, list):
        for arg in typing.get_args(annotation):
            found = _model_in(arg)
            if found is not None:
                return found
    return None


def _ref_of(obj: BaseModel) -> ObjectRef:
    kind = str(obj.kind)  # type: ignore[attr-defined]
    meta = obj.metadata  # type: ignore[attr-defined]
    return kind, meta.namespace or "", meta.name


def _ref_text(ref: ObjectRef) -> str:
    return f"{ref[1]}/{ref[2]}" if ref[1] else ref[2]


def _type(value: Any) -> str:
    return {list: "a list", str: "a string", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__
    )
