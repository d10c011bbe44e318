"""Loading manifests: YAML documents in, one validated ClusterState out, or every problem.

`parse_manifests` is pure (file names and texts in); `load_directory` is the thin shell that
reads a directory. Nothing partial is ever returned: one problem anywhere raises
ManifestError listing all of them.

The directory is trusted to name files, not to reach beyond itself: herald runs as root, so
a link to /etc/shadow must not become a file it parses (and quotes in its errors). Sizes are
checked before anything is read: every agent parses the directory, and an unbounded file
costs each of them seconds of CPU and hundreds of MB (docs/configuration.md).
"""

from __future__ import annotations

import hashlib
import os
import stat
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

MiB = 2**20

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
class SizeLimits:
    """How much of a manifests directory herald reads: per file and for all files together.

    Every agent parses the whole directory and holds what it parsed: a MiB of YAML costs
    about a second of CPU, 15 MiB of memory and, through the garbage collector, up to 50 ms
    of stalled event loop even when parsed in a thread (docs/configuration.md has the
    figures behind these defaults)."""

    file_bytes: int = 4 * MiB
    total_bytes: int = 8 * MiB


DEFAULT_LIMITS = SizeLimits()


@dataclass(frozen=True)
class ParsedFile:
    """One file's objects (with their document location and list prefix), its problems,
    and the kinds it holds that herald does not read."""

    objects: tuple[tuple[BaseModel, Location, str], ...]
    problems: tuple[Problem, ...]
    ignored: tuple[str, ...]


def load_directory(
    directory: str | Path,
    cache: dict[Path, tuple[bytes, ParsedFile]] | None = None,
    limits: SizeLimits = DEFAULT_LIMITS,
) -> ClusterState:
    """Read every manifest file below `directory` (recursively, hidden entries skipped).

    Links are followed while they stay inside `directory` (a file reached twice is read
    once); one that leads outside is a problem and is never opened. A file larger than
    `limits.file_bytes`, or files larger than `limits.total_bytes` together, are problems
    found by stat() before anything is read.

    With `cache` (path -> (digest of the text, ParsedFile)), a file whose text is unchanged
    is not parsed again: a watcher re-reading a large directory on every change then pays
    for reading it, and for parsing the changed file only. (A digest, not the mtime: two
    writes within one timestamp tick would look alike.)"""
    root = Path(directory)
    if not root.is_dir():
        raise ManifestError([Problem(Location(str(root), 0), "(directory)", "not a directory")])
    files, problems = manifest_files(root)
    sizes: dict[Path, int] = {}
    for path, real in files:
        try:
            size = os.stat(real).st_size
        except FileNotFoundError:
            continue  # deleted since the listing: its deletion is the next change
        except OSError as err:
            problems.append(_unreadable(path, err))
            continue
        if size > limits.file_bytes:
            problems.append(_too_large(path, size, limits.file_bytes))
        else:
            sizes[path] = size
    total = sum(sizes.values())
    if total > limits.total_bytes:
        problems.append(
            Problem(
                Location(str(root), 0),
                "(directory)",
                f"its manifest files hold {total} bytes together, over the limit of "
                f"{limits.total_bytes} bytes; nothing was read. Remove files herald does not "
                "need (objects of kinds it ignores count too) or move them out of the directory",
            )
        )
        sizes.clear()
    top = Path(os.path.realpath(root))
    parsed: dict[str, ParsedFile] = {}
    for path, real in files:
        if path not in sizes:
            continue
        try:
            data = _read_inside(real, top, limits.file_bytes)
        except FileNotFoundError:
            continue
        except _Refused as refused:
            problems.append(Problem(Location(str(path), 0), "(file)", str(refused)))
            continue
        except OSError as err:
            problems.append(_unreadable(path, err))
            continue
        digest = hashlib.blake2b(data, digest_size=16).digest()
        cached = cache.get(path) if cache is not None else None
        if cached is None or cached[0] != digest:
            cached = (digest, parse_file(str(path), data.decode("utf-8", errors="replace")))
            if cache is not None:
                cache[path] = cached
        parsed[str(path)] = cached[1]
    if cache is not None:
        for gone in [p for p in cache if str(p) not in parsed]:
            del cache[gone]
    if problems:
        # Some files were not read: what the others refer to may be in them, so only the
        # files' own problems are worth reporting beside these.
        raise ManifestError(problems + [p for f in parsed.values() for p in f.problems])
    return combine(parsed)


