"""The watch caches turned into one ClusterState (pure).

Each object is validated by herald's model once per resourceVersion. An object that does not
validate costs only itself, and is named in the snapshot's problems (which the agents show in
their status) while everything else is served: an edit that breaks an object that was valid
keeps its last valid version in the snapshot (as the files source keeps the last good
manifests), so a typo in a Service's annotation does not give its address away; an object
that was never valid is left out. Of the Secrets in herald's namespace, only those a
BGPPeerConfig names are in the snapshot.
"""

from __future__ import annotations

import dataclasses
from collections import ChainMap
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from pydantic import BaseModel, ValidationError

from herald.api.manifests import describe_error
from herald.api.problems import Location
from herald.api.references import check_references
from herald.api.snapshot import ClusterState, ObjectRef
from herald.sources.kube.cache import KindCache, ObjectKey, resource_version
from herald.sources.kube.kinds import Kind

# Problems a snapshot carries: enough to name the objects, bounded for a broken cluster.
SHOWN_PROBLEMS = 10


@dataclass(frozen=True)
class _Checked:
    version: str | None
    model: BaseModel | None
    problems: tuple[str, ...]


def location(kind: str, namespace: str, name: str) -> Location:
    """Where an API object is, for problems: `Kind/namespace/name` (document 0)."""
    return Location(f"{kind}/{namespace}/{name}" if namespace else f"{kind}/{name}", 0)


@dataclass(frozen=True)
class _Built:
    """One kind's part of a snapshot, as of its cache's generation."""

    generation: int
    models: tuple[BaseModel, ...]
    locations: dict[ObjectRef, Location]
    problems: tuple[str, ...]


class SnapshotBuilder:
    def __init__(self, kinds: tuple[Kind, ...]) -> None:
        self.kinds = kinds
        self._checked: dict[str, dict[ObjectKey, _Checked]] = {k.name: {} for k in kinds}
        self._built: dict[str, _Built] = {}

    def build(
        self, caches: Mapping[str, KindCache], source_problems: Iterable[str] = ()
    ) -> ClusterState:
        """The snapshot of `caches`; `source_problems` (a kind not watched) come first. A
        kind whose cache did not change since the last build is not gone through again: an
        EndpointSlice's change costs the slices, not the 10,000 Services beside them."""
        fields: dict[str, tuple[Any, ...]] = {}
        locations: list[dict[ObjectRef, Location]] = []
        problems: list[str] = list(source_problems)
        for kind in self.kinds:
            part = self._part(kind, caches[kind.name])
            fields[kind.field] = part.models
            locations.append(part.locations)
            problems.extend(part.problems)
        if "secrets" in fields:
            named = {
                c.spec.auth_secret_ref
                for c in fields.get("bgp_peer_configs", ())
                if c.spec.auth_secret_ref is not None
            }
            fields["secrets"] = tuple(s for s in fields["secrets"] if s.metadata.name in named)
        located: Mapping[ObjectRef, Location] = MappingProxyType(ChainMap(*locations))
        state = ClusterState(**fields, locations=located, ignored=MappingProxyType({}), problems=())
        problems.extend(str(problem) for problem in check_references(state))
        if not problems:
            return state
        shown = problems[:SHOWN_PROBLEMS]
        if len(problems) > SHOWN_PROBLEMS:
            shown.append(f"and {len(problems) - SHOWN_PROBLEMS} more objects left out")
        return dataclasses.replace(state, problems=tuple(shown))

    def _part(self, kind: Kind, cache: KindCache) -> _Built:
        built = self._built.get(kind.name)
        if built is not None and built.generation == cache.generation:
            return built
        checked = self._checked[kind.name]
        objects = cache.objects
        for gone in checked.keys() - objects.keys():
            del checked[gone]
        models: list[BaseModel] = []
        locations: dict[ObjectRef, Location] = {}
        problems: list[str] = []
        for key in sorted(objects):
            raw = objects[key]
            version = resource_version(raw)
            entry = checked.get(key)
            if entry is None or entry.version != version or version is None:
                entry = checked[key] = _check(
                    kind, key, raw, version, entry.model if entry is not None else None
                )
            problems.extend(entry.problems)
            if entry.model is not None:
                models.append(entry.model)
                locations[(kind.name, *key)] = location(kind.name, *key)
        built = _Built(cache.generation, tuple(models), locations, tuple(problems))
        self._built[kind.name] = built
        return built


def _check(
    kind: Kind,
    key: ObjectKey,
    raw: Mapping[str, Any],
    version: str | None,
    last_valid: BaseModel | None,
) -> _Checked:
    namespace, name = key
    where = location(kind.name, namespace, name)
    # The server keeps fields herald's kinds do not know (a status on a kind without one,
    # fields of a newer CRD version): only what the model reads is validated.
    known = {info.alias or field for field, info in kind.model.model_fields.items()}
    document = {k: v for k, v in raw.items() if k in known}
    document.setdefault("apiVersion", kind.api_version)
    document.setdefault("kind", kind.name)
    try:
        model = kind.model.model_validate(document)
    except ValidationError as err:
        outcome = "keeping its last valid version" if last_valid else "this object is left out"
        found = []
        for error in err.errors():
            path, message = describe_error(kind.model, error)
            found.append(f"{where}: {path}: {message}; {outcome}")
        return _Checked(version, last_valid, tuple(found))
    return _Checked(version, model, ())