def manifest_files(root: Path) -> tuple[list[tuple[Path, Path]], list[Problem]]:
    """The manifest files below `root` as (path as listed, real path), in listing order, and
    a problem for every link that leads outside `root`. Hidden entries are skipped by their
    own name, so a visible link into a hidden directory is read (the way a Kubernetes
    ConfigMap volume lays out its files). Every real file and directory is taken once, which
    also ends link loops."""
    top = Path(os.path.realpath(root))
    files: list[tuple[Path, Path]] = []
    problems: list[Problem] = []
    seen: set[Path] = set()

    def walk(directory: Path, real_directory: Path) -> None:
        if real_directory in seen:
            return
        seen.add(real_directory)
        try:
            with os.scandir(directory) as listing:
                entries = sorted(listing, key=lambda e: e.name)
        except OSError as err:
            problems.append(_unreadable(directory, err, what="(directory)"))
            return
        for entry in entries:
            if entry.name.startswith("."):
                continue
            path = directory / entry.name
            manifest = path.suffix in MANIFEST_SUFFIXES
            if entry.is_symlink():
                real = Path(os.path.realpath(path))
                if not real.is_relative_to(top):
                    if manifest or real.is_dir():
                        problems.append(_outside(path, real, root))
                    continue
                if real.is_dir():
                    walk(path, real)
                    continue
            else:
                real = real_directory / entry.name
                if entry.is_dir(follow_symlinks=False):
                    walk(path, real)
                    continue
            if manifest and real not in seen and real.is_file():
                seen.add(real)
                files.append((path, real))

    walk(root, top)
    return files, problems


class _Refused(Exception):
    """A file that must not be read; the message says why and what to do."""


def _read_inside(real: Path, top: Path, limit: int) -> bytes:
    """The bytes of `real`, a regular file inside `top`, reading at most `limit` of them.

    `real` was resolved and checked already; what is opened is checked again, as a link
    swapped in between the check and the open must not be followed out of `top`."""
    fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            opened = Path(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            opened = real  # no /proc: the resolved path and O_NOFOLLOW have to do
        if not opened.is_relative_to(top):
            raise _Refused(f"changed into a link to {opened} outside {top} while being read")
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Refused("is not a regular file; not read")
        chunks: list[bytes] = []
        size = 0
        while chunk := os.read(fd, min(MiB, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:
                raise _Refused(_too_large_message(f"more than {limit} bytes (it grew)", limit))
        return b"".join(chunks)
    finally:
        os.close(fd)


def _outside(path: Path, real: Path, root: Path) -> Problem:
    return Problem(
        Location(str(path), 0),
        "(file)",
        f"symlink to {real} leads outside the manifests directory {root}; not read. "
        "Copy what it points to into the directory, or link to a file inside it",
    )


def _too_large(path: Path, size: int, limit: int) -> Problem:
    return Problem(Location(str(path), 0), "(file)", _too_large_message(f"{size} bytes", limit))


def _too_large_message(size: str, limit: int) -> str:
    return (
        f"holds {size}, over the limit of {limit} bytes for one manifest file; not read. "
        "Split it into smaller files"
    )


def _unreadable(path: Path, err: OSError, what: str = "(file)") -> Problem:
    return Problem(
        Location(str(path), 0),
        what,
        f"cannot be read: {err.strerror or err}; give herald's user read access or remove it",
    )


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
    loc = error_location(error)
    path = path_text(loc) or "(document)"
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        allowed = _fields_at(model, loc[:-1])
        return path, "unknown field; allowed here: " + ", ".join(allowed)
    if kind == "missing":
        return path, "required field is missing"
    message = message.removeprefix("Value error, ")
    if path in ("metadata", "(document)") and message.startswith("annotation "):
        # Annotation checks run on the whole metadata or object; point at the annotation.
        annotation, _, message = message.removeprefix("annotation ").partition(": ")
        return f"metadata.annotations[{annotation}]", message
    value = error.get("input")
    if kind != "value_error" and isinstance(value, str | int | float | bool):
        return path, f"got {value!r}: {message}"
    return path, message


def _has_deeper_error(error: Any, errors: list[Any]) -> bool:
    loc = tuple(error["loc"])
    return any(tuple(other["loc"])[: len(loc)] == loc and other is not error for other in errors)


def error_location(error: Any) -> list[Any]:
    """A pydantic error's location as the field path a user wrote: pydantic also names the
    union member it tried (`int`, `function-after[...]`), which no manifest has."""
    return [part for part in error["loc"] if not _is_union_tag(part)]


def _is_union_tag(part: Any) -> bool:
    return isinstance(part, str) and (
        part in ("int", "str", "float", "bool", "none") or "[" in part
    )


def path_text(loc: list[Any]) -> str:
    """`spec.blocks[0].cidr` from a location (keys with dots or slashes in brackets)."""
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
